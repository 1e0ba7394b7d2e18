"""The nginx front: a frozen FrontSpec rendered into one nginx site (``templates/nginx/``).

What the site does, and why:

- ``proxy_set_header Host localhost:<port>``: the server refuses a non-local Host on a loopback
  bind (DNS-rebinding guard), so the front presents the Host the seed's example uses;
- streaming stays streaming: HTTP/1.1 to the upstream, ``proxy_buffering off``, chunked
  responses, long read/send timeouts (a model may think for minutes between two bytes);
- auth in front of the unauthenticated API: bearer tokens from a file (matched exactly, the
  ``Bearer`` scheme case-insensitively, as RFC 6750 says) or basic auth with an htpasswd file;
  the credentials are not forwarded to the upstream;
- an ``upstream`` over several hosts: least connections, passive health checks
  (``max_fails``/``fail_timeout``; a refused connection or a 502/503 moves the request to the
  next host), or with ``affinity`` a consistent hash of the request's ``"model"`` so each model
  stays warm on one host.

The first lines of the site carry a one-line JSON marker (:data:`MARKER`) that
``doctor`` reads to know what the front listens on and whether it authenticates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ollamactl import settings
from ollamactl.errors import UsageError
from ollamactl.templating import render

MARKER = "# ollamactl-front: "
TEMPLATE = "nginx/site.conf.j2"

#: RFC 6750 b64token; at least 16 characters so a guessable word is refused.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]{16,}=*$")
_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SIZE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_SERVER_NAME = re.compile(r"^(_|[A-Za-z0-9*.-]+)$")

AuthKind = Literal["none", "bearer", "basic"]


@dataclass(frozen=True)
class Backend:
    """One upstream host that runs ollamactl (or Ollama)."""

    host: str
    port: int

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class FrontSpec:
    """Everything the site template needs; build it with :func:`build_spec` (it validates)."""

    name: str
    listen: settings.HostAddress
    backends: tuple[Backend, ...]
    server_name: str = "_"
    auth: AuthKind = "none"
    tokens: tuple[str, ...] = field(default=(), repr=False)
    htpasswd: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body_size: str = "64m"
    read_timeout_s: int = 600
    max_fails: int = 3
    fail_timeout_s: int = 30
    affinity: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def authenticates(self) -> bool:
        return self.auth != "none"

    @property
    def host_header(self) -> str:
        """The Host a loopback-bound server accepts (the seed: ``localhost:11434``)."""
        return f"localhost:{self.backends[0].port}"

    @property
    def var_prefix(self) -> str:
        """nginx variables are global to the http block: one prefix per site."""
        return "ollamactl_" + self.name.replace("-", "_")

    def marker(self) -> dict[str, Any]:
        """What doctor needs to know about this front (no secrets)."""
        return {"name": self.name, "listen": self.listen.hostport, "auth": self.auth,
                "tls": self.tls, "backends": [b.hostport for b in self.backends]}


def parse_token_file(text: str, *, source: str = "token file") -> tuple[str, ...]:
    """Tokens, one per line; blank lines and ``#`` comments are skipped.

    Raises:
        UsageError: a line is not a token (RFC 6750 characters, at least 16 long), or none given.
    """
    tokens: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _TOKEN.match(line):
            raise UsageError(f"{source} line {number} is not a usable bearer token",
                             hint="tokens are at least 16 characters of A-Z a-z 0-9 . _ ~ + / -;"
                                  " make one with `ollamactl expose token`")
        tokens.append(line)
    if not tokens:
        raise UsageError(f"{source} holds no token", hint="add one token per line")
    return tuple(dict.fromkeys(tokens))


def parse_backend(value: str) -> Backend:
    """``host[:port]`` or ``http://host[:port]`` (default port 11434).

    Raises:
        UsageError: not an address, or not plain http.
    """
    try:
        address = settings.parse_host(value)
    except settings.Invalid as exc:
        raise UsageError(f"invalid backend {value!r}: {exc}") from None
    if address.scheme != "http" or address.path:
        raise UsageError(f"invalid backend {value!r}: the front speaks plain http to its "
                         "backends (host:port)")
    if address.is_all_interfaces:
        raise UsageError(f"invalid backend {value!r}: name the host to connect to, not "
                         "all interfaces")
    return Backend(address.host, address.port)


def parse_listen(value: str, *, tls: bool) -> settings.HostAddress:
    """``[host:]port`` the front listens on; a bare port means all interfaces."""
    text = f":{value}" if value.isdigit() else value
    try:
        address = settings.parse_host(text)
    except settings.Invalid as exc:
        raise UsageError(f"invalid listen address {value!r}: {exc}") from None
    if "://" in value or address.path:
        raise UsageError(f"invalid listen address {value!r}: give [host:]port")
    if value.isdigit() or text.startswith(":"):
        return settings.HostAddress("https" if tls else "http", "0.0.0.0", address.port)
    return settings.HostAddress("https" if tls else "http", address.host, address.port)


def build_spec(*, name: str = "ollama", listen: str | None = None,
               backends: Sequence[str] = ("127.0.0.1:11434",), server_name: str = "_",
               tokens: Sequence[str] = (), htpasswd: Path | None = None,
               tls_cert: Path | None = None, tls_key: Path | None = None,
               max_body_size: str = "64m", read_timeout_s: int = 600, max_fails: int = 3,
               fail_timeout_s: int = 30, affinity: bool = False) -> FrontSpec:
    """Check every value and build the spec.

    Raises:
        UsageError: a bad name, address, size, timeout, or TLS/auth half given.
    """
    if not _SITE_NAME.match(name):
        raise UsageError(f"invalid site name {name!r}", hint="use a-z, 0-9, - and _")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("TLS needs both --tls-cert and --tls-key")
    if tokens and htpasswd is not None:
        raise UsageError("choose one kind of auth: bearer tokens or an htpasswd file")
    if not backends:
        raise UsageError("give at least one backend")
    if not _SIZE.match(max_body_size):
        raise UsageError(f"invalid body size {max_body_size!r}", hint="e.g. 64m, 512k, 2g")
    if not _SERVER_NAME.match(server_name):
        raise UsageError(f"invalid server name {server_name!r}")
    for label, number in (("read timeout", read_timeout_s), ("max fails", max_fails),
                          ("fail timeout", fail_timeout_s)):
        if number < 1:
            raise UsageError(f"{label} must be at least 1, got {number}")
    for path in (htpasswd, tls_cert, tls_key):
        if path is not None and (not path.is_absolute() or any(c in str(path) for c in "; \"'{}")):
            raise UsageError(f"{path}: give an absolute path without spaces, quotes or ;{{}}")
    tls = tls_cert is not None
    parsed = tuple(dict.fromkeys(parse_backend(b) for b in backends))
    auth: AuthKind = "bearer" if tokens else "basic" if htpasswd is not None else "none"
    return FrontSpec(
        name=name, listen=parse_listen(listen or ("443" if tls else "80"), tls=tls),
        backends=parsed, server_name=server_name, auth=auth, tokens=tuple(tokens),
        htpasswd=htpasswd, tls_cert=tls_cert, tls_key=tls_key, max_body_size=max_body_size,
        read_timeout_s=read_timeout_s, max_fails=max_fails, fail_timeout_s=fail_timeout_s,
        affinity=affinity)


def bearer_pattern(token: str) -> str:
    """The map key matching ``Authorization: Bearer <token>`` exactly (PCRE, nginx-quoted)."""
    escaped = re.escape(token).replace("\\", "\\\\").replace('"', '\\"')
    return f'"~^(?i:bearer) {escaped}$"'


def listen_directive(address: settings.HostAddress) -> str:
    """``listen``'s argument: ``8080``, ``127.0.0.1:8080`` or ``[::1]:8080``."""
    return str(address.port) if address.is_all_interfaces and address.host != "::" \
        else address.hostport


def render_site(spec: FrontSpec) -> str:
    """The nginx site for ``spec`` (server, upstream and map blocks for the http context)."""
    return render(TEMPLATE, spec=spec, marker=MARKER + json.dumps(spec.marker()),
                  listen=listen_directive(spec.listen),
                  bearer_patterns=[bearer_pattern(t) for t in spec.tokens])


def read_marker(text: str) -> dict[str, Any] | None:
    """The marker of a site this module rendered, or None for any other file."""
    for line in text.splitlines()[:5]:
        if line.startswith(MARKER):
            try:
                value = json.loads(line[len(MARKER):])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None

"""Browser-facing guards: CORS per OLLAMA_ORIGINS and the Host-header check against DNS rebinding.

One ASGI middleware, :class:`RequestGuard`, applies both before any route runs:

- **Host guard**: only when the server is bound to a loopback address. The ``Host`` header must
  then name this machine (empty, ``localhost``, the hostname, ``*.localhost``/``*.local``/
  ``*.internal``, a loopback, private, unspecified or local-interface IP); anything else gets
  an empty 403, so a web page on ``evil.example`` that rebinds its name to 127.0.0.1 cannot
  reach the API.
- **CORS**: a request with an ``Origin`` header must match an allowed origin (OLLAMA_ORIGINS
  added to the built-in local ones; ``*`` is a wildcard); else 403. Allowed origins get
  ``Access-Control-Allow-Origin``; preflight ``OPTIONS`` answers 204 with the allowed methods
  and headers.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import socket
from collections.abc import Callable, Collection, Iterable, Sequence

from ollamactl.runtime.http.asgi import ASGIApp, Message, Receive, Scope, Send

_LOCAL_ORIGINS = tuple(f"{scheme}://{host}{port}"
                       for host in ("localhost", "127.0.0.1", "0.0.0.0")
                       for scheme in ("http", "https") for port in ("", ":*"))
DEFAULT_ORIGINS: tuple[str, ...] = (
    *_LOCAL_ORIGINS, "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
ALLOWED_HEADERS = ", ".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta",
    # the Anthropic client's (/v1/messages), for a browser's preflight
    "x-api-key", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    *(f"x-stainless-{name}" for name in (
        "arch", "async", "custom-poll-interval", "helper-method", "lang", "os",
        "package-version", "poll-helper", "retry-count", "runtime", "runtime-version",
        "timeout")),
))
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def allowed_origins(extra: Iterable[str]) -> tuple[str, ...]:
    """OLLAMA_ORIGINS entries first, then the built-in ones (they add, never replace)."""
    return (*(o.strip() for o in extra if o.strip()), *DEFAULT_ORIGINS)


def is_origin_allowed(origin: str, patterns: Sequence[str]) -> bool:
    """``origin`` matches a pattern exactly or through ``*`` wildcards (case-insensitive)."""
    origin = origin.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*" or pattern == origin:
            return True
        if "*" in pattern and fnmatch.fnmatchcase(origin, pattern.replace("[", "[[]")):
            return True
    return False


def is_loopback_bind(bind_host: str) -> bool:
    """Whether the listener is on a loopback address (the only case the Host guard applies)."""
    if bind_host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a Host header: ``[::1]:11434`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header[1:]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def local_addresses() -> set[str]:
    """IPs of this machine's interfaces (psutil), for the Host guard."""
    import psutil

    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                found.add(address.address.split("%", 1)[0])
    return found


def is_local_host(header: str, *, hostname: str,
                  interface_ips: Callable[[], Collection[str]]) -> bool:
    """Ollama's allowed-host rule for a loopback bind. ``interface_ips`` is asked only for a
    public IP (psutil's interface list costs ~5 ms the first time)."""
    name = _host_name(header).lower().rstrip(".")
    if not name or name == "localhost" or name == hostname.lower():
        return True
    if name.endswith(LOCAL_SUFFIXES):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified or name in interface_ips()


class RequestGuard:
    """ASGI middleware for the Host guard and CORS (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, bind_host: str, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.check_host = is_loopback_bind(bind_host)
        self.origins = allowed_origins(origins)
        self.hostname = socket.gethostname()
        self.interface_ips = functools.cache(local_addresses)

    def _host_ok(self, host: str) -> bool:
        if not self.check_host:
            return True
        return is_local_host(host, hostname=self.hostname, interface_ips=self.interface_ips)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if not self._host_ok(headers.get("host", "")):
            await _respond(send, 403, [])
            return
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if not is_origin_allowed(origin, self.origins):
            await _respond(send, 403, [])
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _respond(send, 204, [
                *cors, (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", b"43200")])
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})

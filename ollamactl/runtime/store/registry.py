"""Registry client: pull a model from any registry speaking Ollama's (Docker v2 style) protocol;
:class:`RegistryClient` also carries :mod:`push`'s uploads.

    GET /v2/<namespace>/<model>/manifests/<tag>     the manifest (stored byte for byte)
    GET /v2/<namespace>/<model>/blobs/<digest>      each layer and the config

Blobs download into ``blobs/sha256-<hex>-partial``; an interrupted download resumes from there
with a ``Range`` request (on the next try or the next pull). A finished partial is streamed
through :meth:`Store.write_blob`, which publishes the blob only if its sha256 matches the
digest; a mismatch deletes the partial and leaves nothing. The manifest is written last, so a
failed pull leaves no model behind. HTTPS unless ``insecure``; a ``401`` with a Bearer
challenge is answered by fetching a token from its realm (again when a push asks for more scope
than the token had), but only when the realm is on the registry's own host.

An exposed server pulls whatever name a client sends, so a pull must not become a probe of the
network the server sits in: manifests are never redirected; a blob redirect (a CDN) is followed
at most :data:`MAX_REDIRECTS` times, without the token, only over https when the registry is
https, and only to hosts whose every address is public or on a network the registry itself is
on (:func:`redirect_target`). Errors name the status and the host, never what a host sent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from ollamactl import __version__
from ollamactl.errors import ModelError
from ollamactl.runtime.store.blobs import DigestMismatch, LayerProgress, validate_digest
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_TYPE_MANIFEST, LocalModel
from ollamactl.runtime.store.names import ModelName
from ollamactl.system import atomic_write

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.registry")

CHUNK_BYTES = 1 << 20
ATTEMPTS = 3
TIMEOUT_S = 30.0
MAX_MANIFEST_BYTES = 1 << 20
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(ModelError):
    """The registry refused, answered nonsense, or the transfer failed."""


class RedirectRefused(RegistryError):
    """A redirect the pull may not follow; trying again would only ask for it again."""


def progress_noop(status: str, completed: int | None, total: int | None, *,
                  digest: str | None = None) -> None:
    """The :class:`LayerProgress` of a caller that does not watch."""
    return None


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[Address]]


def resolve_addresses(host: str, port: int) -> list[Address]:
    """Every address the OS resolves ``host`` to: a redirect is judged by all of them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def network_scope(address: Address) -> str:
    """``loopback``, ``link-local``, ``private`` or ``public``: how far away ``address`` is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:   # 0.0.0.0 and :: reach this host
        return "loopback"
    if address.is_link_local:                            # 169.254.169.254: cloud metadata
        return "link-local"
    return "public" if address.is_global and not address.is_multicast else "private"


def _endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, lowercase host, port) of ``url``; a port that is no number counts as the
    default (requests refuses such a URL before connecting)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), \
        port or (443 if parts.scheme == "https" else 80)


def _scopes(host: str, port: int, resolve: Resolver) -> set[str]:
    try:
        return {network_scope(address) for address in resolve(host, port)}
    except (OSError, ValueError) as exc:
        raise RedirectRefused(f"cannot resolve {host} to check a redirect to it") from exc


def redirect_target(registry: str, current: str, location: str, *,
                    resolve: Resolver | None = None) -> str:
    """The URL a blob redirect from ``current`` leads to, if a pull may follow it: http(s), no
    step down from https, no credentials, and no address on a network more private than the
    registry's own (a public registry cannot send the server to its loopback, LAN or the cloud
    metadata address; a registry on loopback may use loopback). ``resolve`` is the OS boundary.

    Raises:
        RegistryError: the redirect is refused; the message names the host only.
    """
    resolve = resolve or resolve_addresses
    own_scheme, own_host, own_port = _endpoint(registry)
    who = f"registry {_host(registry)}"
    try:
        target = urljoin(current, location)
        parts = urlsplit(target)
        scheme, host, port = _endpoint(target)
    except ValueError:
        target, parts, scheme, host, port = "", urlsplit(""), "", "", 0
    if not location or scheme not in ("http", "https") or not host:
        raise RedirectRefused(f"{who} sent a redirect that is not an http(s) URL; refusing it")
    if own_scheme == "https" and scheme != "https":
        raise RedirectRefused(f"{who} redirected to plain http on {host}; refusing to leave "
                              "https")
    if parts.username is not None or parts.password is not None:
        raise RedirectRefused(f"{who} redirected to {host} with credentials; refusing it")
    if (host, port) == (own_host, own_port):
        return target
    allowed = {"public"} | _scopes(own_host, own_port, resolve)
    refused = sorted(_scopes(host, port, resolve) - allowed)
    if refused:
        raise RedirectRefused(f"{who} redirected to {host}, a {refused[0]} address; refusing "
                              "to follow it")
    return target


def _failure(exc: Exception) -> str:
    """A transport failure in our words: a requests message may quote what the peer sent."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (certificate or protocol)"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"request failed ({type(exc).__name__})"


def _host(url: str) -> str:
    _, host, port = _endpoint(url)
    return f"{host}:{port}"


class RegistryClient:
    """One registry host; keeps the bearer token it was given."""

    def __init__(self, name: ModelName, *, insecure: bool = False) -> None:
        import requests

        self.name = name
        self.base = f"{'http' if insecure else 'https'}://{name.host}"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"ollamactl/{__version__}"
        self.token: str | None = None

    def close(self) -> None:
        self.session.close()

    def url(self, kind: str, ref: str) -> str:
        """``<base>/v2/<namespace>/<model>/<kind>/<ref>``."""
        return f"{self.base}/v2/{self.name.namespace}/{self.name.model}/{kind}/{ref}"

    def send(self, method: str, url: str, headers: dict[str, str] | None = None, *,
             body: Callable[[], Any] | None = None, follow: bool = False,
             what: str = "a manifest") -> Any:
        """One request with the token (registry host only); on a 401 Bearer challenge, fetch a
        token (again, when a push needs more scope than a pull's token had) and retry once;
        ``body()`` gives a fresh body for each try. Redirects only when ``follow``, each judged
        by :func:`redirect_target`; otherwise a redirect for ``what`` is refused.
        """
        import requests

        headers = dict(headers or {})
        own = _endpoint(self.base)
        redirects = 0
        challenged = False
        while True:
            foreign = _endpoint(url) != own   # a CDN: never send it our token
            headers.pop("Authorization", None)
            if self.token and not foreign:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                response = self.session.request(
                    method, url, headers=headers, data=body() if body else None, stream=True,
                    timeout=TIMEOUT_S, allow_redirects=False)
            except requests.RequestException as exc:
                where = f"registry {self.base}" if not foreign else _host(url)
                raise RegistryError(f"cannot reach {where}: {_failure(exc)}") from exc
            if response.status_code in _REDIRECTS:
                response.close()
                redirects += 1
                if not follow:
                    raise RedirectRefused(f"registry {_host(url)} answered "
                                          f"{response.status_code}, a redirect, for {what}; "
                                          "only blob downloads may be redirected")
                if redirects > MAX_REDIRECTS:
                    raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects from registry "
                                          f"{_host(self.base)}; giving up")
                url = redirect_target(self.base, url, response.headers.get("Location", ""))
                continue
            if response.status_code != 401 or challenged or foreign:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            self.token = self._fetch_token(challenge)
            challenged = True

    def _same_host(self, url: str, what: str) -> str:
        """``url`` when it is on the registry's own host; else refuse."""
        target, own = urlsplit(url), urlsplit(self.base)
        if (target.hostname or "").lower() != (own.hostname or "").lower() or \
                (target.port or None) != (own.port or None):
            raise RegistryError(f"registry {self.base} sent a {what} on another host "
                                f"({target.hostname or url!r}); refusing to follow it")
        return url

    def _fetch_token(self, challenge: str) -> str:
        if not challenge.lower().startswith("bearer "):
            raise RegistryError(f"registry {self.base} requires authentication")
        fields = dict(_CHALLENGE_RE.findall(challenge))
        realm = self._same_host(fields.get("realm", ""), "token realm")
        query = {k: fields[k] for k in ("service", "scope") if k in fields}
        query["ts"] = str(int(time.time()))
        try:
            reply = self.session.get(f"{realm}?{urlencode(query)}", timeout=TIMEOUT_S,
                                     allow_redirects=False)
            token = reply.json().get("token") if reply.ok else None
        except ValueError:
            token = None
        except Exception as exc:
            raise RegistryError(f"cannot get a token from {realm}: {_failure(exc)}") from exc
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.base} did not grant a token")
        return token

    def manifest(self) -> tuple[bytes, dict[str, Any]]:
        """The raw manifest and its parsed form.

        Raises:
            RegistryError: not found (Ollama's ``pull model manifest: file does not exist``),
                refused, or not a manifest.
        """
        response = self.send("GET", self.url("manifests", self.name.tag),
                             {"Accept": MEDIA_TYPE_MANIFEST})
        with response:
            if response.status_code == 404:
                raise RegistryError("pull model manifest: file does not exist")
            if response.status_code != 200:
                raise RegistryError(f"pull model manifest: registry {_host(self.base)} "
                                    f"answered {response.status_code}")
            raw = response.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise RegistryError("pull model manifest: manifest is too large")
        try:
            data = json.loads(raw)
            layers = [*data["layers"], data["config"]]
            for layer in layers:
                validate_digest(str(layer["digest"]))
                if not isinstance(layer.get("size"), int) or layer["size"] < 0:
                    raise ValueError("layer size")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("invalid manifest from %s: %s", _host(self.base), exc)
            raise RegistryError("pull model manifest: invalid manifest") from exc
        return raw, data

    def download(self, store: Store, digest: str, size: int,
                 progress: LayerProgress) -> None:
        """Fetch one blob into the store, resuming a partial, verifying sha256.

        Raises:
            DigestMismatch: the registry's bytes do not hash to ``digest`` (the partial is
                removed).
            RegistryError: the transfer kept failing, a redirect was refused, or another
                host's bytes do not match (their hash is not told).
        """
        final = store.blob_path(digest)
        partial = Path(f"{final}-partial")
        status = f"pulling {digest.removeprefix('sha256:')[:12]}"
        last_error: Exception | None = None
        sources: set[str] = set()   # the hosts this pull took the blob's bytes from
        for attempt in range(ATTEMPTS):
            try:
                sources.add(self._fetch_to_partial(partial, digest, size, status, progress))
                break
            except RedirectRefused:
                raise
            except RegistryError as exc:
                last_error = exc
                log.warning("download of %s failed (try %d of %d): %s", digest, attempt + 1,
                            ATTEMPTS, exc)
        else:
            raise RegistryError(f"download of {digest} failed: {last_error}")
        try:
            store.write_blob(_read_file(partial), digest)
        except DigestMismatch:
            with contextlib.suppress(OSError):
                partial.unlink()
            if sources != {_host(self.base)}:   # never a hash of what another host sent
                raise RegistryError(f"the blob {digest} from {', '.join(sorted(sources))} does "
                                    "not match its digest") from None
            raise
        with contextlib.suppress(OSError):
            partial.unlink()

    def _fetch_to_partial(self, partial: Path, digest: str, size: int, status: str,
                          progress: LayerProgress) -> str:
        """Complete the partial; the host its bytes came from ("an earlier pull" if none)."""
        import requests

        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            partial.unlink()
            have = 0
        if have == size:
            return "an earlier pull"
        headers = {"Range": f"bytes={have}-"} if have else {}
        response = self.send("GET", self.url("blobs", digest), headers, follow=True)
        source = _host(response.url or self.base)
        with response:
            if response.status_code == 200:
                have = 0
            elif response.status_code != 206:
                raise RegistryError(f"{source} answered {response.status_code} for {digest}")
            partial.parent.mkdir(parents=True, exist_ok=True)
            try:
                with partial.open("r+b" if have else "wb") as out:
                    out.seek(have)
                    out.truncate()
                    for chunk in response.iter_content(CHUNK_BYTES):
                        if have + len(chunk) > size:
                            raise RegistryError(f"{source} sent more than the {size} bytes "
                                                f"of {digest}")
                        out.write(chunk)
                        have += len(chunk)
                        progress(status, have, size, digest=digest)
            except requests.RequestException as exc:
                raise RegistryError(f"transfer from {source} interrupted at {have} of {size} "
                                    f"bytes: {_failure(exc)}") from exc
            except OSError as exc:
                raise ModelError(f"cannot write {partial}: {exc.strerror or exc}") from exc
        if have != size:
            raise RegistryError(f"transfer from {source} ended at {have} of {size} bytes")
        return source


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


def pull(store: Store, name: str, *, insecure: bool = False,
         progress: LayerProgress | None = None) -> LocalModel:
    """Pull ``name`` from its registry into ``store``; statuses as Ollama's ``/api/pull``, each
    layer's byte counts with its digest.

    Raises:
        InvalidModelName: ``name`` does not parse.
        RegistryError, DigestMismatch, ModelError: the pull failed; no manifest was written.
    """
    report = progress or progress_noop
    model_name = ModelName.parse(name)
    client = RegistryClient(model_name, insecure=insecure)
    try:
        report("pulling manifest", None, None)
        raw, data = client.manifest()
        for layer in [*data["layers"], data["config"]]:
            digest = validate_digest(str(layer["digest"]))
            size = int(layer["size"])
            if store.has_blob(digest):
                report(f"pulling {digest.removeprefix('sha256:')[:12]}", size, size,
                       digest=digest)
                continue
            client.download(store, digest, size, report)
    finally:
        client.close()
    report("verifying sha256 digest", None, None)
    report("writing manifest", None, None)
    path = store.manifest_path(model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, raw, mode=0o644, backup=False)
    report("success", None, None)
    return store.resolve(model_name.display)

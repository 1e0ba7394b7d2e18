"""Registry client: pull a model from any registry speaking Ollama's (Docker v2 style) protocol.

    GET /v2/<namespace>/<model>/manifests/<tag>     the manifest (stored byte for byte)
    GET /v2/<namespace>/<model>/blobs/<digest>      each layer and the config

Blobs download into ``blobs/sha256-<hex>-partial``; an interrupted download resumes from there
with a ``Range`` request (on the next try or the next pull). A finished partial is streamed
through :meth:`Store.write_blob`, which publishes the blob only if its sha256 matches the
digest; a mismatch deletes the partial and leaves nothing. The manifest is written last, so a
failed pull leaves no model behind. HTTPS unless ``insecure``; a ``401`` with a Bearer
challenge is answered by fetching a token from its realm, but only when the realm is on the
registry's own host; blob redirects to another host (a CDN) are followed without the token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from ollamactl import __version__
from ollamactl.errors import ModelError
from ollamactl.runtime.names import ModelName
from ollamactl.runtime.store import (
    MEDIA_TYPE_MANIFEST,
    DigestMismatch,
    LocalModel,
    ProgressCallback,
    Store,
    validate_digest,
)
from ollamactl.system import atomic_write

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
ATTEMPTS = 3
TIMEOUT_S = 30.0
MAX_MANIFEST_BYTES = 1 << 20
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(ModelError):
    """The registry refused, answered nonsense, or the transfer failed."""


def _progress_noop(status: str, completed: int | None, total: int | None) -> None:
    return None


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

    def _url(self, kind: str, ref: str) -> str:
        return f"{self.base}/v2/{self.name.namespace}/{self.name.model}/{kind}/{ref}"

    def _get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        """GET with the token; on a 401 Bearer challenge, fetch a token once and retry."""
        import requests

        headers = dict(headers or {})
        foreign = False  # redirected off the registry (a CDN): never send it our token
        for _ in range(6):
            if self.token and not foreign:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                response = self.session.get(url, headers=headers, stream=True,
                                            timeout=TIMEOUT_S, allow_redirects=False)
            except requests.RequestException as exc:
                raise RegistryError(f"cannot reach registry {self.base}: {exc}") from exc
            if response.status_code in (301, 302, 303, 307, 308):
                response.close()
                url = urljoin(url, response.headers.get("Location", ""))
                if (urlsplit(url).hostname or "").lower() != \
                        (urlsplit(self.base).hostname or "").lower():
                    foreign = True
                    headers.pop("Authorization", None)
                continue
            if response.status_code != 401 or self.token or foreign:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            self.token = self._fetch_token(challenge)
        return response

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
            raise RegistryError(f"cannot get a token from {realm}: {exc}") from exc
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.base} did not grant a token")
        return token

    def manifest(self) -> tuple[bytes, dict[str, Any]]:
        """The raw manifest and its parsed form.

        Raises:
            RegistryError: not found (Ollama's ``pull model manifest: file does not exist``),
                refused, or not a manifest.
        """
        response = self._get(self._url("manifests", self.name.tag),
                             {"Accept": MEDIA_TYPE_MANIFEST})
        with response:
            if response.status_code == 404:
                raise RegistryError("pull model manifest: file does not exist")
            if response.status_code != 200:
                raise RegistryError(f"pull model manifest: registry answered "
                                    f"{response.status_code}")
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
            raise RegistryError(f"pull model manifest: invalid manifest ({exc})") from exc
        return raw, data

    def download(self, store: Store, digest: str, size: int,
                 progress: ProgressCallback) -> None:
        """Fetch one blob into the store, resuming a partial, verifying sha256.

        Raises:
            DigestMismatch: the bytes do not hash to ``digest`` (the partial is removed).
            RegistryError: the transfer kept failing.
        """
        final = store.blob_path(digest)
        partial = Path(f"{final}-partial")
        status = f"pulling {digest.removeprefix('sha256:')[:12]}"
        last_error: Exception | None = None
        for attempt in range(ATTEMPTS):
            try:
                self._fetch_to_partial(partial, digest, size, status, progress)
                break
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
            raise
        with contextlib.suppress(OSError):
            partial.unlink()

    def _fetch_to_partial(self, partial: Path, digest: str, size: int, status: str,
                          progress: ProgressCallback) -> None:
        import requests

        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            partial.unlink()
            have = 0
        if have == size:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        response = self._get(self._url("blobs", digest), headers)
        with response:
            if response.status_code == 200:
                have = 0
            elif response.status_code != 206:
                raise RegistryError(f"registry answered {response.status_code} for {digest}")
            partial.parent.mkdir(parents=True, exist_ok=True)
            try:
                with partial.open("r+b" if have else "wb") as out:
                    out.seek(have)
                    out.truncate()
                    for chunk in response.iter_content(CHUNK_BYTES):
                        out.write(chunk)
                        have += len(chunk)
                        progress(status, have, size)
            except requests.RequestException as exc:
                raise RegistryError(f"transfer interrupted at {have} of {size} bytes: "
                                    f"{exc}") from exc
            except OSError as exc:
                raise ModelError(f"cannot write {partial}: {exc.strerror or exc}") from exc
        if have != size:
            raise RegistryError(f"transfer ended at {have} of {size} bytes")


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


def pull(store: Store, name: str, *, insecure: bool = False,
         progress: ProgressCallback | None = None) -> LocalModel:
    """Pull ``name`` from its registry into ``store``; statuses as Ollama's ``/api/pull``.

    Raises:
        InvalidModelName: ``name`` does not parse.
        RegistryError, DigestMismatch, ModelError: the pull failed; no manifest was written.
    """
    report = progress or _progress_noop
    model_name = ModelName.parse(name)
    client = RegistryClient(model_name, insecure=insecure)
    try:
        report("pulling manifest", None, None)
        raw, data = client.manifest()
        for layer in [*data["layers"], data["config"]]:
            digest = validate_digest(str(layer["digest"]))
            size = int(layer["size"])
            if store.has_blob(digest):
                report(f"pulling {digest.removeprefix('sha256:')[:12]}", size, size)
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

"""Pushing a model to its registry: Ollama's ``PushModel`` over the Docker v2 upload protocol.

    HEAD  /v2/<namespace>/<model>/blobs/<digest>    the registry has the blob: nothing to send
    POST  /v2/<namespace>/<model>/blobs/uploads/    start an upload; ``Location`` says where
                                                    (a 201: mounted from the layer's ``from``)
    PATCH <location>                                the bytes, a chunk at a time (Content-Range)
    PUT   <location>?digest=<digest>                commit; the registry checks the digest
    PUT   /v2/<namespace>/<model>/manifests/<tag>   the manifest, last, byte for byte

Statuses as Ollama's ``/api/push``: ``retrieving manifest``; ``pushing <12 hex>`` with the
layer's digest, total and completed (a blob the registry has counts as complete at once);
``pushing manifest``; ``success``. The manifest goes last, so a failed push never names blobs
the registry lacks. An upload location on another host is judged like a pull's blob redirect
(:func:`registry.redirect_target`) and never gets the token.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ollamactl.errors import ModelError
from ollamactl.runtime.store.blobs import BlobNotFound, LayerProgress, validate_digest
from ollamactl.runtime.store.manifests import ModelNotFound, Store
from ollamactl.runtime.store.models import MEDIA_TYPE_MANIFEST
from ollamactl.runtime.store.names import InvalidModelName, ModelName
from ollamactl.runtime.store.registry import (
    MAX_MANIFEST_BYTES,
    RegistryClient,
    RegistryError,
    progress_noop,
    redirect_target,
)

UPLOAD_CHUNK_BYTES = 16 << 20   # one PATCH; a chunk is held in memory while it is sent


class _CountingBody(io.BytesIO):
    """A chunk as a request body that reports each piece the HTTP client reads from it."""

    def __init__(self, data: bytes, report: Any) -> None:
        super().__init__(data)
        self.report = report

    def read(self, size: int | None = -1, /) -> bytes:
        piece = super().read(size)
        if piece:
            self.report(self.tell())
        return piece


def _local_manifest(store: Store, name: ModelName
                    ) -> tuple[bytes, list[tuple[str, int, str | None]]]:
    """The stored manifest's bytes and its blobs (layers, then the config): digest, size and
    the model a layer came ``from``.

    Raises:
        ModelNotFound: no such model. ModelError: the manifest is damaged.
    """
    path = store.find_manifest(name)
    if path is None:
        raise ModelNotFound(name.display)
    try:
        raw = path.read_bytes()[:MAX_MANIFEST_BYTES + 1]
        data = json.loads(raw)
        blobs = [(validate_digest(str(item["digest"])), int(item["size"]),
                   item.get("from") if isinstance(item.get("from"), str) else None)
                  for item in [*data["layers"], data["config"]]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the manifest of '{name.display}' cannot be pushed: it is "
                         "damaged") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ModelError(f"the manifest of '{name.display}' is too large")
    return raw, blobs


def _with_digest(location: str, digest: str) -> str:
    """``location`` with ``digest=`` added to whatever query it carries (upload state)."""
    parts = urlsplit(location)
    query = "&".join(part for part in (parts.query, urlencode({"digest": digest})) if part)
    return urlunsplit(parts._replace(query=query))


def _mount_query(digest: str, from_model: str | None) -> str:
    """``?mount=<digest>&from=<namespace>/<model>`` for a layer that came from a model."""
    try:
        source = ModelName.parse(from_model) if from_model else None
    except InvalidModelName:
        source = None
    if source is None:
        return ""
    return "?" + urlencode({"mount": digest, "from": f"{source.namespace}/{source.model}"})


def _expect(response: Any, statuses: tuple[int, ...], what: str, host: str) -> Any:
    """The headers of ``response`` (closed), if its status is one of ``statuses``.

    Raises:
        RegistryError: another status; the message names it and the host, never the body.
    """
    with response:
        if response.status_code not in statuses:
            raise RegistryError(f"{what}: registry {host} answered {response.status_code}")
        return response.headers


class Uploader:
    """The blobs of one push, on one registry client."""

    def __init__(self, client: RegistryClient, store: Store, progress: LayerProgress) -> None:
        self.client = client
        self.store = store
        self.progress = progress
        self.host = urlsplit(client.base).netloc

    def push_blob(self, digest: str, size: int, from_model: str | None = None) -> None:
        """Send one blob unless the registry has it (or mounts it from the repository of the
        model the layer came ``from``, as Ollama asks), reporting its bytes as they go.

        Raises:
            BlobNotFound: the store lacks it. RegistryError: the registry refused.
        """
        status = f"pushing {digest.removeprefix('sha256:')[:12]}"
        head = self.client.send("HEAD", self.client.url("blobs", digest))
        with head:
            if head.status_code == 200:
                self.progress(status, size, size, digest=digest)
                return
        path = self.store.blob_path(digest)
        if not path.is_file():
            raise BlobNotFound(digest)
        start = self.client.send("POST", self.client.url("blobs", "uploads/")
                                 + _mount_query(digest, from_model), what="an upload")
        headers = _expect(start, (201, 202), f"push {digest}", self.host)
        if start.status_code == 201:
            self.progress(status, size, size, digest=digest)
            return
        location = self._next(headers, start.url)
        self.progress(status, 0, size, digest=digest)
        offset = 0
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ModelError(f"cannot read blob {digest}: {exc.strerror}") from exc
        with handle:
            while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                first = offset

                def report(done: int, first: int = first) -> None:
                    self.progress(status, first + done, size, digest=digest)

                def body(chunk: bytes = chunk, report: Any = report) -> _CountingBody:
                    return _CountingBody(chunk, report)

                piece = {"Content-Type": "application/octet-stream",
                         "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                sent = self.client.send("PATCH", location, piece, body=body,
                                        what="an upload")
                location = self._next(_expect(sent, (202, 204), f"push {digest}", self.host),
                                      location)
                offset += len(chunk)
        done = self.client.send("PUT", _with_digest(location, digest), what="an upload")
        _expect(done, (201, 204), f"push {digest}", self.host)
        self.progress(status, size, size, digest=digest)

    def _next(self, headers: Any, current: str) -> str:
        """Where the upload goes on: the location the registry sent, judged as a redirect."""
        location = headers.get("Docker-Upload-Location") or headers.get("Location", "")
        return redirect_target(self.client.base, current, location) if location else current


def push(store: Store, name: str, *, insecure: bool = False,
         progress: LayerProgress | None = None) -> None:
    """Push the local model ``name`` to the registry its name points at.

    Raises:
        InvalidModelName, ModelNotFound: no such local model.
        BlobNotFound: a layer is missing from the store.
        RegistryError: the registry refused, or could not be reached.
    """
    report = progress or progress_noop
    model_name = ModelName.parse(name)
    report("retrieving manifest", None, None)
    raw, blobs = _local_manifest(store, model_name)
    client = RegistryClient(model_name, insecure=insecure)
    try:
        uploader = Uploader(client, store, report)
        for digest, size, from_model in blobs:
            uploader.push_blob(digest, size, from_model)
        report("pushing manifest", None, None)
        put = client.send("PUT", client.url("manifests", model_name.tag),
                          {"Content-Type": MEDIA_TYPE_MANIFEST}, body=lambda: raw)
        _expect(put, (200, 201), "push manifest", uploader.host)
    finally:
        client.close()
    report("success", None, None)

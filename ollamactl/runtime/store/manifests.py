"""The store of models: the manifests that name them, over the blob store.

    <root>/manifests/<host>/<namespace>/<model>/<tag>   JSON manifest (docker v2 schema)
    <root>/blobs/sha256-<64 hex>                        GGUF weights, config, text/JSON layers

The layout is the same as a real Ollama's, both ways. :class:`Store` finds manifests
case-insensitively, parses them into :class:`~models.LocalModel` (cached while the file is
unchanged), lists, copies and deletes them, and summarises them read-only for doctor
(:meth:`Store.summaries`); a manifest is written last and atomically, so an
interrupted create or import leaves no half model. Creating a model is :mod:`create`, start-up
cleaning :mod:`prune`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ollamactl.errors import ModelError
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.blobs import BlobStore, validate_digest
from ollamactl.runtime.store.models import (
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Layer,
    LocalModel,
    ModelDetails,
    capabilities_of,
    model_info_of,
)
from ollamactl.runtime.store.names import InvalidModelName, ModelName
from ollamactl.system import atomic_write

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.store")

MAX_MANIFEST_BYTES = 1 << 20
MAX_TEXT_LAYER_BYTES = 16 << 20
MODELS_CACHED = 64  # parsed manifests kept by Store (one entry per model name)


class ModelNotFound(ModelError):
    """No manifest for the requested name; ``name`` is the text the caller asked for."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"model '{name}' not found",
                         hint="`ollamactl list` shows the local models; "
                              "`ollamactl pull NAME` fetches one")


def _checked_layer(raw: Any, where: str) -> Layer:
    if not isinstance(raw, dict):
        raise ModelError(f"{where} is not an object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise ModelError(f"{where} lacks a media type or size")
    from_model = raw.get("from")
    return Layer(media_type, validate_digest(str(digest)), size,
                 from_model if isinstance(from_model, str) else None)


def _read_manifest(path: Path, where: str) -> bytes:
    """A manifest file's bytes, at most MAX_MANIFEST_BYTES of them.

    Raises:
        ModelError: the file cannot be read, or is larger than that.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"cannot read {where}: {exc.strerror}") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise ModelError(f"{where} is too large")
    return data


def _decode_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a manifest, with a list of layers (each not yet checked).

    Raises:
        ModelError: not JSON, not an object, or no list of layers.
    """
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{where} is not valid JSON") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise ModelError(f"{where} has no layers")
    return manifest


def _checked_layers(manifest: dict[str, Any], where: str) -> tuple[Layer, list[Layer]]:
    """The config layer and the layers, each with a media type, a size and a valid digest.

    Raises:
        ModelError: one of them lacks any of these.
    """
    return (_checked_layer(manifest.get("config"), f"{where}: config"),
            [_checked_layer(raw, f"{where}: layer") for raw in manifest["layers"]])


@dataclass(frozen=True)
class ManifestSummary:
    """What one manifest names, read without opening a blob (see :meth:`Store.summaries`)."""

    name: str                    # host/namespace/model:tag, as Ollama's Name.String() writes it
    path: Path
    digests: tuple[str, ...]     # config first, then the layers, as written
    size_bytes: int              # in bytes, the sum of the sizes given


class Store(BlobStore):
    """Manifests and blobs under ``root`` (OLLAMA_MODELS)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        super().__init__(self.root / "blobs")
        self.manifests_dir = self.root / "manifests"
        # Parsed models by manifest path, valid while the manifest's (inode, size, mtime) hold:
        # layers are content-addressed, so an unchanged manifest means an unchanged model and
        # a request skips re-reading its layers and re-listing its tensors.
        self._models: dict[Path, tuple[tuple[int, int, int], LocalModel]] = {}

    def manifest_path(self, name: ModelName) -> Path:
        """Where the manifest of ``name`` lives (it may not exist)."""
        return self.manifests_dir.joinpath(*name.manifest_parts)

    def find_manifest(self, name: ModelName) -> Path | None:
        """The manifest file for ``name``, matched case-insensitively as Ollama does."""
        exact = self.manifest_path(name)
        if exact.is_file() and not exact.is_symlink():
            return exact
        current = [self.manifests_dir]
        for part in name.manifest_parts:
            wanted = part.lower()
            found: list[Path] = []
            for directory in current:
                with contextlib.suppress(OSError):
                    found.extend(child for child in directory.iterdir()
                                 if child.name.lower() == wanted and not child.is_symlink())
            current = found
        files = sorted(path for path in current if path.is_file())
        return files[0] if files else None

    def iter_manifests(self) -> Iterator[tuple[ModelName, Path]]:
        """Every well-named manifest file (temp files and stray names are skipped)."""
        if not self.manifests_dir.is_dir():
            return
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            if not path.is_file() or path.is_symlink():
                continue
            host, namespace, model, tag = path.relative_to(self.manifests_dir).parts
            name = ModelName(host, namespace, model, tag)
            if name.is_valid():
                yield name, path

    def _load(self, name: ModelName, path: Path) -> LocalModel:
        try:
            stat = path.stat()
        except OSError as exc:
            raise ModelError(f"cannot read manifest of '{name.display}': {exc.strerror}") from exc
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._models.get(path)
        if cached is not None and cached[0] == key and cached[1].model_path.is_file():
            return cached[1]
        model = self._parse(name, path, stat)
        if len(self._models) >= MODELS_CACHED:
            self._models.pop(next(iter(self._models)))
        self._models[path] = (key, model)
        return model

    def _parse(self, name: ModelName, path: Path, stat: os.stat_result) -> LocalModel:
        where = f"manifest of '{name.display}'"
        raw_bytes = _read_manifest(path, where)
        config_layer, layers = _checked_layers(_decode_manifest(raw_bytes, where), where)

        config: dict[str, Any] = {}
        with contextlib.suppress(ModelError, ValueError):
            loaded = json.loads(self._read_blob(config_layer, MAX_MANIFEST_BYTES))
            if isinstance(loaded, dict):
                config = loaded

        model_layer = next((layer for layer in layers if layer.media_type == MEDIA_MODEL), None)
        if model_layer is None:
            raise ModelError(f"{where} has no model layer")
        model_path = self.blob_path(model_layer.digest)
        if not model_path.is_file():
            raise ModelError(f"the weights of '{name.display}' are missing from the store",
                             hint=f"pull or create '{name.display}' again")
        info = gguf.read_metadata(model_path)

        template = system = None
        params: dict[str, Any] = {}
        messages: list[dict[str, Any]] = []
        licenses: list[str] = []
        for layer in layers:
            if layer.media_type in (MEDIA_TEMPLATE, MEDIA_PROMPT):
                template = self._read_blob(layer, MAX_TEXT_LAYER_BYTES).decode(errors="replace")
            elif layer.media_type == MEDIA_SYSTEM:
                system = self._read_blob(layer, MAX_TEXT_LAYER_BYTES).decode(errors="replace")
            elif layer.media_type == MEDIA_LICENSE:
                licenses.append(self._read_blob(layer, MAX_TEXT_LAYER_BYTES)
                                .decode(errors="replace"))
            elif layer.media_type in (MEDIA_PARAMS, MEDIA_MESSAGES):
                try:
                    value = json.loads(self._read_blob(layer, MAX_TEXT_LAYER_BYTES))
                except (ValueError, RecursionError) as exc:
                    raise ModelError(f"{where}: {layer.media_type} layer is not JSON") from exc
                if layer.media_type == MEDIA_PARAMS and isinstance(value, dict):
                    params = value
                elif isinstance(value, list):
                    messages = [m for m in value if isinstance(m, dict)]

        families = config.get("model_families")
        details = ModelDetails(
            format=str(config.get("model_format") or "gguf"),
            family=str(config.get("model_family") or info.architecture),
            families=families if isinstance(families, list) else [info.architecture],
            parameter_size=str(config.get("model_type")
                               or gguf.human_parameter_count(info.parameter_count)),
            quantization_level=str(config.get("file_type") or info.quantization),
            context_length=info.context_length,
            embedding_length=info.embedding_length,
            parent_model=model_layer.from_model or "",
        )
        return LocalModel(
            name=name,
            manifest_digest=hashlib.sha256(raw_bytes).hexdigest(),
            size=config_layer.size + sum(layer.size for layer in layers),
            modified_at=datetime.fromtimestamp(stat.st_mtime).astimezone(),
            model_path=model_path,
            template=template,
            system=system,
            params=params,
            messages=messages,
            license=licenses,
            details=details,
            chat_template=info.chat_template,
            capabilities=capabilities_of(info, template, projector=any(
                layer.media_type == MEDIA_PROJECTOR for layer in layers)),
            model_info=model_info_of(info),
            tensors=[{"name": t.name, "type": t.type_name, "shape": list(t.shape)}
                     for t in info.tensors],
            layers=layers,
            config=config,
            manifest_path=path,
            bos_token=info.bos_token,
            eos_token=info.eos_token,
            add_bos=info.add_bos,
        )

    def resolve(self, name: str) -> LocalModel:
        """The local model called ``name`` (case-insensitive).

        Raises:
            InvalidModelName: ``name`` does not parse.
            ModelNotFound: no such manifest (carries ``name`` as given).
            ModelError / InvalidGGUF: the manifest or its weights are damaged.
        """
        parsed = ModelName.parse(name)
        path = self.find_manifest(parsed)
        if path is None:
            raise ModelNotFound(name)
        host, namespace, model, tag = path.relative_to(self.manifests_dir).parts
        return self._load(ModelName(host, namespace, model, tag), path)

    def exists(self, name: str) -> bool:
        """True when a manifest for ``name`` is present (no blob is read)."""
        try:
            return self.find_manifest(ModelName.parse(name)) is not None
        except InvalidModelName:
            return False

    def summaries(self) -> list[ManifestSummary]:
        """Every manifest :meth:`list` would look at, with the digests and sizes it names, for
        checking the store rather than serving it (doctor): it only reads (nothing is created,
        write access is not needed, so it works on a staged root or another user's store), and
        it is lenient, keeping whatever layer names a digest, so a manifest the server would
        refuse still counts its blobs as wanted. A file that is not a JSON manifest with a list
        of layers is left out, as is everything when the folders cannot be read."""
        try:
            entries = list(self.iter_manifests())
        except OSError as exc:
            log.debug("cannot list %s: %s", self.manifests_dir, exc)
            return []
        found = []
        for name, path in entries:
            where = f"manifest of '{name.display}'"
            try:
                manifest = _decode_manifest(_read_manifest(path, where), where)
            except ModelError as exc:
                log.debug("%s", exc)
                continue
            named = [item for item in [manifest.get("config"), *manifest["layers"]]
                     if isinstance(item, dict) and isinstance(item.get("digest"), str)]
            found.append(ManifestSummary(
                f"{name.host}/{name.namespace}/{name.model}:{name.tag}", path,
                tuple(item["digest"] for item in named),
                sum(int(item["size"]) for item in named if isinstance(item.get("size"), int))))
        return found

    def list(self) -> list[LocalModel]:
        """Every readable local model, newest first; damaged entries are logged and skipped."""
        models: list[LocalModel] = []
        for name, path in self.iter_manifests():
            try:
                models.append(self._load(name, path))
            except ModelError as exc:
                log.warning("skipping %s: %s", name.display, exc)
        models.sort(key=lambda m: m.modified_at, reverse=True)
        return models

    def referenced_digests(self) -> set[str]:
        """Every digest a manifest refers to (layers and config).

        Raises:
            ModelError: a manifest cannot be read, so any blob may be in use.
        """
        referenced: set[str] = set()
        for name, path in self.iter_manifests():
            where = f"manifest of '{name.display}'"
            try:
                config, layers = _checked_layers(
                    _decode_manifest(_read_manifest(path, where), where), where)
                referenced.update(layer.digest for layer in (config, *layers))
            except ModelError as exc:
                log.warning("manifest %s unreadable while counting references: %s", path, exc)
                # Be safe: a manifest we cannot read may reference anything.
                raise ModelError(f"cannot read manifest {path}; refusing to delete blobs") from exc
        return referenced

    def _prune_empty_dirs(self, start: Path) -> None:
        directory = start
        while directory != self.manifests_dir and self.manifests_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def delete(self, name: str) -> None:
        """Remove the manifest of ``name``, empty parent folders, and blobs no one else uses.

        Raises:
            ModelNotFound, InvalidModelName.
        """
        parsed = ModelName.parse(name)
        path = self.find_manifest(parsed)
        if path is None:
            raise ModelNotFound(name)
        digests: set[str] = set()
        with contextlib.suppress(ModelError):
            config, layers = _checked_layers(
                _decode_manifest(_read_manifest(path, name), name), name)
            digests.update(layer.digest for layer in (config, *layers))
        try:
            path.unlink()
        except OSError as exc:
            raise ModelError(f"cannot delete {path}: {exc.strerror}") from exc
        self._prune_empty_dirs(path.parent)
        try:
            referenced = self.referenced_digests()
        except ModelError as exc:
            log.warning("%s", exc)
            return
        for digest in digests - referenced:
            with contextlib.suppress(OSError):
                self.blob_path(digest).unlink()

    def copy(self, source: str, destination: str) -> LocalModel:
        """Make ``destination`` a second name for ``source`` (same manifest bytes).

        Raises:
            InvalidModelName, ModelNotFound.
        """
        src = ModelName.parse(source)
        dst = ModelName.parse(destination)
        src_path = self.find_manifest(src)
        if src_path is None:
            raise ModelNotFound(source)
        dst_path = self.find_manifest(dst) or self.manifest_path(dst)
        try:
            data = src_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {src_path}: {exc.strerror}") from exc
        if dst_path != src_path:
            self.write_manifest(dst_path, data)
        return self.resolve(destination)

    def write_manifest(self, path: Path, data: bytes) -> None:
        """Write manifest bytes at ``path`` atomically (the last step of a create or copy)."""
        self._make_dirs(path.parent)
        atomic_write(path, data, mode=0o644, backup=False)

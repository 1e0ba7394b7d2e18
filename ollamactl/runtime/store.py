"""The model store in Ollama's layout: manifests, content-addressed blobs, the one digest validator.

    <root>/manifests/<host>/<namespace>/<model>/<tag>   JSON manifest (docker v2 schema)
    <root>/blobs/sha256-<64 hex>                        GGUF weights, config, text/JSON layers

The layout is the same as a real Ollama's, both ways. Every path built from a digest goes through
:func:`validate_digest` first. A blob becomes visible (``os.replace``) only after its sha256 was
verified, and a manifest is written last and atomically, so an interrupted create or import leaves
no half model, only a temp file that :meth:`Store.prune` removes.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ollamactl.errors import ModelError
from ollamactl.runtime import gguf
from ollamactl.runtime.names import InvalidModelName, ModelName
from ollamactl.system import atomic_write

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, "int | None", "int | None"], None]
"""``progress(status, completed, total)``: sizes in bytes, None when not a byte count."""

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_PREFIX = "application/vnd.ollama.image."
MEDIA_MODEL = MEDIA_PREFIX + "model"
MEDIA_ADAPTER = MEDIA_PREFIX + "adapter"
MEDIA_PROJECTOR = MEDIA_PREFIX + "projector"
MEDIA_TEMPLATE = MEDIA_PREFIX + "template"
MEDIA_PROMPT = MEDIA_PREFIX + "prompt"  # legacy alias of template
MEDIA_SYSTEM = MEDIA_PREFIX + "system"
MEDIA_PARAMS = MEDIA_PREFIX + "params"
MEDIA_MESSAGES = MEDIA_PREFIX + "messages"
MEDIA_LICENSE = MEDIA_PREFIX + "license"

MAX_MANIFEST_BYTES = 1 << 20
MAX_TEXT_LAYER_BYTES = 16 << 20
MODELS_CACHED = 64  # parsed manifests kept by Store (one entry per model name)
PRUNE_AGE_S = 3600.0
CHUNK_BYTES = 1 << 20
MESSAGE_ROLES = ("system", "user", "assistant", "tool")

_DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
_BLOB_NAME_RE = re.compile(r"^sha256-[0-9a-f]{64}$")
_TEMP_PREFIX = ".tmp-"
PARTIAL_SUFFIX = "-partial"  # registry downloads in progress: blobs/sha256-<hex>-partial
# A blob write never leaves less free than 5% of the disk, at most 1 GiB: the OS, the journal
# and the server's own log need room, and a full disk fails them all. Checked before a write of
# known size and, while writing, every SPACE_CHECK_BYTES or quarter of the margin if smaller
# (four uploads at once then overshoot by at most the margin).
FREE_SPACE_MARGIN_BYTES = 1 << 30
FREE_SPACE_MARGIN_SHARE = 20  # 1/20 of the disk
SPACE_CHECK_BYTES = 64 << 20


class InvalidDigest(ModelError):
    """A digest that is not ``sha256:<64 hex>`` (or ``sha256-<64 hex>``)."""

    exit_code = 2

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__("invalid digest format")


class DigestMismatch(ModelError):
    """Written bytes hash to another digest than the one promised."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f'digest mismatch, expected "{expected}", got "{actual}"')


class ModelNotFound(ModelError):
    """No manifest for the requested name; ``name`` is the text the caller asked for."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"model '{name}' not found",
                         hint="`ollamactl list` shows the local models; "
                              "`ollamactl pull NAME` fetches one")


class InsufficientSpace(ModelError):
    """A blob would leave less than the margin (see FREE_SPACE_MARGIN_BYTES) free on the disk."""

    def __init__(self, needed: int, free: int, margin: int) -> None:
        wanted = f"this blob needs {_size(needed)} more and " if needed else ""
        super().__init__(f"not enough disk space: {wanted}{_size(margin)} must stay free "
                         f"({_size(free)} free)")


def _size(size: int) -> str:
    return f"{size / (1 << 30):.2f} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


class BlobNotFound(ModelError):
    """A blob that a request or manifest refers to is not in the store."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f'blob "{digest}" not found')


def validate_digest(text: str) -> str:
    """Check ``text`` against ``^sha256[:-][0-9a-fA-F]{64}$``; return ``sha256:<lowercase hex>``.

    This is the only gate between a digest from a request or manifest and a filesystem path.

    Raises:
        InvalidDigest: anything else (traversal attempts, other algorithms, wrong length).
    """
    match = _DIGEST_RE.match(text) if isinstance(text, str) else None
    if match is None or text.endswith("\n"):
        raise InvalidDigest(str(text)[:100])
    return "sha256:" + match.group(1).lower()


@dataclass(frozen=True)
class ModelDetails:
    """The ``details`` object of /api/tags, /api/show and /api/ps."""

    format: str = "gguf"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    context_length: int | None = None
    embedding_length: int | None = None
    parent_model: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON shape as Ollama sends it (the optional lengths only when known)."""
        data: dict[str, Any] = {
            "parent_model": self.parent_model,
            "format": self.format,
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }
        if self.context_length:
            data["context_length"] = self.context_length
        if self.embedding_length:
            data["embedding_length"] = self.embedding_length
        return data


@dataclass(frozen=True)
class Layer:
    """One manifest layer (or the config): media type, canonical digest, size in bytes."""

    media_type: str
    digest: str
    size: int
    from_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                                "size": self.size}
        if self.from_model:
            data["from"] = self.from_model
        return data


@dataclass(frozen=True)
class LocalModel:
    """A model in the store, with everything the API needs to list, show and run it."""

    name: ModelName
    manifest_digest: str  # hex sha256 of the manifest file bytes, unprefixed
    size: int  # in bytes: layers + config
    modified_at: datetime  # manifest mtime, local time zone
    model_path: Path  # the GGUF blob
    template: str | None
    system: str | None
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    license: list[str]
    details: ModelDetails
    chat_template: str | None
    capabilities: list[str]
    model_info: dict[str, Any]
    tensors: list[dict[str, Any]] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    manifest_path: Path | None = None
    bos_token: str | None = None  # vocabulary text of the BOS token ("<bos>")
    eos_token: str | None = None
    add_bos: bool = False  # llama.cpp prepends BOS itself when tokenizing with add_special

    @property
    def model_digest(self) -> str:
        """``sha256:<hex>`` of the GGUF weights layer."""
        return next(layer.digest for layer in self.layers if layer.media_type == MEDIA_MODEL)

    @property
    def short_id(self) -> str:
        """The 12-hex ID column of ``ollama list`` / ``ollama ps``."""
        return self.manifest_digest[:12]


def _capabilities(info: gguf.GGUFInfo, template: str | None) -> list[str]:
    """Ollama's capability list from the GGUF metadata and the effective template."""
    caps: list[str] = []
    if f"{info.architecture}.pooling_type" in info.kv:
        caps.append("embedding")
    else:
        caps.append("completion")
    text = template or info.chat_template or ""
    if "tools" in text.lower():
        caps.append("tools")
    if ".Suffix" in text or ("suffix" in text.lower() and "fim" in text.lower()):
        caps.append("insert")
    if f"{info.architecture}.vision.block_count" in info.kv:
        caps.append("vision")
    if "<think>" in text or ".Thinking" in text or "enable_thinking" in text:
        caps.append("thinking")
    return caps


def model_info_of(info: gguf.GGUFInfo, *, verbose: bool = False) -> dict[str, Any]:
    """The ``model_info`` map of /api/show: GGUF KV minus name and chat template.

    Arrays longer than 5 items are emptied unless ``verbose`` (pass a GGUFInfo read with
    ``keep_arrays=True`` to get them whole); the parameter count is added as Ollama does.
    """
    result: dict[str, Any] = {}
    for key, value in info.kv.items():
        if key in ("general.name", "tokenizer.chat_template"):
            continue
        too_long = isinstance(value, list) and len(value) > 5 and not verbose
        if isinstance(value, gguf.SkippedArray) or too_long:
            value = []
        result[key] = value
    result["general.parameter_count"] = info.parameter_count
    return result


def config_for(info: gguf.GGUFInfo) -> dict[str, Any]:
    """The config blob Ollama writes for a GGUF model."""
    return {
        "model_format": "gguf",
        "model_family": info.architecture,
        "model_families": [info.architecture],
        "model_type": gguf.human_parameter_count(info.parameter_count),
        "file_type": info.quantization,
        "architecture": info.architecture,
        "os": "linux",
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "rootfs": {"type": "layers", "diff_ids": []},
    }


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _checked_layer(raw: Any, where: str) -> Layer:
    if not isinstance(raw, dict):
        raise ModelError(f"{where} is not an object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise ModelError(f"{where} lacks a media type or size")
    from_model = raw.get("from")
    return Layer(media_type, validate_digest(str(digest)), size,
                 from_model if isinstance(from_model, str) else None)


class Store:
    """Manifests and blobs under ``root`` (OLLAMA_MODELS)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifests_dir = self.root / "manifests"
        self.blobs_dir = self.root / "blobs"
        # Parsed models by manifest path, valid while the manifest's (inode, size, mtime) hold:
        # layers are content-addressed, so an unchanged manifest means an unchanged model and
        # a request skips re-reading its layers and re-listing its tensors.
        self._models: dict[Path, tuple[tuple[int, int, int], LocalModel]] = {}

    # ----- blobs -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """``blobs/sha256-<hex>`` for a digest, validated first (see :func:`validate_digest`)."""
        canonical = validate_digest(digest)
        return self.blobs_dir / canonical.replace(":", "-", 1)

    def has_blob(self, digest: str) -> bool:
        """True when the blob exists (HEAD /api/blobs/:digest).

        Raises:
            InvalidDigest: before any filesystem access.
        """
        return self.blob_path(digest).is_file()

    def write_blob(self, chunks: Iterable[bytes], expected_digest: str | None = None, *,
                   progress: ProgressCallback | None = None, total: int | None = None,
                   status: str = "writing blob") -> str:
        """Stream ``chunks`` into a temp file in blobs/, hashing as it goes; publish the blob only
        once its sha256 is known (and equals ``expected_digest`` when given). Returns the digest.

        When ``expected_digest`` is already stored, returns at once without reading ``chunks``.
        ``total`` (the size, when known) is checked against free space before anything is
        read; free space is checked again as the bytes arrive.

        Raises:
            InvalidDigest: ``expected_digest`` is malformed (nothing is read or written).
            DigestMismatch: the bytes hash to something else; nothing is left behind.
            InsufficientSpace: the blob would leave less than the margin free.
            ModelError: the disk refused the write (full, read-only...).
        """
        expected = validate_digest(expected_digest) if expected_digest is not None else None
        if expected is not None and self.has_blob(expected):
            return expected
        self._make_dirs(self.blobs_dir)
        interval = min(SPACE_CHECK_BYTES, self._check_space(total or 0) // 4)
        temp = self.blobs_dir / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        hasher = hashlib.sha256()
        completed = unchecked = 0
        try:
            with temp.open("xb") as out:
                for chunk in chunks:
                    unchecked += len(chunk)
                    if unchecked >= interval:  # before writing: a chunk may be large itself
                        unchecked = 0
                        self._check_space(max(len(chunk), (total or 0) - completed))
                    out.write(chunk)
                    hasher.update(chunk)
                    completed += len(chunk)
                    if progress is not None:
                        progress(status, completed, total)
                out.flush()
                os.fsync(out.fileno())
            actual = "sha256:" + hasher.hexdigest()
            if expected is not None and actual != expected:
                raise DigestMismatch(expected, actual)
            os.chmod(temp, 0o644)
            os.replace(temp, self.blob_path(actual))
            return actual
        except OSError as exc:
            raise ModelError(f"cannot write blob in {self.blobs_dir}: "
                             f"{(exc.strerror or str(exc)).lower()}") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()

    def _check_space(self, needed: int) -> int:
        """The margin of free space to keep; raises InsufficientSpace unless ``needed`` more
        bytes leave it free."""
        usage = shutil.disk_usage(self.blobs_dir)
        margin = min(FREE_SPACE_MARGIN_BYTES, usage.total // FREE_SPACE_MARGIN_SHARE)
        if usage.free - needed < margin:
            raise InsufficientSpace(needed, usage.free, margin)
        return margin

    def write_bytes_blob(self, data: bytes) -> str:
        """Store a small in-memory blob (config, template, params) and return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(digest):
            return digest
        return self.write_blob([data], digest)

    def import_file(self, path: Path, *, progress: ProgressCallback | None = None,
                    expected_digest: str | None = None) -> str:
        """Copy the file at ``path`` into the blob store while hashing it; return its digest.

        Raises:
            ModelError: the file cannot be read; DigestMismatch when ``expected_digest`` differs.
        """
        source = Path(path)
        try:
            total = source.stat().st_size
            handle = source.open("rb")
        except OSError as exc:
            raise ModelError(f"cannot read {source}: "
                             f"{(exc.strerror or str(exc)).lower()}") from exc
        with handle:
            return self.write_blob(iter(lambda: handle.read(CHUNK_BYTES), b""), expected_digest,
                                   progress=progress, total=total,
                                   status=f"copying file {source.name}")

    def _read_blob(self, layer: Layer, limit: int) -> bytes:
        path = self.blob_path(layer.digest)
        try:
            size = path.stat().st_size
            if size > limit:
                raise ModelError(f"blob {layer.digest} is larger than {limit} bytes")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(layer.digest) from exc
        except OSError as exc:
            raise ModelError(f"cannot read blob {layer.digest}: {exc.strerror}") from exc

    # ----- manifests -----------------------------------------------------------------------------

    def manifest_path(self, name: ModelName) -> Path:
        """Where the manifest of ``name`` lives (it may not exist)."""
        return self.manifests_dir.joinpath(*name.manifest_parts)

    def _find_manifest(self, name: ModelName) -> Path | None:
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

    def _iter_manifests(self) -> Iterator[tuple[ModelName, Path]]:
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
        try:
            if stat.st_size > MAX_MANIFEST_BYTES:
                raise ModelError(f"manifest of '{name.display}' is too large")
            raw_bytes = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read manifest of '{name.display}': {exc.strerror}") from exc
        try:
            manifest = json.loads(raw_bytes)
        except (ValueError, RecursionError) as exc:
            raise ModelError(f"manifest of '{name.display}' is not valid JSON") from exc
        if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
            raise ModelError(f"manifest of '{name.display}' has no layers")
        where = f"manifest of '{name.display}'"
        config_layer = _checked_layer(manifest.get("config"), f"{where}: config")
        layers = [_checked_layer(raw, f"{where}: layer") for raw in manifest["layers"]]

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
            capabilities=_capabilities(info, template),
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
        path = self._find_manifest(parsed)
        if path is None:
            raise ModelNotFound(name)
        host, namespace, model, tag = path.relative_to(self.manifests_dir).parts
        return self._load(ModelName(host, namespace, model, tag), path)

    def exists(self, name: str) -> bool:
        """True when a manifest for ``name`` is present (no blob is read)."""
        try:
            return self._find_manifest(ModelName.parse(name)) is not None
        except InvalidModelName:
            return False

    def list(self) -> list[LocalModel]:
        """Every readable local model, newest first; damaged entries are logged and skipped."""
        models: list[LocalModel] = []
        for name, path in self._iter_manifests():
            try:
                models.append(self._load(name, path))
            except ModelError as exc:
                log.warning("skipping %s: %s", name.display, exc)
        models.sort(key=lambda m: m.modified_at, reverse=True)
        return models

    def _referenced_digests(self) -> set[str]:
        referenced: set[str] = set()
        for name, path in self._iter_manifests():
            try:
                manifest = json.loads(path.read_bytes()[:MAX_MANIFEST_BYTES])
                raw_layers = [manifest["config"], *manifest["layers"]]
                referenced.update(_checked_layer(raw, name.display).digest for raw in raw_layers)
            except (OSError, ValueError, KeyError, TypeError, ModelError) as exc:
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
        path = self._find_manifest(parsed)
        if path is None:
            raise ModelNotFound(name)
        digests: set[str] = set()
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, ModelError):
            manifest = json.loads(path.read_bytes()[:MAX_MANIFEST_BYTES])
            for raw in [manifest["config"], *manifest["layers"]]:
                digests.add(_checked_layer(raw, name).digest)
        try:
            path.unlink()
        except OSError as exc:
            raise ModelError(f"cannot delete {path}: {exc.strerror}") from exc
        self._prune_empty_dirs(path.parent)
        try:
            referenced = self._referenced_digests()
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
        src_path = self._find_manifest(src)
        if src_path is None:
            raise ModelNotFound(source)
        dst_path = self._find_manifest(dst) or self.manifest_path(dst)
        try:
            data = src_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {src_path}: {exc.strerror}") from exc
        if dst_path != src_path:
            self._write_manifest(dst_path, data)
        return self.resolve(destination)

    def _write_manifest(self, path: Path, data: bytes) -> None:
        self._make_dirs(path.parent)
        atomic_write(path, data, mode=0o644, backup=False)

    def _make_dirs(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(f"cannot create {directory}: "
                             f"{(exc.strerror or str(exc)).lower()}") from exc

    # ----- create --------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        model_digest: str | None = None,
        from_model: str | None = None,
        template: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        messages: builtins.list[dict[str, Any]] | None = None,
        license: builtins.list[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> LocalModel:
        """Write a model from GGUF weights already in blobs/ (``model_digest``) and/or an existing
        model (``from_model``), plus the Modelfile layers. The manifest is written last.

        Parameters given here are merged over the base model's; template, system, messages and
        license replace the base's when given. ``params`` must already be validated
        (``options.validate_options(..., strict=True)``).

        Raises:
            InvalidModelName, ModelNotFound (from_model), BlobNotFound, InvalidGGUF, ModelError.
        """
        target = ModelName.parse(name)

        def report(status: str) -> None:
            if progress is not None:
                progress(status, None, None)

        if model_digest is None and from_model is None:
            raise ModelError("neither 'from' or 'files' was specified")
        base: LocalModel | None = self.resolve(from_model) if from_model is not None else None

        layers: list[Layer] = []
        if model_digest is not None:
            digest = validate_digest(model_digest)
            if not self.has_blob(digest):
                raise BlobNotFound(digest)
            report("parsing GGUF")
            info = gguf.read_metadata(self.blob_path(digest))
            layers.append(Layer(MEDIA_MODEL, digest, self.blob_path(digest).stat().st_size))
            config = config_for(info)
        else:
            assert base is not None
            info = gguf.read_metadata(base.model_path)
            config = dict(base.config) or config_for(info)
        if base is not None:
            for layer in base.layers:
                if layer.media_type == MEDIA_MODEL and model_digest is not None:
                    continue
                if layer.media_type in (MEDIA_MODEL, MEDIA_ADAPTER, MEDIA_PROJECTOR):
                    layers.append(Layer(layer.media_type, layer.digest, layer.size,
                                        layer.from_model or base.name.display))
                    report(f"using existing layer {layer.digest}")

        merged_params = dict(base.params) if base is not None else {}
        merged_params.update(params or {})
        text_layers: list[tuple[str, bytes]] = []
        base_template = base.template if base is not None else None
        effective_template = template if template is not None else base_template
        if effective_template:
            text_layers.append((MEDIA_TEMPLATE, effective_template.encode()))
        effective_system = system if system is not None else (base.system if base else None)
        if effective_system:
            text_layers.append((MEDIA_SYSTEM, effective_system.encode()))
        if merged_params:
            text_layers.append((MEDIA_PARAMS, _dumps(merged_params)))
        effective_messages = messages if messages is not None else (base.messages if base else [])
        if effective_messages:
            for message in effective_messages:
                if (not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES
                        or not isinstance(message.get("content"), str)):
                    raise ModelError("each message needs a role (system, user, assistant, "
                                     "tool) and a text content")
            text_layers.append((MEDIA_MESSAGES, _dumps(
                [{"role": m["role"], "content": m["content"]} for m in effective_messages])))
        for text in (license if license is not None else (base.license if base else [])):
            text_layers.append((MEDIA_LICENSE, text.encode()))

        for media_type, data in text_layers:
            existed = self.has_blob("sha256:" + hashlib.sha256(data).hexdigest())
            digest = self.write_bytes_blob(data)
            report(f"{'using existing' if existed else 'creating new'} layer {digest}")
            layers.append(Layer(media_type, digest, len(data)))

        config["rootfs"] = {"type": "layers",
                            "diff_ids": [layer.digest for layer in layers]}
        config_bytes = _dumps(config)
        config_layer = Layer(MEDIA_TYPE_CONFIG, self.write_bytes_blob(config_bytes),
                             len(config_bytes))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config_layer.to_dict(),
            "layers": [layer.to_dict() for layer in layers],
        }
        report("writing manifest")
        path = self._find_manifest(target) or self.manifest_path(target)
        self._write_manifest(path, _dumps(manifest))
        report("success")
        return self.resolve(target.display)

    # ----- maintenance ---------------------------------------------------------------------------

    def prune(self, *, noprune: bool | None = None,
              older_than_s: float = PRUNE_AGE_S) -> builtins.list[Path]:
        """Start-up cleaning: stray temp/invalid files in blobs/, unreferenced blobs older than
        ``older_than_s``, empty manifest folders. Returns what was removed.

        ``noprune`` None reads OLLAMA_NOPRUNE (any value but false/0/empty means on).
        """
        if noprune is None:
            value = os.environ.get("OLLAMA_NOPRUNE", "").strip().lower()
            noprune = value not in ("", "0", "f", "false")
        if noprune or not self.blobs_dir.is_dir():
            return []
        try:
            referenced = self._referenced_digests()
        except ModelError as exc:
            log.warning("not pruning: %s", exc)
            return []
        removed: builtins.list[Path] = []
        now = time.time()
        for path in sorted(self.blobs_dir.iterdir()):
            if path.is_dir():
                continue
            name = path.name
            blob_name = name.removesuffix(PARTIAL_SUFFIX)
            if _BLOB_NAME_RE.match(blob_name):
                try:
                    old = now - path.stat().st_mtime > older_than_s
                except OSError:
                    continue
                if not old:  # fresh orphans, and partial downloads a restarted pull resumes
                    continue
                if name == blob_name and "sha256:" + name[len("sha256-"):] in referenced:
                    continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
        if self.manifests_dir.is_dir():
            for directory in sorted(self.manifests_dir.rglob("*"), reverse=True):
                if directory.is_dir() and not directory.is_symlink():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
        if removed:
            log.info("pruned %d file(s) from %s", len(removed), self.blobs_dir)
        return removed

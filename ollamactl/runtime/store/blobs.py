"""The blob store: content-addressed files under ``blobs/``, and the one digest validator.

    <root>/blobs/sha256-<64 hex>                        GGUF weights, config, text/JSON layers

Every path built from a digest goes through :func:`validate_digest` first. A blob becomes
visible (``os.replace``) only after its sha256 was verified, so an interrupted write leaves no
half blob, only a temp file that :func:`prune.prune` removes. A write keeps a margin of the disk
free (:data:`FREE_SPACE_MARGIN_BYTES`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from ollamactl.errors import ModelError
from ollamactl.humanize import bytes_iec
from ollamactl.runtime.store.models import Layer

ProgressCallback = Callable[[str, "int | None", "int | None"], None]
"""``progress(status, completed, total)``: sizes in bytes, None when not a byte count."""


class LayerProgress(Protocol):
    """A :data:`ProgressCallback` that also takes the digest of the layer a byte count is
    about: pull and push frames carry it, as Ollama's do (``{"status": "pulling 2af3b81862c6",
    "digest": "sha256:...", "total": ..., "completed": ...}``)."""

    def __call__(self, status: str, completed: int | None, total: int | None, *,
                 digest: str | None = None) -> None: ...

CHUNK_BYTES = 1 << 20

_DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
_TEMP_PREFIX = ".tmp-"
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


class InsufficientSpace(ModelError):
    """A blob would leave less than the margin (see FREE_SPACE_MARGIN_BYTES) free on the disk."""

    def __init__(self, needed: int, free: int, margin: int) -> None:
        needed_text, free_text, margin_text = (bytes_iec(size, digits=2, whole_mib=True)
                                               for size in (needed, free, margin))
        wanted = f"this blob needs {needed_text} more and " if needed else ""
        super().__init__(f"not enough disk space: {wanted}{margin_text} must stay free "
                         f"({free_text} free)")


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


class BlobStore:
    """Blobs under ``blobs_dir`` (OLLAMA_MODELS/blobs)."""

    def __init__(self, blobs_dir: Path) -> None:
        self.blobs_dir = blobs_dir

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
        with self._becoming_blob(temp, "write blob"):
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
            return self._publish(temp, actual)

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

    def temp_path(self, tag: str) -> Path:
        """A fresh temp file name in blobs/ for work whose result becomes a blob (quantizing):
        on the blobs' own disk, so :meth:`adopt_file` renames it instead of copying, and
        removed by :func:`prune.prune` if the server dies before that."""
        self._make_dirs(self.blobs_dir)
        return self.blobs_dir / f"{_TEMP_PREFIX}{tag}-{secrets.token_hex(8)}"

    def adopt_file(self, path: Path) -> str:
        """Make the file at ``path`` (from :meth:`temp_path`) a blob: hash it, then rename it
        into place. Returns its digest; ``path`` is gone afterwards either way.

        Raises:
            ModelError: it cannot be read or moved.
        """
        hasher = hashlib.sha256()
        with self._becoming_blob(path, f"store {path.name}"):
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    hasher.update(chunk)
            return self._publish(path, "sha256:" + hasher.hexdigest())

    @contextlib.contextmanager
    def _becoming_blob(self, temp: Path, doing: str) -> Iterator[None]:
        """Work on ``temp``, a file that becomes a blob: the disk's refusal is a ModelError
        saying what failed, and whatever is left of ``temp`` is removed (a published one was
        renamed away)."""
        try:
            yield
        except OSError as exc:
            raise ModelError(f"cannot {doing} in {self.blobs_dir}: "
                             f"{(exc.strerror or str(exc)).lower()}") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()

    def _publish(self, temp: Path, digest: str) -> str:
        """Rename the finished ``temp`` into place as the blob ``digest``, readable by all."""
        os.chmod(temp, 0o644)
        os.replace(temp, self.blob_path(digest))
        return digest

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

    def _make_dirs(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(f"cannot create {directory}: "
                             f"{(exc.strerror or str(exc)).lower()}") from exc

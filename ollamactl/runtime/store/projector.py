"""Vision projectors in the store: Ollama's ``application/vnd.ollama.image.projector`` layer.

A projector is a GGUF of its own (llama.cpp's ``mmproj``, architecture ``clip``) that turns an
image into embeddings for its text model. Ollama's create tells one from a model by its header
(``ggufLayers``): a file with vision blocks but no text blocks, or whose ``general.type`` is
``projector``; :func:`is_projector` is that rule. A model with a projector layer has the
``vision`` capability and its runner loads the projector with the model.
"""

from __future__ import annotations

from collections.abc import Iterable

from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.blobs import validate_digest
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_PROJECTOR, Layer, LocalModel


def is_projector(info: gguf.GGUFInfo) -> bool:
    """Ollama's rule: no ``<arch>.block_count`` but a ``<arch>.vision.block_count``, or
    ``general.type`` ``projector``."""
    arch = info.architecture
    blocks = info.kv.get(f"{arch}.block_count") or 0
    vision_blocks = info.kv.get(f"{arch}.vision.block_count") or 0
    return (blocks == 0 and vision_blocks > 0) or info.kv.get("general.type") == "projector"


def projector_digests(store: Store, digests: Iterable[str]) -> list[str]:
    """The blobs among ``digests`` (canonical) that are projectors; a blob that is missing
    or not a GGUF is not one (the create names it as the model, and fails there)."""
    found = []
    for digest in digests:
        path = store.blob_path(validate_digest(digest))
        try:
            if path.is_file() and is_projector(gguf.read_metadata(path)):
                found.append(digest)
        except gguf.InvalidGGUF:
            continue
    return found


def projector_layer(store: Store, digest: str) -> Layer:
    """The manifest layer of a projector blob."""
    path = store.blob_path(validate_digest(digest))
    return Layer(MEDIA_PROJECTOR, validate_digest(digest), path.stat().st_size)


def projector_path(store: Store, model: LocalModel) -> str:
    """The GGUF of the model's first projector layer (the one llama.cpp loads), or ""."""
    for layer in model.layers:
        if layer.media_type == MEDIA_PROJECTOR:
            return str(store.blob_path(layer.digest))
    return ""

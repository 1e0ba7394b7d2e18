"""A tiny vision projector and tiny PNG images for testing the multimodal path end to end.

No small vision model ships on PyPI, so the tests pair SmolLM2 (the bundled text model,
n_embd 576) with a projector written here: a LLaVA-style ``mlp`` projector (``clip``
architecture, as llama.cpp's mtmd loads it) over a tiny CLIP ViT. LLaVA takes the features of
the second-to-last block, so of its two blocks one runs: an image goes through the patch and
position embeddings, one transformer block and the two-layer MLP into 576-wide embeddings, one
per 8x8 patch of a 32x32 image (16 image tokens). ``general.type`` is ``mmproj`` and the block
count is not 0, as in the projectors llama.cpp's converter writes, which is what makes
Ollama's create (and ours) take the file for a projector. The weights are
random from a fixed seed: the output means nothing, but it is deterministic and depends on the
image, which is what the tests check.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
VISION_EMBD = 32
PROJECTOR_HIDDEN = 64
SEED = 17
BLOCKS = 2


def _block_tensors() -> list[tuple[str, tuple[int, ...]]]:
    """One CLIP block's tensors (numpy shapes); the FFN's down weight is n_ff wide."""
    d, ff = VISION_EMBD, VISION_EMBD * 4
    return [*((f"attn_{x}.weight", (d, d)) for x in ("q", "k", "v", "out")),
            *((f"attn_{x}.bias", (d,)) for x in ("q", "k", "v", "out")),
            ("ln1.weight", (d,)), ("ln1.bias", (d,)), ("ln2.weight", (d,)), ("ln2.bias", (d,)),
            ("ffn_up.weight", (ff, d)), ("ffn_up.bias", (ff,)),
            ("ffn_down.weight", (d, ff)), ("ffn_down.bias", (d,))]


def write_projector(path: Path, text_embd: int = 576, seed: int = SEED) -> Path:
    """Write the projector GGUF for a text model of width ``text_embd``; returns ``path``."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)

    def weights(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("ollamactl-test-projector")
    writer.add_type("mmproj")
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", VISION_EMBD)
    writer.add_uint32("clip.vision.feed_forward_length", VISION_EMBD * 4)
    writer.add_uint32("clip.vision.projection_dim", text_embd)
    writer.add_uint32("clip.vision.attention.head_count", 4)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_uint32("clip.vision.block_count", BLOCKS)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    # numpy shapes are ggml's ne reversed
    writer.add_tensor("v.patch_embd.weight", weights(VISION_EMBD, 3, PATCH_SIZE, PATCH_SIZE))
    writer.add_tensor("v.position_embd.weight", weights(IMAGE_TOKENS, VISION_EMBD))
    for block in range(BLOCKS):
        for name, shape in _block_tensors():
            writer.add_tensor(f"v.blk.{block}.{name}", weights(*shape))
    writer.add_tensor("mm.0.weight", weights(PROJECTOR_HIDDEN, VISION_EMBD))
    writer.add_tensor("mm.0.bias", weights(PROJECTOR_HIDDEN))
    writer.add_tensor("mm.2.weight", weights(text_embd, PROJECTOR_HIDDEN, scale=0.5))
    writer.add_tensor("mm.2.bias", weights(text_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def png(rgb: tuple[int, int, int], size: int = IMAGE_SIZE) -> bytes:
    """A ``size`` x ``size`` PNG of one colour, with a diagonal of its inverse (so that the
    patches differ), written without an imaging library."""
    inverse = tuple(255 - c for c in rgb)
    rows = b"".join(
        b"\x00" + b"".join(bytes(inverse if x == y else rgb) for x in range(size))
        for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

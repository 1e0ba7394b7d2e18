"""A strict, bounded GGUF (v2/v3) metadata reader for files the server cannot trust.

Reads only the header: key/values and tensor descriptions, never tensor data. Every length is
checked against the bytes that are left in the file before anything is allocated, counts and
lengths have hard caps, and the tensor table must describe data that lies inside the file. Any
violation raises :class:`InvalidGGUF` with one clear line; nothing here can crash on a hostile
file or allocate more than a small multiple of the header's size.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamactl.errors import ModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

MAX_KV_COUNT = 1 << 16
MAX_TENSOR_COUNT = 1 << 20
MAX_KEY_LENGTH = 1 << 16
MAX_STRING_LENGTH = 1 << 24  # 16 MiB: far above any chat template
MAX_ARRAY_LENGTH = 1 << 24
MAX_TENSOR_NAME_LENGTH = 1 << 10
MAX_DIMS = 4
# Arrays longer than this are counted and skipped (not materialised) unless keep_arrays=True;
# the vocabulary and merges of a tokenizer are the usual case.
ARRAY_KEEP_LIMIT = 1 << 12

_SCALARS: dict[int, tuple[str, struct.Struct]] = {
    0: ("uint8", struct.Struct("<B")),
    1: ("int8", struct.Struct("<b")),
    2: ("uint16", struct.Struct("<H")),
    3: ("int16", struct.Struct("<h")),
    4: ("uint32", struct.Struct("<I")),
    5: ("int32", struct.Struct("<i")),
    6: ("float32", struct.Struct("<f")),
    7: ("bool", struct.Struct("<B")),
    10: ("uint64", struct.Struct("<Q")),
    11: ("int64", struct.Struct("<q")),
    12: ("float64", struct.Struct("<d")),
}
TOKENS_KEY = "tokenizer.ggml.tokens"
# llama.cpp's fill-in-the-middle token ids (prefix, suffix, middle), each with the older name
# it still reads (CodeLlama's GGUFs)
FIM_KEYS = (("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
            ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
            ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"))
_TYPE_STRING = 8
_TYPE_ARRAY = 9
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# ggml tensor types: id -> (name, elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# llama.cpp's llama_ftype (general.file_type) -> the quantization name Ollama shows.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}


class InvalidGGUF(ModelError):
    """The file is not a GGUF model this reader accepts; the message says what is wrong."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"invalid GGUF file {self.path}: {reason}")


@dataclass(frozen=True)
class SkippedArray:
    """A long array that was checked but not loaded: its element type and length."""

    item_type: str
    length: int


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's description; ``offset`` is relative to the data section."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    offset: int
    size_bytes: int

    @property
    def element_count(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file says; sizes in bytes."""

    path: Path
    version: int
    kv: dict[str, Any]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int  # in bytes, from the start of the file
    file_size: int  # in bytes
    architecture: str
    parameter_count: int
    file_type: int | None
    quantization: str
    context_length: int | None
    embedding_length: int | None
    chat_template: str | None
    tensor_bytes: int = field(default=0)  # in bytes, all tensors' data
    bos_token: str | None = None  # text of tokenizer.ggml.bos_token_id
    eos_token: str | None = None  # text of tokenizer.ggml.eos_token_id
    add_bos: bool = False  # whether llama.cpp prepends BOS when tokenizing with add_special
    fim_tokens: tuple[str, str, str] | None = None  # fill-in-the-middle: prefix, suffix, middle

    def arch_value(self, suffix: str) -> Any:
        """``kv["<architecture>.<suffix>"]`` or None."""
        return self.kv.get(f"{self.architecture}.{suffix}")

    @property
    def block_count(self) -> int | None:
        value = self.arch_value("block_count")
        return value if isinstance(value, int) else None

    def kv_cache_bytes(self, num_ctx: int, *, bytes_per_element: int = 2) -> int:
        """Estimated KV-cache size in bytes for ``num_ctx`` tokens (f16 cache by default).

        Uses head_count_kv and key/value lengths when present, else embedding_length / head_count;
        per-layer arrays of head counts are summed. 0 when the metadata is too thin to say.
        """
        blocks = self.block_count
        heads = self.arch_value("attention.head_count")
        heads_kv = self.arch_value("attention.head_count_kv")
        if heads_kv is None:
            heads_kv = heads
        if not blocks or heads is None or not self.embedding_length:
            return 0
        first_heads = heads[0] if isinstance(heads, list) and heads else heads
        if not isinstance(first_heads, int) or first_heads <= 0:
            return 0
        head_dim = self.embedding_length // first_heads
        key_length = self.arch_value("attention.key_length") or head_dim
        value_length = self.arch_value("attention.value_length") or head_dim
        if isinstance(heads_kv, list):
            kv_heads_total = sum(h for h in heads_kv if isinstance(h, int))
        elif isinstance(heads_kv, int):
            kv_heads_total = heads_kv * blocks
        else:
            return 0
        return int(num_ctx * kv_heads_total * (key_length + value_length) * bytes_per_element)


class _Reader:
    """Cursor over the mapped file; every read is bounds-checked first."""

    def __init__(self, path: Path, data: mmap.mmap | bytes, size: int) -> None:
        self.path = path
        self.data = data
        self.size = size
        self.pos = 0

    def fail(self, reason: str) -> InvalidGGUF:
        return InvalidGGUF(self.path, reason)

    def need(self, count: int, what: str) -> None:
        if count < 0 or count > self.size - self.pos:
            raise self.fail(f"truncated while reading {what} at offset {self.pos}")

    def unpack(self, fmt: struct.Struct, what: str) -> Any:
        self.need(fmt.size, what)
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack(_U32, what))

    def u64(self, what: str) -> int:
        return int(self.unpack(_U64, what))

    def string(self, what: str, max_length: int, *, keep: bool = True) -> str:
        length = self.u64(f"{what} length")
        if length > max_length:
            raise self.fail(f"{what} length {length} exceeds the limit of {max_length} bytes")
        self.need(length, what)
        start = self.pos
        self.pos += length
        if not keep:
            return ""
        return bytes(self.data[start:self.pos]).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Step over ``count`` strings, checking each length as :meth:`string` does. A
        vocabulary holds ~50k of them and only its length is wanted: the first pass checks
        as little as it can (a length past the limit stops it, one past the end of the file
        makes the next read fail); where it stops, a second finds the string to name."""
        data, pos, unpack, limit = self.data, self.pos, _U64.unpack_from, MAX_STRING_LENGTH
        try:
            for _ in range(count):
                (length,) = unpack(data, pos)
                if length > limit:
                    break
                pos += 8 + length
            else:
                if pos <= self.size:
                    self.pos = pos
                    return
        except struct.error:
            pass
        self._skip_strings_checked(count, what)

    def _skip_strings_checked(self, count: int, what: str) -> None:
        data, pos, size, unpack = self.data, self.pos, self.size, _U64.unpack_from
        for index in range(count):
            if pos + 8 > size:
                self.pos = pos
                raise self.fail(f"truncated while reading {what}[{index}] length at offset {pos}")
            (length,) = unpack(data, pos)
            if length > MAX_STRING_LENGTH:
                raise self.fail(f"{what}[{index}] length {length} exceeds the limit of "
                                f"{MAX_STRING_LENGTH} bytes")
            if length > size - pos - 8:
                self.pos = pos + 8
                raise self.fail(f"truncated while reading {what}[{index}] at offset {pos + 8}")
            pos += 8 + length
        self.pos = pos

    def value(self, value_type: int, what: str, *, keep_arrays: bool, nested: bool) -> Any:
        if value_type in _SCALARS:
            type_name, fmt = _SCALARS[value_type]
            value = self.unpack(fmt, what)
            if type_name == "bool":
                if value not in (0, 1):
                    raise self.fail(f"{what}: boolean value {value} is not 0 or 1")
                return bool(value)
            return value
        if value_type == _TYPE_STRING:
            return self.string(what, MAX_STRING_LENGTH)
        if value_type == _TYPE_ARRAY:
            if nested:
                raise self.fail(f"{what}: nested arrays are not supported")
            return self.array(what, keep_arrays=keep_arrays)
        raise self.fail(f"{what}: unknown value type {value_type}")

    def array(self, what: str, *, keep_arrays: bool) -> list[Any] | SkippedArray:
        item_type = self.u32(f"{what} item type")
        length = self.u64(f"{what} length")
        if length > MAX_ARRAY_LENGTH:
            raise self.fail(f"{what}: array length {length} exceeds the limit of "
                            f"{MAX_ARRAY_LENGTH}")
        if item_type == _TYPE_ARRAY:
            raise self.fail(f"{what}: nested arrays are not supported")
        if item_type == _TYPE_STRING:
            min_item = 8
        elif item_type in _SCALARS:
            min_item = _SCALARS[item_type][1].size
        else:
            raise self.fail(f"{what}: unknown array item type {item_type}")
        # Every element takes at least min_item bytes: a length the file cannot hold is a lie.
        self.need(length * min_item, what)
        keep = keep_arrays or length <= ARRAY_KEEP_LIMIT
        if item_type in _SCALARS and item_type != 7:
            fmt = _SCALARS[item_type][1]
            if not keep:
                self.pos += length * fmt.size
                return SkippedArray(_SCALARS[item_type][0], length)
            values = list(struct.unpack_from(f"<{length}{fmt.format[-1]}", self.data, self.pos))
            self.pos += length * fmt.size
            return values
        if item_type == _TYPE_STRING and not keep:
            self.skip_strings(length, what)
            return SkippedArray("string", length)
        items = [self.value(item_type, f"{what}[{index}]", keep_arrays=keep_arrays, nested=True)
                 for index in range(length)]
        if not keep:
            return SkippedArray(_SCALARS[item_type][0], length)
        return items


def _human_parameter_count(count: int) -> str:
    """Ollama's ``format.HumanNumber``: ``134.52M``, ``8.0B``... (decimal units)."""
    if count >= 1_000_000_000:
        number = count / 1_000_000_000
        return f"{number:.0f}B" if number == math.floor(number) else f"{number:.1f}B"
    if count >= 1_000_000:
        number = count / 1_000_000
        return f"{number:.0f}M" if number == math.floor(number) else f"{number:.2f}M"
    if count >= 1_000:
        return f"{count / 1_000:.0f}K"
    return str(count)


def human_parameter_count(count: int) -> str:
    """The ``parameter_size`` string of /api/tags and /api/show for ``count`` parameters."""
    return _human_parameter_count(count)


def _parse(path: Path, data: mmap.mmap | bytes, size: int, *, keep_arrays: bool) -> GGUFInfo:
    reader = _Reader(path, data, size)
    reader.need(4, "magic")
    if bytes(data[0:4]) != GGUF_MAGIC:
        raise reader.fail("not a GGUF file (bad magic)")
    reader.pos = 4
    version = reader.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise reader.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors = reader.u64("tensor count")
    n_kv = reader.u64("metadata count")
    if n_kv > MAX_KV_COUNT:
        raise reader.fail(f"metadata count {n_kv} exceeds the limit of {MAX_KV_COUNT}")
    if n_tensors > MAX_TENSOR_COUNT:
        raise reader.fail(f"tensor count {n_tensors} exceeds the limit of {MAX_TENSOR_COUNT}")

    kv: dict[str, Any] = {}
    tokens_at: int | None = None
    for index in range(n_kv):
        key = reader.string(f"metadata key #{index}", MAX_KEY_LENGTH)
        if not key:
            raise reader.fail(f"metadata key #{index} is empty")
        if key in kv:
            raise reader.fail(f"duplicate metadata key {key!r}")
        value_type = reader.u32(f"type of {key!r}")
        if key == TOKENS_KEY:
            tokens_at = reader.pos
        kv[key] = reader.value(value_type, repr(key), keep_arrays=keep_arrays, nested=False)

    alignment = kv.get("general.alignment", DEFAULT_ALIGNMENT)
    if (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0
            or alignment & (alignment - 1)):
        raise reader.fail(f"general.alignment {alignment!r} is not a positive power of two")

    # Each tensor description needs at least name length + n_dims + type + offset bytes.
    reader.need(n_tensors * (8 + 4 + 4 + 8), "tensor table")
    raw_tensors: list[tuple[str, int, tuple[int, ...], int]] = []
    names: set[str] = set()
    for index in range(n_tensors):
        name = reader.string(f"tensor #{index} name", MAX_TENSOR_NAME_LENGTH)
        if name in names:
            raise reader.fail(f"duplicate tensor name {name!r}")
        names.add(name)
        n_dims = reader.u32(f"tensor {name!r} dimension count")
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise reader.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(reader.u64(f"tensor {name!r} dimension") for _ in range(n_dims))
        type_id = reader.u32(f"tensor {name!r} type")
        offset = reader.u64(f"tensor {name!r} offset")
        raw_tensors.append((name, type_id, shape, offset))

    data_offset = -(-reader.pos // alignment) * alignment
    if data_offset > size:
        raise reader.fail("tensor data section starts beyond the end of the file")
    tensors: list[TensorInfo] = []
    for name, type_id, shape, offset in raw_tensors:
        if type_id not in GGML_TYPES:
            raise reader.fail(f"tensor {name!r} has unknown type {type_id}")
        type_name, block_size, block_bytes = GGML_TYPES[type_id]
        if any(dim == 0 for dim in shape):
            raise reader.fail(f"tensor {name!r} has a zero dimension")
        elements = math.prod(shape)
        if elements >= 1 << 62:
            raise reader.fail(f"tensor {name!r} has too many elements")
        if shape[0] % block_size:
            raise reader.fail(f"tensor {name!r} row of {shape[0]} is not a multiple of the "
                              f"{type_name} block size {block_size}")
        size_bytes = elements // block_size * block_bytes
        if offset % alignment:
            raise reader.fail(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        if offset + size_bytes > size - data_offset:
            raise reader.fail(f"tensor {name!r} data lies beyond the end of the file")
        tensors.append(TensorInfo(name, type_name, shape, offset, size_bytes))

    architecture = kv.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise reader.fail("general.architecture is missing")
    file_type = kv.get("general.file_type")
    if not isinstance(file_type, int) or isinstance(file_type, bool):
        file_type = None
    quantization = FILE_TYPES.get(file_type, "") if file_type is not None else ""
    if not quantization and tensors:
        quantization = Counter(t.type_name for t in tensors).most_common(1)[0][0]

    def arch_int(suffix: str) -> int | None:
        value = kv.get(f"{architecture}.{suffix}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    chat_template = kv.get("tokenizer.chat_template")
    add_bos = kv.get("tokenizer.ggml.add_bos_token")
    if not isinstance(add_bos, bool):
        # llama.cpp's default when the flag is absent: SentencePiece vocabularies add BOS.
        add_bos = kv.get("tokenizer.ggml.model") == "llama"
    return GGUFInfo(
        path=path,
        version=version,
        kv=kv,
        tensors=tensors,
        alignment=alignment,
        data_offset=data_offset,
        file_size=size,
        architecture=architecture,
        parameter_count=sum(t.element_count for t in tensors),
        file_type=file_type,
        quantization=quantization,
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        chat_template=chat_template if isinstance(chat_template, str) else None,
        tensor_bytes=sum(t.size_bytes for t in tensors),
        bos_token=_token_text(reader, kv, tokens_at, "tokenizer.ggml.bos_token_id"),
        eos_token=_token_text(reader, kv, tokens_at, "tokenizer.ggml.eos_token_id"),
        add_bos=add_bos,
        fim_tokens=_fim_tokens(reader, kv, tokens_at),
    )


def _fim_tokens(reader: _Reader, kv: dict[str, Any], tokens_at: int | None
                ) -> tuple[str, str, str] | None:
    """The texts of the GGUF's fill-in-the-middle tokens, which llama.cpp's infill writes as
    ``<PRE>prefix<SUF>suffix<MID>``; None unless all three are named."""
    pre, suf, mid = (_token_text(reader, kv, tokens_at, key if key in kv else old)
                     for key, old in FIM_KEYS)
    return (pre, suf, mid) if pre and suf and mid else None


def _token_text(reader: _Reader, kv: dict[str, Any], tokens_at: int | None,
                id_key: str) -> str | None:
    """The vocabulary entry for a special-token id, walking a skipped token array if needed."""
    token_id = kv.get(id_key)
    tokens = kv.get(TOKENS_KEY)
    if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
        return None
    if isinstance(tokens, list):
        value = tokens[token_id] if token_id < len(tokens) else None
        return value if isinstance(value, str) else None
    if not isinstance(tokens, SkippedArray) or tokens.item_type != "string" \
            or tokens_at is None or token_id >= tokens.length:
        return None
    reader.pos = tokens_at + 4 + 8  # item type + length, already checked on the first pass
    reader.skip_strings(token_id, "token")
    return reader.string("token", MAX_STRING_LENGTH)


def read_metadata(path: str | os.PathLike[str], *, keep_arrays: bool = False) -> GGUFInfo:
    """Read and check the header of the GGUF file at ``path``.

    Long arrays (the tokenizer's vocabulary) come back as :class:`SkippedArray` unless
    ``keep_arrays``. Results are cached per (path, size, mtime).

    Raises:
        InvalidGGUF: not GGUF, unsupported version, truncated, over a limit, inconsistent.
    """
    file_path = Path(path)
    try:
        stat = file_path.stat()
    except OSError as exc:
        raise InvalidGGUF(file_path, exc.strerror or "cannot be read") from exc
    return _read_cached(file_path, stat.st_size, stat.st_mtime_ns, keep_arrays)


@functools.lru_cache(maxsize=16)
def _read_cached(path: Path, size: int, mtime_ns: int, keep_arrays: bool) -> GGUFInfo:
    del mtime_ns  # part of the cache key only
    if size < 24:
        raise InvalidGGUF(path, "truncated header (file is shorter than 24 bytes)")
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                  access=mmap.ACCESS_READ) as mapped:
            actual = len(mapped)
            try:
                return _parse(path, mapped, actual, keep_arrays=keep_arrays)
            except (struct.error, OverflowError, MemoryError, ValueError) as exc:
                raise InvalidGGUF(path, f"malformed header ({exc})") from exc
    except InvalidGGUF:
        raise
    except OSError as exc:
        raise InvalidGGUF(path, exc.strerror or str(exc)) from exc

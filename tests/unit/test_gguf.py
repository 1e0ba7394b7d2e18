"""GGUF reader: the real SmolLM2 header, and a corpus of hostile files that must fail cleanly."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest

from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.gguf import InvalidGGUF, read_metadata
from tests.gguf_builder import (
    build,
    gstr,
    kv_string,
    kv_string_array,
    kv_u32,
    smollm2_path,
    tensor_info,
    tiny_model,
    write,
)


def test_reads_the_real_smollm2_header() -> None:
    info = read_metadata(smollm2_path())
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert gguf.human_parameter_count(info.parameter_count) == "134.52M"
    assert info.context_length == 8192
    assert info.embedding_length == 576
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert (info.bos_token, info.eos_token, info.add_bos) == ("<|im_start|>", "<|im_end|>", False)
    assert isinstance(info.kv["tokenizer.ggml.tokens"], gguf.SkippedArray)
    assert info.kv["tokenizer.ggml.tokens"].length == 49152
    assert len(info.tensors) == 272
    assert info.data_offset + info.tensor_bytes <= info.file_size
    assert info.kv_cache_bytes(2048) == 2048 * 30 * 3 * (64 + 64) * 2


def test_keep_arrays_loads_the_vocabulary() -> None:
    info = read_metadata(smollm2_path(), keep_arrays=True)
    tokens = info.kv["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) == 49152
    assert tokens[2] == "<|im_end|>"


def test_tiny_valid_file(tmp_path: Path) -> None:
    info = read_metadata(tiny_model(tmp_path / "m.gguf", chat_template="{{ x }}"))
    assert info.parameter_count == 8
    assert info.quantization == "F32"
    assert info.chat_template == "{{ x }}"
    assert info.bos_token == "<s>"
    assert info.tensors[0].shape == (8,)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "bad magic": b"GGML" + b"\x00" * 40,
    "truncated header": b"GGUF\x03\x00\x00\x00\x00",
    "version 1": build(version=1),
    "version 99": build(version=99),
    "string length 2**63": (b"GGUF" + struct.pack("<I", 3) + _u64(0) + _u64(1)
                            + _u64(2**63) + b"key"),
    "value string length 2**63": (b"GGUF" + struct.pack("<I", 3) + _u64(0) + _u64(1) + gstr("k")
                                  + struct.pack("<I", 8) + _u64(2**63 - 1) + b"x" * 64),
    "array length 2**62": build([gstr("a") + struct.pack("<IIQ", 9, 4, 2**62)]),
    "array longer than file": build([gstr("a") + struct.pack("<IIQ", 9, 8, 1 << 20)]),
    "nested array": build([gstr("a") + struct.pack("<IIQ", 9, 9, 1)
                           + struct.pack("<IQ", 4, 1) + b"\x00" * 4]),
    "n_kv 0xFFFFFFFF": build(n_kv=0xFFFFFFFF),
    "n_kv lies": build(n_kv=50),
    "n_tensors 2**40": build(n_tensors=2**40),
    "n_tensors lies": build(n_tensors=1000),
    "unknown value type": build([gstr("k") + struct.pack("<I", 77) + b"\x00" * 8]),
    "bool not 0/1": build([gstr("k") + struct.pack("<IB", 7, 5)]),
    "duplicate key": build([kv_string("general.architecture", "llama"),
                            kv_string("general.architecture", "llama")]),
    "no architecture": build([kv_u32("x.y", 1)]),
    "five dims": build(tensors=[tensor_info("w", (1, 1, 1, 1, 8))]),
    "zero dims": build(tensors=[tensor_info("w", ())]),
    "zero-size dim": build(tensors=[tensor_info("w", (8, 0))]),
    "alignment 0": build([kv_string("general.architecture", "llama"),
                          kv_u32("general.alignment", 0)]),
    "alignment 48": build([kv_string("general.architecture", "llama"),
                           kv_u32("general.alignment", 48)]),
    "tensor beyond EOF": build(tensors=[tensor_info("w", (1 << 30,))]),
    "offset beyond EOF": build(tensors=[tensor_info("w", (8,), offset=1 << 40)]),
    "offset unaligned": build(tensors=[tensor_info("w", (8,), offset=3)]),
    "unknown tensor type": build(tensors=[tensor_info("w", (8,), type_id=200)]),
    "row not a block multiple": build(tensors=[tensor_info("w", (33,), type_id=2)],
                                      data=b"\x00" * 64),
    "element count overflow": build(tensors=[tensor_info("w", (2**32, 2**32, 2**32))]),
    "duplicate tensor": build(tensors=[tensor_info("w", (8,)), tensor_info("w", (8,))]),
    "tensor name 1 MiB": build(tensors=[gstr("w" * (1 << 20)) + struct.pack("<IQIQ", 1, 8, 0, 0)]),
    "text file": b"FROM llama3\nPARAMETER temperature 1\n" * 3,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_fail_with_one_clear_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "bad.gguf", HOSTILE[name])
    tracemalloc.start()
    try:
        with pytest.raises(InvalidGGUF) as info:
            read_metadata(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"invalid GGUF file {path}: ")
    assert "\n" not in message
    assert peak < 4 << 20, f"{name}: peak {peak} bytes"


def test_specific_messages(tmp_path: Path) -> None:
    cases = {
        "bad magic": "bad magic",
        "string length 2**63": "exceeds the limit",
        "array length 2**62": "exceeds the limit",
        "n_kv 0xFFFFFFFF": "metadata count 4294967295 exceeds",
        "five dims": "has 5 dimensions",
        "alignment 0": "not a positive power of two",
        "tensor beyond EOF": "beyond the end of the file",
    }
    for name, fragment in cases.items():
        with pytest.raises(InvalidGGUF, match=fragment):
            read_metadata(write(tmp_path / f"{len(name)}.gguf", HOSTILE[name]))


def test_every_truncation_of_a_valid_file_fails_cleanly(tmp_path: Path) -> None:
    full = tiny_model(tmp_path / "full.gguf").read_bytes()
    for cut in range(0, len(full) - 1, 7):
        path = write(tmp_path / "cut.gguf", full[:cut])
        with pytest.raises(InvalidGGUF):
            read_metadata(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidGGUF, match="No such file"):
        read_metadata(tmp_path / "absent.gguf")


def test_long_string_arrays_are_counted_not_loaded(tmp_path: Path) -> None:
    vocab = [f"t{i}" for i in range(gguf.ARRAY_KEEP_LIMIT + 1)]
    kvs = [kv_string("general.architecture", "llama"), kv_string_array("tokenizer.ggml.tokens",
                                                                      vocab),
           kv_u32("tokenizer.ggml.eos_token_id", gguf.ARRAY_KEEP_LIMIT)]
    info = read_metadata(write(tmp_path / "v.gguf", build(kvs)))
    assert info.kv["tokenizer.ggml.tokens"] == gguf.SkippedArray("string", len(vocab))
    assert info.eos_token == vocab[-1]


def test_a_skipped_string_array_is_checked_element_by_element(tmp_path: Path) -> None:
    """The fast skip over a vocabulary still refuses what :meth:`string` refuses: a length
    beyond the limit, a string cut by the end of the file, a length field cut in two."""
    count = gguf.ARRAY_KEEP_LIMIT + 1
    head = (kv_string("general.architecture", "llama")
            + gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, count))
    good = b"".join(gstr(f"t{i}") for i in range(count - 1))
    too_long = good + struct.pack("<Q", gguf.MAX_STRING_LENGTH + 1) + b"x" * 64
    cut_string = good + struct.pack("<Q", 1000) + b"xy"
    for name, body, message in (
            ("long", too_long, rf"tokenizer.ggml.tokens'\[{count - 1}\] length \d+ exceeds"),
            ("cut", cut_string, rf"truncated while reading 'tokenizer.ggml.tokens'\[{count - 1}\] "
                                r"at offset"),
            ("half-length", good + b"\x05\x00", rf"truncated while reading "
                                                rf"'tokenizer.ggml.tokens'\[{count - 1}\] length")):
        blob = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + head + body
        with pytest.raises(InvalidGGUF, match=message):
            read_metadata(write(tmp_path / f"{name}.gguf", blob))

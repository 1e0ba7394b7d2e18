"""Quantizing with llama.cpp's quantizer in a child process, and create's checks around it:
Ollama's types and messages, a valid GGUF of the asked type, failures as one line, the
adapter checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamactl.errors import ModelError
from ollamactl.runtime.store import gguf, quantize
from ollamactl.runtime.store.blobs import BlobNotFound
from ollamactl.runtime.store.create import BadAdapter, create_model, prepare_create
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_ADAPTER, MEDIA_MODEL
from tests.gguf_builder import tiny_llama, tiny_lora, tiny_model

SUPPORTED = "supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"


@pytest.mark.parametrize(("text", "name"), [("q4_K_M", "Q4_K_M"), ("Q4_K", "Q4_K_M"),
                                            ("q8_0", "Q8_0"), ("q4_k_s", "Q4_K_S"),
                                            ("f16", "F16")])
def test_types_are_ollamas(text: str, name: str) -> None:
    assert quantize.parse_type(text) == name


def test_an_unknown_type_gets_ollamas_message() -> None:
    with pytest.raises(ModelError) as refused:
        quantize.parse_type("q2_k")
    assert str(refused.value) == f"unsupported quantization type Q2_K - {SUPPORTED}"


def test_quantize_writes_a_gguf_of_the_asked_type(tmp_path: Path) -> None:
    source = tiny_llama(tmp_path / "f16.gguf")
    seen: list[tuple[int, int]] = []
    quantize.quantize(source, tmp_path / "q8.gguf", "Q8_0", lambda done, of: seen.append(
        (done, of)))
    info = gguf.read_metadata(tmp_path / "q8.gguf")
    assert info.quantization == "Q8_0"
    assert {t.type_name for t in info.tensors} == {"Q8_0", "F32"}
    assert seen == [(n, 12) for n in range(1, 13)]


def test_a_file_llama_cpp_refuses_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(quantize.QuantizeError) as failed:
        quantize.quantize(tiny_model(tmp_path / "thin.gguf"), tmp_path / "out.gguf", "Q8_0",
                          lambda done, of: None)
    assert str(failed.value) == "quantizing to Q8_0 failed: key not found in model: " \
                                "llama.block_count"


def test_create_quantizes_and_reports_in_ollamas_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    digest = store.import_file(tiny_llama(tmp_path / "f32.gguf", file_type=0))
    seen: list[tuple[str, int | None, int | None]] = []
    model = create_model(store, "tiny:q4", model_digest=digest, quantize_to="q4_k_m",
                         progress=lambda s, c, t: seen.append((s, c, t)))
    assert model.details.quantization_level == "Q4_K_M"
    assert gguf.read_metadata(model.model_path).quantization == "Q4_K_M"
    statuses = [s for s, _, _ in seen]
    working = "quantizing F32 model to Q4_K_M"
    assert statuses[:2] == ["parsing GGUF", working]
    after = statuses[statuses.index("verifying conversion"):]
    assert after[1] == f"creating new layer sha256:{model.model_path.name[7:]}"
    assert after[-2:] == ["writing manifest", "success"]
    counts = [c for s, c, _ in seen if s == working]
    assert counts == sorted(counts) and counts[-1] == seen[1][2]
    assert not [p for p in store.blobs_dir.iterdir() if p.name.startswith(".tmp")]
    assert store.has_blob(digest)    # the F32 source stays: its blob is the caller's


def test_create_refuses_before_any_work(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    quantized = store.import_file(tiny_llama(tmp_path / "q.gguf", file_type=7))
    with pytest.raises(ModelError, match=r"^quantization is only supported for F16 and F32 "
                                         r"models$"):
        prepare_create(store, "x", model_digest=quantized, quantize_to="q4_K_M")
    same = prepare_create(store, "x", model_digest=store.import_file(
        tiny_llama(tmp_path / "f16.gguf")), quantize_to="F16")
    assert same.quantize_to is None      # already F16: nothing to do, as Ollama


def test_adapters_are_checked_as_llama_cpp_would(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    weights = store.import_file(tiny_llama(tmp_path / "f16.gguf"))
    lora = store.import_file(tiny_lora(tmp_path / "lora.gguf", n_embd=256))
    model = create_model(store, "with-lora", model_digest=weights, adapters=[lora])
    assert [(layer.media_type, layer.digest) for layer in model.layers[:2]] == [
        (MEDIA_MODEL, weights), (MEDIA_ADAPTER, lora)]
    child = create_model(store, "child", from_model="with-lora", system="s")
    assert MEDIA_ADAPTER in [layer.media_type for layer in child.layers]

    not_adapter = store.import_file(tiny_model(tmp_path / "model.gguf"))
    other_arch = store.import_file(tiny_lora(tmp_path / "g.gguf", architecture="gemma3"))
    cases: list[tuple[list[str], type[Exception], str]] = [
        ([not_adapter], BadAdapter, "is not a LoRA adapter"),
        ([other_arch], BadAdapter, "the adapter is for gemma3, the model is llama"),
        ([lora, lora], BadAdapter, "only one adapter is currently supported"),
        (["sha256:" + "0" * 64], BlobNotFound, "not found"),
    ]
    for adapters, error, text in cases:
        with pytest.raises(error, match=text):
            prepare_create(store, "x", model_digest=weights, adapters=adapters)

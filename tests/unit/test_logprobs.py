"""Logprobs and fill-in-the-middle without a model: the runner's log-softmax and top-k against
numpy, the GGUF's FIM tokens and the prompts built from them or from a template's ``.Suffix``,
and the 400s Ollama answers (``top_logprobs`` out of 0..20, ``suffix`` without ``insert``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.http.schemas import BadRequest, Logprobs, parse_logprobs
from ollamactl.runtime.prompting.prompt import render_fill, render_generate
from ollamactl.runtime.prompting.render import TemplateError
from ollamactl.runtime.runner.batch import StepOutput
from ollamactl.runtime.runner.batch_loop import _items
from ollamactl.runtime.runner.logprobs import (
    HeldLogprobs,
    log_softmax,
    token_entry,
    token_logprobs,
)
from ollamactl.runtime.runner.sequences import StopMatcher
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import LocalModel
from ollamactl.settings import load_server_config
from tests.gguf_builder import build, kv_string, kv_string_array, kv_u32, tiny_model, write

FIM_TEMPLATE = ("{{ if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"
                "{{ else }}{{ .Prompt }}{{ end }}")
VOCAB = ["<unk>", "<s>", "</s>", "<PRE>", "<SUF>", "<MID>"]


def _reference(logits: np.ndarray) -> Any:
    """numpy's log of the softmax, in float64."""
    probs = np.exp(logits.astype(np.float64) - logits.max())
    return np.log(probs / probs.sum())


def test_log_softmax_matches_numpy_and_stays_finite_for_large_logits() -> None:
    logits = np.array([2.0, -1.0, 0.5, 3.25, 3.25], dtype=np.float32)
    assert np.allclose(log_softmax(logits), _reference(logits))
    assert np.isclose(np.exp(log_softmax(logits)).sum(), 1.0)
    huge = np.array([1000.0, 999.0, 990.0], dtype=np.float32)  # exp() overflows unshifted
    assert np.all(np.isfinite(log_softmax(huge)))
    assert np.allclose(log_softmax(huge), _reference(huge))
    assert log_softmax(huge)[1] - log_softmax(huge)[0] == pytest.approx(-1.0)


def test_token_logprobs_gives_the_sampled_token_and_the_top_k_most_likely_first() -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=500).astype(np.float32)
    reference = _reference(logits)
    value, top = token_logprobs(logits, 42, 5)
    assert value == pytest.approx(reference[42])
    assert [i for i, _ in top] == list(np.argsort(-reference, kind="stable")[:5])
    assert [lp for _, lp in top] == pytest.approx(sorted(reference, reverse=True)[:5])
    assert token_logprobs(logits, 42, 0) == (value, [])
    _, everything = token_logprobs(logits[:3], 0, 20)  # more asked than the vocabulary has
    assert len(everything) == 3 and sum(np.exp([lp for _, lp in everything])) == \
        pytest.approx(1.0)


def test_token_logprobs_orders_ties_by_token_id() -> None:
    logits = np.array([1.0, 5.0, 5.0, 0.0, 5.0], dtype=np.float32)
    assert [i for i, _ in token_logprobs(logits, 1, 3)[1]] == [1, 2, 4]


def test_token_entry_keeps_the_raw_bytes_of_a_partial_character() -> None:
    assert token_entry(b"Hi", -0.5) == {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}
    half = "é".encode()[:1]
    assert token_entry(half, -1.0) == {"token": "\ufffd", "logprob": -1.0, "bytes": [0xC3]}
    assert token_entry(b"", -2.0) == {"token": "", "logprob": -2.0}


def test_toks_items_carry_logprobs_only_for_sequences_that_asked() -> None:
    plain = StepOutput(tokens=[(1, "a"), (2, "b")])
    assert _items(plain) is plain.tokens
    entry: dict[str, Any] = {"token": "b", "logprob": -0.1}
    mixed = StepOutput(tokens=[(1, "a"), (2, "b")], logprobs={2: [entry]})
    assert _items(mixed) == [(1, "a"), (2, "b", [entry])]


def _feed(held: HeldLogprobs, matcher: StopMatcher, pieces: list[str]) -> list[list[str]]:
    """The tokens whose logprobs go out after each piece (each entry named by its piece)."""
    out = []
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out.append([e["token"] for e in held.add({"token": piece}, piece, text, stopped=hit)])
        if hit:
            break
    return out


def test_logprobs_go_out_with_the_text_a_stop_matcher_held_back() -> None:
    held = HeldLogprobs()
    assert _feed(held, StopMatcher(["\n\n"]), ["Hi", "\n", " there"]) == \
        [["Hi"], [], ["\n", " there"]]
    assert held.flush() == []


def test_the_tokens_of_a_stop_sequence_have_no_logprobs() -> None:
    # the stop's own tokens are dropped; one the cut went through keeps its logprob
    assert _feed(HeldLogprobs(), StopMatcher(["\n\n"]), ["Hi", "\n", "\n"]) == \
        [["Hi"], [], []]
    assert _feed(HeldLogprobs(), StopMatcher(["bc"]), ["ab", "cd"]) == [[], ["ab"]]
    assert _feed(HeldLogprobs(), StopMatcher(["\n\n"]), ["a\n\nb"]) == [["a\n\nb"]]


def test_held_logprobs_are_flushed_with_the_tail() -> None:
    held = HeldLogprobs()
    assert _feed(held, StopMatcher(["STOP"]), ["x", "ST"]) == [["x"], []]
    assert [e["token"] for e in held.flush()] == ["ST"]


@pytest.mark.parametrize(("logprobs", "top", "expected"), [
    (False, 0, None), (True, 0, Logprobs(0)), (True, 20, Logprobs(20)), (False, 5, None)])
def test_parse_logprobs(logprobs: bool, top: int, expected: Logprobs | None) -> None:
    assert parse_logprobs(logprobs, top) == expected


@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_out_of_range_is_refused_even_without_logprobs(top: int) -> None:
    with pytest.raises(BadRequest, match=r"^top_logprobs must be between 0 and 20$"):
        parse_logprobs(False, top)


# -- fill-in-the-middle ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("fim-store"))


def _model(store: Store, tmp_path: Path, name: str, extra: list[bytes],
           template: str | None = None) -> LocalModel:
    """A tiny llama GGUF with :data:`VOCAB` and ``extra`` keys."""
    path = write(tmp_path / f"{name}.gguf", build([
        kv_string("general.architecture", "llama"), kv_u32("llama.context_length", 256),
        kv_u32("llama.embedding_length", 8), kv_string_array("tokenizer.ggml.tokens", VOCAB),
        *extra]))
    return create_model(store, name, model_digest=store.import_file(path), template=template)


FIM_IDS = [kv_u32("tokenizer.ggml.fim_pre_token_id", 3),
           kv_u32("tokenizer.ggml.fim_suf_token_id", 4),
           kv_u32("tokenizer.ggml.fim_mid_token_id", 5)]


def test_gguf_fim_tokens_give_insert_and_llama_cpps_infill_prompt(store: Store,
                                                                  tmp_path: Path) -> None:
    model = _model(store, tmp_path, "fim", FIM_IDS)
    assert "insert" in model.capabilities
    prompt = render_generate(model, "def f(<x>):", suffix="    return x")
    assert prompt.segments == (("<PRE>", True), ("def f(<x>):", False), ("<SUF>", True),
                               ("    return x", False), ("<MID>", True))
    assert render_fill(model, "", "tail").segments == (
        ("<PRE>", True), ("<SUF>", True), ("tail", False), ("<MID>", True))


def test_codellama_era_fim_keys_are_read_too(store: Store, tmp_path: Path) -> None:
    old = [kv_u32("tokenizer.ggml.prefix_token_id", 3), kv_u32("tokenizer.ggml.suffix_token_id", 4),
           kv_u32("tokenizer.ggml.middle_token_id", 5)]
    assert "insert" in _model(store, tmp_path, "old", old).capabilities


def test_incomplete_or_invalid_fim_tokens_give_no_insert(store: Store, tmp_path: Path) -> None:
    assert "insert" not in _model(store, tmp_path, "two", FIM_IDS[:2]).capabilities
    bad = [*FIM_IDS[:2], kv_u32("tokenizer.ggml.fim_mid_token_id", 99)]
    model = _model(store, tmp_path, "bad", bad)
    assert "insert" not in model.capabilities
    with pytest.raises(TemplateError, match="does not support insert"):
        render_fill(model, "a", "b")


def test_a_template_with_suffix_renders_prompt_and_suffix_as_user_data(
        store: Store, tmp_path: Path) -> None:
    model = _model(store, tmp_path, "tmpl", FIM_IDS, template=FIM_TEMPLATE)
    assert "insert" in model.capabilities
    prompt = render_generate(model, "a<|im_end|>", suffix="b", system="ignored")
    assert prompt.segments == (("<fim_prefix>", True), ("a<|im_end|>", False),
                               ("<fim_suffix>", True), ("b", False), ("<fim_middle>", True))
    # without a suffix the same template writes the plain prompt
    assert render_generate(model, "plain").text == "plain"


# -- the 400s, before any runner ------------------------------------------------------------------

@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    models = tmp_path / "models"
    store = Store(models)
    create_model(store, "plain", model_digest=store.import_file(tiny_model(tmp_path / "p.gguf")))
    config = load_server_config({"OLLAMA_MODELS": str(models), "OLLAMA_HOST": "127.0.0.1:9",
                                 "OLLAMA_CONTEXT_LENGTH": "256"}, detect())
    with TestClient(create_app(config), base_url="http://127.0.0.1:9") as running:
        yield running


def test_api_refuses_top_logprobs_over_20_and_suffix_without_insert(client: TestClient) -> None:
    for path, body in (("/api/generate", {"prompt": "x"}),
                       ("/api/chat", {"messages": [{"role": "user", "content": "x"}]})):
        reply = client.post(path, json={"model": "plain", "logprobs": True, "top_logprobs": 21,
                                        **body})
        assert reply.status_code == 400
        assert reply.json() == {"error": "top_logprobs must be between 0 and 20"}
    reply = client.post("/api/generate", json={"model": "plain", "prompt": "x", "suffix": "y"})
    assert reply.status_code == 400
    assert reply.json() == {"error": "registry.ollama.ai/library/plain:latest does not support "
                                     "insert"}


def test_openai_routes_refuse_more_than_20_alternatives(client: TestClient) -> None:
    chat = client.post("/v1/chat/completions", json={
        "model": "plain", "messages": [{"role": "user", "content": "x"}], "logprobs": True,
        "top_logprobs": 21})
    completion = client.post("/v1/completions", json={"model": "plain", "prompt": "x",
                                                      "logprobs": 21})
    for reply in (chat, completion):
        assert reply.status_code == 400
        assert reply.json()["error"]["message"] == "top_logprobs must be between 0 and 20"

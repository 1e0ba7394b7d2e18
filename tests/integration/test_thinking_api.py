"""Capabilities and thinking through the official `ollama` and `openai` clients, on the real
server: each 400 Ollama gives (tools on gemma3:270m, thinking asked of a model without it, an
invalid ``think`` or ``reasoning_effort``), and ``think`` on a thinking model.

No small thinking model ships, so the test makes one with /api/create: SmolLM2's GGUF blob and
a template that shows ``.Thinking`` in ``<think>...</think>`` and, when ``.Think`` is on, opens
the block in the prompt, as Qwen3's and DeepSeek-R1's templates do. SmolLM2 was never trained to
think: what this proves is the server's side, that the capability is read from the template,
that ``think`` defaults on for such a model and reaches the template, and that what the model
writes inside the opened block comes back as ``thinking`` (whole and streamed), not that the
model reasons. The parser's handling of a closing tag is covered by tests/unit/test_thinking.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ollamactl.runtime.store import bundled
from ollamactl.runtime.store.manifests import Store
from tests.integration.server_process import GEMMA3, SMOLLM2, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ollama = pytest.importorskip("ollama")
openai = pytest.importorskip("openai")

THINKER = "smolthink:135m"
THINK_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ if .Thinking }}<think>{{ .Thinking }}</think>
{{ end }}{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ if .Think }}<think>
{{ end }}"""
GREEDY = {"temperature": 0, "num_predict": 12, "seed": 1}
QUESTION = [{"role": "user", "content": "What is 12 times 12?"}]
TOOL = {"type": "function", "function": {"name": "get_time", "description": "The time",
                                         "parameters": {"type": "object", "properties": {}}}}


def _stock(store: Store) -> None:
    bundled.import_bundled(store, SMOLLM2)
    bundled.import_bundled(store, GEMMA3)


SERVER_STOCK = _stock


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[Any]:
    with ollama.Client(host=server.url) as official:
        blob = Store(server.models).resolve(SMOLLM2).model_digest
        official.create(model=THINKER, files={"model.gguf": blob}, template=THINK_TEMPLATE)
        yield official


def _error(call: functools.partial[Any]) -> Any:
    with pytest.raises(ollama.ResponseError) as caught:
        call()
    assert caught.value.status_code == 400
    return caught.value.error


def test_show_lists_what_each_template_expresses(client: Any) -> None:
    assert client.show(SMOLLM2).capabilities == ["completion", "tools"]
    assert client.show(GEMMA3).capabilities == ["completion"]
    assert client.show(THINKER).capabilities == ["completion", "thinking"]


def test_tools_on_a_template_without_them_get_ollamas_400(client: Any) -> None:
    error = _error(functools.partial(client.chat, model=GEMMA3, messages=QUESTION,
                                     tools=[TOOL]))
    assert error == "registry.ollama.ai/library/gemma3:270m does not support tools"


@pytest.mark.parametrize("think", [True, "low"])
def test_thinking_asked_of_a_model_without_it_gets_the_400(client: Any,
                                                           think: bool | str) -> None:
    for call in (functools.partial(client.chat, model=SMOLLM2, messages=QUESTION, think=think),
                 functools.partial(client.generate, model=SMOLLM2, prompt="hi", think=think)):
        assert _error(call) == '"smollm2:135m" does not support thinking'
    # false is always accepted
    assert client.chat(model=SMOLLM2, messages=QUESTION, think=False,
                       options=GREEDY).message.content


@pytest.mark.parametrize(("think", "message"), [
    ("extreme", 'invalid think value: "extreme" (must be "high", "medium", "low", "max", '
                "true, or false)"),
    (3, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'),
])
def test_an_invalid_think_value_gets_ollamas_400(server: Server, client: Any, think: Any,
                                                 message: str) -> None:
    for path, body in (("/api/chat", {"messages": QUESTION}), ("/api/generate", {"prompt": "x"})):
        reply = server.post(path, {"model": THINKER, "think": think, **body})
        assert reply.status_code == 400 and reply.json() == {"error": message}


def test_the_official_client_gets_the_invalid_think_400(client: Any) -> None:
    error = _error(functools.partial(client.chat, model=THINKER, messages=QUESTION,
                                     think="extreme"))
    assert error.startswith('invalid think value: "extreme"')


def test_thinking_defaults_on_and_comes_back_apart(server: Server, client: Any) -> None:
    answer = client.chat(model=THINKER, messages=QUESTION, options=GREEDY)
    # what the model wrote after the <think> the template opened, without a prompt trick:
    raw = server.post("/api/generate", {
        "model": THINKER, "raw": True, "think": False, "stream": False, "options": GREEDY,
        "prompt": "<|im_start|>user\nWhat is 12 times 12?<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\n"}).json()["response"]
    thought, _, rest = raw.partition("</think>")
    assert answer.message.thinking and answer.message.thinking == thought.lstrip()
    assert answer.message.content == rest.lstrip()
    streamed = list(client.chat(model=THINKER, messages=QUESTION, options=GREEDY, stream=True))
    assert "".join(c.message.thinking or "" for c in streamed) == answer.message.thinking
    assert "".join(c.message.content for c in streamed) == answer.message.content
    generated = client.generate(model=THINKER, prompt="What is 12 times 12?", options=GREEDY,
                                think="high")
    assert generated.thinking == answer.message.thinking


def test_think_false_leaves_the_block_closed_and_the_answer_whole(client: Any) -> None:
    answer = client.chat(model=THINKER, messages=QUESTION, think=False, options=GREEDY)
    assert answer.message.content and not answer.message.thinking


@pytest.fixture
def openai_client(server: Server) -> Iterator[Any]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0) as official:
        yield official


def test_reasoning_effort_maps_to_think_and_returns_reasoning(client: Any,
                                                              openai_client: Any) -> None:
    native = client.chat(model=THINKER, messages=QUESTION, think="low", options=GREEDY)
    completion = openai_client.chat.completions.create(
        model=THINKER, messages=QUESTION, reasoning_effort="low", temperature=0, max_tokens=12,
        seed=1)
    message = completion.choices[0].message
    assert message.model_extra["reasoning"] == native.message.thinking
    chunks = list(openai_client.chat.completions.create(
        model=THINKER, messages=QUESTION, extra_body={"reasoning": {"effort": "minimal"}},
        temperature=0, max_tokens=12, seed=1, stream=True))
    streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning") or ""
                       for c in chunks if c.choices)
    assert streamed == native.message.thinking
    off = openai_client.chat.completions.create(
        model=THINKER, messages=QUESTION, reasoning_effort="none", temperature=0, max_tokens=12)
    assert "reasoning" not in (off.choices[0].message.model_extra or {})


@pytest.mark.parametrize(("model", "effort", "needle"), [
    (THINKER, "extreme", 'invalid reasoning value: "extreme" (must be "minimal", "low", '
                         '"medium", "high", "xhigh", "ultra", "max", or "none")'),
    (SMOLLM2, "high", '"smollm2:135m" does not support thinking'),
])
def test_reasoning_effort_errors_are_openai_400s(client: Any, openai_client: Any, model: str,
                                                 effort: str, needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=model, messages=QUESTION,
                                              reasoning_effort=effort)
    assert caught.value.status_code == 400 and needle in str(caught.value)
    reply = requests.post(f"{openai_client.base_url}chat/completions", timeout=30, json={
        "model": model, "messages": QUESTION, "reasoning_effort": effort})
    assert reply.json()["error"]["message"] == needle

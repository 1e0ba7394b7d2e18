"""Fill-in-the-middle and logprobs on the real server with SmolLM2, through the official
`ollama` and `openai` clients: logprobs from the runner's distributions (streamed and not,
native and /v1), ``suffix`` through a template's ``.Suffix`` and through the GGUF's FIM
tokens (each compared with the raw prompt it must equal), and Ollama's 400s."""

from __future__ import annotations

import math
import shutil
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ollama
import pytest

from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.bundled import import_bundled
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from tests.gguf_builder import kv_string, kv_u32
from tests.integration.server_process import SMOLLM2, Server, smollm2_gguf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

openai = pytest.importorskip("openai")

GREEDY = {"num_predict": 6, "temperature": 0}
TEMPLATE_FIM = "smol-fim:latest"
GGUF_FIM = "smol-gguf-fim:latest"
FIM_TEMPLATE = ("{{ if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"
                "{{ else }}{{ .Prompt }}{{ end }}")
# SmolLM2's control tokens 3, 4, 5 stand in for FIM tokens in the rewritten GGUF
GGUF_FIM_TOKENS = ("<repo_name>", "<reponame>", "<file_sep>")
PREFIX, SUFFIX = "def add(a, b):\n", "\n    return total\n"


def _with_fim_keys(source: Path, target: Path) -> Path:
    """A copy of the GGUF at ``source`` with ``tokenizer.ggml.fim_*_token_id`` added: the new
    key/values go first, padded to the alignment so the tensor data keeps its offsets."""
    info = gguf.read_metadata(source)
    keys = [kv_u32("tokenizer.ggml.fim_pre_token_id", 3),
            kv_u32("tokenizer.ggml.fim_suf_token_id", 4),
            kv_u32("tokenizer.ggml.fim_mid_token_id", 5)]
    pad_key = "ollamactl.test.padding"
    used = sum(map(len, keys)) + len(kv_string(pad_key, ""))
    keys.append(kv_string(pad_key, "x" * (-used % info.alignment)))
    with source.open("rb") as old, target.open("wb") as new:
        head = old.read(24)
        (n_kv,) = struct.unpack("<Q", head[16:24])
        new.write(head[:16] + struct.pack("<Q", n_kv + len(keys)) + b"".join(keys))
        shutil.copyfileobj(old, new)
    return target


def _stock(store: Store) -> None:
    """The bundled ``smollm2:135m`` (no ``.Suffix``), SmolLM2 with a FIM template, and
    SmolLM2 whose GGUF names FIM tokens."""
    import_bundled(store, SMOLLM2)
    digest = store.import_file(smollm2_gguf())
    create_model(store, TEMPLATE_FIM, model_digest=digest, template=FIM_TEMPLATE)
    copy = _with_fim_keys(smollm2_gguf(), store.root / "fim.gguf")
    create_model(store, GGUF_FIM, model_digest=store.import_file(copy))
    copy.unlink()


SERVER_STOCK = _stock
SERVER_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "1"}


@pytest.fixture
def client(server: Server) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url) as official:
        yield official


@pytest.fixture
def oai(server: Server) -> Iterator[Any]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0) as official:
        yield official


def _check_greedy(logprobs: Sequence[Any], top: int) -> None:
    """Each entry as a greedy decode must give it: a logprob <= 0, ``top`` alternatives most
    likely first, the sampled token their first, their probabilities summing to <= 1."""
    assert logprobs
    for entry in logprobs:
        assert entry.logprob <= 0
        alternatives = entry.top_logprobs
        assert len(alternatives) == top
        values = [alt.logprob for alt in alternatives]
        assert values == sorted(values, reverse=True)
        assert alternatives[0].token == entry.token
        assert alternatives[0].logprob == pytest.approx(entry.logprob)
        assert sum(math.exp(v) for v in values) <= 1 + 1e-6


def test_generate_logprobs_follow_the_greedy_tokens(client: ollama.Client) -> None:
    reply = client.generate(model=SMOLLM2, prompt="Name a colour.", options=GREEDY,
                            logprobs=True, top_logprobs=3)
    _check_greedy(reply.logprobs or [], 3)
    assert "".join(entry.token for entry in reply.logprobs or []) == reply.response
    assert len(reply.logprobs or []) == reply.eval_count
    plain = client.generate(model=SMOLLM2, prompt="Name a colour.", options=GREEDY)
    assert plain.logprobs is None and plain.response == reply.response


def test_a_stop_sequences_tokens_have_no_logprobs(client: ollama.Client) -> None:
    free = client.generate(model=SMOLLM2, prompt="Name a colour.", options=GREEDY,
                           logprobs=True)
    tokens = [entry.token for entry in free.logprobs or []]
    # a later token whose text first shows up as itself: the stop cuts exactly before it
    at = next(i for i in range(1, len(tokens)) if tokens[i].strip() and
              "".join(tokens[:i + 1]).find(tokens[i]) == len("".join(tokens[:i])))
    cut = client.generate(model=SMOLLM2, prompt="Name a colour.", logprobs=True,
                          options={**GREEDY, "stop": [tokens[at]]})
    assert cut.response == "".join(tokens[:at])
    assert [entry.token for entry in cut.logprobs or []] == tokens[:at]


def test_streamed_generate_carries_each_chunks_logprobs(client: ollama.Client) -> None:
    whole = client.generate(model=SMOLLM2, prompt="Name a colour.", options=GREEDY,
                            logprobs=True, top_logprobs=2)
    chunks = list(client.generate(model=SMOLLM2, prompt="Name a colour.", options=GREEDY,
                                  logprobs=True, top_logprobs=2, stream=True))
    streamed = [entry for chunk in chunks if not chunk.done for entry in chunk.logprobs or []]
    assert all(len(chunk.logprobs or []) == 1 for chunk in chunks if not chunk.done)
    assert [e.token for e in streamed] == [e.token for e in whole.logprobs or []]
    assert [e.logprob for e in streamed] == \
        pytest.approx([e.logprob for e in whole.logprobs or []])


def test_chat_logprobs_without_alternatives(client: ollama.Client) -> None:
    reply = client.chat(model=SMOLLM2, messages=[{"role": "user", "content": "Hi"}],
                        options=GREEDY, logprobs=True)
    assert reply.logprobs and all(e.logprob <= 0 and not e.top_logprobs for e in reply.logprobs)
    assert "".join(e.token for e in reply.logprobs) == reply.message.content


def test_top_logprobs_over_20_is_refused(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=SMOLLM2, prompt="Hi", logprobs=True, top_logprobs=21)
    assert refused.value.status_code == 400
    assert refused.value.error == "top_logprobs must be between 0 and 20"


def test_openai_chat_and_completion_logprobs(oai: Any) -> None:
    chat = oai.chat.completions.create(model=SMOLLM2, messages=[{"role": "user",
                                                                  "content": "Hi"}],
                                       temperature=0, max_tokens=5, logprobs=True,
                                       top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    stream = oai.chat.completions.create(model=SMOLLM2, messages=[{"role": "user",
                                                                    "content": "Hi"}],
                                         temperature=0, max_tokens=5, logprobs=True,
                                         stream=True)
    streamed = [t.token for chunk in stream for choice in chunk.choices
                if choice.logprobs for t in choice.logprobs.content]
    assert streamed == [t.token for t in content]

    completion = oai.completions.create(model=SMOLLM2, prompt="The sky is", temperature=0,
                                        max_tokens=5, logprobs=3)
    logprobs = completion.choices[0].logprobs
    assert "".join(logprobs.tokens) == completion.choices[0].text
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    assert all(len(top) <= 3 and max(top.values()) == lp
               for top, lp in zip(logprobs.top_logprobs, logprobs.token_logprobs, strict=True))
    assert logprobs.text_offset[0] == 0
    streamed = [choice.logprobs for chunk in oai.completions.create(
        model=SMOLLM2, prompt="The sky is", temperature=0, max_tokens=5, logprobs=1,
        stream=True) for choice in chunk.choices if choice.logprobs]
    assert [t for part in streamed for t in part.tokens] == logprobs.tokens
    assert [o for part in streamed for o in part.text_offset] == logprobs.text_offset
    plain = oai.completions.create(model=SMOLLM2, prompt="The sky is", temperature=0,
                                   max_tokens=5)
    assert plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError, match="top_logprobs must be between 0 and 20"):
        oai.completions.create(model=SMOLLM2, prompt="x", max_tokens=1, logprobs=21)


def test_insert_capability(client: ollama.Client) -> None:
    assert "insert" not in (client.show(SMOLLM2).capabilities or [])
    assert "insert" in (client.show(TEMPLATE_FIM).capabilities or [])
    assert "insert" in (client.show(GGUF_FIM).capabilities or [])
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=SMOLLM2, prompt=PREFIX, suffix=SUFFIX)
    assert refused.value.status_code == 400
    assert refused.value.error == "registry.ollama.ai/library/smollm2:135m does not support insert"


@pytest.mark.parametrize(("model", "raw"), [
    (TEMPLATE_FIM, f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"),
    (GGUF_FIM, PREFIX.join(GGUF_FIM_TOKENS[:2]) + SUFFIX + GGUF_FIM_TOKENS[2]),
])
def test_suffix_prompt_is_the_fim_prompt(client: ollama.Client, model: str, raw: str) -> None:
    """A ``suffix`` generate reads the same tokens, and so answers the same at temperature 0,
    as the raw FIM prompt written out by hand."""
    filled = client.generate(model=model, prompt=PREFIX, suffix=SUFFIX, options=GREEDY)
    by_hand = client.generate(model=model, prompt=raw, raw=True, options=GREEDY)
    assert filled.prompt_eval_count == by_hand.prompt_eval_count
    assert filled.response == by_hand.response

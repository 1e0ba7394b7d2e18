"""Continuous batching through the real server, the real SmolLM2 model and the official `ollama`
client: concurrent streams keep their own options, a cancelled stream frees its slot at once,
and answers do not depend on batching. One OLLAMA_NUM_PARALLEL=4 server for the module; the
unbatched reference is a second server with OLLAMA_NUM_PARALLEL=1."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest
import requests

from tests.integration.server_process import SMOLLM2, make_store, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMPTS = ["What is the capital of France?", "Name three colors.",
           "Count from 1 to 10.", "Say hello in Spanish."]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batching") / "models"
    make_store(root)
    return root


@pytest.fixture(scope="module")
def parallel_url(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("batching-log") / "server.log"
    with running_server(models, {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_KEEP_ALIVE": "-1"},
                        log) as (url, _proc):
        requests.post(f"{url}/api/generate", json={"model": SMOLLM2}, timeout=120)  # preload
        yield url


def timed_stream(url: str, prompt: str, options: dict[str, Any], **extra: Any
                 ) -> dict[str, Any]:
    """A streaming generate through the official client: text, last chunk, chunk times."""
    with ollama.Client(host=url) as client:
        pieces, times, last = [], [], None
        for part in client.generate(model=SMOLLM2, prompt=prompt, options=options,
                                    stream=True, **extra):
            times.append(time.monotonic())
            pieces.append(part.response)
            last = part
    assert last is not None and last.done
    return {"text": "".join(pieces), "final": last, "first": times[0], "end": times[-1]}


def test_four_concurrent_streams_keep_their_own_options_and_stops(parallel_url: str) -> None:
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (PROMPTS[2], {"temperature": 0, "num_predict": 24, "stop": ["\n"]}, {}),
        ("Write a long story about a lighthouse keeper.", {"temperature": 0, "num_predict": 12},
         {}),
        (PROMPTS[0], {"temperature": 0.9, "seed": 42, "top_k": 20, "num_predict": 20,
                      "stop": ["Paris"]}, {}),
        ("Describe a cat as JSON.", {"temperature": 0, "num_predict": 24}, {"format": "json"}),
    ]
    alone = [timed_stream(parallel_url, p, o, **x) for p, o, x in cases]
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        together = list(pool.map(lambda c: timed_stream(parallel_url, c[0], c[1], **c[2]),
                                 cases))
    # the four streams were in flight at the same time
    assert max(r["first"] for r in together) < min(r["end"] for r in together)
    for (prompt, options, _), solo, batched in zip(cases, alone, together, strict=True):
        assert batched["text"] == solo["text"], prompt
        assert batched["final"].done_reason == solo["final"].done_reason
        for stop in options.get("stop", []):
            assert stop not in batched["text"]
    count, story, paris, cat = together
    assert count["final"].done_reason == "stop" and count["text"].strip()  # cut at line 1
    assert story["final"].done_reason == "length" and story["final"].eval_count == 12
    assert paris["final"].eval_count <= 20
    if cat["final"].done_reason == "stop":
        assert isinstance(json.loads(cat["text"]), dict)
    assert cat["text"].lstrip().startswith("{")  # the grammar held for this sequence only
    assert not story["text"].lstrip().startswith("{")


def test_cancelled_stream_frees_its_slot_for_the_next_request(parallel_url: str) -> None:
    long_body = {"model": SMOLLM2, "prompt": "Write a very long story about a dragon.",
                 "options": {"temperature": 0, "num_predict": 1500}}
    started = threading.Barrier(5)

    def long_stream(cancel_after: int) -> None:
        with requests.post(f"{parallel_url}/api/generate", json=long_body, stream=True,
                           timeout=300) as resp:
            for n, _line in enumerate(resp.iter_lines()):
                if n == 2:
                    started.wait(timeout=60)
                if n >= cancel_after:
                    return  # closes the connection mid-stream

    pool = concurrent.futures.ThreadPoolExecutor(4)
    try:
        streams = [pool.submit(long_stream, 5)] + [pool.submit(long_stream, 60) for _ in range(3)]
        started.wait(timeout=60)          # all four slots are busy now
        streams[0].result(timeout=60)     # the first stream hangs up
        quick = timed_stream(parallel_url, PROMPTS[0], {"temperature": 0, "num_predict": 6})
        others_running = not any(f.done() for f in streams[1:])
    finally:
        for future in streams:
            future.result(timeout=120)
        pool.shutdown()
    assert quick["final"].eval_count == 6
    # it got the cancelled stream's slot while the three others were still generating
    assert others_running


def test_temperature_zero_answers_are_the_same_batched_and_unbatched(
        parallel_url: str, models: Path, tmp_path: Path) -> None:
    options = {"temperature": 0, "seed": 7, "num_predict": 16}

    def chat(url: str, prompt: str) -> str:
        with ollama.Client(host=url) as client:
            reply = client.chat(model=SMOLLM2, options=options,
                                messages=[{"role": "user", "content": prompt}])
        return str(reply.message.content)

    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        batched = list(pool.map(lambda p: chat(parallel_url, p), PROMPTS))
    with running_server(models, {"OLLAMA_NUM_PARALLEL": "1"}, tmp_path / "serial.log") as (
            url, _proc):
        unbatched = [chat(url, p) for p in PROMPTS]
    assert all(batched)
    assert batched == unbatched

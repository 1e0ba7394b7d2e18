"""``GET /metrics`` scraped from the real server around real requests with SmolLM2: every
family is there, and the counters moved by exactly what the requests did (tokens as the
answers report them, requests by route template and status, loads, unloads by reason, a
crash by signal)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server_process import SMOLLM2, Server, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "7",
              "OLLAMA_MAX_LOADED_MODELS": "1"}
SHORT = {"num_predict": 8, "temperature": 0}

FAMILIES = {
    "ollama_requests": "counter", "ollama_request_duration_seconds": "histogram",
    "ollama_prompt_tokens": "counter", "ollama_generated_tokens": "counter",
    "ollama_time_to_first_token_seconds": "histogram",
    "ollama_time_per_output_token_seconds": "histogram",
    "ollama_queue_depth": "gauge", "ollama_queue_limit": "gauge",
    "ollama_loaded_models": "gauge", "ollama_model_memory_bytes": "gauge",
    "ollama_runner_loads": "counter", "ollama_runner_unloads": "counter",
    "ollama_runner_crashes": "counter", "ollama_runtime_info": "gauge",  # an Info, as text
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """One scrape: the family types and every sample, keyed by name and labels."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.samples: Samples = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels``; 0 when absent (a counter not yet
        incremented has no sample)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (sample, labels) in self.samples if sample == name]


def scrape(server: Server) -> Scrape:
    reply = requests.get(server.url + "/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return Scrape(reply.text)


def delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


@pytest.fixture
def fresh(server: Server) -> Iterator[Server]:
    server.unload_all()
    yield server


def _stream(server: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The last line of a streamed answer."""
    with requests.post(server.url + path, json=body, stream=True, timeout=120) as reply:
        assert reply.status_code == 200, reply.text
        lines = [json.loads(line) for line in reply.iter_lines() if line]
    assert lines[-1]["done"] is True
    return lines[-1]


def test_every_family_is_served_with_its_type(server: Server) -> None:
    first = scrape(server)
    for name, kind in FAMILIES.items():
        assert first.types.get(name) == kind, (name, first.types.get(name))
    assert first.value("ollama_queue_limit") == 7
    info = first.labels_of("ollama_runtime_info")
    assert len(info) == 1 and set(info[0]) >= {"version", "build", "variant", "llama_cpp_python"}
    assert info[0]["variant"] not in ("", "none")
    assert info[0]["llama_cpp_python"] not in ("", "none")


def test_counters_move_by_what_the_requests_did(fresh: Server) -> None:
    before = scrape(fresh)
    generated = fresh.post("/api/generate", {"model": SMOLLM2, "prompt": "Why is the sky blue?",
                                             "options": SHORT, "stream": False})
    assert generated.status_code == 200, generated.text
    one = generated.json()
    loaded = scrape(fresh)
    two = _stream(fresh, "/api/chat", {"model": SMOLLM2, "options": SHORT, "messages": [
        {"role": "user", "content": "Name a colour."}]})
    [ps] = fresh.ps()
    during = scrape(fresh)
    unloaded = fresh.post("/api/generate", {"model": SMOLLM2, "keep_alive": 0})
    assert unloaded.json()["done_reason"] == "unload"
    wait_for(lambda: not fresh.ps() and not fresh.runners())
    assert requests.get(fresh.url + "/no/such/path", timeout=5).status_code == 404
    after = scrape(fresh)

    # tokens: exactly what the two answers report
    prompt = sum(body.get("prompt_eval_count", 0) for body in (one, two))
    tokens = sum(body.get("eval_count", 0) for body in (one, two))
    assert tokens >= 2
    assert delta(after, before, "ollama_prompt_tokens_total", model=SMOLLM2) == prompt
    assert delta(after, before, "ollama_generated_tokens_total", model=SMOLLM2) == tokens
    with_two = sum(1 for body in (one, two) if body.get("eval_count", 0) >= 2)
    assert delta(after, before, "ollama_time_to_first_token_seconds_count", model=SMOLLM2) == 2
    assert delta(after, before, "ollama_time_per_output_token_seconds_count",
                 model=SMOLLM2) == with_two

    # requests by route template, method and status
    ok = {"method": "POST", "status": "200"}
    assert delta(after, before, "ollama_requests_total", route="/api/generate", **ok) == 2
    assert delta(after, before, "ollama_requests_total", route="/api/chat", **ok) == 1
    assert delta(after, before, "ollama_request_duration_seconds_count",
                 route="/api/chat") == 1
    assert delta(after, before, "ollama_requests_total", route="other", method="GET",
                 status="404") == 1
    assert delta(after, before, "ollama_requests_total", route="/metrics", method="GET",
                 status="200") == 3  # the scrapes before this one
    assert not any(labels.get("route", "").startswith("/no/")
                   for labels in after.labels_of("ollama_requests_total"))

    # one load, one unload asked for by the request; the gauges follow
    assert delta(after, before, "ollama_runner_loads_total", model=SMOLLM2) == 1
    assert delta(after, before, "ollama_runner_unloads_total", model=SMOLLM2,
                 reason="requested") == 1
    assert after.labels_of("ollama_runner_crashes_total") == before.labels_of(
        "ollama_runner_crashes_total")
    assert loaded.value("ollama_loaded_models") == 1
    assert during.value("ollama_model_memory_bytes", model=SMOLLM2, kind="ram") == ps["size"]
    assert during.value("ollama_model_memory_bytes", model=SMOLLM2,
                        kind="vram") == ps["size_vram"]
    assert during.value("ollama_queue_depth") == 0
    assert after.value("ollama_loaded_models") == 0
    assert after.labels_of("ollama_model_memory_bytes") == []


def test_a_reload_counts_as_an_eviction(fresh: Server) -> None:
    before = scrape(fresh)
    for num_ctx in (2048, 4096):  # other runner options: the loaded runner makes room
        reply = fresh.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi",
                                             "options": {**SHORT, "num_ctx": num_ctx},
                                             "stream": False})
        assert reply.status_code == 200, reply.text
    after = scrape(fresh)
    assert delta(after, before, "ollama_runner_loads_total", model=SMOLLM2) == 2
    assert delta(after, before, "ollama_runner_unloads_total", model=SMOLLM2,
                 reason="evicted") == 1


def test_embedding_inputs_count_as_prompt_tokens(fresh: Server) -> None:
    before = scrape(fresh)
    reply = fresh.post("/api/embed", {"model": SMOLLM2, "input": ["why is the sky blue?", "hi"]})
    assert reply.status_code == 200, reply.text
    after = scrape(fresh)
    assert delta(after, before, "ollama_prompt_tokens_total",
                 model=SMOLLM2) == reply.json()["prompt_eval_count"]
    assert delta(after, before, "ollama_generated_tokens_total", model=SMOLLM2) == 0
    assert delta(after, before, "ollama_requests_total", route="/api/embed", method="POST",
                 status="200") == 1


def test_a_killed_runner_counts_as_a_crash_with_its_signal(fresh: Server) -> None:
    loaded = fresh.post("/api/generate", {"model": SMOLLM2, "options": SHORT})
    assert loaded.json()["done_reason"] == "load"
    before = scrape(fresh)
    [runner] = fresh.runners()
    os.kill(runner.pid, signal.SIGKILL)
    wait_for(lambda: not fresh.ps() and not fresh.runners())
    after = scrape(fresh)
    assert delta(after, before, "ollama_runner_crashes_total", model=SMOLLM2,
                 signal="SIGKILL") == 1
    assert delta(after, before, "ollama_runner_unloads_total", model=SMOLLM2,
                 reason="crashed") == 1

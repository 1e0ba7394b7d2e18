"""``GET /metrics`` in the app itself (no runner): the setting switches the route, every app
has its own registry, request labels stay bounded, per-request token timings are computed as
documented, and the route stays out of the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from ollamactl.errors import SettingError
from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.http.metrics import FIRST_TOKEN_BUCKETS_S, ServerMetrics
from ollamactl.runtime.http.openapi import openapi_schema
from ollamactl.settings import SETTINGS, load_server_config
from tests.conftest import Cli

HOST = "127.0.0.1:9"


def _client(tmp_path: Path, **env: str) -> TestClient:
    config = load_server_config({"OLLAMA_MODELS": str(tmp_path / "models"),
                                 "OLLAMA_HOST": HOST, **env}, detect())
    return TestClient(create_app(config), base_url=f"http://{HOST}")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path, OLLAMA_MAX_QUEUE="9") as running:
        yield running


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def requests_total(found: dict[tuple[str, frozenset[tuple[str, str]]], float], route: str,
                   method: str, status: str) -> float:
    key = frozenset({"route": route, "method": method, "status": status}.items())
    return found.get(("ollama_requests_total", key), 0.0)


def test_metrics_are_served_by_default_with_the_scheduler_gauges(client: TestClient) -> None:
    found = samples(client)
    assert found["ollama_queue_limit", frozenset()] == 9
    assert found["ollama_queue_depth", frozenset()] == 0
    assert found["ollama_loaded_models", frozenset()] == 0
    [info] = [labels for name, labels in found if name == "ollama_runtime_info"]
    assert {key for key, _ in info} == {"version", "build", "variant", "llama_cpp_python"}


def test_requests_are_labelled_by_route_template_never_by_raw_path(client: TestClient) -> None:
    digest = "sha256:" + "0" * 64
    assert client.get("/api/version").status_code == 200
    assert client.head(f"/api/blobs/{digest}").status_code == 404
    assert client.get("/secret/path/123").status_code == 404
    assert client.request("BREW", "/api/version").status_code == 405
    found = samples(client)
    assert requests_total(found, "/api/version", "GET", "200") == 1
    assert requests_total(found, "/api/blobs/{digest}", "HEAD", "404") == 1
    assert requests_total(found, "other", "GET", "404") == 1
    assert requests_total(found, "/api/version", "other", "405") == 1
    routes = {dict(labels).get("route") for name, labels in found
              if name == "ollama_requests_total"}
    assert not any(route and ("secret" in route or digest in route) for route in routes)


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    with _client(tmp_path) as one, _client(tmp_path) as two:
        one.get("/api/version")
        one.get("/api/version")
        two.get("/api/version")
        assert requests_total(samples(one), "/api/version", "GET", "200") == 2
        assert requests_total(samples(two), "/api/version", "GET", "200") == 1


def test_ollama_metrics_0_removes_the_route(tmp_path: Path) -> None:
    with _client(tmp_path, OLLAMA_METRICS="0") as client:
        reply = client.get("/metrics")
        assert reply.status_code == 404 and reply.text == "404 page not found"
        assert client.app.state.metrics is None  # type: ignore[attr-defined]


def test_the_setting_is_a_strict_boolean_on_by_default(tmp_path: Path) -> None:
    setting = SETTINGS["OLLAMA_METRICS"]
    assert setting.validate("0") is False and setting.validate("true") is True
    with pytest.raises(SettingError):
        setting.validate("yes")
    config = load_server_config({"OLLAMA_MODELS": str(tmp_path)}, detect())
    assert config.metrics is True


def test_env_set_takes_it_strictly(cli: Cli) -> None:
    done = cli("--dry-run", "env", "set", "OLLAMA_METRICS", "0")
    assert done.code == 0, done.err
    assert "OLLAMA_METRICS=0" in done.out
    refused = cli("--dry-run", "env", "set", "OLLAMA_METRICS", "yes")
    assert refused.code == 2 and "not a boolean" in refused.err


def test_metrics_is_not_in_the_openapi_document(tmp_path: Path) -> None:
    config = load_server_config({"OLLAMA_MODELS": str(tmp_path), "OLLAMA_HOST": HOST},
                                detect())
    document = openapi_schema(create_app(config))
    assert "/api/generate" in document["paths"] and "/metrics" not in document["paths"]


def test_generated_tokens_count_as_they_stream_and_the_end_adds_the_rest() -> None:
    metrics = ServerMetrics(lambda: None)

    def generated() -> float:
        text = metrics.exposition().decode()
        return next(s.value for family in text_string_to_metric_families(text)
                    for s in family.samples if s.name == "ollama_generated_tokens_total")

    for _ in range(3):
        metrics.token_generated("m")
    assert generated() == 3          # mid-generation: a live view sees them
    metrics.sequence_done("m", prompt_tokens=2, generated_tokens=4, started_ns=0,
                          first_token_ns=1, ended_ns=2, streamed=3)
    assert generated() == 4          # the runner's count, once in all


def test_token_timings_are_observed_once_per_sequence() -> None:
    metrics = ServerMetrics(lambda: None)
    ms = 1_000_000
    metrics.sequence_done("m", prompt_tokens=5, generated_tokens=11, started_ns=0,
                          first_token_ns=200 * ms, ended_ns=700 * ms)
    metrics.sequence_done("m", prompt_tokens=3, generated_tokens=1, started_ns=0,
                          first_token_ns=100 * ms, ended_ns=100 * ms)
    metrics.sequence_done("m", prompt_tokens=4, generated_tokens=0, started_ns=0,
                          first_token_ns=None, ended_ns=50 * ms)
    text = metrics.exposition().decode()
    found = {(s.name, s.labels.get("model")): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    assert found["ollama_prompt_tokens_total", "m"] == 12
    assert found["ollama_generated_tokens_total", "m"] == 12
    assert found["ollama_time_to_first_token_seconds_count", "m"] == 2
    assert found["ollama_time_to_first_token_seconds_sum", "m"] == pytest.approx(0.3)
    assert found["ollama_time_per_output_token_seconds_count", "m"] == 1
    assert found["ollama_time_per_output_token_seconds_sum", "m"] == pytest.approx(0.05)
    # cumulative buckets, each bound inclusive: the first tokens came at 0.2 s and 0.1 s
    buckets = {s.labels["le"]: s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == "ollama_time_to_first_token_seconds_bucket"}
    assert (buckets["0.05"], buckets["0.1"], buckets["0.25"], buckets["+Inf"]) == (0, 1, 2, 2)
    assert list(buckets) == [repr(b) for b in FIRST_TOKEN_BUCKETS_S] + ["+Inf"]

"""Bounded load on loopback: 200 requests, 16 at a time, both bundled models, mixed generate /
chat / streaming; no 5xx but 503 (full queue), every accepted request completes, and once the
short keep_alive expires the runners are gone and the server's memory is back near baseline."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections import Counter

import pytest
import requests

from tests.adversarial.conftest import GEMMA3, SMOLLM2, Reliability, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 200
CONCURRENCY = 16
MEMORY_SLACK_BYTES = 96 << 20  # allocator and import growth of the server process itself


def _wait_until_unloaded(server: Server, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while server.runners() or requests.get(server.url + "/api/ps", timeout=10).json()["models"]:
        assert time.monotonic() < deadline, "runners still loaded after keep_alive"
        time.sleep(0.2)


def _one(server: Server, number: int, session: requests.Session) -> tuple[int, bool]:
    """Send request ``number``; returns (status, completed with done=true)."""
    model = SMOLLM2 if number % 2 else GEMMA3
    options = {"num_predict": 2, "temperature": 0}
    kind = number % 3
    if kind == 0:
        response = session.post(server.url + "/api/generate", timeout=300, json={
            "model": model, "prompt": f"Say {number}", "options": options, "stream": False})
        return response.status_code, response.ok and response.json().get("done") is True
    if kind == 1:
        response = session.post(server.url + "/api/chat", timeout=300, json={
            "model": model, "options": options, "stream": False,
            "messages": [{"role": "user", "content": f"Hi {number}"}]})
        return response.status_code, response.ok and response.json().get("done") is True
    with session.post(server.url + "/api/generate", timeout=300, stream=True, json={
            "model": model, "prompt": f"Count {number}", "options": options}) as response:
        if not response.ok:
            return response.status_code, False
        last = [json.loads(line) for line in response.iter_lines() if line][-1]
        return response.status_code, last.get("done") is True


def test_bounded_load_on_both_models(adv_server: Server, reliability: Reliability) -> None:
    _wait_until_unloaded(adv_server)
    import psutil

    server = psutil.Process(adv_server.pid)
    baseline = server.memory_info().rss
    local = threading.local()

    def run(number: int) -> tuple[int, bool]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return _one(adv_server, number, local.session)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(run, range(REQUESTS)))
    elapsed = time.monotonic() - started
    peak = server.memory_info().rss + sum(p.memory_info().rss for p in adv_server.runners())
    statuses = Counter(status for status, _ in results)
    reliability.tried(REQUESTS)
    reliability.held(f"{REQUESTS} requests at concurrency {CONCURRENCY} on {SMOLLM2} + "
                     f"{GEMMA3} in {elapsed:.0f} s; statuses {dict(sorted(statuses.items()))}")
    assert set(statuses) <= {200, 503}, statuses
    accepted = [done for status, done in results if status == 200]
    assert accepted and all(accepted), "an accepted request did not complete"
    assert adv_server.is_alive()

    _wait_until_unloaded(adv_server)
    after = server.memory_info().rss
    reliability.held(f"server RSS {baseline >> 20} MiB before, {peak >> 20} MiB peak with "
                     f"runners, {after >> 20} MiB after keep_alive expiry")
    assert not adv_server.runners()
    assert after - baseline < MEMORY_SLACK_BYTES, (baseline, after)

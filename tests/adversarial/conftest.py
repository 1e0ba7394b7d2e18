"""Adversarial suite fixtures: the shared hostile-input server, and the outcome recorder.

Every test here asks for ``reliability`` and tells it what it tried (``tried``), which faults it
injected (``fault``) and what load it held (``held``). The pass/fail of each test is taken from
pytest's own reports, and at the end of the session everything is written as JSON
(``.pytest_cache/d/reliability/outcomes.json``, or ``$OLLAMACTL_RELIABILITY_JSON``), merged with
the classes an earlier run recorded. ``bench/reliability_table.py`` renders the README table
from that file, so the table always reflects a real run.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ollamactl.runtime.store import bundled
from ollamactl.runtime.store.manifests import Store
from tests.integration.server_process import GEMMA3, SMOLLM2, Server, serving

RESULTS_ENV = "OLLAMACTL_RELIABILITY_JSON"
CLASSES = {
    "test_paths": "Paths from requests",
    "test_create_paths": "Server paths in /api/create",
    "test_gguf_corpus": "Malformed GGUF corpus",
    "test_http_abuse": "HTTP abuse",
    "test_load": "Load",
    "test_faults": "Faults",
    "test_fuzz": "Fuzzing",
    "test_root_links": "Root through the service user's links",
    "test_root_reexec": "Root re-executing Python",
    "test_settings_syntax": "Settings smuggling syntax",
    "test_unbounded_work": "Unbounded work from requests",
    "test_redirects": "Registry redirects",
    "test_log_forging": "Log forging",
}


@dataclass
class Record:
    """What one test did; ``outcome`` comes from pytest's report."""

    cls: str
    inputs: int = 0
    faults: list[str] = field(default_factory=list)
    load: list[str] = field(default_factory=list)
    outcome: str = "not run"
    duration_s: float = 0.0
    detail: str = ""


class Reliability:
    """The handle a test gets: count inputs, name faults, describe the load held."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def tried(self, count: int = 1) -> None:
        self.record.inputs += count

    def fault(self, what: str) -> None:
        self.record.faults.append(what)

    def held(self, what: str) -> None:
        self.record.load.append(what)


_records: dict[str, Record] = {}


def results_path(config: pytest.Config) -> Path:
    """Where the outcomes JSON lives: $OLLAMACTL_RELIABILITY_JSON or the pytest cache."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("reliability")) / "outcomes.json"
    return Path(config.rootpath) / ".pytest_cache" / "reliability-outcomes.json"


def _class_of(item: pytest.Item) -> str:
    return item.path.stem


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Reliability:
    record = _records.setdefault(request.node.nodeid, Record(_class_of(request.node)))
    return Reliability(record)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if _class_of(item) not in CLASSES:
        return
    record = _records.setdefault(item.nodeid, Record(_class_of(item)))
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        record.outcome = report.outcome
        record.duration_s = round(report.duration, 2)
        if report.skipped and isinstance(report.longrepr, tuple):
            record.detail = str(report.longrepr[2])
        elif report.failed:
            record.detail = str(report.longreprtext).strip().splitlines()[-1][:200] \
                if report.longreprtext else "failed"
    elif report.when == "teardown" and report.failed:
        record.outcome = "failed"
        record.detail = "teardown failed"


def pytest_sessionfinish(session: pytest.Session) -> None:
    ran = {name: rec for name, rec in _records.items() if rec.outcome != "not run"}
    if not ran:
        return
    path = results_path(session.config)
    try:
        previous: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    classes: dict[str, Any] = dict(previous.get("classes", {}))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for cls in sorted({rec.cls for rec in ran.values()}):
        tests = dict(classes.get(cls, {}).get("tests", {}))  # a partial run updates its tests
        tests.update({name.split("::", 1)[1]: {
            "outcome": rec.outcome, "inputs": rec.inputs, "faults": rec.faults,
            "load": rec.load, "duration_s": rec.duration_s, "detail": rec.detail, "run_at": now,
        } for name, rec in sorted(ran.items()) if rec.cls == cls})
        classes[cls] = {"title": CLASSES[cls], "run_at": now, "tests": tests}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"classes": classes}, indent=1, sort_keys=True) + "\n")


# -- the shared server --------------------------------------------------------------------------

SHORT_KEEP_ALIVE = "3s"


@pytest.fixture(scope="session")
def adv_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the hostile-input classes: both bundled models, a short keep_alive,
    one sequence per runner (so a leaked slot shows), the store under ``root/models`` next to a
    canary file that no request may touch."""
    root = tmp_path_factory.mktemp("adversarial")
    (root / "canary.txt").write_text("canary: must never be read or written\n")
    env = {"OLLAMA_KEEP_ALIVE": SHORT_KEEP_ALIVE, "OLLAMA_NUM_PARALLEL": "1",
           "OLLAMA_MAX_QUEUE": "64", "OLLAMA_MAX_LOADED_MODELS": "2"}
    with serving(root, env, stock=_both_bundled) as server:
        yield server


def _both_bundled(store: Store) -> None:
    """``smollm2:135m`` and ``gemma3:270m`` as ``pull`` imports them, with their templates
    (SmolLM2's shows tools; tool requests to a model without them get a 400)."""
    for name in (SMOLLM2, GEMMA3):
        bundled.import_bundled(store, name)


__all__ = ["GEMMA3", "SMOLLM2", "Server"]

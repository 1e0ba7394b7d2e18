"""The watchdog with the real `ollamactl serve`: start, answer, SIGKILL, answer again, clean stop,
and `ollamactl logs` from its file. Tmp state dir, free loopback port, nothing left behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from ollamactl.context import Context
from ollamactl.host import HostFacts
from ollamactl.service.watchdog import WatchdogManager, WatchdogPaths, WatchdogState
from ollamactl.system import SystemRunner

pytestmark = pytest.mark.integration


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _wait(url: str, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if _answers(url):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture
def watchdog(tmp_path: Path, free_port: int, linux_host: HostFacts,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WatchdogManager, str]]:
    paths = WatchdogPaths.in_dir(tmp_path / "state")
    paths.state_dir.mkdir()
    paths.env_file.write_text(f"OLLAMA_HOST=127.0.0.1:{free_port}\n"
                              f"OLLAMA_MODELS={tmp_path / 'models'}\n")
    monkeypatch.setenv("OLLAMACTL_STATE_DIR", str(paths.state_dir))
    host = HostFacts(**{**linux_host.__dict__, "init_system": "none"})
    manager = WatchdogManager(Context(host=host, runner=SystemRunner()), paths,
                              [sys.executable, "-m", "ollamactl", "serve"], stop_timeout_s=5)
    try:
        yield manager, f"http://127.0.0.1:{free_port}"
    finally:
        manager.stop()


def test_restarts_after_sigkill_and_stops_cleanly(watchdog: tuple[WatchdogManager, str]
                                                  ) -> None:
    manager, url = watchdog
    manager.start()
    _wait(url, 30)
    state = manager.status()
    assert state.active == "active" and state.pid is not None
    server = psutil.Process(state.pid)
    supervisor_pid = int(state.extra["watchdog_pid"])
    os.kill(server.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while _answers(url) and time.monotonic() - killed_at < 2:
        time.sleep(0.02)  # the old listener is gone once GET / fails
    _wait(url, 5)
    assert time.monotonic() - killed_at <= 5.0
    after = manager.status()
    assert after.pid not in (None, server.pid)
    saved = WatchdogState.load(manager.paths.state_file)
    assert saved is not None and saved.restarts == 1 and saved.last_exit == -signal.SIGKILL
    new_server = psutil.Process(after.pid)
    tree = [new_server, *new_server.children(recursive=True)]
    manager.stop()
    assert not _answers(url)
    for proc in [*tree, server]:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(supervisor_pid) or \
        psutil.Process(supervisor_pid).status() == psutil.STATUS_ZOMBIE
    assert manager.status().active == "inactive"
    assert not manager.paths.pid_file.exists()
    log = manager.paths.log_file.read_text()
    assert "server exited with signal SIGKILL; restarting in 1 s" in log
    assert "watchdog: stopped" in log


def test_logs_command_reads_the_watchdog_file(watchdog: tuple[WatchdogManager, str]) -> None:
    from typer.testing import CliRunner

    from ollamactl.cli.app import app

    manager, url = watchdog
    manager.start()
    _wait(url, 30)
    requests.get(url + "/api/version", timeout=5)
    manager.stop()
    runner = CliRunner()
    every = runner.invoke(app, ["logs"]).output.splitlines()
    assert any("watchdog: started server pid" in line for line in every)
    last_two = runner.invoke(app, ["logs", "-n", "2"]).output.splitlines()
    assert last_two == every[-2:]
    assert runner.invoke(app, ["logs", "--since", "@" + str(time.time() + 60)]).output == ""
    recent = runner.invoke(app, ["logs", "--since", "10m"]).output.splitlines()
    assert recent == every

"""The watchdog with the real `ollamactl serve`: start, answer, SIGKILL, answer again, clean stop,
and `ollamactl logs` from its file. Tmp state dir, free loopback port, nothing left behind."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import requests

from ollamactl.service.watchdog import WatchdogState
from tests.conftest import Cli, Watched

pytestmark = pytest.mark.integration


def test_restarts_after_sigkill_and_stops_cleanly(watchdog: Watched
                                                  ) -> None:
    manager = watchdog.manager
    manager.start()
    watchdog.wait_up(30)
    state = manager.status()
    assert state.active == "active" and state.pid is not None
    server = psutil.Process(state.pid)
    supervisor_pid = int(state.extra["watchdog_pid"])
    os.kill(server.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while watchdog.answers() and time.monotonic() - killed_at < 2:
        time.sleep(0.02)  # the old listener is gone once GET / fails
    watchdog.wait_up(5)
    assert time.monotonic() - killed_at <= 5.0
    after = manager.status()
    assert after.pid not in (None, server.pid)
    saved = WatchdogState.load(manager.paths.state_file)
    assert saved is not None and saved.restarts == 1 and saved.last_exit == -signal.SIGKILL
    new_server = psutil.Process(after.pid)
    tree = [new_server, *new_server.children(recursive=True)]
    manager.stop()
    assert not watchdog.answers()
    for proc in [*tree, server]:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(supervisor_pid) or \
        psutil.Process(supervisor_pid).status() == psutil.STATUS_ZOMBIE
    assert manager.status().active == "inactive"
    assert not manager.paths.pid_file.exists()
    log = manager.paths.log_file.read_text()
    assert "server exited with signal SIGKILL; restarting in 1 s" in log
    assert "watchdog: stopped" in log


def test_logs_command_reads_the_watchdog_file(watchdog: Watched, cli: Cli) -> None:
    manager = watchdog.manager
    manager.start()
    watchdog.wait_up(30)
    requests.get(watchdog.url + "/api/version", timeout=5)
    manager.stop()
    every = cli("logs").out.splitlines()
    assert any("watchdog: started server pid" in line for line in every)
    last_two = cli("logs", "-n", "2").out.splitlines()
    assert last_two == every[-2:]
    assert cli("logs", "--since", "@" + str(time.time() + 60)).out == ""
    recent = cli("logs", "--since", "10m").out.splitlines()
    assert recent == every

"""Shared fixtures: staging roots, the recording runner, free loopback ports, cache resets;
and the ``isolated`` marker, which runs a test in a forked child."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport
from _pytest.runner import runtestprotocol

from ollamactl import host as hostmod
from ollamactl.context import Context
from ollamactl.host import HostFacts
from ollamactl.system import RecordingRunner
from tests.integration import server_process


@pytest.fixture(autouse=True)
def _reset_caches() -> Iterator[None]:
    hostmod._detect_cached.cache_clear()
    yield
    hostmod._detect_cached.cache_clear()


@pytest.fixture
def linux_host() -> HostFacts:
    """A plain Debian 12 host with systemd, as root."""
    return HostFacts(os_name="linux", arch="amd64", machine="x86_64", distro_id="debian",
                     distro_version="12", distro_name="Debian GNU/Linux 12 (bookworm)",
                     init_system="systemd", wsl=0, container="", is_root=True, selinux="")


@pytest.fixture
def recorder() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def staging_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def ctx(linux_host: HostFacts, recorder: RecordingRunner, staging_root: Path) -> Context:
    return Context(host=linux_host, runner=recorder, root=staging_root)


@pytest.fixture
def free_port() -> int:
    return server_process.free_port()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """``@pytest.mark.isolated``: setup, call and teardown run in a fork of pytest, whose
    reports come back over a pipe; a child killed by a signal (SIGILL, SIGSEGV in llama.cpp)
    fails that test and the session goes on, with its servers in its hands."""
    if item.get_closest_marker("isolated") is None or not hasattr(os, "fork"):
        return None
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the test, send its reports, never return into pytest
        os.close(read_fd)
        status = 1
        try:
            # What the parent set up (a session server...) is the parent's to tear down: the
            # child tears down only what it set up itself.
            for finalizers, _ in item.session._setupstate.stack.values():
                finalizers.clear()
            reports = runtestprotocol(item, log=False, nextitem=None)
            data = [item.config.hook.pytest_report_to_serializable(config=item.config,
                                                                   report=r) for r in reports]
            with os.fdopen(write_fd, "w") as out:
                json.dump(data, out)
            status = 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        payload = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    reports = _child_reports(item, payload, wait_status)
    for report in reports:
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _child_reports(item: pytest.Item, payload: str, wait_status: int) -> list[Any]:
    try:
        data = json.loads(payload) if payload else None
    except ValueError:
        data = None
    if data is not None:
        return [item.config.hook.pytest_report_from_serializable(config=item.config, data=d)
                for d in data]
    if os.WIFSIGNALED(wait_status):
        how = f"died of {signal.Signals(os.WTERMSIG(wait_status)).name}"
    else:
        how = f"exited with status {os.waitstatus_to_exitcode(wait_status)}"
    return [TestReport(item.nodeid, item.location, {}, "failed",
                       f"the isolated test process {how}", "call")]

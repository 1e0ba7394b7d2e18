"""Fault injection: a runner SIGKILLed mid-stream, the server SIGKILLed mid-pull (and resumed),
a full disk during pull and create, `env set` killed between write and rename, and the
watchdog bringing a killed server back."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from starlette.testclient import TestClient

from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.store.models import MEDIA_MODEL, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST
from ollamactl.settings import load_server_config
from tests.adversarial.conftest import SMOLLM2, Reliability, Server
from tests.conftest import Watched
from tests.integration.server_process import (
    die_with_parent,
    free_port,
    running_server,
    smollm2_gguf,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _store_files(models: Path) -> list[str]:
    return sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file())


# -- a loopback registry that can send slowly ---------------------------------------------------

class SlowRegistry:
    """Serves one model (``library/tiny:latest``, the real SmolLM2 GGUF) with ranged reads;
    ``delay_s`` sleeps between 256 KiB chunks of the weights so a pull can be cut mid-way."""

    def __init__(self, model: bytes) -> None:
        config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
        self.blobs = {_digest(model): model, _digest(config): config}
        self.model_digest = _digest(model)
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": _digest(config),
                       "size": len(config)},
            "layers": [{"mediaType": MEDIA_MODEL, "digest": _digest(model),
                        "size": len(model)}]}).encode()
        self.delay_s = 0.0
        self.ranges: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if "/manifests/" in self.path:
                    body = registry.manifest
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = registry.blobs[self.path.rsplit("/", 1)[-1]]
                ranged = self.headers.get("Range", "")
                registry.ranges.append(ranged)
                start = int(ranged[6:].split("-")[0]) if ranged.startswith("bytes=") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                try:
                    for offset in range(start, len(data), 1 << 18):
                        self.wfile.write(data[offset:offset + (1 << 18)])
                        if registry.delay_s and len(data) > 1 << 20:
                            time.sleep(registry.delay_s)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.name = f"127.0.0.1:{self.server.server_port}/library/tiny"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SlowRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return smollm2_gguf().read_bytes()


# -- runner SIGKILL -----------------------------------------------------------------------------

def test_runner_sigkill_mid_stream(adv_server: Server, reliability: Reliability) -> None:
    response = requests.post(adv_server.url + "/api/generate", stream=True, timeout=120, json={
        "model": SMOLLM2, "prompt": "Count: 1, 2, 3,", "raw": True,
        "options": {"num_predict": 3000, "num_ctx": 4096}})
    lines = response.iter_lines()
    assert json.loads(next(lines))["done"] is False
    runners = adv_server.runners()
    assert len(runners) >= 1
    for runner in runners:
        os.kill(runner.pid, signal.SIGKILL)
    reliability.fault("runner SIGKILL mid-stream")
    rest = [json.loads(line) for line in lines if line]
    assert rest and "error" in rest[-1], rest[-3:]
    assert adv_server.is_alive()
    reply = adv_server.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi", "stream": False,
                                              "options": {"num_predict": 2, "num_ctx": 4096}})
    reliability.tried(2)
    assert reply.status_code == 200, reply.text
    assert {p.pid for p in adv_server.runners()}.isdisjoint({r.pid for r in runners})


# -- server SIGKILL mid-pull --------------------------------------------------------------------

def _start_server(models: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`ollamactl serve` that the test may SIGKILL (running_server expects a clean stop)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update({"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models),
                "NO_PROXY": "*"})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ollamactl", "serve"], env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/api/version", timeout=1).ok:
                return proc, url
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _pull_ignoring_errors(url: str, name: str) -> None:
    """The pull whose server is killed under it: its connection error is the expected end."""
    try:
        with requests.post(url + "/api/pull", json={"model": name, "insecure": True},
                           timeout=120, stream=True) as response:
            for _ in response.iter_lines():
                continue
    except requests.RequestException:
        return


def test_server_sigkill_mid_pull_then_resume(tmp_path: Path, model_bytes: bytes,
                                             reliability: Reliability) -> None:
    models = tmp_path / "models"
    with SlowRegistry(model_bytes) as registry:
        registry.delay_s = 0.02
        partial = models / "blobs" / (registry.model_digest.replace(":", "-") + "-partial")
        final = models / "blobs" / registry.model_digest.replace(":", "-")
        proc, url = _start_server(models, tmp_path / "first.log")
        try:
            puller = threading.Thread(target=_pull_ignoring_errors,
                                      args=(url, registry.name), daemon=True)
            puller.start()
            deadline = time.monotonic() + 60
            while not partial.exists() or partial.stat().st_size < 4 << 20:
                assert time.monotonic() < deadline, "the pull did not start"
                time.sleep(0.05)
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            reliability.fault("server SIGKILL mid-pull")
        finally:
            proc.kill()
            proc.wait()
        assert not psutil.wait_procs(children, timeout=5)[1]
        puller.join(10)
        cut_at = partial.stat().st_size
        assert 0 < cut_at < len(model_bytes)
        assert not final.exists()  # nothing half-written under the blob's real name
        assert not (models / "manifests").exists() or not _store_files(models / "manifests")
        registry.delay_s = 0.0
        with running_server(models, {}, tmp_path / "second.log") as (url, _):
            assert requests.get(url + "/api/tags", timeout=10).json() == {"models": []}
            done = requests.post(url + "/api/pull", timeout=300, json={
                "model": registry.name, "insecure": True, "stream": False})
            reliability.tried()
            assert done.status_code == 200 and done.json() == {"status": "success"}, done.text
            tags = requests.get(url + "/api/tags", timeout=10).json()["models"]
            assert [m["name"] for m in tags] == [f"{registry.name}:latest"]
        resumed = [int(r[6:].split("-")[0]) for r in registry.ranges if r]
        assert resumed and resumed[-1] > 0
        assert final.read_bytes() == model_bytes
        assert not partial.exists()


# -- disk full -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs (smaller than the 92 MiB SmolLM2) mounted under tmp_path."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.root
def test_disk_full_during_pull_and_create(small_disk: Path, model_bytes: bytes,
                                          reliability: Reliability) -> None:
    models = small_disk / "models"
    config = load_server_config({"OLLAMA_MODELS": str(models), "OLLAMA_HOST": "127.0.0.1:9"},
                                detect())
    with SlowRegistry(model_bytes) as registry, \
            TestClient(create_app(config), base_url="http://127.0.0.1:9") as client:
        pulled = client.post("/api/pull", json={"model": registry.name, "insecure": True,
                                                "stream": False})
        reliability.fault("disk full during pull")
        assert pulled.status_code == 500, pulled.text
        assert "no space left on device" in pulled.json()["error"].lower()
        assert not list(models.glob("manifests/**/latest"))
        assert not (models / "blobs" / registry.model_digest.replace(":", "-")).exists()

        for leftover in (models / "blobs").glob("*-partial"):
            leftover.unlink()  # what `ollamactl` prune would do at start-up after an hour
        uploaded = client.post(f"/api/blobs/{registry.model_digest}", content=model_bytes)
        reliability.fault("disk full during create (blob upload)")
        assert uploaded.status_code == 507, uploaded.text  # refused from its Content-Length
        assert "not enough disk space" in uploaded.json()["error"]
        chunked = client.post(f"/api/blobs/{registry.model_digest}",
                              content=iter([model_bytes[i:i + (1 << 20)]
                                            for i in range(0, len(model_bytes), 1 << 20)]))
        reliability.fault("disk full during create (chunked blob upload)")
        assert chunked.status_code == 507, chunked.text  # stopped with the margin still free
        assert [p.name for p in (models / "blobs").iterdir()
                if p.name.startswith(".tmp")] == []
        created = client.post("/api/create", json={
            "model": "full", "files": {"m.gguf": registry.model_digest}, "stream": False})
        assert created.status_code == 400 and "not found" in created.json()["error"]
        tags = client.get("/api/tags")
        assert tags.status_code == 200 and tags.json() == {"models": []}
        reliability.tried(4)
    usage = os.statvfs(small_disk)
    assert usage.f_bfree * usage.f_frsize > 40 << 20  # nothing stranded on the small disk


# -- env set killed between write and rename ------------------------------------------------------

_BLOCKING_REPLACE = """
import os, sys
gate = sys.argv[1]
real_replace = os.replace
def blocking_replace(src, dst, *args, **kwargs):
    if str(dst).endswith("ollama.env"):
        open(gate + ".reached", "w").close()
        open(gate).read()  # a FIFO nobody writes: blocks here until killed
    return real_replace(src, dst, *args, **kwargs)
os.replace = blocking_replace
sys.argv = ["ollamactl", "env", "set", "OLLAMA_KEEP_ALIVE", "10m", "--no-restart"]
from ollamactl.cli import main
main()
"""


def test_env_set_killed_before_rename_keeps_the_old_file(tmp_path: Path,
                                                         reliability: Reliability) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env_file = state / "ollama.env"
    old = "OLLAMA_HOST=127.0.0.1:11434\nOLLAMA_KEEP_ALIVE=5m\n"
    env_file.write_text(old)
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    env = {**os.environ, "OLLAMACTL_STATE_DIR": str(state)}
    child = subprocess.Popen([sys.executable, "-c", _BLOCKING_REPLACE, str(fifo)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not Path(str(fifo) + ".reached").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "env set never reached the rename"
            time.sleep(0.02)
        temps = [p for p in state.iterdir() if p.name != "ollama.env"]
        assert any("OLLAMA_KEEP_ALIVE=10m" in p.read_text() for p in temps)  # written, unrenamed
        child.kill()
        reliability.fault("env set SIGKILL between write and rename")
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    reliability.tried()
    assert env_file.read_text() == old
    assert child.returncode == -signal.SIGKILL


# -- the watchdog --------------------------------------------------------------------------------

def test_watchdog_brings_a_killed_server_back(watchdog: Watched,
                                              reliability: Reliability) -> None:
    manager = watchdog.manager
    try:
        manager.start()
        watchdog.wait_up(30)
        for kill in range(3):
            pid = manager.status().pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            reliability.fault(f"server SIGKILL under the watchdog #{kill + 1}")
            deadline = time.monotonic() + 30
            while manager.status().pid in (None, pid):
                assert time.monotonic() < deadline, "the watchdog did not restart the server"
                time.sleep(0.05)
            watchdog.wait_up(30)
            reliability.tried()
    finally:
        manager.stop()
    assert not watchdog.answers()

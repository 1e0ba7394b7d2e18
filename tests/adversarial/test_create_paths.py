"""/api/create naming server paths: nothing outside the store is ever opened.

The policy (CVE-2024-39719, -39721): the server reads only blobs in its own store. ``from`` must
be a model name, ``files`` maps file names to digests of blobs uploaded with
``POST /api/blobs/<digest>`` (streamed, hashed, published only when the digest matches), and the
legacy ``path``/``modelfile`` fields name nothing the server opens. The client (``ollamactl
create``) reads the Modelfile's FROM file itself, and only when it is a regular file. So
``/dev/random``, ``/dev/zero``, a FIFO, a directory, ``/etc/shadow`` or a missing path all fail at
once with an error that is the same whether the file exists or not, and the server keeps
answering while hostile creates and stalled uploads are in flight.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.adversarial.conftest import Reliability, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def hostile_paths(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(b"GGUF" + b"\0" * 60)
    return {"/dev/random": "/dev/random", "/dev/zero": "/dev/zero", "fifo": str(fifo),
            "directory": str(tmp_path), "/etc/shadow": "/etc/shadow",
            "regular file outside": str(outside), "missing": str(tmp_path / "nope.gguf")}


def _bodies(path: str) -> list[dict[str, object]]:
    return [{"model": "x", "from": path, "stream": False},
            {"name": "x", "path": path, "stream": False},
            {"model": "x", "modelfile": f"FROM {path}\n", "stream": False},
            {"model": "x", "files": {"model.gguf": path}, "stream": False},
            {"model": "x", "files": {path: "sha256:" + "0" * 64}, "stream": False}]


def _masked(text: str, path: str) -> str:
    return text.replace(path, "<path>")


def test_server_paths_are_never_read(adv_server: Server, hostile_paths: dict[str, str],
                                     reliability: Reliability) -> None:
    answers: dict[str, list[tuple[int, str]]] = {}

    def attempt(label: str, body: dict[str, object]) -> tuple[str, int, str, float]:
        started = time.monotonic()
        response = adv_server.post("/api/create", body, timeout=30)
        return label, response.status_code, response.text, time.monotonic() - started

    jobs = [(label, body) for label, path in hostile_paths.items() for body in _bodies(path)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(attempt, label, body) for label, body in jobs]
        while not all(f.done() for f in futures):  # the server answers while they run
            assert requests.get(adv_server.url + "/api/version", timeout=5).ok
            time.sleep(0.05)
        results = [f.result() for f in futures]
    for label, status, text, seconds in results:
        reliability.tried()
        assert status in (400, 404), (label, status, text)
        assert seconds < 10, (label, seconds)
        answers.setdefault(label, []).append((status, _masked(text, hostile_paths[label])))
        assert "/" + "tmp" not in text and "models" not in text, text
    # an existing file outside the store and a missing one look exactly the same
    assert answers["regular file outside"] == answers["missing"]
    assert answers["/etc/shadow"] == answers["missing"]
    assert not list((adv_server.models / "manifests").rglob("x"))
    assert adv_server.is_alive()


def test_cli_create_reads_only_regular_files(adv_server: Server, hostile_paths: dict[str, str],
                                             tmp_path: Path, reliability: Reliability) -> None:
    env = {**os.environ, "OLLAMA_HOST": adv_server.url, "NO_PROXY": "*"}
    for label in ("/dev/random", "/dev/zero", "fifo", "directory"):
        modelfile = tmp_path / f"Modelfile.{label.strip('/').replace('/', '_')}"
        modelfile.write_text(f"FROM {hostile_paths[label]}\n")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "ollamactl", "create", "x", "-f",
                                 str(modelfile)], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        reliability.tried()
        assert result.returncode != 0, (label, result.stdout)
        assert time.monotonic() - started < 30
        assert "not a regular file" in result.stderr or "is a folder" in result.stderr, \
            (label, result.stderr)
        assert "Traceback" not in result.stderr
    assert adv_server.is_alive()


def test_stalled_blob_uploads_do_not_starve_the_server(adv_server: Server,
                                                       reliability: Reliability) -> None:
    """More stalled uploads than the server has worker threads: other requests that need a
    worker thread (/api/tags, /api/show) are still answered, and the uploads leave no file."""
    host, port = adv_server.url.removeprefix("http://").split(":")
    sockets = []
    try:
        for number in range(48):
            sock = socket.create_connection((host, int(port)), timeout=10)
            digest = f"sha256:{number:064x}"
            sock.sendall(f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n"
                         f"Content-Length: 1000000\r\n\r\nGGUF".encode())
            sockets.append(sock)
        reliability.tried(len(sockets))
        reliability.held(f"{len(sockets)} stalled blob uploads")
        time.sleep(1)
        started = time.monotonic()
        assert requests.get(adv_server.url + "/api/tags", timeout=20).ok
        assert requests.post(adv_server.url + "/api/show", json={"model": "smollm2:135m"},
                             timeout=20).ok
        assert time.monotonic() - started < 20
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 20
    while any(p.name.startswith(".tmp") for p in (adv_server.models / "blobs").iterdir()):
        assert time.monotonic() < deadline, "temp files of aborted uploads were left"
        time.sleep(0.2)

"""Paths from requests: hostile digests and model names are refused before any filesystem access.

Two proofs: in process, a ``sys.addaudithook`` hook records every file event (open, listdir,
mkdir, rename, remove...) while each hostile request runs and none may name a path under the
test root (the store and the canary next to it); over HTTP against the real server, the canary
file beside the store and the store's own file list are unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.testclient import TestClient

from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_MODEL
from ollamactl.settings import load_server_config
from tests.adversarial.conftest import Reliability, Server
from tests.gguf_builder import tiny_model
from tests.integration.test_pull_registry import FakeRegistry, fake_registry, gguf_bytes

__all__ = ["fake_registry", "gguf_bytes"]  # fixtures reused from the registry tests

pytestmark = [pytest.mark.integration]

HEX64 = "0" * 64
HOSTILE_DIGESTS = [
    "sha256:../../canary.txt", "sha256-" + "0" * 63, "sha256:" + "0" * 65, "sha256:" + "0" * 63,
    "sha256%3A..%2F..%2Fcanary.txt", "..%2F..%2Fcanary.txt", "%2e%2e%2f%2e%2e%2fcanary.txt",
    "sha256:..%5C..%5Ccanary.txt", "sha256:..\\..\\canary.txt", "sha256:" + "0" * 63 + "\\",
    "sha256:" + HEX64 + "%00", "sha256:" + HEX64 + "%0a", "sha256:", "sha256", "",
    "md5:" + HEX64, "sha512:" + HEX64, "/etc/passwd", "%2Fetc%2Fpasswd",
    "sha256:" + HEX64 + "/..", "sha256:" + "g" * 64, " sha256:" + HEX64,
]
HOSTILE_NAMES = [
    "../../canary", "..", "a/../../b", "/etc/passwd", "registry.ollama.ai/library/../../x",
    "a\x00b", "m:\x00", "x" * 5000, "a//b", "a\\..\\b", "%2e%2e/x", "model:../../x",
    "h/ns/..", "../m:latest", "ns/./m", "a:b:c", "http://evil/../m", "file:///etc/passwd",
    "h/" + "n" * 81 + "/m", ".hidden", "-dash", "m:" + "t" * 81, "", " ", "a\nb",
]


def _name_requests(name: str) -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/api/pull", {"model": name, "stream": False}),
        ("POST", "/api/create", {"model": name, "from": "smollm2:135m", "stream": False}),
        ("POST", "/api/create", {"model": "ok", "from": name, "stream": False}),
        ("POST", "/api/show", {"model": name}),
        ("DELETE", "/api/delete", {"model": name}),
        ("POST", "/api/copy", {"source": name, "destination": "ok"}),
        ("POST", "/api/copy", {"source": "smollm2:135m", "destination": name}),
        ("POST", "/api/generate", {"model": name, "prompt": "x", "stream": False}),
        ("POST", "/api/chat", {"model": name, "messages": [{"role": "user", "content": "x"}]}),
        ("POST", "/api/embed", {"model": name, "input": "x"}),
        ("POST", "/v1/chat/completions", {"model": name,
                                          "messages": [{"role": "user", "content": "x"}]}),
    ]


def _digest_requests(digest: str) -> list[tuple[str, str, Any]]:
    return [
        ("HEAD", f"/api/blobs/{digest}", None),
        ("POST", f"/api/blobs/{digest}", b"GGUF"),
        ("POST", "/api/create", {"model": "ok", "files": {"m.gguf": digest}, "stream": False}),
    ]


FILE_NAME_REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/api/create", {"model": "ok", "files": {name: "sha256:" + HEX64}})
    for name in ("../../canary.txt", "/etc/passwd", "a/../../b.gguf", "..\\..\\x.gguf", "",
                 "./../x.gguf", "a/../../../b.gguf")
]

ALL_REQUESTS = ([r for d in HOSTILE_DIGESTS for r in _digest_requests(d)]
                + [r for n in HOSTILE_NAMES for r in _name_requests(n)] + FILE_NAME_REQUESTS)

FILE_EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.remove",
               "os.rmdir", "os.chmod", "os.chown", "os.truncate", "os.utime", "os.symlink",
               "os.link", "shutil.copyfile", "shutil.rmtree", "os.chdir"}


class FileAudit:
    """Records file events naming a path under ``watched`` while ``recording`` is set.

    Audit hooks cannot be removed, so one hook is installed per process and switched by a
    flag; only the thread pool and event loop of the app under test run while it is on.
    """

    _instance: FileAudit | None = None

    def __init__(self) -> None:
        self.watched: Path | None = None
        self.recording = threading.Event()
        self.hits: list[tuple[str, str]] = []

    @classmethod
    def get(cls) -> FileAudit:
        if cls._instance is None:
            cls._instance = cls()
            sys.addaudithook(cls._instance.hook)
        return cls._instance

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording.is_set() or event not in FILE_EVENTS or self.watched is None:
            return
        for arg in args[:2]:
            if isinstance(arg, bytes):
                arg = os.fsdecode(arg)
            if isinstance(arg, str | os.PathLike):
                text = os.fspath(arg)
                if text.startswith(str(self.watched)):
                    self.hits.append((event, text))


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[FileAudit]:
    audit = FileAudit.get()
    audit.watched = tmp_path
    audit.hits.clear()
    yield audit
    audit.recording.clear()
    audit.watched = None


def _send(client: Any, method: str, path: str, body: Any) -> Any:
    if isinstance(body, bytes):
        return client.request(method, path, content=body)
    if body is None:
        return client.request(method, path)
    return client.request(method, path, content=json.dumps(body).encode(),
                          headers={"content-type": "application/json"})


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """The app in this process over a store at ``tmp/models`` holding a tiny valid model,
    with ``tmp/canary.txt`` beside it."""
    models = tmp_path / "models"
    store = Store(models)
    digest = store.import_file(tiny_model(tmp_path / "tiny.gguf"))
    create_model(store, "smollm2:135m", model_digest=digest)
    (tmp_path / "tiny.gguf").unlink()
    (tmp_path / "canary.txt").write_text("canary\n")
    config = load_server_config({"OLLAMA_MODELS": str(models), "OLLAMA_HOST": "127.0.0.1:9"},
                                detect())
    with TestClient(create_app(config), base_url="http://127.0.0.1:9") as client:
        yield client, tmp_path


def test_hostile_digests_and_names_touch_no_file(in_process: tuple[TestClient, Path],
                                                 audit: FileAudit,
                                                 reliability: Reliability) -> None:
    client, _ = in_process
    for method, path, body in ALL_REQUESTS:
        audit.recording.set()
        try:
            response = _send(client, method, path, body)
        finally:
            audit.recording.clear()
        reliability.tried()
        assert response.status_code in (400, 404, 405), (method, path, body, response.text)
        assert "blob" not in response.text, (path, body, response.text)  # never looked up
        assert audit.hits == [], (method, path, body, audit.hits)
    audit.recording.set()  # control: a legitimate request is seen reading the store
    try:
        assert client.post("/api/show", json={"model": "smollm2:135m"}).status_code == 200
    finally:
        audit.recording.clear()
    assert any(event == "open" and "manifests" in path for event, path in audit.hits)


def test_rogue_registry_manifest_digests_write_nothing(
        in_process: tuple[TestClient, Path], audit: FileAudit, fake_registry: FakeRegistry,
        reliability: Reliability) -> None:
    """CVE-2024-37032: a manifest whose layer digests climb out of blobs/ is refused before a
    single byte is written, through /api/pull on the in-process app."""
    client, root = in_process
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for number, digest in enumerate(["../../../canary.txt", "sha256:../../canary.txt",
                                     "sha256-" + "0" * 63, "sha256:" + "0" * 64 + "/../../x",
                                     "/etc/passwd", "sha256:%2e%2e%2fcanary"]):
        manifest = {"schemaVersion": 2, "config": {"digest": "sha256:" + HEX64, "size": 2},
                    "layers": [{"mediaType": MEDIA_MODEL, "digest": digest, "size": 4}]}
        fake_registry.manifests[f"library/evil{number}/latest"] = json.dumps(manifest).encode()
        audit.recording.set()
        try:
            response = _send(client, "POST", "/api/pull", {
                "model": f"{fake_registry.url}/library/evil{number}", "insecure": True,
                "stream": False})
        finally:
            audit.recording.clear()
        reliability.tried()
        assert response.status_code >= 400, response.text
        assert "invalid" in response.json()["error"], response.text
        assert [hit for hit in audit.hits if not hit[1].startswith(str(root / "models"))] == []
        assert [hit for hit in audit.hits if hit[0] != "open" or "blobs" in hit[1]] == []
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (root / "canary.txt").read_text() == "canary\n"


@pytest.mark.slow
def test_real_server_leaves_canary_and_store_untouched(adv_server: Server,
                                                       reliability: Reliability) -> None:
    root = adv_server.models.parent
    canary = root / "canary.txt"
    canary_before = (canary.read_bytes(), canary.stat().st_mtime_ns)
    files_before = {p: p.stat().st_mtime_ns for p in adv_server.models.rglob("*") if p.is_file()}
    for method, path, body in ALL_REQUESTS:
        data = body if isinstance(body, bytes) else \
            None if body is None else json.dumps(body).encode()
        response = requests.request(method, adv_server.url + path, data=data, timeout=30)
        reliability.tried()
        assert response.status_code in (400, 404, 405), (method, path, body, response.text)
        assert "blob" not in response.text, (path, body, response.text)
    assert (canary.read_bytes(), canary.stat().st_mtime_ns) == canary_before
    files_after = {p: p.stat().st_mtime_ns for p in adv_server.models.rglob("*") if p.is_file()}
    assert files_after == files_before
    assert sorted(p.name for p in root.iterdir()) == ["canary.txt", "models", "server.log"]
    assert adv_server.is_alive()


def test_blob_digest_must_match_the_body(in_process: tuple[TestClient, Path],
                                         reliability: Reliability) -> None:
    """A well-formed digest that lies about the body leaves nothing visible in blobs/."""
    client, root = in_process
    body = b"GGUF" + b"\0" * 60
    lie = "sha256:" + hashlib.sha256(b"other").hexdigest()
    response = client.post(f"/api/blobs/{lie}", content=body)
    reliability.tried()
    assert response.status_code == 400 and "digest mismatch" in response.json()["error"]
    names = [p.name for p in (root / "models" / "blobs").iterdir()]
    assert not [n for n in names if lie[7:] in n or n.startswith(".tmp")]

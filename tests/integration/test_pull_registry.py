"""Pull from a registry this test starts on 127.0.0.1, serving the real SmolLM2 GGUF: progress,
resume after an interrupted transfer, corrupted blobs rejected, token realms, /api/pull, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from ollamactl.runtime.store import registry
from ollamactl.runtime.store.blobs import DigestMismatch
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_MODEL
from tests.integration.server_process import running_server, smollm2_gguf

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    """What the registry serves and what it saw."""

    blobs: dict[str, bytes]
    manifests: dict[str, bytes]
    cut_first_blob_at: int | None = None      # close the first transfer after this many bytes
    token: str | None = None                  # demand this bearer token
    realm: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)   # (path, Range header)
    url: str = ""
    cdn: str = ""                              # redirect blob requests to this base URL
    cdn_auth: list[str] = field(default_factory=list)   # Authorization headers the CDN saw


@pytest.fixture(scope="module")
def gguf_bytes() -> bytes:
    return smollm2_gguf().read_bytes()


def _manifest(model: bytes, config: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_MODEL, "digest": _digest(model), "size": len(model)}],
    }).encode()


@pytest.fixture
def fake_registry(gguf_bytes: bytes) -> Iterator[FakeRegistry]:
    config = json.dumps({"model_format": "gguf", "model_family": "llama",
                         "model_type": "135M", "file_type": "Q4_1"}).encode()
    state = FakeRegistry(blobs={_digest(gguf_bytes): gguf_bytes, _digest(config): config},
                         manifests={"library/tiny/latest": _manifest(gguf_bytes, config)})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range", "")))
            if self.path.startswith("/cdn/"):
                state.cdn_auth.append(self.headers.get("Authorization", ""))
                data = state.blobs[self.path.rsplit("/", 1)[-1]]
                self._send(200, data)
                return
            if self.path.startswith("/token"):
                self._send(200, json.dumps({"token": state.token}).encode())
                return
            if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                self._send(401, b"", {"WWW-Authenticate": f'Bearer realm="{state.realm}",'
                                      'service="fake",scope="repository:library/tiny:pull"'})
                return
            parts = self.path.split("/")
            if self.path.startswith("/v2/") and parts[-2] == "manifests":
                key = f"{parts[2]}/{parts[3]}/{parts[-1]}"
                if key not in state.manifests:
                    self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                    return
                self._send(200, state.manifests[key])
                return
            if state.cdn and "/blobs/" in self.path:
                self._send(307, b"", {"Location": f"{state.cdn}/cdn/{parts[-1]}"})
                return
            data = state.blobs.get(parts[-1])
            if data is None:
                self._send(404, b"")
                return
            start = 0
            if (ranged := self.headers.get("Range", "")).startswith("bytes="):
                start = int(ranged[6:].split("-")[0])
            if state.cut_first_blob_at is not None and len(data) > 1 << 20 and not start:
                cut, state.cut_first_blob_at = state.cut_first_blob_at, None
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} \
                if start else {}
            self._send(206 if start else 200, data[start:], headers)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"127.0.0.1:{server.server_port}"
    state.realm = f"http://{state.url}/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _leftovers(store: Store) -> list[str]:
    blobs = store.root / "blobs"
    return sorted(p.name for p in blobs.iterdir()) if blobs.exists() else []


def test_pull_with_progress(tmp_path: Path, fake_registry: FakeRegistry,
                            gguf_bytes: bytes) -> None:
    store = Store(tmp_path / "models")
    seen: list[tuple[str, int | None, int | None]] = []
    model = registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True,
                          progress=lambda s, c, t: seen.append((s, c, t)))
    assert model.name.display == f"{fake_registry.url}/library/tiny:latest"
    assert model.model_path.read_bytes() == gguf_bytes
    statuses = [s for s, _, _ in seen]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    layer = f"pulling {_digest(gguf_bytes)[7:19]}"
    counts = [c for s, c, t in seen if s == layer]
    assert counts == sorted(counts) and counts[-1] == len(gguf_bytes) and len(counts) > 5
    assert not [name for name in _leftovers(store) if "partial" in name or ".tmp" in name]
    again = registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True)
    assert again.manifest_digest == model.manifest_digest
    assert sum(1 for path, _ in fake_registry.requests if "/blobs/" in path) == 2


def test_interrupted_download_resumes_from_the_partial(tmp_path: Path,
                                                       fake_registry: FakeRegistry,
                                                       gguf_bytes: bytes) -> None:
    half = len(gguf_bytes) // 2
    fake_registry.cut_first_blob_at = half
    store = Store(tmp_path / "models")
    model = registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True)
    assert model.model_path.read_bytes() == gguf_bytes
    blob_requests = [r for p, r in fake_registry.requests if _digest(gguf_bytes) in p]
    assert blob_requests[0] == ""
    assert blob_requests[1].startswith("bytes=") and int(blob_requests[1][6:-1]) >= half // 2
    assert not [name for name in _leftovers(store) if "partial" in name]


def test_corrupted_blob_is_rejected_and_nothing_is_left(tmp_path: Path,
                                                        fake_registry: FakeRegistry,
                                                        gguf_bytes: bytes) -> None:
    digest = _digest(gguf_bytes)
    corrupted = bytearray(gguf_bytes)
    corrupted[len(corrupted) // 2] ^= 0xFF
    fake_registry.blobs[digest] = bytes(corrupted)
    store = Store(tmp_path / "models")
    with pytest.raises(DigestMismatch):
        registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True)
    assert not store.has_blob(digest)
    assert not [n for n in _leftovers(store) if digest[7:] in n or ".tmp" in n]
    assert not (store.root / "manifests").exists() or \
        not any(p.is_file() for p in (store.root / "manifests").rglob("*"))


def test_unknown_model_and_plain_https(tmp_path: Path, fake_registry: FakeRegistry) -> None:
    store = Store(tmp_path / "models")
    with pytest.raises(registry.RegistryError, match="file does not exist"):
        registry.pull(store, f"{fake_registry.url}/library/missing", insecure=True)
    with pytest.raises(registry.RegistryError, match="cannot reach registry https://"):
        registry.pull(store, f"{fake_registry.url}/library/tiny")  # https to an http server


def test_token_realm_on_the_registry_host_is_followed(tmp_path: Path,
                                                      fake_registry: FakeRegistry) -> None:
    fake_registry.token = "s3cret"
    store = Store(tmp_path / "models")
    registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True)
    token_requests = [p for p, _ in fake_registry.requests if p.startswith("/token")]
    assert len(token_requests) == 1 and "scope=repository" in token_requests[0]


def test_blob_redirect_to_another_host_gets_no_token(tmp_path: Path,
                                                     fake_registry: FakeRegistry,
                                                     gguf_bytes: bytes) -> None:
    fake_registry.token = "s3cret"
    fake_registry.cdn = f"http://localhost:{fake_registry.url.rsplit(':', 1)[1]}"
    store = Store(tmp_path / "models")
    model = registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True)
    assert model.model_path.read_bytes() == gguf_bytes
    assert fake_registry.cdn_auth == ["", ""]


def test_token_realm_on_another_host_is_refused(tmp_path: Path,
                                                fake_registry: FakeRegistry) -> None:
    fake_registry.token = "s3cret"
    fake_registry.realm = "http://evil.example/token"
    store = Store(tmp_path / "models")
    with pytest.raises(registry.RegistryError, match="another host"):
        registry.pull(store, f"{fake_registry.url}/library/tiny", insecure=True)
    assert not [p for p, _ in fake_registry.requests if p.startswith("/token")]


def test_api_pull_and_cli_pull_through_the_server(tmp_path: Path,
                                                  fake_registry: FakeRegistry) -> None:
    models = tmp_path / "models"
    with running_server(models, {}, tmp_path / "server.log") as (url, _):
        name = f"{fake_registry.url}/library/tiny"
        lines = [json.loads(line) for line in requests.post(
            f"{url}/api/pull", json={"model": name, "insecure": True}, stream=True,
            timeout=120).iter_lines() if line]
        assert lines[0] == {"status": "pulling manifest"}
        assert lines[-1] == {"status": "success"}
        assert any("completed" in line and "total" in line for line in lines)
        missing = requests.post(f"{url}/api/pull", json={
            "model": f"{fake_registry.url}/library/missing", "insecure": True,
            "stream": False}, timeout=30)
        assert missing.status_code == 500
        assert missing.json() == {"error": "pull model manifest: file does not exist"}
        env = {**os.environ, "OLLAMA_HOST": url.removeprefix("http://")}
        cli = subprocess.run([sys.executable, "-m", "ollamactl", "pull", name, "--insecure"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert "success" in cli.stderr + cli.stdout
        tags = requests.get(f"{url}/api/tags", timeout=10).json()["models"]
        assert [m["name"] for m in tags] == [f"{name}:latest"]


def test_bad_digest_is_400_before_any_file_access(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with running_server(models, {}, tmp_path / "server.log") as (url, _):
        for digest in ("sha256:abc", "sha256-" + "g" * 64, "sha256:..", "md5:" + "0" * 64,
                       "sha256:" + "0" * 64 + "x", "sha256:" + "0" * 63 + "%00"):
            head = requests.head(f"{url}/api/blobs/{digest}", timeout=10)
            post = requests.post(f"{url}/api/blobs/{digest}", data=b"x", timeout=10)
            assert head.status_code == 400 and post.status_code == 400, digest
            assert post.json() == {"error": "invalid digest format"}
        for traversal in ("..%2F..%2Fetc%2Fpasswd", "sha256:" + "0" * 63 + "%2F"):
            # an encoded slash never reaches the blob route at all
            assert requests.post(f"{url}/api/blobs/{traversal}", data=b"x",
                                 timeout=10).status_code in (400, 404)
    assert not (models / "blobs").exists() or not any((models / "blobs").iterdir())

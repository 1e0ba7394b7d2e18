"""Pull from a registry this test starts on 127.0.0.1, serving the real SmolLM2 GGUF: progress,
resume after an interrupted transfer, corrupted blobs rejected, token realms, /api/pull, CLI;
and push to it (Docker v2 uploads): /api/push, `ollamactl push`, the official client's push,
then pulled back into a fresh store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from ollamactl.runtime.store import registry
from ollamactl.runtime.store.blobs import DigestMismatch
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_MODEL
from tests.gguf_builder import tiny_model
from tests.integration.server_process import running_server, smollm2_gguf, wait_for

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
    uploads: dict[str, bytearray] = field(default_factory=dict)    # upload id -> bytes so far
    pushes: list[tuple[str, str]] = field(default_factory=list)   # (method, path) of uploads
    repo_blobs: set[tuple[str, str]] = field(default_factory=set)   # (namespace/model, digest)
    slow: bool = False                         # send big blobs 64 KiB every 20 ms
    aborted: threading.Event = field(default_factory=threading.Event)  # a reader left mid-blob


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
            if state.slow and len(data) > 1 << 20:
                self._trickle(206 if start else 200, data[start:], headers)
                return
            self._send(206 if start else 200, data[start:], headers)

        def _trickle(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for at in range(0, len(body), 1 << 16):
                    self.wfile.write(body[at:at + (1 << 16)])
                    self.wfile.flush()
                    time.sleep(0.02)
            except (BrokenPipeError, ConnectionResetError):
                state.aborted.set()
                self.close_connection = True

        def _push_allowed(self) -> bool:
            state.pushes.append((self.command, self.path))
            if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
                self._send(401, b"", {"WWW-Authenticate": f'Bearer realm="{state.realm}",'
                                      'service="fake",scope="repository:me/tiny:push,pull"'})
                return False
            return True

        def do_HEAD(self) -> None:
            if self._push_allowed():
                repository, digest = "/".join(self.path.split("/")[2:4]), \
                    self.path.rsplit("/", 1)[-1]
                self._send(200 if (repository, digest) in state.repo_blobs else 404, b"")

        def do_POST(self) -> None:
            if not self._push_allowed():
                return
            repository = "/".join(self.path.split("/")[2:4])
            query = parse_qs(self.path.partition("?")[2])
            if "mount" in query and (query["from"][0], query["mount"][0]) in state.repo_blobs:
                state.repo_blobs.add((repository, query["mount"][0]))
                self._send(201, b"")
                return
            upload = f"u{len(state.uploads)}"
            state.uploads[upload] = bytearray()
            self._send(202, b"", {"Docker-Upload-Location":
                                  f"/v2/{repository}/blobs/uploads/{upload}?_s=0"})

        def do_PATCH(self) -> None:
            if not self._push_allowed():
                return
            path = self.path.partition("?")[0]
            received = state.uploads[path.rsplit("/", 1)[-1]]
            data = self.rfile.read(int(self.headers["Content-Length"]))
            if int(self.headers["Content-Range"].split("-")[0]) != len(received):
                self._send(416, b"")
                return
            received += data
            self._send(202, b"", {"Location": f"{path}?_s={len(received)}",
                                  "Range": f"0-{len(received) - 1}"})

        def do_PUT(self) -> None:
            if not self._push_allowed():
                return
            path, _, query = self.path.partition("?")
            parts = path.split("/")
            if parts[-2] == "manifests":
                body = self.rfile.read(int(self.headers["Content-Length"]))
                state.manifests[f"{parts[2]}/{parts[3]}/{parts[-1]}"] = body
                self._send(201, b"")
                return
            data = bytes(state.uploads.pop(parts[-1]))
            digest = parse_qs(query)["digest"][0]
            if _digest(data) != digest:
                self._send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                return
            state.blobs[digest] = data
            state.repo_blobs.add((f"{parts[2]}/{parts[3]}", digest))
            self._send(201, b"")

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
                          progress=lambda s, c, t, digest=None: seen.append((s, c, t)))
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


def test_a_pull_whose_client_leaves_stops_and_resumes_later(tmp_path: Path,
                                                           fake_registry: FakeRegistry,
                                                           gguf_bytes: bytes) -> None:
    """As Ollama's request context does: the download stops when the client hangs up (the
    registry sees its reader leave), the partial blob stays, and the next pull resumes it."""
    models = tmp_path / "models"
    name = f"{fake_registry.url}/library/tiny"
    fake_registry.slow = True
    with running_server(models, {}, tmp_path / "server.log") as (url, _):
        with requests.post(f"{url}/api/pull", json={"model": name, "insecure": True},
                           stream=True, timeout=60) as reply:
            for line in reply.iter_lines():
                if line and json.loads(line).get("completed", 0) > 0:
                    break               # bytes are flowing: hang up
        assert fake_registry.aborted.wait(20), "the server kept downloading"
        wait_for(lambda: "POST /api/pull stopped: the client left" in
                 (tmp_path / "server.log").read_text(), timeout_s=10)
        assert requests.get(f"{url}/api/tags", timeout=10).json()["models"] == []
        fake_registry.slow = False
        done = requests.post(f"{url}/api/pull", json={"model": name, "insecure": True,
                                                      "stream": False}, timeout=120)
        assert done.status_code == 200 and done.json() == {"status": "success"}
    ranges = [r for p, r in fake_registry.requests if _digest(gguf_bytes) in p]
    assert ranges[0] == "" and ranges[-1].startswith("bytes=") and int(ranges[-1][6:-1]) > 0


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


# -- push ---------------------------------------------------------------------------------------

def _layer_frames(lines: list[dict[str, Any]], verb: str) -> dict[str, list[dict[str, Any]]]:
    """The byte-count frames of each layer, by digest; each names its layer in its status."""
    frames: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if str(line.get("status", "")).startswith(f"{verb} ") and "digest" in line:
            assert line["status"] == f"{verb} {line['digest'][7:19]}"
            frames.setdefault(line["digest"], []).append(line)
    return frames


def _check_layer_frames(frames: dict[str, list[dict[str, Any]]],
                        sizes: dict[str, int]) -> None:
    assert set(frames) == set(sizes)
    for digest, layer in frames.items():
        assert all(frame["total"] == sizes[digest] for frame in layer)
        done = [frame.get("completed", 0) for frame in layer]
        assert done == sorted(done) and done[-1] == sizes[digest]


def _blob_sizes(manifest: bytes) -> dict[str, int]:
    data = json.loads(manifest)
    return {item["digest"]: item["size"] for item in [*data["layers"], data["config"]]}


def test_push_through_the_api_the_cli_and_the_ollama_client_then_pull_back(
        tmp_path: Path, fake_registry: FakeRegistry) -> None:
    import ollama

    from ollamactl.runtime.store.create import create_model

    models = tmp_path / "models"
    store = Store(models)
    name = f"{fake_registry.url}/me/tiny:v1"
    create_model(store, name, model_digest=store.import_file(smollm2_gguf()),
                 system="You are tiny.")
    local = store.resolve(name)
    assert local.manifest_path is not None
    manifest = local.manifest_path.read_bytes()
    sizes = _blob_sizes(manifest)
    with running_server(models, {}, tmp_path / "server.log") as (url, _):
        lines = [json.loads(line) for line in requests.post(
            f"{url}/api/push", json={"model": name, "insecure": True}, stream=True,
            timeout=120).iter_lines() if line]
        assert lines[0] == {"status": "retrieving manifest"}
        assert lines[-2:] == [{"status": "pushing manifest"}, {"status": "success"}]
        _check_layer_frames(_layer_frames(lines, "pushing"), sizes)
        assert fake_registry.manifests["me/tiny/v1"] == manifest
        assert all(fake_registry.blobs[digest] == store.blob_path(digest).read_bytes()
                   for digest in sizes)
        assert not fake_registry.uploads

        env = {**os.environ, "OLLAMA_HOST": url.removeprefix("http://"), "NO_PROXY": "*"}
        uploads = len([p for p in fake_registry.pushes if p[0] == "POST"])
        cli = subprocess.run([sys.executable, "-m", "ollamactl", "push", name, "--insecure"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert "success" in cli.stderr
        assert len([p for p in fake_registry.pushes if p[0] == "POST"]) == uploads  # all there

        requests.post(f"{url}/api/copy", json={"source": name,
                                               "destination": f"{fake_registry.url}/me/tiny:v2"},
                      timeout=10).raise_for_status()
        with ollama.Client(host=url) as official:
            frames = list(official.push(f"{fake_registry.url}/me/tiny:v2", insecure=True,
                                        stream=True))
        assert frames[-1].status == "success"
        assert {f.digest for f in frames if f.digest} == set(sizes)
        assert fake_registry.manifests["me/tiny/v2"] == manifest

        missing = requests.post(f"{url}/api/push", json={
            "model": f"{fake_registry.url}/me/nothing", "insecure": True}, timeout=10)
        assert missing.status_code == 404
        assert missing.json() == {"error": f"model '{fake_registry.url}/me/nothing' not found"}
        refused = subprocess.run([sys.executable, "-m", "ollamactl", "push",
                                  f"{fake_registry.url}/me/nothing", "--insecure"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "not found" in refused.stderr
        assert "Traceback" not in refused.stderr

        # Gone here, pulled back through the API: each layer's frames name it and count up.
        requests.delete(f"{url}/api/delete", json={"model": name},
                        timeout=10).raise_for_status()
        requests.delete(f"{url}/api/delete", json={"model": f"{fake_registry.url}/me/tiny:v2"},
                        timeout=10).raise_for_status()
        assert not any(store.has_blob(digest) for digest in sizes)
        pulled = [json.loads(line) for line in requests.post(
            f"{url}/api/pull", json={"model": name, "insecure": True}, stream=True,
            timeout=120).iter_lines() if line]
        assert pulled[0] == {"status": "pulling manifest"}
        assert pulled[-1] == {"status": "success"}
        _check_layer_frames(_layer_frames(pulled, "pulling"), sizes)
        assert store.resolve(name).manifest_digest == local.manifest_digest

    fresh = registry.pull(Store(tmp_path / "fresh"), name, insecure=True)
    assert fresh.manifest_digest == local.manifest_digest
    assert fresh.model_path is not None
    assert fresh.model_path.read_bytes() == smollm2_gguf().read_bytes()


def test_push_with_a_bearer_token(tmp_path: Path, fake_registry: FakeRegistry) -> None:
    from ollamactl.runtime.store.create import create_model
    from ollamactl.runtime.store.push import push

    fake_registry.token = "s3cret"
    store = Store(tmp_path / "models")
    name = f"{fake_registry.url}/me/tiny"
    create_model(store, name, model_digest=store.import_file(tiny_model(tmp_path / "t.gguf")))
    seen: list[str] = []
    push(store, name, insecure=True, progress=lambda s, c, t, digest=None: seen.append(s))
    assert seen[0] == "retrieving manifest" and seen[-1] == "success"
    assert "me/tiny/latest" in fake_registry.manifests
    assert len([p for p, _ in fake_registry.requests if p.startswith("/token")]) == 1
    assert fake_registry.pushes[0][0] == "HEAD"


def test_push_mounts_the_layers_of_the_model_it_came_from(tmp_path: Path,
                                                          fake_registry: FakeRegistry) -> None:
    from ollamactl.runtime.store.create import create_model
    from ollamactl.runtime.store.push import push

    store = Store(tmp_path / "models")
    base = f"{fake_registry.url}/me/base"
    create_model(store, base, model_digest=store.import_file(tiny_model(tmp_path / "t.gguf")))
    push(store, base, insecure=True)
    child = create_model(store, f"{fake_registry.url}/me/child", from_model=base, system="s")
    weights = child.layers[0]
    assert weights.from_model == f"{base}:latest"
    fake_registry.pushes.clear()
    seen: list[tuple[str, int | None, str | None]] = []
    push(store, f"{fake_registry.url}/me/child", insecure=True,
         progress=lambda s, c, t, digest=None: seen.append((s, c, digest)))
    mounts = [path for method, path in fake_registry.pushes if method == "POST" and
              f"mount={weights.digest.replace(':', '%3A')}&from=me%2Fbase" in path]
    assert len(mounts) == 1
    assert (f"pushing {weights.digest[7:19]}", weights.size, weights.digest) in seen
    assert not [path for method, path in fake_registry.pushes
                if method == "PATCH" and "child" in path and weights.digest in path]
    assert ("me/child", weights.digest) in fake_registry.repo_blobs

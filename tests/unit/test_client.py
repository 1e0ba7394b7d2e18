"""ollamactl.client against a real tiny HTTP server on 127.0.0.1: answers, errors, streams,
401, timeouts and refused connections, as the CLI, status, install, doctor and fleet meet them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import ollamactl
from ollamactl import __version__
from ollamactl.client import Client, HttpAnswer, ServerVersion, bind_address, client_url
from ollamactl.errors import ApiRequestFailed, ModelMissing, ServerUnreachable, Unauthorized
from tests.loopback import serving

Body = bytes | list[bytes]   # one body, or NDJSON lines sent (and flushed) one by one
CUT = b"<cut>"               # in a list of lines: close the connection there


@dataclass
class Routes:
    """What the stub answers, per ``METHOD /path``, and what it was asked."""

    answers: dict[str, tuple[int, Body]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)


def _handler(routes: Routes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            key = f"{self.command} {self.path}"
            routes.seen.append((self.command, self.path, dict(self.headers), body))
            if key in routes.hang:
                routes.release.wait(10)
            status, payload = routes.answers.get(key, (404, b"404 page not found"))
            self.send_response(status)
            if isinstance(payload, list):
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in payload:
                    if line == CUT:   # the server dies mid-answer: no final chunk
                        self.close_connection = True
                        return
                    chunk = line + b"\n"
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_HEAD = _answer

        def log_message(self, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def stub() -> Iterator[tuple[Routes, str]]:
    routes = Routes()
    with serving(_handler(routes)) as port:
        try:
            yield routes, f"http://127.0.0.1:{port}"
        finally:
            routes.release.set()


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


# -- where a client connects ----------------------------------------------------------------------

def test_client_url_and_bind_address_read_ollama_host_as_a_client_does() -> None:
    assert client_url({}) == "http://127.0.0.1:11434"
    assert client_url({"OLLAMA_HOST": "0.0.0.0:8080"}) == "http://127.0.0.1:8080"
    assert client_url({"OLLAMA_HOST": "[::]:8080"}) == "http://[::1]:8080"
    assert bind_address({"OLLAMA_HOST": ":8080"}) == "0.0.0.0:8080"
    assert bind_address({}) == "127.0.0.1:11434"
    assert Client(environ={"OLLAMA_HOST": "0.0.0.0:9"}).base_url == "http://127.0.0.1:9"
    assert Client("http://gpu1:11434/").base_url == "http://gpu1:11434"


# -- health ---------------------------------------------------------------------------------------

def test_heartbeat_up_and_down(stub: tuple[Routes, str], free_port: int) -> None:
    routes, url = stub
    routes.answers["GET /"] = (200, b"Ollama is running")
    with Client(url) as client:
        client.heartbeat()
        assert client.wait_until_up(5) < 5
    down = f"http://127.0.0.1:{free_port}"
    with Client(down) as client, pytest.raises(ServerUnreachable) as info:
        client.heartbeat()
    assert info.value.url == down and info.value.reason == "connection refused"
    assert str(info.value) == f"could not connect to ollama server at {down} (connection refused)"
    with Client(down) as client, pytest.raises(ServerUnreachable, match=r"no answer within 0\.3 s"):
        client.wait_until_up(0.3, poll_s=0.05)


def test_heartbeat_other_status_is_an_api_failure(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["GET /"] = (502, b"<html>bad gateway</html>")
    with Client(url) as client, pytest.raises(ApiRequestFailed) as info:
        client.heartbeat()
    assert (info.value.status, str(info.value)) == (502, "GET / answered HTTP 502")


def test_version_of_ollamactl_and_of_ollama(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["GET /api/version"] = (200, _json({"version": "0.33.0",
                                                      "ollamactl": __version__}))
    with Client(url) as client:
        own = client.version()
        assert own == ServerVersion("0.33.0", __version__) and own.is_this_ollamactl
        assert str(own) == f"ollamactl {__version__}, Ollama API 0.33.0"
        routes.answers["GET /api/version"] = (200, _json({"version": "0.12.0"}))
        other = client.version()
        assert (str(other), other.is_this_ollamactl) == ("Ollama 0.12.0", False)
        routes.answers["GET /api/version"] = (200, b"<html>a captive portal</html>")
        with pytest.raises(ApiRequestFailed, match="not JSON"):
            client.version()
        routes.answers["GET /api/version"] = (200, b'{"name": "something else"}')
        with pytest.raises(ApiRequestFailed, match="names no version"):
            client.version()
    assert ServerVersion.from_json(["0.1"]) is None


# -- errors ---------------------------------------------------------------------------------------

def test_404_not_found_about_a_model_is_model_missing(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["POST /api/show"] = (404, _json({"error": "model 'nope' not found"}))
    with Client(url) as client, pytest.raises(ModelMissing) as info:
        client.show("nope")
    assert str(info.value) == "model 'nope' not found"
    assert info.value.hint and "ollamactl pull" in info.value.hint
    assert routes.seen[-1][3] == {"model": "nope"}


def test_401_is_unauthorized_and_a_token_is_sent(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["GET /"] = (401, _json({"error": "unauthorized"}))
    routes.answers["GET /api/ps"] = (401, _json({"error": "unauthorized"}))
    with Client(url, token="right") as client:
        with pytest.raises(Unauthorized) as info:
            client.heartbeat()
        assert info.value.status == 401 and url in str(info.value)
        with pytest.raises(Unauthorized):
            client.ps()
        assert client.get("/").status == 401   # get() reports, never raises
    assert routes.seen[0][2].get("Authorization") == "Bearer right"


def test_an_error_body_is_an_api_failure_with_the_servers_text(
        stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["POST /api/copy"] = (400, _json({"error": 'destination "x y" is invalid'}))
    routes.answers["GET /api/tags"] = (500, b"internal trouble")
    with Client(url) as client:
        with pytest.raises(ApiRequestFailed) as info:
            client.copy("a", "x y")
        assert (info.value.status, str(info.value)) == (400, 'destination "x y" is invalid')
        assert not isinstance(info.value, ModelMissing)
        with pytest.raises(ApiRequestFailed) as plain:
            client.tags()
        assert (plain.value.status, str(plain.value)) == (500, "internal trouble")


def test_a_read_timeout_is_unreachable_naming_the_url(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.hang.add("GET /api/ps")
    with Client(url, connect_timeout_s=1, read_timeout_s=0.3) as client:
        with pytest.raises(ServerUnreachable) as info:
            client.ps()
        assert info.value.url == url
        assert str(info.value) == (f"could not connect to ollama server at {url} "
                                   "(no answer within 0.3 s)")
        answer = client.get("/api/ps")
    assert answer == HttpAnswer(f"{url}/api/ps", None, error="no answer within 0.3 s")


def test_get_reports_status_and_body_without_raising(stub: tuple[Routes, str],
                                                     free_port: int) -> None:
    routes, url = stub
    routes.answers["GET /api/ps"] = (200, _json({"models": []}))
    with Client(url) as client:
        ok = client.get("/api/ps")
        missing = client.get("/nothing")
    assert (ok.status, ok.json()) == (200, {"models": []})
    assert (missing.status, missing.body, missing.json()) == (404, "404 page not found", None)
    with Client(f"http://127.0.0.1:{free_port}", connect_timeout_s=0.5) as client:
        refused = client.get("/")
    assert (refused.status, refused.error) == (None, "connection refused")


def test_a_proxy_in_the_environment_never_sees_the_traffic(
        stub: tuple[Routes, str], free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    routes, url = stub
    routes.answers["GET /"] = (200, b"Ollama is running")
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port}")   # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Client(url) as client:
        client.heartbeat()


# -- streams --------------------------------------------------------------------------------------

def test_pull_streams_progress_in_order(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    steps = [{"status": "pulling manifest"},
             {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 4},
             {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 10},
             {"status": "success"}]
    routes.answers["POST /api/pull"] = (200, [_json(s) for s in steps])
    with Client(url) as client:
        assert list(client.pull("smollm2:135m")) == steps
    assert routes.seen[-1][3] == {"model": "smollm2:135m", "insecure": False}


def test_an_error_line_in_a_stream_raises_the_servers_text(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["POST /api/create"] = (200, [_json({"status": "parsing GGUF"}),
                                                _json({"error": "invalid model file: short"})])
    seen = []
    with Client(url) as client, pytest.raises(ApiRequestFailed, match="invalid model file"):
        for item in client.create("m", files={"m.gguf": "sha256:00"}, system="Be brief."):
            seen.append(item)
    assert seen == [{"status": "parsing GGUF"}]
    assert routes.seen[-1][3] == {"model": "m", "system": "Be brief.",
                                  "files": {"m.gguf": "sha256:00"}}


def test_a_stream_cut_mid_answer_is_unreachable(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["POST /api/pull"] = (200, [_json({"status": "pulling manifest"}), CUT])
    seen = []
    with Client(url) as client, pytest.raises(ServerUnreachable) as info:
        for item in client.pull("m"):
            seen.append(item)
    assert seen == [{"status": "pulling manifest"}]
    assert (info.value.url, info.value.reason) == (url, "the connection broke mid-answer")


def test_generate_and_chat_streaming_and_not(stub: tuple[Routes, str]) -> None:
    routes, url = stub
    routes.answers["POST /api/generate"] = (200, _json({"response": "Hi", "done": True}))
    routes.answers["POST /api/chat"] = (200, [
        _json({"message": {"role": "assistant", "content": "He"}, "done": False}),
        _json({"message": {"role": "assistant", "content": "llo"}, "done": True})])
    messages = [{"role": "user", "content": "hello"}]
    with Client(url) as client:
        assert client.generate("m", "Say hi", options={"num_ctx": 4096}) == {
            "response": "Hi", "done": True}
        pieces = [i["message"]["content"] for i in client.chat("m", messages, stream=True,
                                                                 format="json")]
        assert client.load("m")["done"] is True
        client.unload("m")
    assert pieces == ["He", "llo"]
    bodies = [body for _, _, _, body in routes.seen]
    assert bodies == [
        {"model": "m", "prompt": "Say hi", "stream": False, "options": {"num_ctx": 4096}},
        {"model": "m", "messages": messages, "stream": True, "format": "json"},
        {"model": "m"},
        {"model": "m", "keep_alive": 0}]


def test_blobs_delete_and_copy(stub: tuple[Routes, str], tmp_path: Path) -> None:
    routes, url = stub
    routes.answers["HEAD /api/blobs/sha256:aa"] = (200, b"")
    routes.answers["POST /api/blobs/sha256:bb"] = (201, b"")
    routes.answers["DELETE /api/delete"] = (200, b"")
    routes.answers["POST /api/copy"] = (200, b"")
    blob = tmp_path / "blob"
    blob.write_bytes(b"GGUF....")
    with Client(url) as client:
        assert client.has_blob("sha256:aa") and not client.has_blob("sha256:bb")
        with blob.open("rb") as handle:
            client.create_blob("sha256:bb", handle)
        client.delete("m")
        client.copy("m", "n")
    assert [(method, path, body) for method, path, _, body in routes.seen[2:]] == [
        ("POST", "/api/blobs/sha256:bb", b"GGUF...."),
        ("DELETE", "/api/delete", {"model": "m"}),
        ("POST", "/api/copy", {"source": "m", "destination": "n"})]


# -- the module's place ---------------------------------------------------------------------------

def test_the_client_is_a_leaf_of_the_admin_side() -> None:
    source = Path(ollamactl.__file__).parent / "client.py"
    ours = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ollamactl"):
            ours.add(node.module if node.module != "ollamactl" else
                     ",".join(sorted(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            ours.update(a.name for a in node.names if a.name.startswith("ollamactl"))
    assert ours <= {"ollamactl.errors", "ollamactl.settings", "__version__,settings"}


def test_importing_the_client_does_not_import_requests() -> None:
    code = "import sys, ollamactl.client\nprint('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"

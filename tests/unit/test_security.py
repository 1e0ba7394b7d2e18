"""CORS and the Host-header guard, driven through the real middleware with an ASGI test client."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ollamactl.runtime.http.security import (
    DEFAULT_ORIGINS,
    RequestGuard,
    allowed_origins,
    is_local_host,
    is_loopback_bind,
    is_origin_allowed,
)


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")


def _client(bind_host: str, origins: tuple[str, ...] = ()) -> TestClient:
    app = Starlette(routes=[Route("/", _hello, methods=["GET", "POST", "OPTIONS"])])
    guarded = RequestGuard(app, bind_host=bind_host, origins=origins)
    return TestClient(guarded, base_url="http://127.0.0.1:11434")


def test_default_origins_are_the_references() -> None:
    for origin in ("http://localhost", "https://localhost:3000", "http://127.0.0.1:8080",
                   "https://0.0.0.0", "app://anything", "file://x", "tauri://localhost",
                   "vscode-webview://abc", "vscode-file://vscode-app"):
        assert is_origin_allowed(origin, DEFAULT_ORIGINS), origin
    for origin in ("https://evil.example", "http://localhost.evil.example",
                   "chrome-extension://abc", "http://127.0.0.2"):
        assert not is_origin_allowed(origin, DEFAULT_ORIGINS), origin


def test_ollama_origins_add_to_the_defaults() -> None:
    patterns = allowed_origins(["https://app.example.com", "chrome-extension://*"])
    assert is_origin_allowed("https://app.example.com", patterns)
    assert is_origin_allowed("chrome-extension://abcdef", patterns)
    assert is_origin_allowed("http://localhost:5173", patterns)
    assert not is_origin_allowed("https://evil.example", patterns)
    assert is_origin_allowed("https://evil.example", allowed_origins(["*"]))


@pytest.mark.parametrize(("host", "ok"), [
    ("", True), ("localhost", True), ("localhost:11434", True), ("127.0.0.1:11434", True),
    ("[::1]:11434", True), ("10.1.2.3", True), ("192.168.1.20:11434", True), ("0.0.0.0", True),
    ("myhost", True), ("MyHost:11434", True), ("api.localhost", True), ("box.local", True),
    ("db.internal:80", True), ("203.0.113.9", True),
    ("evil.example", False), ("evil.example:11434", False), ("8.8.8.8", False),
    ("localhost.evil.example", False),
])
def test_host_rule(host: str, ok: bool) -> None:
    assert is_local_host(host, hostname="myhost", interface_ips=lambda: {"203.0.113.9"}) is ok


def test_loopback_binds() -> None:
    assert is_loopback_bind("127.0.0.1") and is_loopback_bind("::1")
    assert is_loopback_bind("localhost")
    assert not is_loopback_bind("0.0.0.0") and not is_loopback_bind("192.168.1.5")


def test_allowed_origin_gets_cors_headers() -> None:
    with _client("127.0.0.1") as client:
        reply = client.get("/", headers={"Origin": "http://localhost:3000"})
        assert reply.status_code == 200 and reply.text == "Ollama is running"
        assert reply.headers["access-control-allow-origin"] == "http://localhost:3000"
        preflight = client.options("/", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 204
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "x-stainless-os" in preflight.headers["access-control-allow-headers"]
        allowed = preflight.headers["access-control-allow-headers"].split(", ")
        assert {"x-api-key", "anthropic-version"} <= set(allowed)   # the Anthropic client


def test_foreign_origin_gets_403() -> None:
    with _client("127.0.0.1", ("https://app.example.com",)) as client:
        assert client.get("/", headers={"Origin": "https://evil.example"}).status_code == 403
        assert client.get("/", headers={"Origin": "https://app.example.com"}).status_code == 200
        assert client.get("/").status_code == 200  # no Origin: not a browser, no CORS


def test_rebinding_host_gets_403_only_on_loopback_binds() -> None:
    with _client("127.0.0.1") as client:
        refused = client.get("/", headers={"Host": "evil.example"})
        assert refused.status_code == 403 and refused.content == b""
        assert client.get("/", headers={"Host": "localhost:11434"}).status_code == 200
    with _client("0.0.0.0") as client:
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 200

"""Registry redirects: a pull must not turn an exposed server into a probe of its own network.

A client names the registry, so it controls every answer the server gets: redirects of the
manifest, of blobs to loopback, to the LAN, to the cloud metadata address, from https to plain
http, without end; and error texts that would return what a host answered. Real servers on
loopback pull through real registries started here; where the attack needs a registry that is
not on loopback, the resolver (the OS boundary the policy uses) says where names lead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from ollamactl.runtime.store import registry
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_MODEL
from tests.adversarial.conftest import Reliability
from tests.gguf_builder import build
from tests.integration.server_process import running_server

pytestmark = [pytest.mark.integration]

SECRET = b"internal-secret-7f3a: only the server's own network may see this"
Answer = tuple[int, dict[str, str], bytes]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Site:
    """An HTTP(S) server on 127.0.0.1 that answers by ``route`` and records every path."""

    route: Callable[[str, dict[str, str]], Answer]
    tls: ssl.SSLContext | None = None
    seen: list[tuple[str, str]] = field(default_factory=list)   # (path, Authorization)
    port: int = 0

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


@pytest.fixture
def sites() -> Iterator[Callable[..., Site]]:
    servers: list[ThreadingHTTPServer] = []

    def start(route: Callable[[str, dict[str, str]], Answer],
              tls: ssl.SSLContext | None = None) -> Site:
        site = Site(route, tls)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                site.seen.append((self.path, self.headers.get("Authorization", "")))
                status, headers, body = site.route(self.path, dict(self.headers))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        site.port = server.server_port
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return site

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Model:
    """A tiny valid model as a registry serves it."""

    blob: bytes = field(default_factory=build)
    config: bytes = b'{"model_format":"gguf","model_family":"llama"}'

    @property
    def manifest(self) -> bytes:
        return json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": _digest(self.config), "size": len(self.config)},
            "layers": [{"mediaType": MEDIA_MODEL, "digest": _digest(self.blob),
                        "size": len(self.blob)}],
        }).encode()

    def serve(self, path: str, blob_answer: Callable[[str], Answer] | None = None) -> Answer:
        """A registry: the manifest, and each blob (or ``blob_answer``'s redirect for it)."""
        if path.endswith("/manifests/latest"):
            return 200, {}, self.manifest
        digest = path.rsplit("/", 1)[-1]
        if blob_answer is not None and "/blobs/" in path:
            return blob_answer(digest)
        data = {_digest(self.blob): self.blob, _digest(self.config): self.config}.get(digest)
        return (200, {}, data) if data is not None else (404, {}, b"")


def _pull(url: str, model: str, *, insecure: bool = True) -> dict[str, Any]:
    """``POST /api/pull`` with ``stream: false``: the final status or the error."""
    reply = requests.post(f"{url}/api/pull", json={"model": model, "insecure": insecure,
                                                   "stream": False}, timeout=120)
    body: dict[str, Any] = reply.json()
    return body


def _redirect(location: str) -> Answer:
    return 307, {"Location": location}, b""


def _secret_site(sites: Callable[..., Site]) -> Site:
    return sites(lambda path, headers: (200, {}, SECRET))


def test_manifests_are_not_followed_anywhere(tmp_path: Path, sites: Callable[..., Site],
                                             reliability: Reliability) -> None:
    """A manifest answer that redirects (to a service on the server's loopback) is refused;
    the target is never asked."""
    secret = _secret_site(sites)
    targets = [f"{secret.base}/internal/admin", "/v2/library/tiny/manifests/other"]
    with running_server(tmp_path / "models", {}, tmp_path / "server.log") as (url, _):
        for target in targets:
            reg = sites(lambda path, headers, t=target: _redirect(t)
                        if path.endswith("/manifests/latest") else (200, {}, SECRET))
            answer = _pull(url, f"127.0.0.1:{reg.port}/library/tiny")
            reliability.tried()
            assert "redirect" in answer.get("error", ""), answer
            assert f"127.0.0.1:{reg.port}" in answer["error"]
            assert [p for p, _ in reg.seen] == ["/v2/library/tiny/manifests/latest"]
    assert secret.seen == []


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test registry's certificate")
    cert, key = tmp_path / "reg.pem", tmp_path / "reg.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_pull_never_steps_down_to_http(tmp_path: Path, sites: Callable[..., Site],
                                             reliability: Reliability) -> None:
    """A pull over https whose blob redirects to plain http (where anyone on the path reads or
    rewrites it) is refused; the http host is never asked. The server trusts the test CA."""
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    model = Model()
    cdn = sites(lambda path, headers: (200, {}, model.blob))
    reg = sites(lambda path, headers: model.serve(
        path, lambda digest: _redirect(f"http://127.0.0.1:{cdn.port}/cdn/{digest}")), tls)
    env = {"REQUESTS_CA_BUNDLE": str(cert)}
    with running_server(tmp_path / "models", env, tmp_path / "server.log") as (url, _):
        answer = _pull(url, f"127.0.0.1:{reg.port}/library/tiny", insecure=False)
    reliability.tried()
    assert "plain http" in answer.get("error", ""), answer
    assert cdn.seen == []
    assert any("/manifests/" in p for p, _ in reg.seen)   # https itself worked


PUBLIC = ipaddress.ip_address("93.184.215.14")


def _resolver(table: dict[str, list[str]]) -> registry.Resolver:
    """The OS boundary: names lead where ``table`` says; literals are themselves."""
    def resolve(host: str, port: int) -> list[registry.Address]:
        return [ipaddress.ip_address(a) for a in table.get(host, [host])]
    return resolve


@pytest.mark.parametrize(("registry_base", "location", "table", "refused"), [
    ("https://reg.example", "http://127.0.0.1:8080/x", {}, "plain http"),
    ("https://reg.example", "https://127.0.0.1/x", {}, "loopback"),
    ("https://reg.example", "https://[::1]/x", {}, "loopback"),
    ("https://reg.example", "https://[::ffff:127.0.0.1]/x", {}, "loopback"),
    ("https://reg.example", "https://0.0.0.0/x", {}, "loopback"),
    ("https://reg.example", "https://169.254.169.254/latest/meta-data/", {}, "link-local"),
    ("https://reg.example", "https://[fe80::1]/x", {}, "link-local"),
    ("https://reg.example", "https://10.1.2.3/x", {}, "private"),
    ("https://reg.example", "https://192.168.0.1/x", {}, "private"),
    ("https://reg.example", "https://[fd00::5]/x", {}, "private"),
    ("https://reg.example", "https://100.64.0.1/x", {}, "private"),
    ("https://reg.example", "https://cdn.example/x", {"cdn.example": ["93.184.215.15",
                                                                      "10.0.0.7"]}, "private"),
    ("https://reg.example", "https://localtest.example/x", {"localtest.example": ["127.0.0.1"]},
     "loopback"),
    ("https://reg.example", "ftp://cdn.example/x", {}, "not an http"),
    ("https://reg.example", "file:///etc/passwd", {}, "not an http"),
    ("https://reg.example", "", {}, "not an http"),
    ("https://reg.example", "https://user:pw@cdn.example/x", {}, "credentials"),
    ("http://10.0.0.2:5000", "http://127.0.0.1:11434/api/tags", {}, "loopback"),
    ("http://10.0.0.2:5000", "http://169.254.169.254/", {}, "link-local"),
    ("https://reg.example", "https://cdn.example/blob", {"cdn.example": ["93.184.215.15"]}, None),
    ("https://reg.example", "/v2/x/blobs/y", {}, None),
    ("http://127.0.0.1:5000", "http://localhost:5001/cdn", {"localhost": ["127.0.0.1", "::1"]},
     None),
    ("http://10.0.0.2:5000", "http://10.0.0.3/cdn", {}, None),
    ("http://10.0.0.2:5000", "https://cdn.example/blob", {"cdn.example": ["93.184.215.15"]},
     None),
])
def test_redirect_policy(registry_base: str, location: str, table: dict[str, list[str]],
                         refused: str | None, reliability: Reliability) -> None:
    """Each hop: http(s) only, never from https to http, no credentials, and every address
    of the target public or on a network the registry itself is on."""
    resolve = _resolver({"reg.example": [str(PUBLIC)], **table})
    current = f"{registry_base}/v2/library/tiny/blobs/sha256:{'0' * 64}"
    reliability.tried()
    if refused is None:
        assert registry.redirect_target(registry_base, current, location, resolve=resolve)
    else:
        with pytest.raises(registry.RegistryError, match=refused) as caught:
            registry.redirect_target(registry_base, current, location, resolve=resolve)
        assert "93.184" not in str(caught.value)


def test_public_registry_cannot_send_a_pull_into_loopback(
        tmp_path: Path, sites: Callable[..., Site], monkeypatch: pytest.MonkeyPatch,
        reliability: Reliability) -> None:
    """End to end with the resolver saying the registry's name is a public host: its blob
    redirect to a service on loopback is refused, and that service is never asked."""
    real = registry.resolve_addresses
    monkeypatch.setattr(registry, "resolve_addresses", lambda host, port: [PUBLIC]
                        if host == "localhost" else real(host, port))
    secret = _secret_site(sites)
    model = Model()
    reg = sites(lambda path, headers: model.serve(
        path, lambda digest: _redirect(f"{secret.base}/internal/{digest}")))
    with pytest.raises(registry.RegistryError, match="loopback") as caught:
        registry.pull(Store(tmp_path / "models"), f"localhost:{reg.port}/library/tiny",
                      insecure=True)
    reliability.tried()
    assert secret.seen == []
    assert SECRET.decode() not in str(caught.value)
    assert sum("/blobs/" in p for p, _ in reg.seen) == 1     # refused once, not retried


def test_errors_say_status_and_host_never_the_answer(tmp_path: Path, sites: Callable[..., Site],
                                                     reliability: Reliability) -> None:
    """What a host sent stays out of the error: a non-HTTP service's banner, the hash of a
    redirect target's body, the body of its error page."""
    banner = socket.socket()
    banner.bind(("127.0.0.1", 0))
    banner.listen()

    def answer_banner() -> None:
        while True:
            try:
                conn, _ = banner.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6 " + SECRET + b"\r\n")

    threading.Thread(target=answer_banner, daemon=True).start()
    model = Model()
    cdn = sites(lambda path, headers: (200, {}, SECRET.ljust(len(model.blob), b"."))
                if "/good-size/" in path else (403, {}, SECRET))
    wrong = sites(lambda path, headers: model.serve(
        path, lambda digest: _redirect(f"http://localhost:{cdn.port}/good-size/{digest}")))
    denied = sites(lambda path, headers: model.serve(
        path, lambda digest: _redirect(f"http://localhost:{cdn.port}/denied/{digest}")))
    leaks = (SECRET.decode(), "SSH-2.0", _digest(SECRET.ljust(len(model.blob), b"."))[7:])
    with running_server(tmp_path / "models", {}, tmp_path / "server.log") as (url, _):
        errors = {
            "banner": _pull(url, f"127.0.0.1:{banner.getsockname()[1]}/library/tiny"),
            "wrong bytes": _pull(url, f"127.0.0.1:{wrong.port}/library/tiny"),
            "denied": _pull(url, f"127.0.0.1:{denied.port}/library/tiny"),
        }
    banner.close()
    reliability.tried(len(errors))
    for what, answer in errors.items():
        error = answer.get("error", "")
        assert error, (what, answer)
        assert not [leak for leak in leaks if leak in error], (what, error)
    assert f"localhost:{cdn.port} answered 403" in errors["denied"]["error"]
    assert f"localhost:{cdn.port}" in errors["wrong bytes"]["error"]


def test_redirect_chains_are_bounded(tmp_path: Path, sites: Callable[..., Site],
                                     reliability: Reliability) -> None:
    """A blob that redirects forever costs at most MAX_REDIRECTS hops, once, not per retry."""
    model = Model()
    loop = sites(lambda path, headers: _redirect(f"/hop/{int(path.rsplit('/', 1)[-1]) + 1}")
                 if path.startswith("/hop/") else model.serve(path, lambda d: _redirect("/hop/0")))
    with pytest.raises(registry.RegistryError, match="redirects"):
        registry.pull(Store(tmp_path / "models"), f"127.0.0.1:{loop.port}/library/tiny",
                      insecure=True)
    reliability.tried()
    hops = [p for p, _ in loop.seen if p.startswith("/hop/")]
    assert len(hops) <= getattr(registry, "MAX_REDIRECTS", 5)


def test_a_cdn_redirect_that_stays_allowed_still_pulls(tmp_path: Path, sites: Callable[..., Site],
                                                       reliability: Reliability) -> None:
    """The registry on loopback sends blobs to a CDN on loopback under another name: followed,
    without the registry's token, and the pulled model is there."""
    model = Model()
    cdn = sites(lambda path, headers: model.serve(path.replace("/cdn/", "/blobs/")))

    def route(path: str, headers: dict[str, str]) -> Answer:
        if path.startswith("/token"):
            return 200, {}, b'{"token": "s3cret"}'
        if headers.get("Authorization") != "Bearer s3cret":
            return 401, {"WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{reg.port}/token"'
                         ',service="t"'}, b""
        return model.serve(path, lambda d: _redirect(f"http://localhost:{cdn.port}/cdn/{d}"))

    reg = sites(route)
    name = f"127.0.0.1:{reg.port}/library/tiny"
    with running_server(tmp_path / "models", {}, tmp_path / "server.log") as (url, _):
        answer = _pull(url, name)
        tags = requests.get(f"{url}/api/tags", timeout=10).json()["models"]
    reliability.tried()
    assert answer == {"status": "success"}
    assert [m["name"] for m in tags] == [f"{name}:latest"]
    assert len(cdn.seen) == 2 and {auth for _, auth in cdn.seen} == {""}

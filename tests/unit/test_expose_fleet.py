"""`fleet status` against loopback HTTP stubs: answers, auth, refusal and timeouts per host.

The real servers are in tests/integration/test_fleet.py; these stubs stand for hosts in states
a test cannot cheaply put a real server in (a front that wants a token, a hung host, a server
that reports its queue).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ollamactl import fleet
from ollamactl.errors import UsageError
from tests.loopback import serving

PS = {"models": [{"name": "smollm2:135m", "size": 123, "size_vram": 0,
                  "expires_at": "2030-01-01T00:00:00Z", "context_length": 2048}],
      "queue": {"pending": 2, "max": 512}}


class Stub(BaseHTTPRequestHandler):
    mode = "ok"
    release = threading.Event()

    def do_GET(self) -> None:
        if self.mode == "hang":
            self.release.wait(5)
        if self.mode == "token" and self.headers.get("Authorization") != "Bearer right":
            self._send(401, b'{"error":"unauthorized"}')
            return
        body = {"/": b"Ollama is running", "/api/version": b'{"version": "9.9.9"}',
                "/api/ps": json.dumps(PS).encode()}.get(self.path)
        self._send(200, body) if body is not None else self._send(404, b"404 page not found")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def stub() -> Iterator[tuple[type[Stub], str]]:
    handler = type("Handler", (Stub,), {"mode": "ok", "release": threading.Event()})
    with serving(handler) as port:
        try:
            yield handler, f"127.0.0.1:{port}"
        finally:
            handler.release.set()


def test_up_host_reports_version_models_and_queue(stub: tuple[type[Stub], str]) -> None:
    _, host = stub
    (status,) = fleet.fleet_status(fleet.parse_hosts([host]), timeout_s=2)
    assert status.status == fleet.UP and status.version == "9.9.9"
    assert status.ollamactl is None and fleet.table_rows([status])[0][2] == "9.9.9"  # Ollama
    assert [m.name for m in status.models] == ["smollm2:135m"]
    assert status.models[0].context_length == 2048
    assert fleet.table_rows([status])[0][4:] == ("smollm2:135m", "2/512")


def test_token_is_sent_and_missing_token_is_reported(stub: tuple[type[Stub], str]) -> None:
    handler, host = stub
    handler.mode = "token"
    (without,) = fleet.fleet_status(fleet.parse_hosts([host]), timeout_s=2)
    assert without.status == fleet.UNAUTHORIZED
    (with_token,) = fleet.fleet_status(fleet.parse_hosts([host]), timeout_s=2, token="right")
    assert with_token.status == fleet.UP


def test_refused_and_hung_hosts_do_not_hide_the_others(stub: tuple[type[Stub], str],
                                                        free_port: int) -> None:
    _, host = stub
    hung_handler = type("Hung", (Stub,), {"mode": "hang", "release": threading.Event()})
    hung = ThreadingHTTPServer(("127.0.0.1", 0), hung_handler)
    thread = threading.Thread(target=hung.serve_forever, daemon=True)
    thread.start()
    try:
        hosts = [host, f"127.0.0.1:{free_port}", f"http://127.0.0.1:{hung.server_address[1]}"]
        statuses = fleet.fleet_status(fleet.parse_hosts(hosts), timeout_s=0.5)
    finally:
        hung_handler.release.set()
        hung.shutdown()
        hung.server_close()
        thread.join(5)
    assert [s.status for s in statuses] == [fleet.UP, fleet.UNREACHABLE, fleet.UNREACHABLE]
    assert statuses[1].error == "connection refused"
    assert statuses[2].error == "no answer within 0.5 s"
    rows = fleet.table_rows(statuses)
    assert rows[1][1] == "unreachable (connection refused)" and rows[1][2:] == ("-",) * 4


def test_parse_hosts_defaults_and_errors() -> None:
    (address,) = fleet.parse_hosts(["gpu1"])
    assert address.client_url == "http://gpu1:11434"
    with pytest.raises(UsageError):
        fleet.parse_hosts([])
    with pytest.raises(UsageError):
        fleet.parse_hosts(["ftp://x"])


def test_queue_text() -> None:
    assert fleet.queue_text(None) == "-"
    assert fleet.queue_text({"pending": 0, "max": 4}) == "0/4"

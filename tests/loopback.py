"""One loopback HTTP server for the tests' stand-ins (a fake Ollama, a stub version endpoint):
a handler class served from a thread, shut down when the test is done."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class VersionStub(BaseHTTPRequestHandler):
    """Answers `/` and `/api/version` (its ``body``) like a server that was just started."""

    body = b""

    def do_GET(self) -> None:
        body = {"/": b"Ollama is running", "/api/version": self.body}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        return


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """``handler`` on 127.0.0.1 at a free port, which it yields."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""HTTP abuse against the real server: oversized and malformed bodies, bad token ids and
options, slowloris connections, a stalled stream reader, a client that hangs up mid-stream."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from ollamactl.runtime.http.limits import MAX_JSON_BODY_BYTES
from tests.adversarial.conftest import GEMMA3, SMOLLM2, Reliability, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POST_ROUTES = ["/api/generate", "/api/chat", "/api/show", "/api/create", "/api/pull",
               "/api/copy", "/api/embed", "/api/embeddings", "/v1/chat/completions",
               "/v1/completions", "/v1/embeddings"]
MALFORMED = [b"\xff\xfe\xfd", b'{"model": "\xc3\x28"}', b'{"model": "smollm2:135m"', b"{,}",
             b"[1, 2]", b'"text"', b"{'model': 1}", b'{"model": NaN}' + b"\x00",
             b"\x00" * 16, b"{" * 100_000 + b"}" * 100_000, b"[" * 5000 + b"]" * 5000,
             b'{"model": "a", "model": ' + b"9" * 5000 + b"}", b"\xef\xbb\xbf{}x"]
SMOLLM2_VOCAB = 49152
BAD_CONTEXTS = [[-1], [SMOLLM2_VOCAB], [2**31], [2**63], [10**30], [1, -5, 2]]
BAD_OPTIONS = [{"num_ctx": -1}, {"num_ctx": 10**12}, {"num_ctx": 0}, {"num_predict": 10**20},
               {"temperature": -5}, {"top_k": -3}, {"top_p": 7}, {"min_p": -0.5},
               {"num_thread": 10**6}, {"num_batch": 0}, {"seed": 2**70}, {"repeat_last_n": -5},
               {"num_keep": -64}, {"num_gpu": -7}, {"temperature": "hot"},
               {"stop": ["x"] * 1000}, {"stop": "s" * 100_000},
               {"num_predict": True}]


def test_oversized_bodies_get_413(adv_server: Server, reliability: Reliability) -> None:
    big = b'{"model": "smollm2:135m", "prompt": "' + b"a" * (MAX_JSON_BODY_BYTES + 1) + b'"}'
    for route in ("/api/generate", "/api/chat", "/v1/chat/completions", "/api/create"):
        declared = requests.post(adv_server.url + route, data=big, timeout=60)
        chunked = requests.post(adv_server.url + route, timeout=60,
                                data=(big[i:i + (1 << 20)] for i in range(0, len(big), 1 << 20)))
        reliability.tried(2)
        for response in (declared, chunked):
            assert response.status_code == 413, (route, response.text[:200])
            assert "too large" in response.json()["error"]
    assert adv_server.is_alive()


def test_malformed_bodies_get_400(adv_server: Server, reliability: Reliability) -> None:
    for route in POST_ROUTES:
        for body in MALFORMED:
            response = requests.post(adv_server.url + route, data=body, timeout=30)
            reliability.tried()
            assert response.status_code == 400, (route, body[:40], response.text[:300])
            assert "error" in response.json()
    assert adv_server.is_alive()


def test_a_null_body_is_an_empty_request(adv_server: Server, reliability: Reliability) -> None:
    # Go's encoding/json leaves a struct unset for `null`: Ollama answers it as it answers `{}`
    for route in POST_ROUTES:
        null = requests.post(adv_server.url + route, data=b"null", timeout=30)
        empty = requests.post(adv_server.url + route, data=b"{}", timeout=30)
        reliability.tried(2)
        assert (null.status_code, null.json()) == (empty.status_code, empty.json()), route
        assert 400 <= null.status_code < 500, (route, null.text)
    assert adv_server.is_alive()


def test_bad_token_ids_and_options_get_400(adv_server: Server, reliability: Reliability) -> None:
    for context in BAD_CONTEXTS:
        response = adv_server.post("/api/generate", {"model": SMOLLM2, "prompt": "hi",
                                                     "context": context, "stream": False})
        reliability.tried()
        assert response.status_code == 400, (context, response.text)
    for options in BAD_OPTIONS:
        for route, body in (("/api/generate", {"prompt": "hi"}),
                            ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]})):
            response = adv_server.post(route, {"model": SMOLLM2, "stream": False,
                                               "options": options, **body})
            reliability.tried()
            assert response.status_code == 400, (route, options, response.text)
    for raw in (b'{"model":"smollm2:135m","prompt":"hi","options":{"temperature":1e999}}',
                b'{"model":"smollm2:135m","prompt":"hi","options":{"top_p":NaN}}',
                b'{"model":"smollm2:135m","prompt":"hi","options":{"seed":-Infinity}}'):
        reliability.tried()
        assert requests.post(adv_server.url + "/api/generate", data=raw,
                             timeout=30).status_code == 400
    good = adv_server.post("/api/generate", {"model": SMOLLM2, "prompt": "hi", "context": [1, 2],
                                             "options": {"num_predict": 2}, "stream": False})
    assert good.status_code == 200, good.text
    assert adv_server.is_alive()


@contextmanager
def _slowloris(server: Server, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send a request line and then one header byte at a time."""
    host, port = server.url.removeprefix("http://").split(":")
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for sock in list(sockets):
                try:
                    sock.sendall(b"X")
                except OSError:
                    sockets.remove(sock)

    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(f"POST /api/generate HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode())
            sockets.append(sock)
        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        yield sockets
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


def test_slowloris_does_not_block_other_clients(adv_server: Server,
                                                reliability: Reliability) -> None:
    with _slowloris(adv_server, 200) as sockets:
        reliability.tried(len(sockets))
        reliability.held(f"{len(sockets)} slowloris connections")
        time.sleep(1)
        started = time.monotonic()
        assert requests.get(adv_server.url + "/api/tags", timeout=10).ok
        reply = adv_server.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi",
                                                  "options": {"num_predict": 2},
                                                  "stream": False}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < 30
    assert adv_server.is_alive()


def test_stalled_stream_reader_does_not_block_others(adv_server: Server,
                                                     reliability: Reliability) -> None:
    host, port = adv_server.url.removeprefix("http://").split(":")
    body = json.dumps({"model": SMOLLM2, "prompt": "Count: 1, 2, 3,", "raw": True,
                       "options": {"num_predict": 400}}).encode()
    staller = socket.create_connection((host, int(port)), timeout=10)
    staller.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        staller.sendall(f"POST /api/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                        f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body)  # and never read the answer
        reliability.tried()
        reliability.held("1 stream that is never read")
        time.sleep(1)
        started = time.monotonic()
        assert requests.get(adv_server.url + "/api/tags", timeout=10).ok
        other = adv_server.post("/api/generate", {"model": GEMMA3, "prompt": "Hi",
                                                  "options": {"num_predict": 2},
                                                  "stream": False}, timeout=120)
        assert other.status_code == 200, other.text
        same = adv_server.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi",
                                                 "options": {"num_predict": 2},
                                                 "stream": False}, timeout=120)
        assert same.status_code == 200, same.text
        assert time.monotonic() - started < 120
    finally:
        staller.close()
    assert adv_server.is_alive()


def test_disconnect_mid_stream_frees_the_slot(adv_server: Server,
                                              reliability: Reliability) -> None:
    """One sequence per runner: if a hung-up stream kept its slot, the next request would wait
    for 4000 tokens; it must instead be answered in a few seconds, and the runner survives."""
    for attempt in range(3):
        response = requests.post(adv_server.url + "/api/generate", stream=True, timeout=60,
                                 json={"model": SMOLLM2, "prompt": "Count: 1, 2, 3,",
                                       "raw": True, "options": {"num_predict": 4000,
                                                                "num_ctx": 4096}})
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert first["done"] is False, first
        runners_before = {p.pid for p in adv_server.runners()}
        response.close()  # hang up mid-stream
        reliability.tried()
        reliability.fault(f"client disconnect mid-stream #{attempt + 1}")
        started = time.monotonic()
        reply = adv_server.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi",
                                                  "options": {"num_predict": 2,
                                                              "num_ctx": 4096},
                                                  "stream": False}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < 15
        assert {p.pid for p in adv_server.runners()} == runners_before
    assert adv_server.is_alive()

"""The real server with the real SmolLM2 model, driven by raw HTTP, the official `ollama`
client and the `ollamactl` CLI. One server process for the module (OLLAMA_NUM_PARALLEL=1,
OLLAMA_MAX_QUEUE=2, OLLAMA_MAX_LOADED_MODELS=1) keeps the suite fast on 2 cores."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import ollama
import pytest
import requests

from ollamactl import __version__
from ollamactl.runtime.http.management import OLLAMA_API_VERSION
from tests.integration.server_process import (
    GEMMA3,
    SMOLLM2,
    Server,
    runner_pids,
    smollm2_gguf,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHORT = {"num_predict": 8, "temperature": 0}
QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"


SERVER_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "2",
              "OLLAMA_MAX_LOADED_MODELS": "1"}


@pytest.fixture
def fresh(server: Server) -> Server:
    server.unload_all()
    return server


def cli(server: Server, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": server.url, "NO_PROXY": "*"}
    return subprocess.run([sys.executable, "-m", "ollamactl", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


# -- the seed's curl calls ------------------------------------------------------------------------

def test_root_and_version(server: Server) -> None:
    root = requests.get(server.url + "/", timeout=5)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert requests.head(server.url + "/", timeout=5).status_code == 200
    assert requests.get(server.url + "/api/version", timeout=5).json() == {
        "version": OLLAMA_API_VERSION, "ollamactl": __version__}


def test_generate_with_num_ctx_4096(fresh: Server) -> None:
    reply = fresh.post("/api/generate", {"model": SMOLLM2, "prompt": "Why is the sky blue?",
                                         "options": {**SHORT, "num_ctx": 4096},
                                         "stream": False})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["done"] is True and body["done_reason"] in ("stop", "length")
    assert body["response"].strip()
    assert body["context"] and all(isinstance(t, int) for t in body["context"])
    assert body["created_at"].endswith("Z")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "eval_count"):
        assert body[key] > 0
    assert fresh.ps()[0]["context_length"] == 4096


def test_the_default_context_is_ollamas_tier_without_a_gpu(fresh: Server) -> None:
    reply = fresh.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi", "options": SHORT,
                                         "stream": False})
    assert reply.status_code == 200, reply.text
    assert fresh.ps()[0]["context_length"] == 4096    # no GPU here (lavapipe is not named)


STORY = "Write a long story about a lighthouse keeper and a storm."
STORY_RAW = f"<|im_start|>user\n{STORY}<|im_end|>\n<|im_start|>assistant\n"


def test_a_full_context_shifts_unless_shift_is_false(fresh: Server) -> None:
    """Ollama's `shift`: on by default, generation goes past num_ctx (the oldest tokens after
    num_keep leave); `shift: false` ends it with done_reason "length" at the context's edge."""
    def generate(**extra: Any) -> dict[str, Any]:
        reply = fresh.post("/api/generate", {
            "model": SMOLLM2, "prompt": STORY_RAW, "raw": True, "stream": False, **extra,
            "options": {"temperature": 0, "num_ctx": 64, "num_predict": 120}})
        assert reply.status_code == 200, reply.text
        return reply.json()

    stopped, shifted = generate(shift=False), generate()
    assert stopped["done_reason"] == "length"
    assert stopped["prompt_eval_count"] + stopped["eval_count"] == 64 + 1
    assert shifted["done_reason"] == "length" and shifted["eval_count"] == 120
    assert shifted["response"].startswith(stopped["response"])


def test_a_prompt_longer_than_the_context_is_cut_unless_truncate_is_false(
        fresh: Server) -> None:
    body = {"model": SMOLLM2, "prompt": STORY * 12, "stream": False,
            "options": {**SHORT, "num_ctx": 64}}
    cut = fresh.post("/api/generate", body)
    assert cut.status_code == 200, cut.text
    assert cut.json()["prompt_eval_count"] < 64
    refused = fresh.post("/api/generate", {**body, "truncate": False})
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": "the input length exceeds the context length"}
    chat = fresh.post("/api/chat", {"model": SMOLLM2, "stream": False, "truncate": False,
                                    "messages": [{"role": "user", "content": STORY * 12}],
                                    "options": {**SHORT, "num_ctx": 64}})
    assert chat.status_code == 400 and "exceeds the context length" in chat.json()["error"]
    assert fresh.post("/api/generate", {**body, "truncate": True}).status_code == 200


def test_a_client_that_leaves_while_queued_never_takes_the_slot(fresh: Server) -> None:
    """One slot: A generates, B waits behind it and hangs up. B must leave the queue then
    (logged as 499) rather than run a whole generation for nobody after A."""
    import socket

    fresh.post("/api/generate", {"model": SMOLLM2, "keep_alive": -1})   # loaded: no load wait
    logged = fresh.log.stat().st_size
    long = {"model": SMOLLM2, "prompt": STORY_RAW, "raw": True,
            "options": {"temperature": 0, "num_predict": 200}}
    with requests.post(fresh.url + "/api/generate", json=long, stream=True,
                       timeout=120) as first:
        lines = first.iter_lines()
        assert json.loads(next(lines))["done"] is False                # A holds the slot
        body = json.dumps({**long, "stream": False}).encode()
        host = fresh.url.removeprefix("http://")
        with socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1]))) as b:
            b.sendall(b"POST /api/generate HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_for(lambda: "waiting" in ps_queue(fresh))                 # B is queued
        wait_for(lambda: "status=499" in fresh.log.read_bytes()[logged:].decode())
        assert json.loads(list(lines)[-1])["done"] is True            # A goes on to its end

    def statuses() -> list[str]:
        return [line.split("status=")[1].split()[0] for line in
                fresh.log.read_bytes()[logged:].decode().splitlines()
                if "msg=POST /api/generate" in line]

    wait_for(lambda: len(statuses()) == 2)     # A's line follows its last chunk
    assert statuses() == ["499", "200"]        # B gave up before A finished; B never ran
    assert ps_queue(fresh) == "idle"


def test_a_client_that_leaves_during_the_load_leaves_no_runner_behind(fresh: Server) -> None:
    """The only request for a model hangs up while its runner loads: the load is abandoned
    and its runner stopped, not left running outside the scheduler's books."""
    import socket

    logged = fresh.log.stat().st_size
    body = json.dumps({"model": SMOLLM2, "prompt": "hi", "stream": False}).encode()
    host = fresh.url.removeprefix("http://")
    with socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1]))) as client:
        client.sendall(b"POST /api/generate HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_for(lambda: runner_pids(fresh.pid) != [], timeout_s=30)    # loading
    wait_for(lambda: "status=499" in fresh.log.read_bytes()[logged:].decode(), timeout_s=30)
    wait_for(lambda: runner_pids(fresh.pid) == [], timeout_s=30)
    assert fresh.ps() == []
    assert fresh.post("/api/generate", {"model": SMOLLM2, "prompt": "hi",
                                        "options": SHORT, "stream": False}).status_code == 200


def ps_queue(server: Server) -> str:
    """"waiting" while a request waits for a slot of the loaded model, else "idle"."""
    queue = requests.get(server.url + "/api/ps", timeout=10).json().get("queue") or {}
    return "waiting" if queue.get("pending") else "idle"


def test_preload_keep_forever_then_unload(fresh: Server) -> None:
    loaded = fresh.post("/api/generate", {"model": SMOLLM2, "keep_alive": -1}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load" and loaded["response"] == ""
    (model,) = fresh.ps()
    assert model["name"] == SMOLLM2 and model["size"] > 0 and model["size_vram"] == 0
    expires = datetime.fromisoformat(model["expires_at"])
    assert expires.year - datetime.now().year > 100  # forever
    assert "Forever" in cli(fresh, "ps").stdout

    unloaded = fresh.post("/api/generate", {"model": SMOLLM2, "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    wait_for(lambda: not fresh.ps())
    wait_for(lambda: not runner_pids(fresh.pid))


def test_chat_preload_with_only_a_model(fresh: Server) -> None:
    body = fresh.post("/api/chat", {"model": SMOLLM2}).json()
    assert body["done_reason"] == "load"
    assert body["message"] == {"role": "assistant", "content": ""}
    assert [m["name"] for m in fresh.ps()] == [SMOLLM2]


def test_keep_alive_zero_unloads_after_the_answer(fresh: Server) -> None:
    reply = fresh.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi", "keep_alive": 0,
                                         "options": SHORT, "stream": False})
    assert reply.status_code == 200 and reply.json()["response"]
    wait_for(lambda: not fresh.ps())


# -- the official client --------------------------------------------------------------------------

@pytest.fixture
def client(server: Server) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url) as official:
        yield official


def test_ollama_client_generate_stream_and_not(client: ollama.Client) -> None:
    whole = client.generate(model=SMOLLM2, prompt="Name a colour.", options=SHORT)
    assert whole.response.strip() and whole.done
    assert whole.eval_count and whole.eval_duration and whole.eval_count <= SHORT["num_predict"]

    chunks = list(client.generate(model=SMOLLM2, prompt="Name a colour.", options=SHORT,
                                  stream=True))
    final = chunks[-1]
    text_chunks = [c for c in chunks[:-1] if c.response]
    assert final.done and not any(c.done for c in chunks[:-1])
    assert "".join(c.response for c in chunks).strip()
    assert final.eval_count and final.eval_duration
    # One chunk per generated token (held-back stop text may merge some, never split).
    assert len(text_chunks) <= final.eval_count <= len(text_chunks) + 1


def test_ollama_client_chat_stream_and_not(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    whole = client.chat(model=SMOLLM2, messages=messages, options=SHORT)
    assert whole.message.role == "assistant" and whole.message.content.strip()
    assert whole.done_reason in ("stop", "length")

    chunks = list(client.chat(model=SMOLLM2, messages=messages, options=SHORT, stream=True))
    final = chunks[-1]
    text_chunks = [c for c in chunks[:-1] if c.message.content]
    assert final.done and final.eval_count and final.eval_duration
    assert len(text_chunks) <= final.eval_count <= len(text_chunks) + 1


# -- scheduler behaviour --------------------------------------------------------------------------

def test_burst_beyond_queue_gets_503_and_server_stays_up(server: Server) -> None:
    server.post("/api/generate", {"model": SMOLLM2})  # loaded: the burst waits for slots only

    def one(_: int) -> tuple[int, dict[str, Any]]:
        reply = server.post("/api/generate", {"model": SMOLLM2, "prompt": "Count to ten.",
                                              "options": {"num_predict": 16}, "stream": False})
        return reply.status_code, reply.json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    busy = [body for status, body in results if status == 503]
    done = [body for status, body in results if status == 200]
    assert busy and done and len(busy) + len(done) == 8
    assert all(body == {"error": QUEUE_FULL} for body in busy)
    assert all(body["done"] and body["response"] for body in done)
    assert requests.get(server.url + "/", timeout=5).ok


def test_second_model_evicts_the_first_with_max_loaded_one(fresh: Server) -> None:
    pull = fresh.post("/api/pull", {"model": GEMMA3, "stream": False})
    if pull.status_code != 200:
        pytest.fail(f"bundled gemma3 import failed: {pull.text}")
    fresh.post("/api/generate", {"model": SMOLLM2, "keep_alive": -1})
    assert [m["name"] for m in fresh.ps()] == [SMOLLM2]
    reply = fresh.post("/api/generate", {"model": GEMMA3, "prompt": "Hi", "options": SHORT,
                                         "stream": False})
    assert reply.status_code == 200, reply.text
    assert [m["name"] for m in fresh.ps()] == [GEMMA3]
    assert len(runner_pids(fresh.pid)) == 1


def test_runner_killed_mid_stream_fails_that_request_only(fresh: Server,
                                                          client: ollama.Client) -> None:
    stream = client.generate(model=SMOLLM2, prompt="Write a long story about a dragon.",
                             options={"num_predict": 400}, stream=True)
    first = next(stream)
    assert not first.done
    (pid,) = runner_pids(fresh.pid)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ollama.ResponseError) as failure:
        for _ in stream:
            pass
    assert "runner process has terminated" in str(failure.value)
    again = client.generate(model=SMOLLM2, prompt="Hi", options=SHORT)
    assert again.done and again.response
    assert runner_pids(fresh.pid) and pid not in runner_pids(fresh.pid)


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
    ({"model": SMOLLM2, "prompt": "x", "options": {"num_ctx": -5}}, 400, "num_ctx"),
    ({"model": SMOLLM2, "prompt": "x", "options": {"top_k": "abc"}}, 400, "top_k"),
    ({"model": "../../etc/passwd", "prompt": "x"}, 400, "invalid model name"),
    ({"model": SMOLLM2, "prompt": "x", "keep_alive": "300"}, 400, "duration"),
    ({"model": SMOLLM2, "prompt": 5}, 400, "prompt"),
])
def test_bad_generate_requests(server: Server, body: dict[str, Any], status: int,
                               needle: str) -> None:
    reply = server.post("/api/generate", body)
    assert reply.status_code == status
    assert needle in reply.json()["error"]


def test_malformed_json_and_unknown_paths(server: Server) -> None:
    reply = requests.post(server.url + "/api/chat", data=b'{"model": ', timeout=5)
    assert reply.status_code == 400 and "error" in reply.json()
    empty = requests.post(server.url + "/api/generate", data=b"", timeout=5)
    assert empty.status_code == 400 and empty.json() == {"error": "missing request body"}
    missing = requests.get(server.url + "/api/nothing", timeout=5)
    assert missing.status_code == 404 and missing.text == "404 page not found"
    assert server.post("/api/chat", {"messages": []}).json() == {"error": "model is required"}


@pytest.mark.parametrize("content", [b"not a gguf file at all" * 10, b"truncated"])
def test_create_from_bad_file_is_400_and_server_stays_up(server: Server, content: bytes) -> None:
    gguf = smollm2_gguf().read_bytes()[:4096] if content == b"truncated" else content
    digest = "sha256:" + hashlib.sha256(gguf).hexdigest()
    upload = requests.post(f"{server.url}/api/blobs/{digest}", data=gguf, timeout=10)
    assert upload.status_code in (200, 201)
    assert requests.head(f"{server.url}/api/blobs/{digest}", timeout=5).status_code == 200
    reply = server.post("/api/create", {"model": "broken", "files": {"model.gguf": digest}})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("invalid model file: ")
    assert requests.get(server.url + "/api/tags", timeout=5).ok
    names = [m["name"] for m in requests.get(server.url + "/api/tags", timeout=5).json()["models"]]
    assert "broken:latest" not in names


def test_blob_digest_checks(server: Server) -> None:
    assert requests.head(f"{server.url}/api/blobs/sha256-../../x", timeout=5).status_code == 400
    wrong = "sha256:" + "0" * 64
    reply = requests.post(f"{server.url}/api/blobs/{wrong}", data=b"abc", timeout=5)
    assert reply.status_code == 400 and "digest mismatch" in reply.json()["error"]


# -- the CLI --------------------------------------------------------------------------------------

def test_cli_ps_prints_ollamas_columns(fresh: Server) -> None:
    fresh.post("/api/generate", {"model": SMOLLM2, "options": {"num_ctx": 1024}})
    out = cli(fresh, "ps").stdout.splitlines()
    assert out[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    row = out[1]
    assert row.startswith(SMOLLM2) and "100% CPU" in row and "minutes from now" in row
    assert row.split()[6] == "1024"        # NAME ID SIZE(2) PROCESSOR(2) CONTEXT
    as_json = json.loads(cli(fresh, "ps", "--json").stdout)
    assert as_json["models"][0]["name"] == SMOLLM2
    assert cli(fresh, "stop", SMOLLM2).returncode == 0
    wait_for(lambda: not fresh.ps())


def test_cli_create_show_run_cp_rm(server: Server, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {smollm2_gguf()}\nSYSTEM You are a pirate.\n"
                         "PARAMETER num_predict 12\nPARAMETER temperature 0\n")
    created = cli(server, "create", "pirate", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    shown = cli(server, "show", "pirate", "--modelfile").stdout
    assert "FROM " in shown and "You are a pirate." in shown
    info = cli(server, "show", "pirate").stdout
    assert "You are a pirate." in info and "num_predict" in info

    answer = cli(server, "run", "pirate", "Say hello")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()

    assert cli(server, "cp", "pirate", "pirate2").returncode == 0
    listed = cli(server, "list").stdout
    assert "pirate:latest" in listed and "pirate2:latest" in listed
    assert cli(server, "rm", "pirate", "pirate2").returncode == 0
    assert "pirate" not in cli(server, "list").stdout


def test_cli_errors_are_one_line(server: Server, tmp_path: Path) -> None:
    missing = cli(server, "show", "nope")
    assert missing.returncode == 1 and "model 'nope' not found" in missing.stderr
    env = {**os.environ, "OLLAMA_HOST": "127.0.0.1:9", "NO_PROXY": "*"}
    down = subprocess.run([sys.executable, "-m", "ollamactl", "list"], env=env, text=True,
                          capture_output=True, timeout=30, check=False)
    assert down.returncode == 1
    assert "http://127.0.0.1:9" in down.stderr and "ollamactl serve" in down.stderr
    assert "Traceback" not in down.stderr


def test_show_answers_with_the_requests_system_and_options(server: Server) -> None:
    """As Ollama's GetModelInfo: what a chat session changed shows as the model's."""
    plain = server.post("/api/show", {"model": SMOLLM2}).json()
    shown = server.post("/api/show", {"model": SMOLLM2, "system": "You are terse.",
                                      "options": {"temperature": 0.25, "stop": ["END"]}})
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["system"] == "You are terse." != plain.get("system")
    assert 'SYSTEM """You are terse."""' in body["modelfile"]
    assert "PARAMETER temperature 0.25" in body["modelfile"]
    lines = body["parameters"].split("\n")
    assert any(line.split() == ["temperature", "0.25"] for line in lines)
    assert any(line.split() == ["stop", '"END"'] for line in lines)
    bad = server.post("/api/show", {"model": SMOLLM2, "options": {"top_k": "many"}})
    assert bad.status_code == 400

"""Cold start of `ollamactl serve`, phase by phase, beside llama.cpp's `llama-server`.

One cold start is a fresh server process on a free loopback port with a store holding
SmolLM2-135M (Q4_1), started as the service starts it (``python -I -m ollamactl serve``), then
``GET /api/version`` as soon as the socket accepts, then one raw streamed ``/api/generate``
(model not loaded). Its phases, from the process start:

- ``imports``: to the server's start log line (``Listening on ...``; everything imported
  before it: the command line, the HTTP layer and uvicorn);
- ``listen``: to the first accepted TCP connection (plus the app, its lifespan and uvicorn's
  bind);
- ``version``: to the first answer of ``/api/version``;
- ``request``: from sending the generate to the runner's spawn (``runner started`` log line:
  parsing, model lookup, prompt, scheduling);
- ``runner_start``: from the spawn to the runner's ``ready`` minus its model load (interpreter,
  llama_cpp and its CPU library);
- ``load``: the model load as the runner reports it (``load_ns``);
- ``first_token``: from the runner's ``ready`` to the first streamed token;
- ``total``: process start to the first streamed token.

The phases come from the server's own log lines (millisecond timestamps) and the client's
clock. The peer (``--peer``, built by :mod:`bench_peer`) gets ``listen`` and ``total`` (its
``/completion`` answers 503 while it loads; the client retries every 10 ms).

``--source NAME=DIR`` (repeatable) starts the server from another checkout's ``ollamactl``
package instead (``git archive HEAD ollamactl | tar -x -C /tmp/before``), so a change is
measured before and after in the same run; runners and template workers still come from the
installed package. Sides alternate in every round; figures are medians.

``--chat`` sends ``/api/chat`` (the model's template rendered by a template worker) instead,
and the peer ``/v1/chat/completions`` (its own rendering of the GGUF's template).

    .venv/bin/python bench/bench_start.py --rounds 7 --peer
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollamactl.runtime.runner.config import physical_cores  # noqa: E402
from tests.integration.server_process import SMOLLM2, free_port, make_store  # noqa: E402

STORY = "Write a long story about a lighthouse keeper and a storm."
PROMPT = f"<|im_start|>user\n{STORY}<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}
PHASES = ("imports", "listen", "version", "request", "runner_start", "load", "first_token",
          "total")
# the service's own command line; --source runs a checkout's package under the same -I
SERVICE_ARGV = [sys.executable, "-I", "-m", "ollamactl", "serve"]
SOURCE_SHIM = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
               "runpy.run_module('ollamactl', run_name='__main__', alter_sys=True)")


def server_argv(source: Path | None) -> list[str]:
    if source is None:
        return list(SERVICE_ARGV)
    return [sys.executable, "-I", "-c", SOURCE_SHIM, str(source.resolve()), "serve"]


def server_env(models: Path, port: int, settings: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update(settings, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models),
               NO_PROXY="*")
    return env


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> float:
    """perf_counter() of the first accepted TCP connection (polled every 2 ms)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return time.perf_counter()
        except OSError:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("the server did not listen") from None
            time.sleep(0.002)


def first_token(url: str, tokens: int = 2, *, chat: bool = False) -> tuple[float, float]:
    """(perf_counter() when the request was sent, of its first streamed token): a raw
    generate, or with ``chat`` a chat the model's template renders."""
    options = {**GREEDY, "num_predict": tokens}
    route, body = ("/api/chat", {"model": SMOLLM2, "stream": True, "options": options,
                                 "messages": [{"role": "user", "content": STORY}]}) if chat \
        else ("/api/generate", {"model": SMOLLM2, "prompt": PROMPT, "raw": True, "stream": True,
                                "options": options})
    sent = time.perf_counter()
    with requests.post(url + route, json=body, stream=True, timeout=300,
                       headers={"Connection": "close"}) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            item = json.loads(line)
            if item.get("response") or item.get("message", {}).get("content"):
                return sent, time.perf_counter()
    raise RuntimeError("no token streamed")


def log_stamps(text: str) -> dict[str, float]:
    """Wall-clock times (s since the epoch) of the start, spawn and load log lines, and the
    load seconds the runner reported."""
    found: dict[str, float] = {}
    marks = {"Listening on ": "imports", "runner started pid=": "spawned",
             "model loaded model=": "ready"}
    for line in text.splitlines():
        if not line.startswith("time="):
            continue
        stamp = datetime.datetime.strptime(line[5:28], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for mark, name in marks.items():
            if f"msg={mark}" in line and name not in found:
                found[name] = stamp
                if name == "ready":
                    # "model loaded model=... in 0.18s layers=0/31 on CPU"
                    found["load"] = float(line.split(" in ", 1)[1].split("s", 1)[0])
    return found


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    proc.terminate()
    proc.wait(timeout=20)
    psutil.wait_procs(children, timeout=10)


def ours_start(models: Path, settings: Mapping[str, str], log: Path,
               source: Path | None = None, *, chat: bool = False) -> dict[str, float]:
    """One cold start of our server, phase by phase (seconds)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        wall0, started = time.time(), time.perf_counter()
        proc = subprocess.Popen(server_argv(source), env=server_env(models, port, settings),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        listening = wait_listening(port, proc)
        requests.get(f"{url}/api/version", timeout=30,
                     headers={"Connection": "close"}).raise_for_status()
        answered = time.perf_counter()
        sent, first = first_token(url, chat=chat)
    finally:
        stop(proc)
    stamps = log_stamps(log.read_text(errors="replace"))

    def since_start(name: str) -> float:  # a log line's time on the perf_counter clock
        return stamps[name] - wall0 + started

    return {
        "imports": stamps["imports"] - wall0,
        "listen": listening - started,
        "version": answered - started,
        "request": since_start("spawned") - sent,
        "runner_start": stamps["ready"] - stamps["spawned"] - stamps["load"],
        "load": stamps["load"],
        "first_token": first - since_start("ready"),
        "total": first - started,
    }


def peer_start(argv_for_port: Callable[[int], list[str]], *,
               chat: bool = False) -> dict[str, float]:
    """One cold start of llama-server: process start to listening and to the first token
    (``/completion``, or with ``chat`` ``/v1/chat/completions`` and its chat template)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    route, body = ("/v1/chat/completions", {
        "messages": [{"role": "user", "content": STORY}], "max_tokens": 2, "stream": True,
        **GREEDY}) if chat else \
        ("/completion", {"prompt": PROMPT, "n_predict": 2, "stream": True, **GREEDY})
    started = time.perf_counter()
    proc = subprocess.Popen(argv_for_port(port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        listening = wait_listening(port, proc)
        while True:
            try:
                with requests.post(url + route, json=body, stream=True, timeout=300,
                                   headers={"Connection": "close"}) as reply:
                    reply.raise_for_status()
                    for line in reply.iter_lines():
                        if line.startswith(b"data: ") and _peer_text(line[6:]):
                            return {"listen": listening - started,
                                    "total": time.perf_counter() - started}
                raise RuntimeError("llama-server streamed no token")
            except (requests.ConnectionError, requests.HTTPError):
                if proc.poll() is not None:
                    raise RuntimeError("llama-server exited early") from None
                time.sleep(0.01)
    finally:
        stop(proc)


def _peer_text(data: bytes) -> str:
    """The text of one llama-server stream event (``/completion`` or the OpenAI chat)."""
    if data.strip() == b"[DONE]":
        return ""
    event = json.loads(data)
    choices = event.get("choices") or [{}]
    return str(event.get("content") or (choices[0].get("delta") or {}).get("content") or "")


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def print_breakdown(sides: Mapping[str, list[dict[str, float]]]) -> None:
    """A markdown table: one row per phase (medians in ms), one column per side."""
    names = list(sides)
    meds = {name: medians(runs) for name, runs in sides.items()}
    print("| phase (ms, median) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for phase in PHASES:
        cells = [f"{1000 * meds[n][phase]:.0f}" if phase in meds[n] else "" for n in names]
        print(f"| {phase} | " + " | ".join(cells) + " |")
    if "llama-server" in sides:
        peer = sides["llama-server"]
        for name in names:
            if name == "llama-server":
                continue
            pairs = [o["total"] / p["total"] for o, p in zip(sides[name], peer, strict=True)]
            print(f"{name}/llama-server, process start -> first token: median of pairs "
                  f"{statistics.median(pairs):.2f} (range {min(pairs):.2f}-{max(pairs):.2f})")


def main() -> int:
    import bench_peer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--source", action="append", default=[], metavar="NAME=DIR",
                        help="also start the server from DIR's ollamactl package (repeatable)")
    parser.add_argument("--peer", action="store_true",
                        help="also start llama-server (built once by bench_peer)")
    parser.add_argument("--num-ctx", type=int, default=2048, help="context per slot")
    parser.add_argument("--parallel", type=int, default=4, help="slots (-np / NUM_PARALLEL)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ollamactl-bench")
    parser.add_argument("--chat", action="store_true",
                        help="a chat through the model's template instead of a raw generate")
    args = parser.parse_args()

    sources: dict[str, Path | None] = {"ollamactl": None}
    for item in args.source:
        name, _, folder = item.partition("=")
        sources[name] = Path(folder)
    binary = bench_peer.build_peer(args.cache) if args.peer else None
    settings = bench_peer.ours_settings(args)
    sides: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    if binary is not None:
        sides["llama-server"] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_store(root / "models")
        for round_no in range(args.rounds):
            order = list(sides) if round_no % 2 == 0 else list(sides)[::-1]
            for name in order:
                if name == "llama-server":
                    assert binary is not None
                    got = peer_start(lambda port: bench_peer.peer_argv(binary, port, args),
                                     chat=args.chat)
                else:
                    got = ours_start(root / "models", settings, root / f"{name}.log",
                                     sources[name], chat=args.chat)
                sides[name].append(got)
                print(f"round {round_no + 1} {name}: " + ", ".join(
                    f"{k} {1000 * v:.0f}" for k, v in got.items()), file=sys.stderr)
    print_breakdown(sides)
    return 0


if __name__ == "__main__":
    sys.exit(main())

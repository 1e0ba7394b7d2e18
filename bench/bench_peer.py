"""`ollamactl serve` side by side with llama.cpp's own `llama-server`, same model and settings.

The peer is built from the llama.cpp sources vendored in the llama-cpp-python sdist (the same
version the venv runs) with a CPU-only cmake build of the `llama-server` target, in a cache
folder outside the repository (default ~/.cache/ollamactl-bench; reused when present). Both
servers get SmolLM2-135M (Q4_1), the same context per slot, slots (4), batch size, thread count
and greedy decoding of the same raw prompt; every round measures each figure on both servers
back to back (who goes first alternates between rounds), so a drift in the machine's load
hits both sides of a pair alike:

- single stream: decode tok/s ((tokens-1) / first-to-last chunk) and warm TTFT, medians of
  `--singles` requests (5) per round;
- aggregate tok/s with 1, 4 and 8 concurrent clients (tokens of all requests / wall time);
- cold start to first token: process start -> first streamed token, with our phases
  (imports, listen, runner spawn, load, first token: see :mod:`bench_start`); ours also: model
  not loaded, server up -> first token, i.e. runner spawn + load + first token;
- idle RSS of our server with no model loaded.

It prints a table with the medians of each side and the median of the per-round our/peer
ratios, and appends one JSON line per run to bench/results/peer.jsonl.

    .venv/bin/python bench/bench_peer.py --rounds 3
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_start  # noqa: E402

from ollamactl.runtime.runner.config import physical_cores  # noqa: E402
from tests.integration.server_process import (  # noqa: E402
    SMOLLM2,
    free_port,
    make_store,
    running_server,
    smollm2_gguf,
)

VERSION = "0.3.36"
PROMPT = ("<|im_start|>user\nWrite a long story about a lighthouse keeper and a storm."
          "<|im_end|>\n<|im_start|>assistant\n")
# Native like a llama-server a user builds, but without AMX: ggml's AMX path dies of SIGILL on
# the project's Xeon VMs (see the README's "CPU runtime"), and a peer that crashes measures nothing.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=ON",
    f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF",
]
Sample = dict[str, float]
FRESH = {"Connection": "close"}  # one connection per request, the same for both servers


# -- the peer -----------------------------------------------------------------------------

def build_peer(cache: Path) -> Path:
    """`llama-server` built from the sdist's llama.cpp; reused when already built."""
    binary = cache / f"build-{VERSION}-noamx" / "bin" / "llama-server"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    source = cache / f"llama_cpp_python-{VERSION}"
    if not source.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", f"llama-cpp-python=={VERSION}", "-d", str(cache / "sdist")],
                       check=True)
        with tarfile.open(cache / "sdist" / f"llama_cpp_python-{VERSION}.tar.gz") as archive:
            archive.extractall(cache, filter="data")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    print(f"building llama-server in {cache} (several minutes on 2 cores)...", file=sys.stderr)
    subprocess.run(["cmake", "-S", str(source / "vendor" / "llama.cpp"), "-B",
                    str(binary.parent.parent), *generator, *CMAKE_FLAGS], check=True)
    subprocess.run(["cmake", "--build", str(binary.parent.parent), "--target", "llama-server",
                    "-j", str(os.cpu_count() or 2)], check=True)
    return binary


def peer_argv(binary: Path, port: int, args: argparse.Namespace) -> list[str]:
    return [str(binary), "-m", str(smollm2_gguf()), "--host", "127.0.0.1", "--port", str(port),
            "-c", str(args.num_ctx * args.parallel), "-np", str(args.parallel),
            "-b", "512", "-t", str(args.threads), "--no-webui"]


@contextmanager
def running_peer(binary: Path, args: argparse.Namespace, log: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(peer_argv(binary, port, args), stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(f"{url}/health", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama-server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


# -- one streamed request, either flavour -------------------------------------------------

def stream_ours(url: str, tokens: int) -> Sample:
    body = {"model": SMOLLM2, "prompt": PROMPT, "raw": True, "stream": True,
            "options": {"temperature": 0, "num_predict": tokens, "repeat_penalty": 1.0}}
    sent = time.perf_counter()
    stamps: list[float] = []
    count = 0
    with requests.post(f"{url}/api/generate", json=body, stream=True, timeout=300,
                       headers=FRESH) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            item = json.loads(line)
            if item.get("done"):
                count = int(item.get("eval_count", 0))
            elif item.get("response"):
                stamps.append(time.perf_counter())
    return _sample(sent, stamps, count or len(stamps))


def stream_peer(url: str, tokens: int) -> Sample:
    body = {"prompt": PROMPT, "n_predict": tokens, "temperature": 0, "stream": True,
            "repeat_penalty": 1.0, "cache_prompt": True}
    sent = time.perf_counter()
    stamps: list[float] = []
    count = 0
    with requests.post(f"{url}/completion", json=body, stream=True, timeout=300,
                       headers=FRESH) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith(b"data: "):
                continue
            item = json.loads(line[6:])
            if item.get("content"):
                stamps.append(time.perf_counter())
            if item.get("stop"):
                count = int(item.get("tokens_predicted", 0))
    return _sample(sent, stamps, count or len(stamps))


def _sample(sent: float, stamps: list[float], count: int) -> Sample:
    if len(stamps) < 2:
        raise RuntimeError("the server streamed fewer than two tokens")
    return {"ttft": stamps[0] - sent, "decode": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
            "tokens": float(count), "first": stamps[0]}


Streamer = Callable[[str, int], Sample]


def single(stream: Streamer, url: str, tokens: int) -> Sample:
    return stream(url, tokens)


def aggregate(stream: Streamer, url: str, clients: int, tokens: int, per_client: int) -> float:
    """Tokens per second of ``clients`` streams, each sending ``per_client`` requests."""
    def client() -> float:
        return sum(stream(url, tokens)["tokens"] for _ in range(per_client))

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(lambda _: client(), range(clients)))
    return total / (time.perf_counter() - started)


# -- cold start and RSS -------------------------------------------------------------------

def ours_settings(args: argparse.Namespace) -> dict[str, str]:
    return {"OLLAMA_NUM_PARALLEL": str(args.parallel), "OLLAMA_KEEP_ALIVE": "-1",
            "OLLAMA_CONTEXT_LENGTH": str(args.num_ctx)}


def ours_cold(models: Path, log: Path, args: argparse.Namespace) -> dict[str, float]:
    """One cold start phase by phase (:func:`bench_start.ours_start`), then, in a second
    process: model load -> first token with the server up and idle, and its idle RSS (MiB)."""
    phases = bench_start.ours_start(models, ours_settings(args), log)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bench_start.server_env(models, port, ours_settings(args))
    proc = subprocess.Popen(bench_start.server_argv(None), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                requests.get(f"{url}/api/version", timeout=1).raise_for_status()
                break
            except requests.ConnectionError:
                time.sleep(0.02)
        time.sleep(0.5)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        started = time.perf_counter()
        load = stream_ours(url, 2)["first"] - started
    finally:
        bench_start.stop(proc)
    return {**phases, "load_first_token": load, "idle_rss_mib": rss}


# -- the run ------------------------------------------------------------------------------

def figures(args: argparse.Namespace) -> list[Callable[[Streamer, str], dict[str, float]]]:
    """The measurements of one round, each giving one or more named figures."""
    def singles(stream: Streamer, url: str) -> dict[str, float]:
        one = [single(stream, url, args.tokens) for _ in range(args.singles)]
        return {"decode": statistics.median(s["decode"] for s in one),
                "ttft_ms": 1000 * statistics.median(s["ttft"] for s in one)}

    def concurrent(clients: int) -> Callable[[Streamer, str], dict[str, float]]:
        return lambda stream, url: {
            f"agg{clients}": aggregate(stream, url, clients, args.tokens, args.per_client)}

    return [singles, concurrent(1), concurrent(4), concurrent(8)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--singles", type=int, default=5,
                        help="single-stream requests per round (decode and TTFT medians)")
    parser.add_argument("--per-client", type=int, default=2,
                        help="requests each concurrent client sends in a row")
    parser.add_argument("--num-ctx", type=int, default=2048, help="context per slot")
    parser.add_argument("--parallel", type=int, default=4, help="slots (-np / NUM_PARALLEL)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ollamactl-bench")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "peer.jsonl")
    args = parser.parse_args()

    binary = build_peer(args.cache)
    peer_runs: list[dict[str, float]] = []
    our_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_store(root / "models")
        with running_peer(binary, args, root / "peer.log") as peer_url, \
                running_server(root / "models", ours_settings(args), root / "ours.log") as (
                    our_url, _proc):
            single(stream_peer, peer_url, 8)   # warm up both (ours loads its model here)
            single(stream_ours, our_url, 8)
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
                sides = [("peer", stream_peer, peer_url, peer_runs),
                         ("ours", stream_ours, our_url, our_runs)]
                for _label, _stream, _url, runs in sides:
                    runs.append({})
                for figure in figures(args):
                    for label, stream, url, runs in sides if round_no % 2 == 0 else sides[::-1]:
                        got = figure(stream, url)
                        runs[-1].update(got)
                        print(f"  {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in got.items()),
                              file=sys.stderr)
        colds: list[dict[str, float]] = []
        peer_colds: list[dict[str, float]] = []
        for round_no in range(args.rounds):
            def peer_cold() -> None:
                peer_colds.append(bench_start.peer_start(
                    lambda port: peer_argv(binary, port, args)))

            def our_cold() -> None:
                colds.append(ours_cold(root / "models", root / "cold.log", args))

            for measure in (peer_cold, our_cold) if round_no % 2 == 0 else (our_cold, peer_cold):
                measure()

    med = statistics.median
    keys = ["decode", "ttft_ms", "agg1", "agg4", "agg8"]
    peer = {k: med(r[k] for r in peer_runs) for k in keys}
    ours = {k: med(r[k] for r in our_runs) for k in keys}
    ratios = {k: med(o[k] / p[k] for o, p in zip(our_runs, peer_runs, strict=True))
              for k in keys}
    peer["cold_s"] = med(c["total"] for c in peer_colds)
    peer["cold_listen_s"] = med(c["listen"] for c in peer_colds)
    ours["cold_s"] = med(c["total"] for c in colds)
    ours["load_first_token_s"] = med(c["load_first_token"] for c in colds)
    ours["idle_rss_mib"] = med(c["idle_rss_mib"] for c in colds)
    ratios["cold_s"] = med(o["total"] / p["total"] for o, p in zip(colds, peer_colds,
                                                                    strict=True))
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "model": "SmolLM2-135M-Instruct Q4_1", "tokens": args.tokens,
        "num_ctx": args.num_ctx, "parallel": args.parallel, "threads": args.threads,
        "rounds": args.rounds, "peer": peer, "ours": ours, "ratios": ratios,
        "cold_phases_s": {k: med(c[k] for c in colds) for k in bench_start.PHASES},
        "per_round": {"peer": peer_runs, "ours": our_runs, "peer_cold": peer_colds,
                      "ours_cold": colds},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print_table(record)
    return 0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = psutil.cpu_count(logical=False)
    ram = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {cores} physical cores, {ram:.0f} GiB RAM, {platform.system()}"


def print_table(record: dict[str, Any]) -> None:
    peer, ours = record["peer"], record["ours"]
    rows = [
        ("single-stream decode (tok/s)", "decode", True, ">= 0.95"),
        ("warm TTFT, 1 client (ms)", "ttft_ms", False, "<= 1.2"),
        ("aggregate, 1 client (tok/s)", "agg1", True, ""),
        ("aggregate, 4 clients (tok/s)", "agg4", True, ">= 1.0"),
        ("aggregate, 8 clients (tok/s)", "agg8", True, ">= 1.0"),
        ("cold start -> first token (s)", "cold_s", False, "<= 1.2"),
    ]
    print(f"{record['date']}  {record['machine']}")
    print(f"{record['model']}, {record['tokens']} tokens, greedy, num_ctx {record['num_ctx']} "
          f"per slot, {record['parallel']} slots, {record['threads']} threads, "
          f"{record['rounds']} alternating rounds (medians)")
    print("| figure | llama-server | ollamactl | ours/peer (median of pairs) | target |")
    print("|---|---|---|---|---|")
    for title, key, _higher, target in rows:
        ratio = record["ratios"][key]
        print(f"| {title} | {peer[key]:.2f} | {ours[key]:.2f} | {ratio:.2f} | "
              f"{target} |")
    print(f"| ollamactl: model load -> first token (s) | | {ours['load_first_token_s']:.2f} | "
          "| <= 1.0 |")
    print(f"| ollamactl: idle server RSS, no model (MiB) | | {ours['idle_rss_mib']:.1f} | "
          "| <= 80 |")
    phases = ", ".join(f"{k} {1000 * v:.0f}" for k, v in record["cold_phases_s"].items())
    print(f"\ncold start, ollamactl (ms since process start for imports/listen/version, "
          f"else each phase's own): {phases}; llama-server listens at "
          f"{1000 * peer['cold_listen_s']:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())

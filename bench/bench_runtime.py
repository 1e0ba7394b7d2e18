"""The portable runtime's cost: its chosen CPU library against a -march=native build of the same
llama.cpp, on this machine, in the same sitting.

Both sides run the runner's own engine (``BatchEngine``: one context, four slots, batch 512,
physical cores, greedy) on SmolLM2-135M in a fresh worker process per round, the two sides
alternating so that machine noise hits both. Each round measures prompt processing of 512 tokens
(one sequence), single-stream decode (128 tokens) and the 4-client aggregate (four sequences of
128 tokens decoded together). Prints the medians and the ratio portable/native.

The native side is llama-cpp-python of the same version built with ``GGML_NATIVE=ON`` in a venv
of its own under --cache (``--build-native`` makes it, several minutes on two cores). AMX is
left out of it (``-mno-amx-*``): ggml's AMX path dies of SIGILL on the project's Xeon VMs, and a
crashing side measures nothing.

    .venv/bin/python bench/bench_runtime.py --build-native --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollamactl.runtime.builds import recipe  # noqa: E402

NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
NATIVE_CMAKE_ARGS = [
    "-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
]
TEXT = ("The lighthouse keeper climbed the stairs each evening to light the lamp, and the ships "
        "that passed in the dark counted on its beam to find the harbour. ")


# -- the worker: one round in a fresh process -----------------------------------------------

def worker(library: str, model: str, threads: int, tag: str) -> dict[str, float]:
    """One round of the three figures with ``library`` loaded ("" = CPU built in)."""
    from ollamactl.runtime.builds.loader import load_cpu_library

    load_cpu_library(library)
    from ollamactl.runtime.runner.batch import BatchEngine, Sampling, SequenceRequest

    engine = BatchEngine(model, n_ctx=2048, n_parallel=4, n_batch=512, n_threads=threads)

    def prompt(salt: str, size: int) -> list[int]:
        return engine.tokenize(f"[{tag} {salt}] {TEXT * 40}".encode(), True, False)[:size]

    def run(seqs: list[tuple[int, list[int], int]]) -> tuple[float, int, float]:
        """Decode; returns (seconds to the first token of all, tokens after that, seconds)."""
        for seq, tokens, predict in seqs:
            engine.admit(SequenceRequest(id=seq, prompt=tokens,
                                         sampling=Sampling(temperature=0), num_predict=predict))
        started = time.perf_counter()
        seen: set[int] = set()
        first = 0.0
        counted = 0
        while engine.busy:
            step = engine.step()
            if len(seen) == len(seqs):
                counted += len(step.tokens)
            seen.update(seq for seq, _ in step.tokens)
            if not first and len(seen) == len(seqs):
                first = time.perf_counter()
        return first - started, counted, time.perf_counter() - first

    try:
        run([(0, prompt("warm", 64), 4)])
        prefill_s, _, _ = run([(1, prompt("pp", 512), 1)])
        _, decoded, decode_s = run([(2, prompt("tg", 32), 128)])
        _, aggregate, aggregate_s = run([(i, prompt(f"agg{i}", 32), 128) for i in range(4)])
    finally:
        engine.close()
    return {"pp512": 512 / prefill_s, "decode": decoded / decode_s,
            "aggregate4": aggregate / aggregate_s}


# -- the parent -----------------------------------------------------------------------------

def build_native(cache: Path) -> Path:
    """A venv with llama-cpp-python built -march=native (AMX off); reused when present."""
    venv = cache / "native-venv"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    wheel_dir = cache / "native-wheel"
    if not list(wheel_dir.glob("*.whl")):
        print("building the native llama-cpp-python (several minutes)...", file=sys.stderr)
        env = {**os.environ, "CMAKE_ARGS": " ".join(f"'{a}'" if " " in a else a
                                                    for a in NATIVE_CMAKE_ARGS),
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                        "-w", str(wheel_dir), f"llama-cpp-python=={recipe.LLAMA_CPP_PYTHON}"],
                       check=True, env=env)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (wheel,) = wheel_dir.glob("*.whl")
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    return python


def one_round(python: str, library: str, args: argparse.Namespace, tag: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([python, __file__, "--worker", library or "-", "--threads",
                          str(args.threads), "--tag", tag, "--model", args.model],
                         capture_output=True, text=True,
                         env=env, check=False, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{python} failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().split("\n")[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="default: physical cores")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ollamactl-bench")
    parser.add_argument("--native-python", type=Path, help="a venv's python with a native "
                        "llama-cpp-python (default: the one --build-native makes)")
    parser.add_argument("--build-native", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:   # in either venv: needs llama_cpp and numpy only
        library = "" if args.worker == "-" else args.worker
        print(json.dumps(worker(library, args.model, args.threads, args.tag)))
        return 0

    from ollamactl.runtime.builds.serving import CpuLibraries
    from ollamactl.runtime.runner.config import physical_cores
    from tests.integration.server_process import smollm2_gguf

    args.threads = args.threads or physical_cores()
    args.model = str(smollm2_gguf())

    native = args.native_python or (build_native(args.cache) if args.build_native
                                    else args.cache / "native-venv" / "bin" / "python")
    if not Path(native).exists():
        raise SystemExit(f"no native build at {native}: pass --build-native")
    chosen = CpuLibraries.discover().choose()
    print(f"portable: {chosen.describe()}")
    print(f"native:   {native} (GGML_NATIVE=ON, {NO_AMX})")
    sides: dict[str, list[dict[str, float]]] = {"portable": [], "native": []}
    for index in range(args.rounds):
        order = ["portable", "native"] if index % 2 == 0 else ["native", "portable"]
        for side in order:
            python = sys.executable if side == "portable" else str(native)
            library = str(chosen.path or "") if side == "portable" else ""
            sides[side].append(one_round(python, library, args, f"{side}{index}"))
        print(f"round {index + 1}: " + "  ".join(
            f"{side} " + " ".join(f"{k}={v:.1f}" for k, v in sides[side][-1].items())
            for side in ("portable", "native")), flush=True)
    print(f"\nmedians over {args.rounds} rounds, tokens/s ({args.threads} threads):")
    print(f"{'figure':<12}{'portable':>10}{'native':>10}{'ratio':>8}")
    record: dict[str, Any] = {"library": chosen.name, "rounds": args.rounds}
    for figure in ("pp512", "decode", "aggregate4"):
        portable = statistics.median(r[figure] for r in sides["portable"])
        native_v = statistics.median(r[figure] for r in sides["native"])
        ratios = [p[figure] / n[figure] for p, n in zip(sides["portable"], sides["native"],
                                                         strict=True)]
        record[figure] = {"portable": portable, "native": native_v,
                          "ratio": statistics.median(ratios)}
        print(f"{figure:<12}{portable:>10.1f}{native_v:>10.1f}{statistics.median(ratios):>8.3f}")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())

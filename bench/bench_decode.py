"""Single-stream decode tokens/s: `ollamactl serve` (/api/generate) vs raw llama-cpp-python.

Both sides run SmolLM2-135M with the same prompt tokens, context, batch, thread count, greedy
sampling and number of generated tokens; the runs alternate so that machine noise hits both.
Server side: client-observed rate of the streamed chunks (first to last token), and the
server's own eval_count / eval_duration. Raw side: the same loop llama-cpp-python's
``Llama.generate`` runs, timed from the first to the last token. Prints the ratio (target
>= 0.95).

    .venv/bin/python bench/bench_decode.py --runs 5 --tokens 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollamactl.runtime.runner.config import physical_cores  # noqa: E402
from tests.integration.server_process import (  # noqa: E402
    SMOLLM2,
    make_store,
    running_server,
    smollm2_gguf,
)

PROMPT = ("<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n"
          "<|im_start|>assistant\n")


def server_run(url: str, tokens: int, options: dict[str, object]) -> tuple[float, float]:
    """(client-observed tok/s, server-reported tok/s) for one streamed generation."""
    body = {"model": SMOLLM2, "prompt": PROMPT, "raw": True, "keep_alive": -1,
            "options": {**options, "num_predict": tokens}}
    stamps: list[float] = []
    final: dict[str, int] = {}
    with requests.post(f"{url}/api/generate", json=body, stream=True, timeout=300) as reply:
        for line in reply.iter_lines():
            item = json.loads(line)
            if item.get("done"):
                final = item
            elif item.get("response"):
                stamps.append(time.perf_counter())
    observed = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    reported = final["eval_count"] / final["eval_duration"] * 1e9
    return observed, reported


def raw_run(llm: object, tokens: int) -> float:
    import llama_cpp

    model: llama_cpp.Llama = llm  # type: ignore[assignment]
    prompt = model.tokenize(PROMPT.encode(), add_bos=True, special=True)
    model.reset()
    stamps: list[float] = []
    for token in model.generate(prompt, temp=0.0, top_k=40, top_p=0.9, min_p=0.0,
                                repeat_penalty=1.1, reset=True):
        if llama_cpp.llama_vocab_is_eog(model._model.vocab, token):
            break
        model.detokenize([token])
        stamps.append(time.perf_counter())
        if len(stamps) >= tokens:
            break
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--num-ctx", type=int, default=2048)
    args = parser.parse_args()

    import llama_cpp

    from ollamactl.runtime.builds.loader import load_cpu_library
    from ollamactl.runtime.builds.serving import CpuLibraries

    # the CPU library the server's runner loads (a portable build has none until then)
    chosen = CpuLibraries.discover().choose()
    load_cpu_library(str(chosen.path) if chosen.path else "")
    threads = physical_cores()
    options = {"temperature": 0, "num_ctx": args.num_ctx, "num_thread": threads,
               "num_batch": 512, "repeat_penalty": 1.1, "top_k": 40, "top_p": 0.9}
    llm = llama_cpp.Llama(str(smollm2_gguf()), n_ctx=args.num_ctx, n_batch=512,
                          n_threads=threads, verbose=False)
    observed: list[float] = []
    reported: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_store(root / "models")
        with running_server(root / "models", {}, root / "server.log") as (url, _proc):
            server_run(url, 8, options)  # load + warm up
            raw_run(llm, 8)
            for _ in range(args.runs):
                seen, said = server_run(url, args.tokens, options)
                observed.append(seen)
                reported.append(said)
                raw.append(raw_run(llm, args.tokens))
    med = statistics.median
    print(f"model SmolLM2-135M Q4_1, {args.tokens} tokens, num_ctx {args.num_ctx}, "
          f"{threads} threads, greedy, {args.runs} alternating runs (median tok/s)")
    print(f"{'raw llama-cpp-python':<34}{med(raw):8.1f}")
    print(f"{'ollamactl serve (client-observed)':<34}{med(observed):8.1f}")
    print(f"{'ollamactl serve (eval_duration)':<34}{med(reported):8.1f}")
    print(f"ratio server/raw (client-observed): {med(observed) / med(raw):.3f}  (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

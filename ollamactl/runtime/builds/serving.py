"""The server's view of its runtime: which CPU library each runner loads, and what a runner's
death by a signal means.

Built once per server from the runtime's library folder, this CPU, the self-test record and
``OLLAMA_LLM_LIBRARY``. A variant whose runner dies of SIGILL is not chosen again by this
server (the next load takes the next safer one), as the self-test would have decided.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamactl.runtime.builds import recipe, selftest
from ollamactl.runtime.builds import variants as cpu_variants

log = logging.getLogger(__name__)

FIX_COMMAND = "ollamactl runtime selftest --force"


@dataclass
class CpuLibraries:
    """The CPU libraries of this server's runtime and the rule that picks one per load."""

    cpu: cpu_variants.CpuInfo
    present: dict[str, Path]
    outcomes: dict[str, dict[str, Any]]   # self-test outcomes on this CPU and build, by tag
    requested: str = ""
    avoided: set[str] = field(default_factory=set)
    lib_dir: Path | None = None

    @classmethod
    def discover(cls, requested: str | None = None) -> CpuLibraries:
        cpu = cpu_variants.detect()
        lib_dir = recipe.library_dir()
        present = cpu_variants.available(lib_dir, cpu.arch) if lib_dir else {}
        outcomes = selftest.load_results(lib_dir, cpu).outcomes if lib_dir else {}
        if requested is None:
            requested = os.environ.get("OLLAMA_LLM_LIBRARY", "")
        return cls(cpu, present, outcomes, requested.strip(), lib_dir=lib_dir)

    @property
    def verdicts(self) -> dict[str, bool]:
        return selftest.verdicts(self.outcomes)

    def choose(self) -> cpu_variants.Choice:
        """Raises VariantError when nothing here can serve as asked."""
        return cpu_variants.choose(self.cpu, self.present, requested=self.requested,
                                   verdicts=self.verdicts, avoid=self.avoided)

    def runner_env(self, choice: cpu_variants.Choice) -> dict[str, str]:
        from ollamactl.runtime.builds.loader import LIBRARY_ENV

        return {LIBRARY_ENV: str(choice.path) if choice.path else ""}

    def explain_death(self, choice: cpu_variants.Choice | None, signal_name: str) -> str:
        """What a runner's death by ``signal_name`` means, with the fix; demotes the variant
        after SIGILL so the next load of this server takes a safer one."""
        meaning = selftest.SIGNAL_MEANINGS.get(signal_name)
        if meaning is None:
            return ""
        if signal_name != "SIGILL":
            return (f"{meaning}; the runtime's CPU library was "
                    f"{choice.describe() if choice else 'unknown'}; check `ollamactl logs`, "
                    "the model file (ollamactl show MODEL) and free memory")
        if choice is None or choice.variant is None:
            return (f"{meaning}; this llama.cpp build was compiled for another CPU: rebuild it "
                    "with `bash scripts/setup.sh` (a portable build), then `ollamactl update`")
        variant = choice.variant
        missing = self.cpu.missing(variant)
        has = ", ".join(sorted(self.cpu.flags & _interesting(self.cpu.arch))) or "unknown"
        if choice.reason != "OLLAMA_LLM_LIBRARY":
            self.avoided.add(variant.tag)
        lacks = f"; it lacks {', '.join(missing)}" if missing else ""
        library = choice.path.name if choice.path else variant.tag
        return (f"{meaning}; the CPU library {variant.name} ({library}) uses "
                f"{variant.instruction_set}; this CPU has {has}{lacks}. Fix: `{FIX_COMMAND}` "
                f"(or `ollamactl env set OLLAMA_LLM_LIBRARY {self.safer(variant)}`)")

    def safer(self, variant: cpu_variants.Variant) -> str:
        """The best library here below ``variant`` that this CPU runs without a probe."""
        below = [v for v in cpu_variants.for_arch(variant.arch)
                 if v.tag in self.present and not v.needs_probe and v.needs < variant.needs
                 and (self.cpu.runs(v) or not self.cpu.flags)]
        return below[-1].name if below else "cpu"


def _interesting(arch: str) -> frozenset[str]:
    return frozenset(flag for v in cpu_variants.for_arch(arch) for flag in v.needs)


@functools.lru_cache(maxsize=1)
def server_libraries() -> CpuLibraries:
    """The server's one instance (the runner client asks it at every spawn)."""
    libraries = CpuLibraries.discover()
    log.info("CPU: %s (%s); CPU libraries: %s; self-test: %s", libraries.cpu.model or "unknown",
             libraries.cpu.arch, ", ".join(sorted(libraries.present)) or "built in",
             ", ".join(f"{t}={'pass' if ok else 'fail'}" for t, ok in libraries.verdicts.items())
             or "not run on this CPU and build")
    return libraries


def describe(requested: str | None = None) -> dict[str, object]:
    """This runtime as doctor and ``ollamactl runtime show`` report it (JSON-ready)."""
    from ollamactl.runtime.builds.gpu_backends import installed_gpu_runtimes

    libraries = CpuLibraries.discover(requested)
    lib_dir, outcomes = libraries.lib_dir, libraries.outcomes
    state: dict[str, object] = {
        "prefix": sys.prefix, "library_dir": str(lib_dir) if lib_dir else None,
        "build": recipe.installed_record(lib_dir) if lib_dir else None,
        "cpu": {"model": libraries.cpu.model, "arch": libraries.cpu.arch,
                "signature": libraries.cpu.signature},
        "variants": [
            {"name": v.name, "tag": v.tag, "present": v.tag in libraries.present,
             "runs_here": libraries.cpu.runs(v), "missing": libraries.cpu.missing(v),
             "needs_probe": v.needs_probe, "instruction_set": v.instruction_set,
             "selftest": outcomes.get(v.tag)}
            for v in cpu_variants.for_arch(libraries.cpu.arch) if v.tag in libraries.present],
        "builtin_selftest": outcomes.get(selftest.BUILTIN),
        "requested": libraries.requested,
        "gpu_runtimes": [{"backend": r.backend, "library": str(r.library),
                          "targets": list(r.targets)}
                         for r in installed_gpu_runtimes(lib_dir)] if lib_dir else [],
    }
    try:
        choice = libraries.choose()
    except cpu_variants.VariantError as exc:
        state["error"] = str(exc)
    else:
        state["serving"] = {"name": choice.name, "library": str(choice.path or ""),
                            "reason": choice.reason, "describe": choice.describe(),
                            "tag": choice.variant.tag if choice.variant else selftest.BUILTIN}
    return state


def main(argv: list[str]) -> int:
    """``python -m ollamactl.runtime.builds.serving [--library NAME]``: :func:`describe` as
    JSON, run inside the runtime the service uses (doctor and the CLI do)."""
    requested = argv[argv.index("--library") + 1] if "--library" in argv else None
    print(json.dumps(describe(requested), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

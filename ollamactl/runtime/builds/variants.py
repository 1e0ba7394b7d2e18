"""The CPU variants of llama.cpp's CPU backend, what each needs of the CPU, and which serves.

A portable runtime carries its CPU backend as several libraries (``libggml-cpu-<tag>.so``), as
Ollama's ``lib/ollama`` does, each compiled for one instruction set. The runner loads exactly one.
The choice is ours, not ggml's (``ggml_backend_load_best`` reads CPUID, which says nothing of the
OS's permission, and dlopens every variant to ask): the CPU's features come from the kernel's
view (``/proc/cpuinfo`` clears a flag whose state the OS does not save), a variant that needs the
OS's permission (AMX) is used only after a self-test proved it here, and a variant whose
self-test failed is never used. ``OLLAMA_LLM_LIBRARY`` names one (``cpu_avx2``...) to force it.

Standard library only: ``scripts/setup.sh`` imports this before the environment is built.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

LIBRARY_PREFIX = "libggml-cpu-"
# The GPU runtimes, best first; OLLAMA_LLM_LIBRARY names one of them to use only that one
# (the CPU library is then chosen as usual)
GPU_LIBRARY_NAMES = ("cuda", "hip", "vulkan")


@dataclass(frozen=True)
class Variant:
    """One build of the CPU backend: ggml's tag, our (Ollama-style) name, what it needs."""

    tag: str                 # ggml's variant name: libggml-cpu-<tag>.so
    name: str                # the OLLAMA_LLM_LIBRARY name
    arch: str                # "x86_64" or "aarch64"
    needs: frozenset[str]    # CPU feature flags, as Linux's /proc/cpuinfo names them
    ggml_features: tuple[str, ...]  # the GGML_* options ggml builds it with
    needs_probe: bool = False  # needs the OS's permission (AMX): only after a passing self-test

    @property
    def instruction_set(self) -> str:
        return ", ".join(self.ggml_features) or "baseline"

    def library_file(self, suffix: str) -> str:
        return f"{LIBRARY_PREFIX}{self.tag}{suffix}"


_AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
_X86_FLAGS: dict[str, tuple[str, ...]] = {
    "SSE42": ("sse4_2",), "AVX": ("avx",), "F16C": ("f16c",), "FMA": ("fma",),
    "AVX2": ("avx2",), "BMI2": ("bmi2",), "AVX512": _AVX512, "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",), "AVX512_BF16": ("avx512_bf16",), "AVX_VNNI": ("avx_vnni",),
    "AMX_TILE": ("amx_tile",), "AMX_INT8": ("amx_int8",),
}
_ARM_FLAGS: dict[str, tuple[str, ...]] = {
    "DOTPROD": ("asimddp",), "FP16_VECTOR_ARITHMETIC": ("asimdhp",), "SVE": ("sve",),
    "MATMUL_INT8": ("i8mm",), "SVE2": ("sve2",), "SME": ("sme",),
}


def _variant(tag: str, name: str, arch: str, *features: str) -> Variant:
    table = _X86_FLAGS if arch == "x86_64" else _ARM_FLAGS
    needs = frozenset(flag for feature in features for flag in table[feature])
    return Variant(tag, name, arch, needs, features,
                   needs_probe=any(f.startswith("AMX") for f in features))


# ggml's own variant list (ggml/src/CMakeLists.txt, GGML_CPU_ALL_VARIANTS), weakest first:
# a later entry is preferred when the CPU has everything it needs.
VARIANTS: tuple[Variant, ...] = (
    _variant("x64", "cpu", "x86_64"),
    _variant("sse42", "cpu_sse42", "x86_64", "SSE42"),
    _variant("sandybridge", "cpu_avx", "x86_64", "SSE42", "AVX"),
    _variant("ivybridge", "cpu_avx_f16c", "x86_64", "SSE42", "AVX", "F16C"),
    _variant("piledriver", "cpu_avx_fma", "x86_64", "SSE42", "AVX", "F16C", "FMA"),
    _variant("haswell", "cpu_avx2", "x86_64", "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"),
    _variant("alderlake", "cpu_avx_vnni", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX_VNNI"),
    _variant("skylakex", "cpu_avx512", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512"),
    _variant("cannonlake", "cpu_avx512_vbmi", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI"),
    _variant("cascadelake", "cpu_avx512_vnni", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI"),
    _variant("icelake", "cpu_avx512_vbmi_vnni", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI",
             "AVX512_VNNI"),
    _variant("cooperlake", "cpu_avx512_bf16", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI",
             "AVX512_BF16"),
    _variant("zen4", "cpu_avx512_vbmi_vnni_bf16", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI",
             "AVX512_VNNI", "AVX512_BF16"),
    _variant("sapphirerapids", "cpu_amx", "x86_64",
             "SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI",
             "AVX512_VNNI", "AVX512_BF16", "AMX_TILE", "AMX_INT8"),
    _variant("armv8.0_1", "cpu", "aarch64"),
    _variant("armv8.2_1", "cpu_dotprod", "aarch64", "DOTPROD"),
    _variant("armv8.2_2", "cpu_dotprod_fp16", "aarch64", "DOTPROD", "FP16_VECTOR_ARITHMETIC"),
    _variant("armv8.2_3", "cpu_sve", "aarch64", "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE"),
    _variant("armv8.6_1", "cpu_sve_i8mm", "aarch64",
             "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8"),
    _variant("armv8.6_2", "cpu_sve2_i8mm", "aarch64",
             "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8", "SVE2"),
    _variant("armv9.2_1", "cpu_sme", "aarch64",
             "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8", "SME"),
    _variant("armv9.2_2", "cpu_sve2_sme", "aarch64",
             "DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8", "SVE2", "SME"),
)

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


def machine_arch(machine: str | None = None) -> str:
    raw = (machine or platform.machine()).lower()
    return _ARCH_ALIASES.get(raw, raw)


def for_arch(arch: str) -> list[Variant]:
    return [v for v in VARIANTS if v.arch == arch]


def by_name(name: str, arch: str) -> Variant | None:
    """The variant ``name`` denotes: our name (``cpu_avx2``) or ggml's tag (``haswell``)."""
    wanted = name.strip().lower()
    for variant in for_arch(arch):
        if wanted in (variant.name, variant.tag, f"cpu-{variant.tag}"):
            return variant
    return None


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU offers as the OS reports it."""

    arch: str
    model: str
    flags: frozenset[str]

    @property
    def signature(self) -> str:
        """Changes when the runtime meets another CPU (a copied venv, an image, a new VM)."""
        text = f"{self.arch}\0{self.model}\0{' '.join(sorted(self.flags))}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def missing(self, variant: Variant) -> list[str]:
        return sorted(variant.needs - self.flags)

    def runs(self, variant: Variant) -> bool:
        return variant.arch == self.arch and not variant.needs - self.flags


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """The first processor of Linux's /proc/cpuinfo: x86 ``flags``, arm64 ``Features``."""
    model, flags = "", ""
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("model name", "cpu part") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = value
    return CpuInfo(arch, model, frozenset(flags.split()))


_MACOS_ARM_FEATURES = {
    "hw.optional.arm.FEAT_DotProd": "asimddp", "hw.optional.arm.FEAT_FP16": "asimdhp",
    "hw.optional.arm.FEAT_I8MM": "i8mm", "hw.optional.arm.FEAT_SME": "sme",
}


def detect(*, cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None) -> CpuInfo:
    """This machine's CPU: /proc/cpuinfo (Linux), else sysctl's machdep/hw.optional keys
    (macOS); elsewhere no flags (the baseline variant then serves unless OLLAMA_LLM_LIBRARY
    names another)."""
    arch = machine_arch(machine)
    if cpuinfo.is_file():
        return parse_cpuinfo(cpuinfo.read_text(errors="replace"), arch)
    if shutil.which("sysctl"):
        found = _detect_macos(arch)
        if found.flags:
            return found
    return CpuInfo(arch, platform.processor(), frozenset())


def _detect_macos(arch: str) -> CpuInfo:
    def sysctl(*names: str) -> dict[str, str]:
        try:
            out = subprocess.run(["sysctl", *names], capture_output=True, text=True,
                                 timeout=5, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.split("\n"))}

    values = sysctl("machdep.cpu.brand_string", "machdep.cpu.features",
                    "machdep.cpu.leaf7_features", *_MACOS_ARM_FEATURES)
    flags = {f.lower().replace(".", "_") for key in ("machdep.cpu.features",
                                                     "machdep.cpu.leaf7_features")
             for f in values.get(key, "").split()}
    flags |= {flag for key, flag in _MACOS_ARM_FEATURES.items() if values.get(key) == "1"}
    return CpuInfo(arch, values.get("machdep.cpu.brand_string", ""), frozenset(flags))


def wanted_for_build(cpu: CpuInfo, *, everything: bool = False) -> list[Variant]:
    """The variants a build for this machine carries: the baseline (the runtime still starts
    on any CPU of this architecture it is copied to), AVX2 or dot-product (nearly every CPU of
    the last decade), and the best variant this CPU runs, with AMX too when the CPU claims it
    (the self-test then decides). ``everything``: ggml's whole list, for images that move."""
    variants = for_arch(cpu.arch)
    if everything or not variants:
        return variants
    runnable = [v for v in variants if cpu.runs(v)]
    common = {"x86_64": "haswell", "aarch64": "armv8.2_1"}[cpu.arch]
    chosen = {variants[0].tag}
    chosen |= {v.tag for v in runnable if v.tag == common}
    plain = [v for v in runnable if not v.needs_probe]
    if plain:
        chosen.add(plain[-1].tag)
    chosen |= {v.tag for v in runnable if v.needs_probe}
    return [v for v in variants if v.tag in chosen]


def available(lib_dir: Path, arch: str) -> dict[str, Path]:
    """The variant libraries present in a runtime's library folder, by tag."""
    found: dict[str, Path] = {}
    for variant in for_arch(arch):
        for suffix in (".so", ".dylib", ".dll"):
            path = lib_dir / variant.library_file(suffix)
            if path.is_file():
                found[variant.tag] = path
    return found


@dataclass(frozen=True)
class Choice:
    """The CPU library one load uses and why (logged at each load, shown by doctor)."""

    variant: Variant | None      # None: a build without variants (its CPU code is built in)
    path: Path | None
    reason: str

    @property
    def name(self) -> str:
        return self.variant.name if self.variant else "cpu"

    def describe(self) -> str:
        if self.variant is None or self.path is None:
            return f"CPU backend built into the runtime ({self.reason})"
        return f"{self.variant.name} ({self.path.name}): {self.reason}"


class VariantError(ValueError):
    """No CPU library can serve as asked (a forced variant this CPU cannot run...)."""


def choose(cpu: CpuInfo, present: Mapping[str, Path], *, requested: str = "",
           verdicts: Mapping[str, bool] | None = None,
           avoid: Iterable[str] = ()) -> Choice:
    """The variant that serves the next load.

    ``verdicts`` maps a tag to its self-test result on this CPU and build (absent: not tested);
    ``avoid`` lists tags that crashed since (the server demotes a variant whose runner died of
    SIGILL). A requested library (OLLAMA_LLM_LIBRARY) wins when this CPU can run it.

    Raises:
        VariantError: the requested library is unknown, absent, or needs what this CPU lacks.
    """
    if not present:
        return Choice(None, None, "this llama.cpp build has no CPU variants")
    verdicts = verdicts or {}
    avoided = set(avoid)
    if requested and requested.lower() not in ("cpu_auto", "auto", *GPU_LIBRARY_NAMES):
        variant = by_name(requested, cpu.arch)
        if variant is None or variant.tag not in present:
            names = ", ".join(v.name for v in for_arch(cpu.arch) if v.tag in present)
            raise VariantError(f"OLLAMA_LLM_LIBRARY={requested} is not a CPU library of this "
                               f"runtime (it has: {names})")
        if cpu.flags and not cpu.runs(variant):
            raise VariantError(f"OLLAMA_LLM_LIBRARY={requested} needs "
                               f"{', '.join(cpu.missing(variant))}, which this CPU lacks")
        if variant.needs_probe and verdicts.get(variant.tag) is not True:
            raise VariantError(f"OLLAMA_LLM_LIBRARY={requested} uses AMX, which has not passed "
                               "the self-test on this machine (ollamactl runtime selftest)")
        return Choice(variant, present[variant.tag], "OLLAMA_LLM_LIBRARY")
    if not cpu.flags:
        baseline = for_arch(cpu.arch)[:1]
        if baseline and baseline[0].tag in present:
            return Choice(baseline[0], present[baseline[0].tag],
                          "this CPU's features are unknown: the baseline")
    skipped: list[str] = []
    for variant in reversed(for_arch(cpu.arch)):
        if variant.tag not in present or not cpu.runs(variant):
            continue
        verdict = verdicts.get(variant.tag)
        if variant.tag in avoided:
            skipped.append(f"{variant.name} crashed here")
        elif verdict is False:
            skipped.append(f"{variant.name} failed its self-test")
        elif variant.needs_probe and verdict is None:
            skipped.append(f"{variant.name} is not self-tested")
        else:
            why = "self-tested" if verdict else "not self-tested on this CPU yet"
            reason = f"the best variant this CPU runs ({why})"
            if skipped:
                reason += "; " + "; ".join(skipped)
            return Choice(variant, present[variant.tag], reason)
    raise VariantError("no CPU library of this runtime runs on this CPU: "
                       + ("; ".join(skipped) or f"it has {', '.join(sorted(present))}"))

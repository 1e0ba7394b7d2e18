"""What Ollama supports, as data: NVIDIA compute capabilities and driver minimums, AMD gfx targets.

The tables are the seed's (the Chinese Ollama guide, "GPU支持状态"): the compute capability table
with families and example cards (minimum 5.0), the AMD families and the LLVM targets ROCm ships
kernels for. Driver minimums come from the reference (ollama-compat.md §10): every CUDA GPU needs
driver >= 550 (CUDA 12.4), compute capability 5.0-6.x needs >= 570 (CUDA 12.8).

Verdicts are plain data (:class:`Verdict`) so ``gpu check`` and ``doctor`` say the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ollamactl.settings import Invalid, parse_gfx_override

OK, WARN, FAIL = "ok", "warn", "fail"

MIN_COMPUTE_CAPABILITY = (5, 0)
DRIVER_MIN_MAJOR = 550            # CUDA 12.4 runtime
DRIVER_MIN_MAJOR_PRE_VOLTA = 570  # compute capability < 7.0 needs CUDA 12.8


@dataclass(frozen=True)
class Verdict:
    """Can the server use this device, and why (not)."""

    code: str      # supported | override | override-unneeded | needs-override | unsupported |
    #                override-conflict | driver-too-old | igpu-disabled
    level: str     # ok | warn | fail
    reason: str
    advice: str = ""
    override: str | None = None   # AMD: the HSA_OVERRIDE_GFX_VERSION (x.y.z) that makes it work

    @property
    def ok(self) -> bool:
        return self.level != FAIL

    def as_dict(self) -> dict[str, str]:
        data = {"code": self.code, "level": self.level, "reason": self.reason,
                "advice": self.advice}
        if self.override:
            data["override"] = self.override
        return data


# -- NVIDIA -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaFamily:
    compute_capability: tuple[int, int]
    family: str
    cards: tuple[str, ...]


def _fam(cc: str, family: str, cards: str) -> CudaFamily:
    major, minor = cc.split(".")
    return CudaFamily((int(major), int(minor)), family, tuple(c.strip() for c in cards.split("|")))


#: The seed's table, in its order.
CUDA_FAMILIES: tuple[CudaFamily, ...] = (
    _fam("9.0", "NVIDIA", "H100"),
    _fam("8.9", "GeForce RTX 40xx", "RTX 4090|RTX 4080|RTX 4070 Ti|RTX 4060 Ti"),
    _fam("8.9", "NVIDIA Professional", "L4|L40|RTX 6000"),
    _fam("8.6", "GeForce RTX 30xx", "RTX 3090 Ti|RTX 3090|RTX 3080 Ti|RTX 3080|RTX 3070 Ti|"
         "RTX 3070|RTX 3060 Ti|RTX 3060"),
    _fam("8.6", "NVIDIA Professional", "A40|RTX A6000|RTX A5000|RTX A4000|RTX A3000|RTX A2000|"
         "A10|A16|A2"),
    _fam("8.0", "NVIDIA", "A100|A30"),
    _fam("7.5", "GeForce GTX/RTX", "GTX 1650 Ti|TITAN RTX|RTX 2080 Ti|RTX 2080|RTX 2070|RTX 2060"),
    _fam("7.5", "NVIDIA Professional", "T4|RTX 5000|RTX 4000|RTX 3000|T2000|T1200|T1000|T600|"
         "T500"),
    _fam("7.5", "Quadro", "RTX 8000|RTX 6000|RTX 5000|RTX 4000"),
    _fam("7.0", "NVIDIA", "TITAN V|V100|Quadro GV100"),
    _fam("6.1", "NVIDIA TITAN", "TITAN Xp|TITAN X"),
    _fam("6.1", "GeForce GTX", "GTX 1080 Ti|GTX 1080|GTX 1070 Ti|GTX 1070|GTX 1060|GTX 1050"),
    _fam("6.1", "Quadro", "P6000|P5200|P4200|P3200|P5000|P4000|P3000|P2200|P2000|P1000|P620|"
         "P600|P500|P520"),
    _fam("6.1", "Tesla", "P40|P4"),
    _fam("6.0", "NVIDIA", "Tesla P100|Quadro GP100"),
    _fam("5.2", "GeForce GTX", "GTX TITAN X|GTX 980 Ti|GTX 980|GTX 970|GTX 960|GTX 950"),
    _fam("5.2", "Quadro", "M6000 24GB|M6000|M5000|M5500M|M4000|M2200|M2000|M620"),
    _fam("5.2", "Tesla", "M60|M40"),
    _fam("5.0", "GeForce GTX", "GTX 750 Ti|GTX 750|NVS 810"),
    _fam("5.0", "Quadro", "K2200|K1200|K620|M1200|M520|M5000M|M4000M|M3000M|M2000M|M1000M|"
         "K620M|M600M|M500M"),
)


def cuda_family(name: str, compute_capability: tuple[int, int]) -> CudaFamily | None:
    """The seed's family for a device name (longest card name that is a whole word in it) with
    this compute capability; None when the seed does not list it."""
    best: tuple[int, CudaFamily] | None = None
    for fam in CUDA_FAMILIES:
        if fam.compute_capability != compute_capability:
            continue
        for card in fam.cards:
            if re.search(rf"(?<![\w]){re.escape(card)}(?![\w])", name, re.IGNORECASE) and (
                    best is None or len(card) > best[0]):
                best = (len(card), fam)
    return best[1] if best else None


def parse_driver_major(version: str) -> int | None:
    """``550.54.15`` -> 550; None when the text is not a driver version."""
    match = re.match(r"\s*(\d+)\.", version)
    return int(match[1]) if match else None


def format_cc(compute_capability: tuple[int, int]) -> str:
    return f"{compute_capability[0]}.{compute_capability[1]}"


def nvidia_verdict(name: str, compute_capability: tuple[int, int] | None,
                   driver_version: str | None) -> Verdict:
    """Verdict for one CUDA device from its compute capability and the driver version."""
    if compute_capability is None:
        return Verdict("unsupported", WARN, "compute capability could not be read from NVML",
                       "check `nvidia-smi --query-gpu=compute_cap --format=csv`")
    cc = format_cc(compute_capability)
    if compute_capability < MIN_COMPUTE_CAPABILITY:
        return Verdict(
            "unsupported", FAIL,
            f"compute capability {cc} is below Ollama's minimum "
            f"{format_cc(MIN_COMPUTE_CAPABILITY)}",
            "the server runs on the CPU; a source build of llama.cpp for this architecture "
            "(CMAKE_CUDA_ARCHITECTURES) may work, or use a newer card",
        )
    major = parse_driver_major(driver_version) if driver_version else None
    needed = DRIVER_MIN_MAJOR_PRE_VOLTA if compute_capability < (7, 0) else DRIVER_MIN_MAJOR
    if major is not None and major < needed:
        why = (f"compute capability {cc} needs driver >= {needed} (CUDA 12.8)"
               if needed == DRIVER_MIN_MAJOR_PRE_VOLTA
               else f"CUDA GPUs need driver >= {needed} (CUDA 12.4)")
        return Verdict("driver-too-old", FAIL, f"driver {driver_version} is too old: {why}",
                       f"upgrade the NVIDIA driver to {needed} or newer")
    family = cuda_family(name, compute_capability)
    known = f" ({family.family})" if family else ""
    driver_note = f", driver {driver_version}" if driver_version else ""
    return Verdict("supported", OK,
                   f"compute capability {cc}{known} >= {format_cc(MIN_COMPUTE_CAPABILITY)}"
                   f"{driver_note}")


# -- AMD --------------------------------------------------------------------------------------

#: The seed's "Ollama supports the following AMD GPUs" table.
AMD_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "AMD Radeon RX": ("7900 XTX", "7900 XT", "7900 GRE", "7800 XT", "7700 XT", "7600 XT", "7600",
                      "6950 XT", "6900 XTX", "6900XT", "6800 XT", "6800", "Vega 64", "Vega 56"),
    "AMD Radeon PRO": ("W7900", "W7800", "W7700", "W7600", "W7500", "W6900X", "W6800X Duo",
                       "W6800X", "W6800", "V620", "V420", "V340", "V320", "Vega II Duo", "Vega II",
                       "VII", "SSG"),
    "AMD Instinct": ("MI300X", "MI300A", "MI300", "MI250X", "MI250", "MI210", "MI200", "MI100",
                     "MI60", "MI50"),
}

#: The seed's LLVM targets with an example GPU each.
SEED_GFX_TARGETS: Mapping[str, str] = {
    "gfx900": "Radeon RX Vega 56", "gfx906": "Radeon Instinct MI50",
    "gfx908": "Radeon Instinct MI100", "gfx90a": "Radeon Instinct MI210",
    "gfx940": "Radeon Instinct MI300", "gfx941": "", "gfx942": "",
    "gfx1030": "Radeon PRO V620", "gfx1100": "Radeon PRO W7900",
    "gfx1101": "Radeon PRO W7700", "gfx1102": "Radeon RX 7600",
}
#: Targets added by current Ollama docs (ROCm 7); the seed's list is kept too.
CURRENT_GFX_ADDITIONS = ("gfx950", "gfx1150", "gfx1151", "gfx1200", "gfx1201")
SUPPORTED_GFX: frozenset[str] = frozenset((*SEED_GFX_TARGETS, *CURRENT_GFX_ADDITIONS))

#: iGPUs that ROCm supports directly and the server allows by default (reference §10).
DEFAULT_ENABLED_IGPU_GFX = frozenset({"gfx1151"})

#: A few PCI device ids for naming cards when neither sysfs nor udev gives a name.
AMD_DEVICE_NAMES: Mapping[int, str] = {
    0x744C: "Radeon RX 7900 XTX / XT / GRE",
    0x7448: "Radeon PRO W7900",
    0x73BF: "Radeon RX 6800 / 6800 XT / 6900 XT",
    0x743F: "Radeon RX 6400 / 6500 XT",
    0x74A1: "Instinct MI300X",
    0x740F: "Instinct MI210",
    0x15BF: "Radeon 780M",
    0x1681: "Radeon 680M",
    0x1586: "Radeon 8060S",
}


def gfx_from_target_version(value: int) -> str:
    """KFD ``gfx_target_version`` (decimal MMmmss) -> LLVM target: 110000 -> gfx1100,
    90010 -> gfx90a, 100304 -> gfx1034. Minor and stepping are hex digits in the name."""
    major, minor, step = value // 10000, (value // 100) % 100, value % 100
    if minor > 15 or step > 15:
        raise ValueError(f"gfx_target_version {value}: minor/stepping above 15")
    return f"gfx{major}{minor:x}{step:x}"


def parse_gfx(target: str) -> tuple[int, int, int]:
    """``gfx1034`` -> (10, 3, 4); ``gfx90a`` -> (9, 0, 10)."""
    match = re.fullmatch(r"gfx(\d{1,2})([0-9a-f])([0-9a-f])", target.lower())
    if not match:
        raise ValueError(f"{target!r} is not an LLVM gfx target")
    return int(match[1]), int(match[2], 16), int(match[3], 16)


def gfx_from_override(version: tuple[int, int, int]) -> str:
    """HSA_OVERRIDE_GFX_VERSION (10, 3, 0) -> gfx1030."""
    major, minor, step = version
    return f"gfx{major}{minor:x}{step:x}"


def override_for(target: str) -> str:
    """The HSA_OVERRIDE_GFX_VERSION text that makes ROCm treat a device as ``target``."""
    major, minor, step = parse_gfx(target)
    return f"{major}.{minor}.{step}"


def nearest_supported(target: str, supported: Iterable[str] = SUPPORTED_GFX) -> str | None:
    """The supported target of the same major.minor family with the lowest stepping, as the
    seed explains (gfx1034 "10.3.4" -> gfx1030 "10.3.0"); None when the family has none."""
    try:
        major, minor, _ = parse_gfx(target)
    except ValueError:
        return None
    same_family = sorted((parse_gfx(s), s) for s in supported
                         if parse_gfx(s)[:2] == (major, minor))
    return same_family[0][1] if same_family else None


def amd_verdict(target: str, *, override: str | None, integrated: bool,
                igpu_enable: bool | None, supported: frozenset[str] = SUPPORTED_GFX) -> Verdict:
    """Verdict for one ROCm device.

    ``override`` is the raw HSA_OVERRIDE_GFX_VERSION(_n) value that applies to it (None = unset),
    ``igpu_enable`` the parsed OLLAMA_IGPU_ENABLE (None = unset).
    """
    verdict = _gfx_verdict(target, override, supported)
    if integrated and verdict.code != "override-conflict":
        allowed = igpu_enable is True or (igpu_enable is None
                                          and target in DEFAULT_ENABLED_IGPU_GFX)
        if not allowed:
            extra = (f" with HSA_OVERRIDE_GFX_VERSION_<n>={verdict.override}"
                     if verdict.code == "needs-override" else "")
            return Verdict("igpu-disabled", WARN,
                           f"integrated GPU ({target}); skipped unless OLLAMA_IGPU_ENABLE=1",
                           f"set OLLAMA_IGPU_ENABLE=1 to use it{extra}; shared memory makes it "
                           "slower than a discrete card", override=verdict.override)
    return verdict


def _gfx_verdict(target: str, override: str | None, supported: frozenset[str]) -> Verdict:
    native = target in supported
    nearest = None if native else nearest_supported(target, supported)
    if override is not None and override.strip():
        try:
            version = parse_gfx_override(override)
        except Invalid as exc:
            return Verdict("override-conflict", FAIL,
                           f"HSA_OVERRIDE_GFX_VERSION={override!r} is malformed: {exc}",
                           "use x.y.z, e.g. 10.3.0 for gfx1030; or unset it")
        as_target = gfx_from_override(version)
        if as_target == target:
            return Verdict("override-unneeded", WARN,
                           f"{target} is overridden to itself ({override})",
                           "unset HSA_OVERRIDE_GFX_VERSION: it changes nothing")
        if native:
            return Verdict("override-conflict", FAIL,
                           f"{target} is supported natively but HSA_OVERRIDE_GFX_VERSION forces "
                           f"{as_target}: kernels for the wrong target crash or fault",
                           "unset HSA_OVERRIDE_GFX_VERSION (or use the per-device _N form)")
        if as_target not in supported:
            return Verdict("override-conflict", FAIL,
                           f"override {override} means {as_target}, which ROCm does not ship",
                           f"use {override_for(nearest)}" if nearest
                           else "unset HSA_OVERRIDE_GFX_VERSION")
        return Verdict("override", OK,
                       f"{target} is not in the supported list; runs as {as_target} "
                       f"through HSA_OVERRIDE_GFX_VERSION={override}", override=override.strip())
    if native:
        example = SEED_GFX_TARGETS.get(target)
        like = f" (like {example})" if example else ""
        return Verdict("supported", OK, f"LLVM target {target}{like} is supported by ROCm")
    if nearest:
        return Verdict("needs-override", FAIL,
                       f"{target} is not supported by ROCm; the nearest supported target is "
                       f"{nearest}",
                       f"set HSA_OVERRIDE_GFX_VERSION={override_for(nearest)}",
                       override=override_for(nearest))
    return Verdict("unsupported", FAIL,
                   f"{target} is not supported by ROCm and no supported target of the same "
                   "family exists",
                   "the server runs on the CPU (or try the Vulkan backend)")

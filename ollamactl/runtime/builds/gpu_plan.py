"""Which GPU runtime each GPU of this machine gets, as a pure function of the facts.

NVIDIA -> CUDA for exactly the compute capabilities present (else Vulkan when NVIDIA's Vulkan
driver is there, else a skip naming the toolkit to install); AMD -> HIP for its gfx targets (an
overridden card for the override's target), else Vulkan; Intel (found in sysfs: the GPU
inventory has no Intel backend) -> Vulkan; Apple -> Metal, built into llama-cpp-python's macOS
wheel. Every GPU left out is a :class:`Skipped` with the reason and the fix.
``OLLAMACTL_GPU_RUNTIMES`` (a comma list; ``none``) overrides the choice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ollamactl import host as hostmod
from ollamactl.errors import UsageError
from ollamactl.gpu import GpuInfo, GpuInventory, scan_gpus
from ollamactl.gpu.support import gfx_from_override
from ollamactl.runtime.builds.toolchains import (
    CUDA_PIP_HINT,
    Toolchains,
    VulkanToolchain,
    cuda_driver_problem,
)
from ollamactl.runtime.builds.variants import GPU_LIBRARY_NAMES
from ollamactl.settings import Invalid, parse_gfx_override
from ollamactl.system import Runner

BACKENDS = GPU_LIBRARY_NAMES     # the server's order of preference
RUNTIMES_ENV = "OLLAMACTL_GPU_RUNTIMES"
#: Vulkan drivers (ICD manifest name prefixes) per GPU vendor: Mesa's RADV is ``radeon``.
_VULKAN_DRIVERS = {"nvidia": ("nvidia",), "amd": ("radeon", "amd"), "intel": ("intel",)}
#: Display devices found in sysfs that have a Vulkan driver; a BMC's or a VM's display adapter
#: (ASPEED, QEMU, virtio) has none and must not trigger a build.
_SYSFS_VENDORS = {"0x8086": "intel"}


@dataclass(frozen=True)
class DisplayDevice:
    """A GPU the vendor backends of :mod:`ollamactl.gpu` do not list (Intel), from sysfs."""

    vendor: str          # intel
    card: str            # card0
    device_id: str       # 0x56a0

    @property
    def label(self) -> str:
        return f"{self.vendor}:{self.card}"


@dataclass(frozen=True)
class PlannedRuntime:
    """A runtime to build for some GPUs (``metal``: built into the CPU wheel, nothing to do)."""

    backend: str
    targets: tuple[str, ...]
    gpus: tuple[str, ...]
    note: str = ""

    @property
    def built_in(self) -> bool:
        return self.backend == "metal"


@dataclass(frozen=True)
class Skipped:
    """GPUs that get no runtime, why, and what would give them one."""

    gpus: tuple[str, ...]
    reason: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"no GPU runtime for {', '.join(self.gpus)}: {self.reason}{fix}"


@dataclass(frozen=True)
class Plan:
    runtimes: tuple[PlannedRuntime, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def to_build(self) -> tuple[PlannedRuntime, ...]:
        return tuple(r for r in self.runtimes if not r.built_in)

    def lines(self) -> list[str]:
        """What a user is told before any build: each skip, each built-in runtime."""
        return [s.line() for s in self.skipped] + [
            f"{r.backend}: {r.note}" for r in self.runtimes if r.built_in]


def display_devices(root: Path = Path("/")) -> list[DisplayDevice]:
    """Display devices of the vendors in :data:`_SYSFS_VENDORS` (``/sys/class/drm/cardN``)."""
    found = []
    for card in sorted((root / "sys/class/drm").glob("card*")):
        if not re.fullmatch(r"card\d+", card.name):
            continue           # card0-DP-1 and the like are connectors
        vendor = _read_sysfs(card / "device/vendor")
        if vendor in _SYSFS_VENDORS and _read_sysfs(card / "device/class").startswith("0x03"):
            found.append(DisplayDevice(_SYSFS_VENDORS[vendor], card.name,
                                       _read_sysfs(card / "device/device")))
    return found


def plan_runtimes(inventory: GpuInventory, tools: Toolchains,
                  others: Sequence[DisplayDevice] = ()) -> Plan:
    """Which runtime each GPU gets: NVIDIA -> CUDA for exactly its compute capabilities (else
    Vulkan, else a skip), AMD -> HIP for its gfx targets (an overridden card for the override's
    target; else Vulkan), Intel -> Vulkan, Apple -> Metal (built in)."""
    used = [g for g in inventory.gpus if g.visible and g.verdict.code != "igpu-disabled"]
    choice = _Choice()
    _choose_nvidia(choice, [g for g in used if g.vendor == "nvidia"], inventory, tools)
    _choose_amd(choice, [g for g in used if g.vendor == "amd"], tools)
    for device in others:
        if _vulkan_runs_on(tools.vulkan, device.vendor):
            choice.vulkan.append((device.label, ""))
        else:
            choice.skipped.append(Skipped((device.label,), f"no Vulkan driver for "
                                          f"{device.vendor}", "install mesa-vulkan-drivers"))
    if choice.vulkan:
        labels = tuple(label for label, _ in choice.vulkan)
        if tools.vulkan.reason:
            choice.skipped.append(Skipped(labels, "cannot build the Vulkan runtime: "
                                                  f"{tools.vulkan.reason}"))
        else:
            notes = "; ".join(dict.fromkeys(note for _, note in choice.vulkan if note))
            choice.runtimes.append(PlannedRuntime("vulkan", (), labels, notes))
    if apple := [_label(g) for g in used if g.vendor == "apple"]:
        choice.runtimes.append(PlannedRuntime("metal", (), tuple(apple),
                                              "Metal is built into llama-cpp-python on macOS: "
                                              "nothing to build"))
    for failure in inventory.problems:
        if failure.hardware:
            choice.skipped.append(Skipped(tuple(f"{failure.vendor}:{slot}"
                                                for slot in failure.hardware),
                                          failure.message, failure.hint))
    return Plan(tuple(choice.runtimes), tuple(choice.skipped))


@dataclass
class _Choice:
    """The plan while it is made: Vulkan collects its GPUs from every vendor."""

    runtimes: list[PlannedRuntime] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    vulkan: list[tuple[str, str]] = field(default_factory=list)     # (GPU, note)


def _choose_nvidia(choice: _Choice, gpus: list[GpuInfo], inventory: GpuInventory,
                   tools: Toolchains) -> None:
    usable = []
    for gpu in gpus:
        if gpu.verdict.ok and re.fullmatch(r"\d+\.\d+", gpu.compute):
            usable.append(gpu)
        else:
            choice.skipped.append(Skipped((_label(gpu),), gpu.verdict.reason,
                                          gpu.verdict.advice))
    if not usable:
        return
    cuda = tools.cuda
    if not cuda.usable:
        if _vulkan_runs_on(tools.vulkan, "nvidia"):
            choice.vulkan += [(_label(g), f"CUDA would be faster: {CUDA_PIP_HINT}")
                              for g in usable]
        else:
            choice.skipped.append(Skipped(tuple(map(_label, usable)), cuda.reason,
                                          "or install NVIDIA's Vulkan driver for the Vulkan "
                                          "runtime"))
        return
    too_old = [g for g in usable if _cc(g.compute) < cuda.oldest_architecture()]
    choice.skipped += [Skipped((_label(g),), f"CUDA {cuda.version} cannot build for compute "
                               f"capability {g.compute}", "install a CUDA 12 toolkit")
                       for g in too_old]
    fit = [g for g in usable if g not in too_old]
    if not fit:
        return
    report = inventory.nvidia
    problem = cuda_driver_problem(
        cuda, driver_version=_text(report.driver_version) if report else None,
        cuda_driver_version=_text(report.cuda_driver_version) if report else None,
        compute_capabilities=[_cc(g.compute) for g in fit])
    if problem:
        choice.skipped.append(Skipped(tuple(map(_label, fit)), problem))
        return
    archs = sorted({cuda_target(g) for g in fit}, key=int)
    choice.runtimes.append(PlannedRuntime("cuda", tuple(archs), tuple(map(_label, fit))))


def _choose_amd(choice: _Choice, gpus: list[GpuInfo], tools: Toolchains) -> None:
    hip: dict[str, list[str]] = {}      # gfx target -> GPUs
    for gpu in gpus:
        target = hip_target(gpu)
        if tools.rocm.usable and target:
            hip.setdefault(target, []).append(_label(gpu))
        elif _vulkan_runs_on(tools.vulkan, "amd"):
            why = tools.rocm.reason or gpu.verdict.reason
            choice.vulkan.append((_label(gpu), f"Vulkan instead of ROCm: {why}"))
        else:
            choice.skipped.append(Skipped((_label(gpu),), tools.rocm.reason or
                                          gpu.verdict.reason, "or install Mesa's Vulkan driver "
                                          "(mesa-vulkan-drivers)"))
    if hip:
        targets = tuple(sorted(hip))
        choice.runtimes.append(PlannedRuntime("hip", targets,
                                              tuple(g for t in targets for g in hip[t])))


def forced_backends(text: str | None) -> tuple[str, ...] | None:
    """``OLLAMACTL_GPU_RUNTIMES``: None when unset (plan from the GPUs), () for ``none``.

    Raises:
        UsageError: a name that is not a backend.
    """
    if text is None or not text.strip():
        return None
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if names == ("none",):
        return ()
    if unknown := [n for n in names if n not in BACKENDS]:
        raise UsageError(f"unknown GPU runtime {', '.join(unknown)} (choose from "
                         f"{', '.join(BACKENDS)} or none)")
    return names


def forced_plan(backends: Sequence[str], inventory: GpuInventory, tools: Toolchains) -> Plan:
    """Build ``backends`` whatever ``gpu check`` says (Vulkan for lavapipe in the tests); CUDA
    and HIP still take their targets from the GPUs present."""
    natural = plan_runtimes(inventory, tools)
    runtimes: list[PlannedRuntime] = []
    skipped: list[Skipped] = []
    for backend in backends:
        chosen = next((r for r in natural.runtimes if r.backend == backend), None)
        if backend == "vulkan":
            if tools.vulkan.reason:
                skipped.append(Skipped(("vulkan",), tools.vulkan.reason))
            else:
                runtimes.append(chosen or PlannedRuntime(
                    "vulkan", (), (), "built on request: no GPU here asked for it"))
            continue
        if chosen is not None:
            runtimes.append(chosen)
            continue
        vendor = "nvidia" if backend == "cuda" else "amd"
        toolkit = tools.cuda if backend == "cuda" else tools.rocm
        why = [s for s in natural.skipped if any(g.startswith(f"{vendor}:") for g in s.gpus)]
        skipped += why or [Skipped((backend,), toolkit.reason or f"no usable {vendor.upper()} "
                                   "GPU here to choose its targets for")]
    return Plan(tuple(runtimes), tuple(skipped))


def _label(gpu: GpuInfo) -> str:
    return f"{gpu.vendor}:{gpu.index} ({gpu.name})"


def _cc(compute: str) -> tuple[int, int]:
    major, minor = compute.split(".")
    return int(major), int(minor)


def cuda_target(gpu: GpuInfo) -> str:
    """The CUDA architecture a runtime for ``gpu`` is built for: compute capability 8.9 -> "89"
    (CMAKE_CUDA_ARCHITECTURES; doctor checks a runtime's targets against it)."""
    return gpu.compute.replace(".", "")


def hip_target(gpu: GpuInfo) -> str:
    """The gfx target ROCm runs ``gpu`` as: the override's for an overridden card ("" when ROCm
    cannot run it); what a HIP runtime is built for and doctor checks it against."""
    if not gpu.verdict.ok:
        return ""
    if gpu.verdict.code == "override" and gpu.verdict.override:
        try:
            return gfx_from_override(parse_gfx_override(gpu.verdict.override))
        except Invalid:
            return ""
    return gpu.compute


def _vulkan_runs_on(vulkan: VulkanToolchain, vendor: str) -> bool:
    prefixes = _VULKAN_DRIVERS.get(vendor, ())
    return bool(vulkan.loader) and any(Path(d).name.startswith(prefixes) for d in vulkan.drivers)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _read_sysfs(path: Path) -> str:
    try:
        return path.read_text().strip().lower()
    except OSError:
        return ""


def machine_plan(runner: Runner, tools: Toolchains, *,
                 backends: Iterable[str] | None = None) -> Plan:
    """This machine's plan: ``backends`` when given, else ``OLLAMACTL_GPU_RUNTIMES``, else the
    GPUs ``gpu check`` finds (scanned with this process's environment)."""
    inventory = scan_gpus(host=hostmod.detect(), environ=os.environ, runner=runner)
    wanted = tuple(backends) if backends is not None else \
        forced_backends(os.environ.get(RUNTIMES_ENV))
    if wanted is not None:
        return forced_plan(wanted, inventory, tools)
    return plan_runtimes(inventory, tools, display_devices())

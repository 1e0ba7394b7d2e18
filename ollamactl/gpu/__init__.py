"""GPU inventory and compatibility: NVIDIA (NVML), AMD (sysfs/KFD), Apple (Metal).

:func:`scan_gpus` asks each vendor backend once, applies the visibility variables
(CUDA_VISIBLE_DEVICES, ROCR/HIP_VISIBLE_DEVICES) and gives every device a
:class:`~ollamactl.gpu.support.Verdict`. Vendor-level failures (NVML missing, driver not loaded,
library/driver mismatch) become :class:`GpuProblem` entries, never exceptions, so ``gpu list``,
``gpu check`` and ``doctor`` always have an answer. :func:`detect_gpus` is the short form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ollamactl.gpu.amd import AmdDevice, AmdReport, read_amd
from ollamactl.gpu.apple import AppleReport, read_apple
from ollamactl.gpu.na import NA, NaType, jsonable
from ollamactl.gpu.nvidia import (
    GpuProcess,
    NvidiaDevice,
    NvidiaReport,
    Nvml,
    NvmlUnavailable,
    nvidia_pci_slots,
    read_nvidia,
)
from ollamactl.gpu.support import (
    FAIL,
    SUPPORTED_GFX,
    WARN,
    Verdict,
    amd_verdict,
    format_cc,
    nvidia_verdict,
    override_for,
)
from ollamactl.gpu.visible import Visibility, apply_amd_visible_devices, apply_cuda_visible_devices
from ollamactl.host import HostFacts
from ollamactl.settings import Invalid, parse_bool
from ollamactl.system import Runner

__all__ = ["NA", "GpuInfo", "GpuInventory", "GpuProblem", "NaType", "Nvml", "NvmlUnavailable",
           "Verdict", "detect_gpus", "scan_gpus"]


@dataclass(frozen=True)
class GpuInfo:
    """One GPU, whatever its vendor, with what the server would make of it."""

    vendor: str                          # nvidia | amd | apple
    index: int                           # the vendor runtime's index (NVML / ROCm order)
    name: str
    compute: str                         # "8.6" (CUDA compute capability) | "gfx1100" | "metal"
    uuid: str | NaType
    driver_version: str | NaType
    vram_total_bytes: int | NaType       # in bytes
    vram_free_bytes: int | NaType        # in bytes
    verdict: Verdict
    visible: bool = True                 # after the *_VISIBLE_DEVICES variables
    integrated: bool = False
    pci_bus_id: str | NaType = NA
    override: str | None = None          # AMD: HSA_OVERRIDE_GFX_VERSION that would make it work
    processes: tuple[GpuProcess, ...] | NaType = ()
    mig_enabled: bool | NaType = NA

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.as_dict()
        return dict(jsonable(data))


@dataclass(frozen=True)
class GpuProblem:
    """A vendor-level failure: no device of that vendor can be listed, and why."""

    vendor: str
    reason: str          # a stable code (NvmlUnavailable.reason for NVIDIA)
    message: str
    hint: str
    hardware: tuple[str, ...] = ()   # PCI slots of GPUs that are present nonetheless


@dataclass(frozen=True)
class GpuInventory:
    """Everything known about the GPUs of this machine, for listing, checking and doctor."""

    gpus: tuple[GpuInfo, ...]
    problems: tuple[GpuProblem, ...] = ()
    notes: tuple[str, ...] = ()
    nvidia: NvidiaReport | None = None
    amd: AmdReport | None = None
    apple: AppleReport | None = None
    cuda_visibility: Visibility | None = None
    amd_visibility: Visibility | None = None
    amd_overrides: Mapping[str, str] = field(default_factory=dict)   # recommended env

    def by_vendor(self, vendor: str) -> tuple[GpuInfo, ...]:
        return tuple(g for g in self.gpus if g.vendor == vendor)

    @property
    def usable(self) -> tuple[GpuInfo, ...]:
        return tuple(g for g in self.gpus if g.visible and g.verdict.ok
                     and g.verdict.code != "igpu-disabled")

    def as_dict(self) -> dict[str, Any]:
        return dict(jsonable({
            "gpus": [g.as_dict() for g in self.gpus],
            "problems": [asdict(p) for p in self.problems],
            "notes": list(self.notes),
            "nvidia_driver_version": self.nvidia.driver_version if self.nvidia else None,
            "cuda_driver_version": self.nvidia.cuda_driver_version if self.nvidia else None,
            "rocm_version": self.amd.rocm_version if self.amd else None,
            "amdgpu_driver_version": self.amd.driver_version if self.amd else None,
            "recommended_amd_overrides": dict(self.amd_overrides),
            "visibility": [
                {"variables": dict(v.variables), "visible": list(v.visible),
                 "force_cpu": v.force_cpu, "notes": list(v.notes)}
                for v in (self.cuda_visibility, self.amd_visibility) if v and v.is_set
            ],
        }))


def scan_gpus(*, host: HostFacts, environ: Mapping[str, str], root: Path = Path("/"),
              runner: Runner | None = None, nvml: Nvml | None = None) -> GpuInventory:
    """Ask every vendor backend that applies to ``host``; never raises for a GPU failure.

    ``environ`` is the environment the *server* runs with (visibility and override variables).
    """
    gpus: list[GpuInfo] = []
    problems: list[GpuProblem] = []
    notes: list[str] = []
    nvidia_report: NvidiaReport | None = None
    amd_report: AmdReport | None = None
    apple_report: AppleReport | None = None
    cuda_vis: Visibility | None = None
    amd_vis: Visibility | None = None
    overrides: dict[str, str] = {}

    if host.os_name in ("linux", "windows"):
        nvidia_report, problem = _scan_nvidia(nvml or Nvml(), root if host.os_name == "linux"
                                              else None)
        if problem:
            problems.append(problem)
        if nvidia_report:
            cuda_vis = apply_cuda_visible_devices(
                environ.get("CUDA_VISIBLE_DEVICES"),
                [(d.index, d.uuid) for d in nvidia_report.devices])
            gpus.extend(_nvidia_info(d, nvidia_report, d.index in cuda_vis.visible)
                        for d in nvidia_report.devices)
            notes.extend(cuda_vis.notes)
    if host.os_name == "linux":
        amd_report = read_amd(root)
        if amd_report.devices:
            amd_vis = apply_amd_visible_devices(
                environ, [(d.index, d.unique_id) for d in amd_report.devices])
            notes.extend(amd_vis.notes)
            amd_gpus = [_amd_info(d, amd_report, environ, d.index in amd_vis.visible)
                        for d in amd_report.devices]
            gpus.extend(amd_gpus)
            overrides = recommend_amd_overrides(amd_gpus)
    if host.os_name == "darwin" and runner is not None:
        apple_report = read_apple(host, runner)
        if apple_report and apple_report.metal:
            gpus.append(GpuInfo(
                vendor="apple", index=0, name=apple_report.chip, compute="metal", uuid=NA,
                driver_version=NA, vram_total_bytes=apple_report.unified_memory_bytes,
                vram_free_bytes=NA, integrated=True,
                verdict=Verdict("supported", "ok", "Apple Silicon GPU through Metal "
                                "(unified memory shared with the CPU)")))
        elif apple_report:
            notes.append(f"{apple_report.chip}: Intel Macs run models on the CPU (Metal "
                         "acceleration needs Apple Silicon)")
    return GpuInventory(tuple(gpus), tuple(problems), tuple(notes), nvidia_report, amd_report,
                        apple_report, cuda_vis, amd_vis, overrides)


def detect_gpus(*, host: HostFacts, environ: Mapping[str, str], root: Path = Path("/"),
                runner: Runner | None = None, nvml: Nvml | None = None) -> list[GpuInfo]:
    """The GPUs of this machine (see :func:`scan_gpus` for problems and notes)."""
    return list(scan_gpus(host=host, environ=environ, root=root, runner=runner, nvml=nvml).gpus)


def _scan_nvidia(nvml: Nvml, root: Path | None) -> tuple[NvidiaReport | None, GpuProblem | None]:
    try:
        return read_nvidia(nvml), None
    except NvmlUnavailable as exc:
        hardware = nvidia_pci_slots(root) if root is not None else ()
        if exc.reason == "library-not-found" and root is not None and not hardware:
            return None, None    # no NVIDIA GPU and no driver: nothing to report
        return None, GpuProblem("nvidia", exc.reason, exc.message, exc.hint or "", hardware)


def _nvidia_info(device: NvidiaDevice, report: NvidiaReport, visible: bool) -> GpuInfo:
    cc = device.compute_capability
    driver = report.driver_version
    return GpuInfo(
        vendor="nvidia", index=device.index, name=device.name,
        compute=format_cc(cc) if isinstance(cc, tuple) else "N/A", uuid=device.uuid,
        driver_version=driver, vram_total_bytes=device.vram_total_bytes,
        vram_free_bytes=device.vram_free_bytes,
        verdict=nvidia_verdict(device.name, cc if isinstance(cc, tuple) else None,
                               driver if isinstance(driver, str) else None),
        visible=visible, pci_bus_id=device.pci_bus_id, processes=device.processes,
        mig_enabled=device.mig_enabled,
    )


def _amd_info(device: AmdDevice, report: AmdReport, environ: Mapping[str, str],
              visible: bool) -> GpuInfo:
    supported = report.rocblas_targets or SUPPORTED_GFX
    override = environ.get(f"HSA_OVERRIDE_GFX_VERSION_{device.index}",
                           environ.get("HSA_OVERRIDE_GFX_VERSION"))
    verdict = amd_verdict(device.gfx, override=override, integrated=device.integrated,
                          igpu_enable=_igpu_enable(environ), supported=supported)
    return GpuInfo(
        vendor="amd", index=device.index, name=device.name, compute=device.gfx,
        uuid=device.unique_id, driver_version=report.driver_version,
        vram_total_bytes=device.vram_total_bytes, vram_free_bytes=device.vram_free_bytes,
        verdict=verdict, visible=visible, integrated=device.integrated,
        pci_bus_id=device.pci_slot, override=verdict.override,
    )


def _igpu_enable(environ: Mapping[str, str]) -> bool | None:
    raw = environ.get("OLLAMA_IGPU_ENABLE")
    if raw is None or not raw.strip():
        return None
    try:
        return parse_bool(raw)
    except Invalid:
        return True   # Ollama reads garbage as true


def recommend_amd_overrides(gpus: list[GpuInfo]) -> dict[str, str]:
    """The HSA_OVERRIDE_GFX_VERSION settings that make every used AMD GPU work.

    One global value when every visible, used device needs the same override; otherwise the
    per-device ``HSA_OVERRIDE_GFX_VERSION_<n>`` form, so a native card next to an unsupported
    one (a mixed iGPU + dGPU box) is not forced onto the wrong kernels.
    """
    used = [g for g in gpus if g.vendor == "amd" and g.visible
            and g.verdict.code != "igpu-disabled"]
    needing = [g for g in used if g.verdict.code == "needs-override" and g.override]
    if not needing:
        return {}
    values = {g.override for g in needing}
    if len(values) == 1 and len(needing) == len(used):
        return {"HSA_OVERRIDE_GFX_VERSION": needing[0].override or ""}
    return {f"HSA_OVERRIDE_GFX_VERSION_{g.index}": g.override or "" for g in needing}


def worst_level(gpus: tuple[GpuInfo, ...]) -> str:
    """fail > warn > ok over the visible devices."""
    levels = {g.verdict.level for g in gpus if g.visible}
    return FAIL if FAIL in levels else WARN if WARN in levels else "ok"


__all__ += ["override_for", "recommend_amd_overrides", "worst_level"]

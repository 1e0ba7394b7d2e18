"""The seed's fix for a GPU lost after suspend/resume, done safely: reload ``nvidia_uvm``.

The seed says ``sudo rmmod nvidia_uvm && sudo modprobe nvidia_uvm``. Run bare, ``rmmod`` fails
with "Module nvidia_uvm is in use" while the server (or anything else using CUDA) holds
``/dev/nvidia-uvm``. So: refuse, listing the holders, when a process other than the service
holds it; otherwise stop the service, remove and reload the module, start the service again and
confirm that NVML sees the GPUs. Every command goes through ``ctx.runner`` (dry-run, tests).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ollamactl.errors import CommandFailed, GpuError, PrivilegeError, UnsupportedPlatform
from ollamactl.gpu.nvidia import Nvml, NvmlUnavailable
from ollamactl.system import Cmd

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.service.base import ServiceManager

UVM_DEVICE = "/dev/nvidia-uvm"
UVM_MODULE = "nvidia_uvm"


@dataclass(frozen=True)
class DeviceHolder:
    """A process with ``/dev/nvidia-uvm`` open (``fuser -v /dev/nvidia-uvm``)."""

    pid: int
    name: str

    def __str__(self) -> str:
        return f"{self.pid} ({self.name})"


@dataclass
class ReloadReport:
    """What ``gpu reload-uvm`` did."""

    steps: list[str] = field(default_factory=list)
    service_was_running: bool = False
    gpu_count: int | None = None     # NVML's count afterwards; None in dry-run

    def as_dict(self) -> dict[str, object]:
        return {"steps": self.steps, "service_was_running": self.service_was_running,
                "gpu_count": self.gpu_count}


def device_holders(proc_root: Path, device: str = UVM_DEVICE) -> list[DeviceHolder]:
    """Processes whose open files include ``device``, from ``/proc/<pid>/fd``.

    Processes that vanish or deny access while being read are skipped.
    """
    holders = []
    try:
        entries = [p for p in proc_root.iterdir() if p.name.isdigit()]
    except OSError:
        return []
    for entry in sorted(entries, key=lambda p: int(p.name)):
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if device in links:
            holders.append(DeviceHolder(int(entry.name), _comm(entry)))
    return holders


def process_tree(proc_root: Path, root_pid: int) -> set[int]:
    """``root_pid`` and its descendants, from the PPid lines of ``/proc/<pid>/status``."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in proc_root.iterdir():
            if entry.name.isdigit():
                ppid = _ppid(entry)
                if ppid is not None:
                    parents[int(entry.name)] = ppid
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return tree


def reload_uvm(ctx: Context, *, manager: ServiceManager | None,
               nvml_factory: Callable[[], Nvml] = Nvml,
               proc_root: Path | None = None) -> ReloadReport:
    """Stop the service, ``rmmod nvidia_uvm``, ``modprobe nvidia_uvm``, start it, check NVML.

    Raises:
        UnsupportedPlatform: not Linux.
        PrivilegeError: not root (module loading needs it).
        GpuError: another process holds /dev/nvidia-uvm (nothing was changed), the reload
            failed (the service is started again), or NVML still sees no GPU afterwards.
    """
    if ctx.host.os_name != "linux":
        raise UnsupportedPlatform("reloading nvidia_uvm only applies to Linux")
    if not ctx.host.is_root and not ctx.dry_run:
        raise PrivilegeError("reloading a kernel module needs root", hint="run with sudo")
    proc = proc_root or ctx.path("/proc")
    report = ReloadReport()
    state = manager.status() if manager is not None else None
    ours = process_tree(proc, state.pid) if state is not None and state.pid else set()
    foreign = [h for h in device_holders(proc) if h.pid not in ours]
    if foreign:
        raise GpuError(
            f"{UVM_DEVICE} is in use by {', '.join(map(str, foreign))}; nothing was changed",
            hint="stop those processes (they use CUDA) and run `ollamactl gpu reload-uvm` again")
    report.service_was_running = bool(state is not None and state.running)
    if report.service_was_running and manager is not None:
        manager.stop()
        report.steps.append("stopped the service")
    try:
        _reload_module(ctx, proc, report)
    finally:
        if report.service_was_running and manager is not None:
            manager.start()
            report.steps.append("started the service")
    if not ctx.dry_run:
        report.gpu_count = _confirm(nvml_factory())
        report.steps.append(f"NVML sees {report.gpu_count} GPU(s)")
    return report


def _reload_module(ctx: Context, proc: Path, report: ReloadReport) -> None:
    if not ctx.dry_run:
        left = device_holders(proc)
        if left:
            raise GpuError(f"{UVM_DEVICE} is still in use after stopping the service by "
                           f"{', '.join(map(str, left))}",
                           hint="stop those processes and try again")
    if ctx.path(f"/sys/module/{UVM_MODULE}").exists() or ctx.dry_run:
        try:
            ctx.runner.run(Cmd(("rmmod", UVM_MODULE), why="unload the CUDA unified memory module"))
        except CommandFailed as exc:
            raise GpuError(f"could not unload {UVM_MODULE}: {exc.stderr_tail or exc.message}",
                           hint="a process still uses CUDA (see `fuser -v /dev/nvidia-uvm`)"
                           ) from exc
        report.steps.append(f"rmmod {UVM_MODULE}")
    try:
        ctx.runner.run(Cmd(("modprobe", UVM_MODULE), why="load it again, fresh after resume"))
    except CommandFailed as exc:
        raise GpuError(f"could not load {UVM_MODULE}: {exc.stderr_tail or exc.message}",
                       hint="check `dmesg`; a reboot restores the driver") from exc
    report.steps.append(f"modprobe {UVM_MODULE}")
    if not ctx.dry_run and not ctx.path(UVM_DEVICE).exists():
        ctx.runner.run(Cmd(("nvidia-modprobe", "-u", "-c=0"), why="create /dev/nvidia-uvm",
                           check=False))
        report.steps.append("nvidia-modprobe -u -c=0")


def _confirm(nvml: Nvml) -> int:
    try:
        count = int(nvml.query("nvmlDeviceGetCount", default=0))
    except NvmlUnavailable as exc:
        raise GpuError(f"nvidia_uvm was reloaded but NVML still fails: {exc.message}",
                       hint=exc.hint) from exc
    if count == 0:
        raise GpuError("nvidia_uvm was reloaded but NVML sees no GPU",
                       hint="a reboot is the remaining fix; to avoid it next time set "
                            "NVreg_PreserveVideoMemoryAllocations=1 and enable nvidia-suspend")
    return count


def _comm(entry: Path) -> str:
    try:
        return (entry / "comm").read_text().strip() or "?"
    except OSError:
        return "?"


def _ppid(entry: Path) -> int | None:
    try:
        for line in (entry / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None

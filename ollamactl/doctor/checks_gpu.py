"""GPU checks shared and NVIDIA: NVML health, compute capability, driver, device nodes, the
after-suspend symptom, suspend settings, VRAM headroom, visibility variables, offload."""

from __future__ import annotations

from typing import Any

from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.gpu import GpuInfo, GpuProblem
from ollamactl.gpu.support import DRIVER_MIN_MAJOR, DRIVER_MIN_MAJOR_PRE_VOLTA, parse_driver_major
from ollamactl.humanize import GIB

RELOAD_UVM = Fix("reload the CUDA unified memory module safely",
                 (("ollamactl", "gpu", "reload-uvm"),), safe=True)
AFTER_SUSPEND_LOG = ("cuda driver library failed to get device context 999",
                     "CUDA error: unknown error", "cudaGetDeviceCount failed",
                     "no compatible GPUs were discovered")


def _nvidia(p: Probe) -> tuple[tuple[GpuInfo, ...], GpuProblem | None]:
    problem = next((x for x in p.gpus.problems if x.vendor == "nvidia"), None)
    return p.gpus.by_vendor("nvidia"), problem


def _no_nvidia(p: Probe) -> Finding | None:
    gpus, problem = _nvidia(p)
    if not gpus and problem is None:
        return skip("no NVIDIA GPU (no NVML library and no NVIDIA PCI device)")
    if not gpus and problem is not None:
        return skip(f"NVML unavailable ({problem.reason}); see gpu.nvml")
    return None


def _cc(gpu: GpuInfo) -> tuple[int, int]:
    major, _, minor = gpu.compute.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else (99, 0)


def _table(gpus: tuple[GpuInfo, ...]) -> str:
    return "\n".join(f"{g.vendor}:{g.index} {g.name} [{g.compute}]: {g.verdict.reason}"
                     + (f" -> {g.verdict.advice}" if g.verdict.advice else "") for g in gpus)


@check("gpu.nvml", "NVIDIA driver answers (NVML)", area="gpu")
def nvml(p: Probe) -> Finding:
    gpus, problem = _nvidia(p)
    if problem is not None:
        where = f" for the GPU at {', '.join(problem.hardware)}" if problem.hardware else ""
        fix = RELOAD_UVM if problem.reason in ("init-failed", "init-timeout") \
            else Fix(problem.hint)
        return fail(f"NVML: {problem.message}{where}", problem.hint, fix, reason=problem.reason)
    if not gpus:
        return skip("no NVIDIA GPU (no NVML library and no NVIDIA PCI device)")
    report = p.gpus.nvidia
    driver = report.driver_version if report else "N/A"
    cuda = report.cuda_driver_version if report else "N/A"
    return ok(f"{len(gpus)} NVIDIA GPU(s), driver {driver}, CUDA {cuda}")


@check("gpu.nvidia-compute", "Compute capability >= 5.0", area="gpu")
def nvidia_compute(p: Probe) -> Finding:
    """C21: ``nvidia-smi --query-gpu=compute_cap``; the seed's minimum is 5.0."""
    missing = _no_nvidia(p)
    if missing:
        return missing
    gpus, _ = _nvidia(p)
    too_old = tuple(g for g in gpus if g.verdict.code == "unsupported")
    if too_old:
        return fail(f"{len(too_old)} GPU(s) below compute capability 5.0: "
                    f"{', '.join(g.name for g in too_old)}", _table(too_old),
                    Fix(too_old[0].verdict.advice))
    return ok(", ".join(f"{g.name} {g.compute}" for g in gpus))


@check("gpu.nvidia-driver", "NVIDIA driver new enough", area="gpu")
def nvidia_driver(p: Probe) -> Finding:
    """C20: >= 550 for every CUDA GPU, >= 570 when any has compute capability < 7.0."""
    missing = _no_nvidia(p)
    if missing:
        return missing
    gpus, _ = _nvidia(p)
    driver = p.gpus.nvidia.driver_version if p.gpus.nvidia else None
    major = parse_driver_major(driver) if isinstance(driver, str) else None
    if major is None:
        return skip("the driver version could not be read")
    pre_volta = [g for g in gpus if _cc(g) < (7, 0) and g.verdict.code != "unsupported"]
    needed = DRIVER_MIN_MAJOR_PRE_VOLTA if pre_volta else DRIVER_MIN_MAJOR
    if major < needed:
        why = f" ({pre_volta[0].name} has compute capability {pre_volta[0].compute})" \
            if pre_volta else ""
        return fail(f"driver {driver} is older than {needed}{why}",
                    fix=Fix(f"upgrade the NVIDIA driver to {needed} or newer"))
    return ok(f"driver {driver} >= {needed}")


@check("gpu.nvidia-devices", "NVIDIA device nodes and nvidia_uvm", area="gpu")
def nvidia_devices(p: Probe) -> Finding:
    """C22: /dev/nvidiactl, /dev/nvidia<N>, /dev/nvidia-uvm and /sys/module/nvidia_uvm."""
    gpus, problem = _nvidia(p)
    if not gpus and problem is None:
        return skip("no NVIDIA GPU")
    if not p.platform.has_sysfs or p.ctx.host.wsl:
        return skip("device nodes are a native Linux matter")
    absent = [n for n in ("/dev/nvidiactl", "/dev/nvidia-uvm") if not p.path(n).exists()]
    if not any(p.path("/dev").glob("nvidia[0-9]*")):
        absent.append("/dev/nvidia<N>")
    if not p.path("/sys/module/nvidia_uvm").exists():
        absent.append("module nvidia_uvm")
    if absent:
        return fail(f"missing: {', '.join(absent)}",
                    "CUDA needs the unified memory module and its device node",
                    Fix("load nvidia_uvm and create its node",
                        (("nvidia-modprobe", "-u", "-c=0"),), safe=True))
    return ok("device nodes present, nvidia_uvm loaded")


@check("gpu.after-suspend", "GPU survived suspend/resume", area="gpu")
def after_suspend(p: Probe) -> Finding:
    """C23: resumed since boot, and NVML fails or the log shows CUDA error 999 / no GPU."""
    gpus, problem = _nvidia(p)
    if not gpus and (problem is None or not problem.hardware):
        return skip("no NVIDIA GPU")
    suspends = (p.read("/sys/power/suspend_stats/success") or "0").strip()
    resumed = suspends.isdigit() and int(suspends) > 0
    lost_in_log = [line for line in p.log_lines or []
                   if any(s in line for s in AFTER_SUSPEND_LOG)]
    nvml_broken = problem is not None and problem.reason in ("init-failed", "init-timeout")
    if (nvml_broken or lost_in_log) and resumed:
        return fail(f"the GPU is lost after {suspends} suspend(s): the server falls back to CPU",
                    (lost_in_log[-1] if lost_in_log else problem.message if problem else ""),
                    RELOAD_UVM)
    if nvml_broken:
        return fail("NVML fails without a suspend on record", problem.message if problem else "",
                    Fix("check `nvidia-smi` and `dmesg`; reboot"))
    return ok(f"GPU answers ({suspends if suspends.isdigit() else 0} suspend(s) since boot)")


@check("gpu.suspend-config", "Driver keeps VRAM across suspend", area="gpu")
def suspend_config(p: Probe) -> Finding:
    """C24: NVreg_PreserveVideoMemoryAllocations and the nvidia-suspend units, on laptops."""
    if not p.gpus.by_vendor("nvidia"):
        return skip("no NVIDIA GPU")
    params = p.read("/proc/driver/nvidia/params")
    if params is None:
        return skip("no /proc/driver/nvidia/params")
    preserve = "PreserveVideoMemoryAllocations: 1" in params
    laptop = any(p.path("/sys/class/power_supply").glob("BAT*"))
    if preserve:
        return ok("PreserveVideoMemoryAllocations=1")
    if laptop:
        return warn("the driver drops VRAM on suspend (PreserveVideoMemoryAllocations=0) on a "
                    "machine with a battery",
                    fix=Fix("keep VRAM across suspend",
                            (("sh", "-c", "echo 'options nvidia "
                              "NVreg_PreserveVideoMemoryAllocations=1' > "
                              "/etc/modprobe.d/nvidia-preserve.conf"),
                             ("systemctl", "enable", "nvidia-suspend.service",
                              "nvidia-resume.service", "nvidia-hibernate.service"))))
    return ok("PreserveVideoMemoryAllocations=0; no battery, suspend unlikely")


@check("gpu.vram-headroom", "Free VRAM and other GPU users", area="gpu")
def vram_headroom(p: Probe) -> Finding:
    """C35: ``nvidia-smi --query-gpu=memory.free`` and ``--query-compute-apps``."""
    gpus = [(g, g.vram_free_bytes, g.vram_total_bytes) for g in p.gpus.gpus
            if g.visible and not g.integrated]
    figures = [(g, free, total) for g, free, total in gpus
               if isinstance(free, int) and isinstance(total, int)]
    if not figures:
        return skip("no discrete GPU with memory figures")
    service = p.service_pid
    lines, tight = [], []
    for g, free, total in figures:
        others = [x for x in g.processes if x.pid != service] \
            if isinstance(g.processes, tuple) else []
        lines.append(f"{g.vendor}:{g.index} {free / GIB:.1f} of {total / GIB:.1f} GiB free"
                     + (f", used by pid {', '.join(str(x.pid) for x in others)}" if others
                        else ""))
        if free < GIB:
            tight.append(g)
    if tight:
        return warn(f"less than 1 GiB free on {', '.join(g.name for g in tight)}",
                    "\n".join(lines),
                    Fix("free VRAM, or reserve it: OLLAMA_GPU_OVERHEAD, OLLAMA_KV_CACHE_TYPE=q8_0, "
                        "a smaller num_ctx"))
    return ok("; ".join(lines))


@check("gpu.visible-devices", "Visibility variables select GPUs", area="gpu")
def visible_devices(p: Probe) -> Finding:
    """CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES applied to the GPUs."""
    shown = [v for v in (p.gpus.cuda_visibility, p.gpus.amd_visibility) if v and v.is_set]
    names = {n for n in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                         "GPU_DEVICE_ORDINAL") if n in p.server_env}
    if not names:
        return ok("no visibility variable set: every GPU may be used")
    if not shown:
        return ok(f"{', '.join(sorted(names))} set; no GPU of that vendor here")
    settings_text = ", ".join(f"{k}={v}" for vis in shown for k, v in vis.variables)
    notes = "\n".join(n for vis in shown for n in vis.notes)
    if all(v.force_cpu for v in shown):
        return warn(f"{settings_text} hides every GPU: the server runs on the CPU", notes,
                    Fix("unset it to use the GPU", tuple(("ollamactl", "env", "unset", k)
                                                         for vis in shown
                                                         for k, _ in vis.variables)))
    if notes:
        return warn(f"{settings_text}: part of the list is ignored", notes,
                    Fix("use GPU UUIDs from `ollamactl gpu list` (indices may reorder)"))
    used = [g.name for g in p.gpus.gpus if g.visible]
    return ok(f"{settings_text}: uses {', '.join(used) or 'none'}")


@check("gpu.offload", "Loaded models sit on the GPU", area="gpu")
def offload(p: Probe) -> Finding:
    """C34: where /api/ps says each loaded model runs: a GPU runtime that failed (the reason the
    server kept), layers left on the CPU for want of VRAM, a CPU run beside a usable GPU."""
    answer = p.http("/api/ps")
    data = answer.json() if answer.status == 200 else None
    if not isinstance(data, dict):
        return skip(f"no server answers at {answer.url}")
    models = [m for m in data.get("models") or [] if isinstance(m, dict)]
    if not models:
        return skip("no model is loaded")
    failed, partial, on_cpu = [], [], []
    for model in models:
        name, where = model.get("name", "?"), model.get("ollamactl") or {}
        gpu_layers, layers = int(where.get("gpu_layers") or 0), int(where.get("layers") or 0)
        if where.get("gpu_error"):
            failed.append(f"{name}: {where['gpu_error']}")
        elif model.get("size_vram") and 0 < gpu_layers < layers:
            partial.append(f"{name}: {gpu_layers} of {layers} layers on the GPU, "
                           f"{layers - gpu_layers} on the CPU")
        elif model.get("size_vram") and model.get("size_vram", 0) < model.get("size", 0):
            partial.append(f"{name}: partly offloaded")
        elif not model.get("size_vram"):
            on_cpu.append(str(name))
    if failed:
        return fail(f"loaded on the CPU because the GPU runtime failed: {'; '.join(failed)}",
                    fix=Fix("see gpu.after-suspend and gpu.runtime; `ollamactl logs` has "
                            "the runner's own words"))
    if partial:
        return warn(f"VRAM is short: {'; '.join(partial)}",
                    fix=Fix("a smaller num_ctx or OLLAMA_NUM_PARALLEL, fewer loaded models "
                            "(OLLAMA_MAX_LOADED_MODELS), a smaller OLLAMA_GPU_OVERHEAD or "
                            "quantisation fits the whole model"))
    if on_cpu and p.gpus.usable:
        return fail(f"loaded on the CPU although a GPU is usable: {', '.join(on_cpu)}",
                    fix=Fix("see gpu.runtime, gpu.after-suspend and gpu.vram-headroom"))
    if on_cpu:
        return skip("no usable GPU: models run on the CPU by design")
    return ok(f"{len(models)} model(s) fully on the GPU")


def _runtimes(p: Probe) -> list[dict[str, Any]] | str:
    data = p.runtime
    if isinstance(data, str):
        return data
    return [r for r in data.get("gpu_runtimes") or [] if isinstance(r, dict)]


#: Which GPU runtimes serve a vendor's GPUs, best first (Vulkan serves any with a driver).
SERVES = {"nvidia": ("cuda", "vulkan"), "amd": ("hip", "vulkan")}


@check("gpu.runtime", "A GPU runtime for the usable GPUs", area="gpu")
def runtime(p: Probe) -> Finding:
    """A usable GPU and only a CPU runtime: every model runs on the CPU, silently."""
    usable = [g for g in p.gpus.usable if g.vendor in SERVES]
    if not usable:
        return skip("no usable NVIDIA or AMD GPU (Apple's Metal is built in)")
    runtimes = _runtimes(p)
    if isinstance(runtimes, str):
        return skip(runtimes)
    have = {r.get("backend") for r in runtimes}
    build = Fix("build the GPU runtime for this machine (minutes), then restart the service",
                (("ollamactl", "runtime", "build"), ("ollamactl", "restart")))
    missing = [g for g in usable if not have & set(SERVES[g.vendor])]
    if missing:
        return fail(f"{', '.join(g.name for g in missing)} usable, but the runtime has "
                    f"{'only ' + ', '.join(sorted(map(str, have))) if have else 'no GPU library'}"
                    ": models run on the CPU", _table(tuple(missing)), build)
    slower = [g for g in usable if SERVES[g.vendor][0] not in have]
    if slower:
        return warn(f"{', '.join(g.name for g in slower)} run through Vulkan; "
                    f"{'/'.join(sorted({SERVES[g.vendor][0].upper() for g in slower}))} is "
                    "usually faster", fix=build)
    return ok("GPU runtime(s): " + ", ".join(sorted(map(str, have))))


@check("gpu.runtime-targets", "The GPU runtime was built for these GPUs", area="gpu")
def runtime_targets(p: Probe) -> Finding:
    """A CUDA runtime built for other compute capabilities (or a ROCm one for other gfx
    targets) than the GPUs present: the runner fails to load, or JIT-compiles for minutes."""
    runtimes = _runtimes(p)
    if isinstance(runtimes, str):
        return skip(runtimes)
    from ollamactl.runtime.builds.gpu_plan import cuda_target, hip_target

    wanted = {"cuda": {cuda_target(g): g.name for g in p.gpus.usable if g.vendor == "nvidia"},
              "hip": {hip_target(g): g.name for g in p.gpus.usable if g.vendor == "amd"}}
    stale = []
    for item in runtimes:
        backend, targets = str(item.get("backend")), set(map(str, item.get("targets") or ()))
        need = wanted.get(backend) or {}
        if other := {t: name for t, name in need.items() if t not in targets}:
            stale.append(f"{backend} built for {', '.join(sorted(targets)) or 'nothing'}; "
                         + ", ".join(f"{name} needs {t}" for t, name in other.items()))
    if not any(wanted.values()) or not runtimes:
        return skip("no GPU runtime for a usable NVIDIA or AMD GPU")
    if stale:
        return fail("; ".join(stale), fix=Fix(
            "rebuild for the GPUs present, then restart the service",
            (("ollamactl", "runtime", "build", "--force"), ("ollamactl", "restart"))))
    return ok("built for " + ", ".join(f"{r.get('backend')} {','.join(r.get('targets') or [])}"
                                        for r in runtimes))

"""AMD checks: gfx targets and HSA overrides, device access and groups, driver, iGPUs."""

from __future__ import annotations

from ollamactl.doctor.accounts import group_members
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.identity import GPU_GROUPS, SERVICE_NAME

DISCOVERY_TIMEOUT_LOG = "failed to finish discovery before timeout"


def _no_amd(p: Probe) -> Finding | None:
    if not p.platform.has_sysfs:
        return skip("ROCm discovery through sysfs is Linux only")
    if not p.gpus.by_vendor("amd"):
        return skip("no AMD GPU in the KFD topology")
    return None


@check("gpu.amd-gfx", "AMD gfx targets and HSA overrides", area="gpu")
def amd_gfx(p: Probe) -> Finding:
    """C27: native, needs an override, override unneeded, forced on a native target, malformed."""
    missing = _no_amd(p)
    if missing:
        return missing
    gpus = [g for g in p.gpus.by_vendor("amd") if g.visible]
    detail = "\n".join(f"amd:{g.index} {g.name} [{g.compute}]: {g.verdict.reason}"
                       + (f" -> {g.verdict.advice}" if g.verdict.advice else "") for g in gpus)
    bad = [g for g in gpus if g.verdict.code == "override-conflict"]
    if bad:
        return fail(f"wrong HSA override for {', '.join(g.name for g in bad)}", detail,
                    Fix(bad[0].verdict.advice, tuple(
                        ("ollamactl", "env", "unset", name) for name in
                        ("HSA_OVERRIDE_GFX_VERSION", *(f"HSA_OVERRIDE_GFX_VERSION_{g.index}"
                                                       for g in bad))
                        if name in p.server_env), safe=True), overrides={})
    needed = p.gpus.amd_overrides
    if needed:
        return fail(f"{len(needed)} override(s) needed: "
                    + " ".join(f"{k}={v}" for k, v in needed.items()), detail,
                    Fix("set the override the seed describes",
                        tuple(("ollamactl", "env", "set", k, v) for k, v in needed.items()),
                        safe=True), overrides=dict(needed))
    unneeded = [g for g in gpus if g.verdict.code == "override-unneeded"]
    if unneeded:
        return warn(f"HSA override set but unneeded for {', '.join(g.name for g in unneeded)}",
                    detail, Fix("unset it", (("ollamactl", "env", "unset",
                                              "HSA_OVERRIDE_GFX_VERSION"),), safe=True))
    unsupported = [g for g in gpus if g.verdict.code == "unsupported"]
    if unsupported:
        return fail(f"no ROCm support for {', '.join(g.compute for g in unsupported)}", detail,
                    Fix(unsupported[0].verdict.advice))
    return ok(", ".join(f"{g.name} {g.compute} ({g.verdict.code})" for g in gpus), detail)


@check("gpu.amd-access", "AMD device nodes and render/video groups", area="gpu")
def amd_access(p: Probe) -> Finding:
    """C26: /dev/kfd and /dev/dri/renderD*; ``id -nG <service user>`` has render and video."""
    missing = _no_amd(p)
    if missing:
        return missing
    absent = [n for n in ("/dev/kfd",) if not p.path(n).exists()]
    if not any(p.path("/dev/dri").glob("renderD*")):
        absent.append("/dev/dri/renderD*")
    if absent:
        inside = " (start the container with --device /dev/kfd --device /dev/dri)" \
            if p.ctx.host.container else ""
        return fail(f"missing {', '.join(absent)}{inside}")
    user = p.service_user
    if user is None or user == "root":
        return ok("/dev/kfd and render nodes present" + ("; service runs as root"
                                                         if user else ""))
    lacking = [g for g in GPU_GROUPS if user not in group_members(g)]
    if lacking:
        return fail(f"the service user {user} is not in {', '.join(lacking)}",
                    "ROCm opens /dev/kfd and /dev/dri/renderD* through these groups",
                    Fix("add the groups and restart",
                        (("usermod", "-aG", ",".join(lacking), user),
                         ("systemctl", "restart", SERVICE_NAME)), safe=True))
    return ok(f"{user} is in render and video; device nodes present")


@check("gpu.amd-driver", "AMD kernel driver generation", area="gpu")
def amd_driver(p: Probe) -> Finding:
    """C28: ``/sys/module/amdgpu/version`` and the discovery-timeout log line."""
    missing = _no_amd(p)
    if missing:
        return missing
    report = p.gpus.amd
    timeouts = [line for line in p.log_lines or [] if DISCOVERY_TIMEOUT_LOG in line]
    if timeouts:
        return fail("GPU discovery timed out: usually a kernel driver older than ROCm 7's",
                    timeouts[-1], Fix("install AMD's current amdgpu driver (amdgpu-dkms)"))
    rocm = report.rocm_version if report else None
    driver = report.driver_version if report else None
    if not isinstance(driver, str):
        return warn(f"in-kernel amdgpu driver (no version); ROCm {rocm or 'not found'}",
                    "the seed recommends AMD's latest driver for full ROCm support",
                    Fix("install the driver from https://www.amd.com/en/support/linux-drivers"))
    return ok(f"amdgpu {driver}, ROCm {rocm or 'not found'}")


@check("gpu.igpu", "Integrated GPUs", area="gpu")
def igpu(p: Probe) -> Finding:
    """C29: iGPUs (small VRAM carve-out, big GTT) are skipped unless OLLAMA_IGPU_ENABLE=1."""
    igpus = [g for g in p.gpus.gpus if g.integrated and g.vendor != "apple"]
    if not igpus:
        return skip("no integrated GPU found")
    off = [g for g in igpus if g.verdict.code == "igpu-disabled"]
    detail = "\n".join(f"{g.vendor}:{g.index} {g.name} [{g.compute}]: {g.verdict.advice}"
                       for g in igpus)
    dgpus = [g for g in p.gpus.usable if not g.integrated]
    if off and not dgpus:
        return warn(f"only an integrated GPU ({', '.join(g.name for g in off)}), not used by "
                    "default: models run on the CPU", detail,
                    Fix("opt in", (("ollamactl", "env", "set", "OLLAMA_IGPU_ENABLE", "1"),)))
    if off:
        return ok(f"{', '.join(g.name for g in off)} skipped; the discrete GPU is used", detail)
    return ok(f"{', '.join(g.name for g in igpus)} enabled", detail)

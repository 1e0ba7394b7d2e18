"""Machine checks: memory, CPU vector extensions, a noexec /tmp, WSL, containers."""

from __future__ import annotations

import re

from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.humanize import gib


def meminfo(p: Probe) -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    values = {}
    for line in (p.read("/proc/meminfo") or "").splitlines():
        match = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if match:
            values[match[1]] = int(match[2]) * 1024
    return values


@check("system.memory", "Memory for the smallest model", area="system")
def memory(p: Probe) -> Finding:
    """C19: MemAvailable (and the unit's MemoryMax) against the smallest model."""
    info = meminfo(p)
    if "MemAvailable" not in info:
        return skip("no /proc/meminfo")
    available = info["MemAvailable"]
    limit = p.unit.get("MemoryMax", "infinity")
    if limit.isdigit():
        available = min(available, int(limit))
    smallest = min((m.size_bytes for m in p.manifests if m.size_bytes), default=0)
    text = f"{gib(available)} available" + (f" (MemoryMax={limit})" if limit.isdigit() else "")
    if smallest and available < smallest:
        return warn(f"{text}, less than the smallest model ({gib(smallest)})",
                    fix=Fix("use a smaller quantisation or context, or free memory"))
    return ok(text + (f"; smallest model {gib(smallest, 2)}" if smallest else ""))


@check("system.cpu-avx", "CPU vector extensions", area="system")
def cpu_avx(p: Probe) -> Finding:
    """C18: ``/proc/cpuinfo`` flags avx, avx2, avx512f and the hypervisor flag."""
    text = p.read("/proc/cpuinfo")
    if text is None:
        return skip("no /proc/cpuinfo")
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    if match is None:
        return skip("/proc/cpuinfo lists no x86 flags (not an x86 CPU)")
    flags = set(match[1].split())
    vm = " in a VM" if "hypervisor" in flags else ""
    have = [f for f in ("avx", "avx2", "avx512f") if f in flags]
    if "avx2" in flags:
        return ok(f"{', '.join(have)}{vm}")
    vm_fix = Fix("in the VM, use CPU model host-passthrough so the guest sees AVX2") if vm \
        else None
    if "avx" in flags:
        return warn(f"AVX without AVX2{vm}: inference on the CPU is slow", fix=vm_fix)
    return warn(f"no AVX{vm}: only the baseline CPU library runs, slowly (a runtime built "
                "for AVX dies of SIGILL here)", fix=vm_fix or Fix("run models on a GPU"))


@check("system.tmp-noexec", "Temporary directory allows execution", area="system")
def tmp_noexec(p: Probe) -> Finding:
    """C17: mount options of OLLAMA_TMPDIR / TMPDIR / /tmp (``findmnt -T``)."""
    tmp = p.setting("OLLAMA_TMPDIR") or p.setting("TMPDIR") or "/tmp"
    mounts = []
    for line in (p.read("/proc/self/mounts") or p.read("/proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts.append((fields[1], set(fields[3].split(","))))
    if not mounts:
        return skip("no /proc/mounts")
    best = max((m for m in mounts if tmp == m[0] or tmp.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    if best is None:
        return skip(f"no mount found for {tmp}")
    if "noexec" in best[1]:
        state = "/var/lib/ollama/tmp"
        return fail(f"{tmp} is on {best[0]}, mounted noexec: runners fail to start",
                    fix=Fix("give the server an exec-able temporary directory",
                            (("mkdir", "-p", state),
                             ("ollamactl", "env", "set", "OLLAMA_TMPDIR", state)),
                            safe=p.service_installed))
    return ok(f"{tmp} is on {best[0]} without noexec")


@check("system.wsl", "WSL GPU plumbing", area="system")
def wsl(p: Probe) -> Finding:
    """C31: WSL1 vs WSL2, /dev/dxg, /usr/lib/wsl/lib/libcuda.so.1, systemd in wsl.conf."""
    generation = p.ctx.host.wsl
    if not generation:
        return skip("not running under WSL")
    if generation == 1:
        return fail("WSL1 has no GPU access and no systemd",
                    fix=Fix("convert the distro", (("wsl.exe", "--set-version", "<distro>",
                                                    "2"),)))
    problems = []
    if not p.path("/dev/dxg").exists():
        problems.append("/dev/dxg is missing (GPU paravirtualisation off)")
    if not p.path("/usr/lib/wsl/lib/libcuda.so.1").exists():
        problems.append("/usr/lib/wsl/lib/libcuda.so.1 is missing (Windows NVIDIA driver)")
    if "systemd=true" not in (p.read("/etc/wsl.conf") or "").replace(" ", ""):
        problems.append("systemd is not enabled in /etc/wsl.conf ([boot] systemd=true)")
    if problems:
        return warn(f"WSL2: {len(problems)} problem(s)", "\n".join(problems),
                    Fix("install the Windows NVIDIA driver, add /usr/lib/wsl/lib to "
                        "LD_LIBRARY_PATH, enable systemd in /etc/wsl.conf"))
    return ok("WSL2 with /dev/dxg, the CUDA library and systemd")


@check("system.container-gpu", "GPU access from a container", area="system")
def container_gpu(p: Probe) -> Finding:
    """C30: inside a container, are the GPU device nodes there; on an SELinux host, may
    containers use devices (``getsebool container_use_devices``)?"""
    host = p.ctx.host
    if host.container:
        nodes = [n for n in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg") if p.path(n).exists()]
        if nodes or p.gpus.gpus:
            return ok(f"inside {host.container}; GPU nodes present: {', '.join(nodes) or 'yes'}")
        return warn(f"inside {host.container} without GPU device nodes: models run on the CPU",
                    "start the container with `--gpus all` (NVIDIA toolkit) or "
                    "`--device /dev/kfd --device /dev/dri` (AMD)")
    if host.selinux != "enforcing":
        return skip("not in a container and SELinux is not enforcing")
    result = p.run("getsebool", "container_use_devices", why="may containers use devices")
    if result is None or not result.ok:
        return skip("getsebool is not available")
    if result.stdout.strip().endswith("on"):
        return ok("SELinux lets containers use devices")
    return warn("SELinux blocks containers from the GPU devices (container_use_devices off)",
                fix=Fix("allow it", (("setsebool", "-P", "container_use_devices", "1"),),
                        safe=True))


@check("system.cpu-runtime", "CPU runtime: the library that serves, and its self-test",
       area="system")
def cpu_runtime(p: Probe) -> Finding:
    """C53: the runtime's CPU library for this CPU (portable build, OLLAMA_LLM_LIBRARY, the
    self-test on this machine and build), asked of the interpreter the service runs."""
    data = p.runtime
    if isinstance(data, str):
        return skip(data)
    if not data.get("library_dir"):
        return fail("llama-cpp-python is not installed in the runtime",
                    fix=Fix("set the runtime up", (("bash", "scripts/setup.sh"),)))
    if "error" in data:
        return fail(str(data["error"]), fix=Fix(
            "let the server choose", (("ollamactl", "env", "unset", "OLLAMA_LLM_LIBRARY"),),
            safe=p.service_installed))
    serving = data["serving"]
    tested = next((v.get("selftest") for v in data.get("variants") or []
                   if v["tag"] == serving["tag"]), data.get("builtin_selftest"))
    failed = [f"{v['name']} ({v['selftest'].get('detail')})" for v in data.get("variants") or []
              if v.get("selftest") and not v["selftest"].get("ok")]
    detail = "failed the self-test here: " + "; ".join(failed) if failed else ""
    selftest_fix = Fix("self-test the runtime on this machine",
                       (("ollamactl", "runtime", "selftest"),), safe=True)
    if not data.get("build"):
        return warn(f"{serving['describe']}; this llama.cpp was not built by ollamactl: it may "
                    "be a -march=native build that dies of SIGILL on another CPU", detail,
                    Fix("rebuild the portable runtime, then update the service",
                        (("bash", "scripts/setup.sh"), ("ollamactl", "update"))))
    if tested is None:
        return warn(f"{serving['describe']}; not self-tested on this CPU and build", detail,
                    selftest_fix)
    if not tested.get("ok"):
        return fail(f"{serving['describe']}; it failed its self-test here", detail, selftest_fix)
    return ok(f"{serving['describe']}; self-test passed here", detail)

"""Checks of the installed service: unit state, reloads, in-place edits, drift, sandbox, version."""

from __future__ import annotations

import re

from ollamactl import __version__
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import SERVICE, Probe
from ollamactl.doctor.registry import check
from ollamactl.service.health import ServerVersion

RESTART = Fix("restart the service so it reads its settings",
              (("systemctl", "restart", SERVICE),), safe=True)
GPU_NODES = ("char-nvidiactl", "char-nvidia-frontend", "char-nvidia-uvm", "char-drm", "char-kfd")
TRACKED_PREFIXES = ("OLLAMA_", "CUDA_", "HIP_", "ROCR_", "HSA_", "GGML_", "HTTP_PROXY",
                    "HTTPS_PROXY", "NO_PROXY")


def _needs_unit(p: Probe) -> Finding | None:
    if p.no_systemd_reason:
        return skip(p.no_systemd_reason)
    if not p.unit_installed:
        return skip("the ollama unit is not installed")
    return None


@check("service.unit", "Service installed, enabled, running", area="service")
def service_unit(p: Probe) -> Finding:
    """C4: ``systemctl show ollama -p LoadState,ActiveState,UnitFileState``."""
    if p.no_systemd_reason:
        state = p.service_state
        if state is None or not state.installed:
            return skip(f"{p.no_systemd_reason} and no watchdog service is installed")
        if state.running:
            return ok(f"{state.backend} service running (pid {state.pid})")
        return warn(f"{state.backend} service is {state.active}",
                    fix=Fix("start it", (("ollamactl", "start"),), safe=True))
    unit = p.unit
    if unit.get("LoadState") != "loaded":
        return fail(f"ollama.service is {unit.get('LoadState') or 'unknown'}",
                    "no unit file was found for the service",
                    Fix("install the service", (("ollamactl", "install"),)))
    active, enabled = unit.get("ActiveState", ""), unit.get("UnitFileState", "")
    summary = f"ollama.service {active} ({unit.get('SubState', '')}), {enabled}"
    if active == "failed":
        return fail(summary, "the service failed; see `ollamactl logs -n 50`",
                    Fix("restart it", (("systemctl", "restart", SERVICE),), safe=True))
    if active != "active":
        return warn(summary, fix=Fix("enable and start it",
                                     (("systemctl", "enable", "--now", SERVICE),), safe=True))
    if enabled not in ("enabled", "static", "enabled-runtime"):
        return warn(summary, "it will not start at boot",
                    Fix("enable it", (("systemctl", "enable", SERVICE),), safe=True))
    return ok(summary)


@check("service.daemon-reload", "Unit files reloaded", area="service")
def daemon_reload(p: Probe) -> Finding:
    """C6: ``systemctl show -p NeedDaemonReload``."""
    missing = _needs_unit(p)
    if missing:
        return missing
    if p.unit.get("NeedDaemonReload") == "yes":
        return warn("the unit changed on disk but systemd still runs the old version",
                    fix=Fix("reload systemd and restart the service",
                            (("systemctl", "daemon-reload"), ("systemctl", "restart", SERVICE)),
                            safe=True))
    return ok("systemd runs the unit as it is on disk")


@check("service.unit-edited", "Settings kept in a drop-in", area="service")
def unit_edited(p: Probe) -> Finding:
    """C5: Environment= lines in the main unit file are lost when an upgrade rewrites it."""
    missing = _needs_unit(p)
    if missing:
        return missing
    fragment = p.unit.get("FragmentPath", "")
    text = p.read(fragment) if fragment else None
    if text is None:
        return skip(f"cannot read the unit file {fragment or '(none)'}")
    inline = [line.strip() for line in text.splitlines()
              if re.match(r"\s*Environment\s*=", line)]
    if inline:
        return warn(f"{len(inline)} Environment= line(s) edited into {fragment}",
                    "an upgrade that rewrites the unit loses them: "
                    + "; ".join(inline[:3]),
                    Fix("move each into the drop-in with `ollamactl env set NAME VALUE`, then "
                        "delete the line from the unit"))
    return ok("no settings inside the unit file; drop-ins: "
              + (p.unit.get("DropInPaths") or "none"))


@check("service.env-drift", "Running server uses the configured settings", area="service")
def env_drift(p: Probe) -> Finding:
    """C7: ``/proc/<MainPID>/environ`` against the unit's Environment."""
    missing = _needs_unit(p)
    if missing:
        return missing
    pid = p.service_pid
    if pid is None:
        return skip("the service is not running")
    raw = None
    try:
        raw = p.path(f"/proc/{pid}/environ").read_bytes()
    except OSError as exc:
        return skip(f"cannot read /proc/{pid}/environ ({exc.strerror}); run as root")
    running = dict(item.partition("=")[::2] for item in raw.decode(errors="replace").split("\0")
                   if "=" in item)
    wanted = p.service_env or {}
    keys = {k for k in (*running, *wanted) if k.startswith(TRACKED_PREFIXES)}
    differ = sorted(k for k in keys if running.get(k) != wanted.get(k))
    if differ:
        return warn(f"the running server's settings differ from the unit's: {', '.join(differ)}",
                    "the settings changed after the server started", RESTART)
    return ok("the running server has the configured settings")


@check("service.gpu-sandbox", "Unit sandbox lets the GPU through", area="service")
def gpu_sandbox(p: Probe) -> Finding:
    """C32: PrivateDevices / DevicePolicy / DeviceAllow / SupplementaryGroups."""
    missing = _needs_unit(p)
    if missing:
        return missing
    unit = p.unit
    if unit.get("PrivateDevices") == "yes":
        return fail("PrivateDevices=yes hides /dev/nvidia*, /dev/kfd and /dev/dri from the server",
                    fix=Fix("set PrivateDevices=no in a drop-in (then daemon-reload, restart)"))
    if unit.get("DevicePolicy") in ("closed", "strict"):
        allowed = unit.get("DeviceAllow", "")
        lacking = [n for n in GPU_NODES if n not in allowed]
        vendor_needs = []
        if p.gpus.by_vendor("nvidia"):
            vendor_needs += [n for n in lacking if "nvidia" in n]
        if p.gpus.by_vendor("amd"):
            vendor_needs += [n for n in lacking if n in ("char-drm", "char-kfd")]
        if vendor_needs:
            return fail(f"DevicePolicy={unit['DevicePolicy']} without {', '.join(vendor_needs)}",
                        fix=Fix("add DeviceAllow=<group> rw lines for them in a drop-in"))
    groups = unit.get("SupplementaryGroups", "")
    if p.gpus.by_vendor("amd") and not {"render", "video"} & set(groups.split()):
        return warn("the unit does not add the render/video groups ROCm needs",
                    fix=Fix("SupplementaryGroups=render video in a drop-in"))
    return ok("GPU device nodes are reachable from the unit's sandbox")


@check("service.hardening", "Unit hardening score", area="service")
def hardening(p: Probe) -> Finding:
    """C33: ``systemd-analyze security --offline=true <unit>``."""
    missing = _needs_unit(p)
    if missing:
        return missing
    fragment = p.unit.get("FragmentPath", "")
    result = p.run("systemd-analyze", "security", "--offline=true", fragment,
                   why="score the unit's sandbox", timeout_s=15.0)
    if result is None:
        return skip("systemd-analyze is not available")
    match = re.search(r"Overall exposure level for \S+:\s*([\d.]+)\s+(\w+)", result.stdout)
    if not match:
        return skip("systemd-analyze gave no exposure score (systemd < 240?)")
    score = float(match[1])
    text = f"exposure {score:.1f} {match[2]} (0 = locked down, 10 = unprotected)"
    fix = Fix("apply the hardened unit template: `ollamactl install` writes it")
    if score > 9.0:
        return fail(text, "the stock unit scores 9.2; a GPU-friendly hardened one 1.6", fix)
    if score > 3.0:
        return warn(text, fix=fix)
    return ok(text)


@check("service.boot-order", "Service starts after the GPU driver", area="service")
def boot_order(p: Probe) -> Finding:
    """C25: a GPU present later but "no compatible GPUs" logged at start: a boot race."""
    missing = _needs_unit(p)
    if missing:
        return missing
    if not p.gpus.gpus:
        return skip("no GPU on this machine")
    after = p.unit.get("After", "") + " " + p.unit.get("ExecStartPre", "")
    raced = any("no compatible GPUs were discovered" in line for line in p.log_lines or [])
    if raced and "nvidia-persistenced" not in after and "nvidia-uvm" not in after:
        return warn("the server started before the GPU was ready (\"no compatible GPUs\" logged "
                    "while a GPU is present now)",
                    fix=Fix("order the unit after the driver: After=nvidia-persistenced.service "
                            "in a drop-in, or a bounded ExecStartPre wait for /dev/nvidia-uvm"))
    return ok("no start-before-driver race in the log")


@check("service.version", "Server, binary and unit agree", area="service")
def version(p: Probe) -> Finding:
    """C1: ``GET /api/version`` against this ollamactl and the unit's ExecStart target."""
    exec_start = p.unit.get("ExecStart", "")
    match = re.search(r"path=(\S+)", exec_start)
    if match and not p.path(match[1]).exists():
        return fail(f"ExecStart runs {match[1]}, which does not exist",
                    fix=Fix("reinstall so the unit points at the installed binary",
                            (("ollamactl", "install"),)))
    server = _server_version(p)
    if not isinstance(server, ServerVersion):
        return server
    if server.ollamactl is not None and not server.is_this_ollamactl:
        return warn(f"the server runs ollamactl {server.ollamactl}, installed is {__version__}: "
                    "a stale process kept running after an upgrade",
                    fix=Fix("restart the service", (("systemctl", "restart", SERVICE),),
                            safe=p.unit_installed))
    return ok(f"server: {server}" + (f", unit runs {match[1]}" if match else ""))


# Ollama releases that fixed a published flaw (users-and-security.md Part B): a real Ollama
# older than one of these answers on the port with that flaw open.
SECURITY_FLOOR: tuple[tuple[tuple[int, int, int], str], ...] = (
    ((0, 1, 29), "CVE-2024-28224 (DNS rebinding drives the API from a web page)"),
    ((0, 1, 34), "CVE-2024-39721 (/api/create reads /dev/random forever)"),
    ((0, 1, 46), "CVE-2024-39720/39722 (GGUF crash, /api/push path traversal)"),
    ((0, 1, 47), "CVE-2024-45436/39719 (zip slip, file-existence oracle)"),
    ((0, 3, 15), "CVE-2024-12886 (gzip bomb)"),
    ((0, 6, 8), "CVE-2025-51471 (registry token sent to another host)"),
    ((0, 17, 1), "CVE-2026-7482 \"Bleeding Llama\" (GGUF tensor offsets leak heap memory)"),
    ((0, 20, 3), "CVE-2026-7020 (blob written before its digest is checked)"),
)


@check("service.security-floor", "Server not below a security fix", area="service")
def security_floor(p: Probe) -> Finding:
    """C38: a real Ollama answering on the port, older than a release that fixed a CVE."""
    server = _server_version(p)
    if not isinstance(server, ServerVersion):
        return server
    if server.ollamactl is not None:
        return ok(f"ollamactl's own server ({server}); its fixes are tested in "
                  "tests/adversarial")
    version = _release(server.api)
    if version is None or version == (0, 0, 0):
        return warn(f"Ollama reports version {server.api!r}: a development build, which "
                    "cannot be judged against the security fixes",
                    fix=Fix("run a released Ollama, or ollamactl's server (ollamactl install)"))
    open_flaws = [flaw for fixed, flaw in SECURITY_FLOOR if version < fixed]
    if open_flaws:
        floor = ".".join(map(str, SECURITY_FLOOR[-1][0]))
        return fail(f"Ollama {server.api} predates the fix of " + "; ".join(open_flaws),
                    fix=Fix(f"upgrade Ollama to the current release (at least {floor}), or "
                            "replace it: ollamactl install --force"))
    return ok(f"Ollama {server.api} has every listed security fix")


def _server_version(p: Probe) -> ServerVersion | Finding:
    """What ``/api/version`` says, or the skip when no server answers (one cached request)."""
    answer = p.http("/api/version")
    server = ServerVersion.from_json(answer.json() if answer.status == 200 else None)
    if server is None:
        return skip(f"no server answers at {answer.url} ({answer.error or answer.status})")
    return server


def _release(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None

"""Checks of the installed service on every platform: its state, its version, security fixes.

What only systemd can tell (reloads, in-place edits, drift, the sandbox) is checked by the
systemd platform unit, :mod:`ollamactl.service.linux_systemd`.
"""

from __future__ import annotations

import re

from ollamactl import __version__
from ollamactl.client import ServerVersion
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.identity import SERVICE_NAME


@check("service.unit", "Service installed, enabled, running", area="service")
def service_unit(p: Probe) -> Finding:
    """C4: the service as its manager sees it (systemd reads the unit: its own verdict)."""
    own = p.platform.service_finding(p)
    if own is not None:
        return own
    state = p.service_state
    if state is None or not state.installed:
        return skip(f"no {p.platform.family} service is installed")
    if state.running:
        return ok(f"{state.backend} service running (pid {state.pid})")
    return warn(f"{state.backend} service is {state.active}",
                fix=Fix("start it", (("ollamactl", "start"),), safe=True))


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
                    fix=Fix("restart the service", (("systemctl", "restart", SERVICE_NAME),),
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

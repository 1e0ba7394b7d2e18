"""Checks specific to macOS (launchd) and Windows (user/machine environment, the logon task).

users-and-security C39: a value set with ``launchctl setenv`` but missing from the plist holds
until the next reboot; a plist changed but not reloaded; the Ollama app or Homebrew's service
beside ours. C40: HKCU and HKLM disagreeing, a setting changed after the server started, and
Ollama's tray app beside our task. Each check skips on the other systems.
"""

from __future__ import annotations

from pathlib import Path

from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.host import DARWIN, WINDOWS
from ollamactl.service import launchd, windows
from ollamactl.service.windows_system import WindowsServiceManager

RESTART = Fix("restart the service so it reads its settings", (("ollamactl", "restart"),),
              safe=True)


def _launchd(p: Probe) -> launchd.LaunchdManager | Finding:
    if p.ctx.host.os_name != DARWIN:
        return skip(f"not macOS ({p.ctx.host.os_name})")
    manager = launchd.launchd_manager(p.ctx)
    if not manager.plist_file.exists():
        return skip("the launchd job is not installed")
    return manager


def _windows(p: Probe) -> windows.TaskSchedulerManager | WindowsServiceManager | Finding:
    if p.ctx.host.os_name != WINDOWS:
        return skip(f"not Windows ({p.ctx.host.os_name})")
    if p.ctx.root != Path("/"):
        return skip("the registry of a staged tree cannot be read")
    return windows.windows_manager(p.ctx)


@check("platform.launchd-setenv", "launchctl setenv values are kept in the plist",
       area="service")
def launchd_setenv(p: Probe) -> Finding:
    """C39: ``launchctl getenv NAME`` against the plist's EnvironmentVariables."""
    manager = _launchd(p)
    if isinstance(manager, Finding):
        return manager
    drift = launchd.session_drift(p.ctx, manager.layout)
    if not drift:
        return ok("no launchctl setenv value is missing from the plist")
    detail = "; ".join(f"{d.name}={d.session} (plist: {d.plist or 'missing'})" for d in drift)
    return warn(f"{len(drift)} setting(s) live only in the login session and are lost at "
                "reboot", detail,
                Fix("persist them in the plist",
                    tuple(("ollamactl", "env", "set", d.name, d.session) for d in drift),
                    safe=True))


@check("platform.launchd-loaded", "The loaded launchd job matches its plist", area="service")
def launchd_loaded(p: Probe) -> Finding:
    """C39: a plist edited by hand but not reloaded (``launchctl print`` shows the old one)."""
    manager = _launchd(p)
    if isinstance(manager, Finding):
        return manager
    job = manager.job()
    if job is None:
        return warn(f"{manager.layout.target} is not loaded",
                    fix=Fix("load it", (("ollamactl", "start"),), safe=True))
    if manager.definition_changed(job):
        return warn("the plist changed since launchd loaded it; the server runs with the old "
                    "settings", fix=RESTART)
    return ok(f"{manager.layout.target} is loaded ({job.state})")


@check("platform.launchd-competing", "No second Ollama server on this Mac", area="service")
def launchd_competing(p: Probe) -> Finding:
    """C39: the Ollama app or Homebrew's ``ollama`` service beside our job."""
    manager = _launchd(p)
    if isinstance(manager, Finding):
        return manager
    found = launchd.competing_servers(p.ctx, manager.layout.account)
    if found:
        return fail(f"another Ollama server is set up: {', '.join(found)}",
                    "both serve port 11434; whichever starts first wins",
                    Fix("quit the Ollama app and remove it from Login Items, or "
                        "`brew services stop ollama`"))
    return ok("no Ollama app or Homebrew service beside ours")


@check("platform.windows-conflicts", "User and machine settings agree", area="settings")
def windows_conflicts(p: Probe) -> Finding:
    """C40: an OLLAMA_* variable in HKCU and HKLM with different values."""
    manager = _windows(p)
    if isinstance(manager, Finding):
        return manager
    store = manager.env_store()
    conflicts = store.conflicts()
    machine = store.machine_only()
    extra = f"; machine-wide only: {', '.join(machine)}" if machine else ""
    ours = "service" if isinstance(manager, WindowsServiceManager) else "user"
    if not conflicts:
        return ok(f"no OLLAMA_* variable differs between {ours} and machine" + extra)
    detail = "; ".join(f"{c.name}: {ours} {c.user!r}, machine {c.machine!r}" for c in conflicts)
    summary = "the service's Environment and the machine environment: the service's value " \
              "wins for it, the machine value for every other program" \
        if ours == "service" else "HKCU and HKLM: our (user) value wins for the task, the " \
                                  "machine value for services and other users"
    return warn(f"{len(conflicts)} setting(s) differ between {summary}", detail + extra,
                Fix("remove the machine value (Administrator)",
                    tuple(("reg", "delete", f"HKLM\\{windows.MACHINE_ENV_KEY}", "/v", c.name,
                           "/f") for c in conflicts)))


@check("platform.windows-restart", "The server runs with the current settings", area="settings")
def windows_restart(p: Probe) -> Finding:
    """C40: HKCU\\Environment (or the service's key) written after the server started (not
    restarted)."""
    manager = _windows(p)
    if isinstance(manager, Finding):
        return manager
    what = "service" if isinstance(manager, WindowsServiceManager) else "task"
    state = manager.status()
    if not state.running:
        return skip(f"the {what} is not running")
    changed = windows.settings_after_start(manager.env_store(), state)
    settings_of = "the service's settings" if what == "service" else "user settings"
    if changed is None:
        return ok(f"none of {settings_of} changed since the server started")
    return warn(f"{settings_of} changed after the server started; it still runs with the old "
                "ones", fix=RESTART)


@check("platform.windows-competing", "No Ollama tray app beside the task", area="service")
def windows_competing(p: Probe) -> Finding:
    """C40: Ollama's own tray app installed as well (two servers, app settings override
    OLLAMA_MODELS)."""
    manager = _windows(p)
    if isinstance(manager, Finding):
        return manager
    found = windows.competing_servers(p.ctx, windows.WindowsLayout(manager.layout.account))
    if found:
        return warn(f"Ollama's app is installed too ({found[0]})",
                    "it starts its own server at logon and its settings override OLLAMA_MODELS",
                    Fix("quit it and remove it from startup, or uninstall one of the two"))
    return ok("no Ollama tray app installed")


@check("platform.windows-service", "The Windows service runs", area="service")
def windows_service(p: Probe) -> Finding:
    """The service ``install --system`` made: running, stopped, or stopped by a server that
    died (1066 and its exit code; the recovery actions restart it)."""
    manager = _windows(p)
    if isinstance(manager, Finding):
        return manager
    if not isinstance(manager, WindowsServiceManager):
        return skip("installed per user (a logon task), not as a service")
    state = manager.status()
    start = Fix("start it", (("ollamactl", "start"),), safe=True)
    if not state.installed:
        return fail("the service ollama is not registered, though install recorded it",
                    fix=Fix("install it again", (("ollamactl", "install", "--system"),)))
    if state.active == "failed":
        return fail("the server died and stopped the service "
                    f"({state.extra.get('exit code', '')})",
                    "Windows restarts it by its recovery actions; `ollamactl logs` shows why",
                    start)
    if not state.running:
        return warn(f"the service is {state.detail or state.active}", fix=start)
    return ok(f"the service runs (pid {state.pid or '-'})")

"""Service backends (systemd, launchd, Windows, ollamactl's watchdog) and settings stores.

:func:`get_service_manager` is the one place that picks a backend from host facts; nothing else
asks which OS or init system this is.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.service.base import ServiceManager
    from ollamactl.service.env import EnvStore
    from ollamactl.service.watchdog import WatchdogPaths

log = logging.getLogger(__name__)

#: Put every watchdog file (pid, state, log, env) in this directory instead (tests, dev shells).
STATE_DIR_ENV = "OLLAMACTL_STATE_DIR"


def get_service_manager(ctx: Context) -> ServiceManager:
    """The backend for this host: systemd when it runs (or for a staged ``--root`` tree, which
    targets a systemd host), else ollamactl's watchdog.

    Raises:
        UnsupportedPlatform: an OS whose backend this build does not have.
    """
    from ollamactl.errors import UnsupportedPlatform
    from ollamactl.host import DARWIN, LINUX, WINDOWS

    if ctx.host.os_name == LINUX:
        if ctx.host.has_systemd or ctx.root != Path("/"):
            from ollamactl.service.systemd import SystemdManager

            log.debug("service backend: systemd (%s)", "staged tree" if ctx.root != Path("/")
                      else "/run/systemd/system exists")
            return SystemdManager(ctx)
        log.debug("service backend: watchdog (systemd is not running)")
        return watchdog_manager(ctx)
    if ctx.host.os_name == DARWIN:
        from ollamactl.service.launchd import launchd_manager

        return launchd_manager(ctx)
    if ctx.host.os_name == WINDOWS:
        from ollamactl.service.windows import windows_manager

        return windows_manager(ctx)
    raise UnsupportedPlatform(f"no service backend for {ctx.host.os_name} in this version")


def watchdog_manager(ctx: Context) -> ServiceManager:
    """The watchdog, configured from the install manifest when install chose it."""
    from ollamactl.install import manifest
    from ollamactl.service.watchdog import WatchdogManager

    installed = manifest.load(ctx)
    if installed is not None and installed.backend == "watchdog":
        return WatchdogManager(ctx, watchdog_paths(ctx), installed.exec_argv,
                               user=installed.user or None)
    return WatchdogManager(ctx, watchdog_paths(ctx), default_server_argv())


def default_server_argv() -> list[str]:
    """``ollamactl serve`` with the interpreter that runs this ollamactl (``-I``: nothing
    from the working directory or PYTHON* variables)."""
    return [sys.executable, "-I", "-m", "ollamactl", "serve"]


def watchdog_paths(ctx: Context) -> WatchdogPaths:
    """System paths as root, per-user (XDG) paths otherwise, one directory when overridden."""
    from ollamactl.install import layout
    from ollamactl.service.watchdog import WatchdogPaths

    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return WatchdogPaths.in_dir(Path(override))
    if ctx.host.is_root:
        return WatchdogPaths(ctx.path(layout.WATCHDOG_STATE_DIR), ctx.path(layout.WATCHDOG_LOG),
                             ctx.path(layout.WATCHDOG_ENV))
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "ollamactl"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "ollamactl"
    return WatchdogPaths(state, state / "ollama.log", config / "ollama.env")


def get_env_store(ctx: Context) -> EnvStore | None:
    """The persisted settings store of the service, or None when there is none to persist to.

    Under systemd that is the drop-in, once the unit is installed; under the watchdog, its env
    file (the watchdog also runs without an install, e.g. in a dev shell).
    """
    from ollamactl.errors import UnsupportedPlatform

    try:
        manager = get_service_manager(ctx)
    except UnsupportedPlatform:
        return None
    if manager.name == "systemd":
        from ollamactl.service.systemd import UNIT_PATH

        if not ctx.path(UNIT_PATH).exists():
            return None
    if manager.name == "launchd" and not manager.status().installed:
        return None
    return manager.env_store()


def service_environ(ctx: Context) -> dict[str, str] | None:
    """The service's persisted settings; None when there is no service to read them from.

    What the server runs with is these when they exist (a variable exported in a shell never
    reaches a service), else the environment of whoever starts it by hand: doctor and
    ``gpu list`` both judge by that rule.
    """
    store = get_env_store(ctx)
    return dict(store.read()) if store is not None else None

"""The one place that picks the platform unit for a host, and the calls that go through it.

:data:`BACKENDS` lists the units, one line each; the first whose ``applies`` says yes serves.
Units read only ``ctx.host`` (:mod:`ollamactl.host`'s facts), ``ctx.root`` and what is installed
(the daemon/agent and task/service choice follows what is there, or ``install --system``).
Adding an OS is one module under ``ollamactl/service/`` and one line here.
"""

from __future__ import annotations

import logging

from ollamactl.context import Context
from ollamactl.errors import UnsupportedPlatform
from ollamactl.install import InstallOptions, InstallReport, UninstallPlan
from ollamactl.service.base import Platform, ServiceManager
from ollamactl.service.env import EnvStore
from ollamactl.service.linux_systemd import LinuxSystemd
from ollamactl.service.linux_watchdog import LinuxWatchdog
from ollamactl.service.macos import Macos
from ollamactl.service.windows_service import WindowsService
from ollamactl.service.windows_task import WindowsTask

log = logging.getLogger(__name__)

#: Every platform unit, in the order they are asked (and their doctor checks are shown).
BACKENDS: tuple[type[Platform], ...] = (
    LinuxSystemd,       # systemd is PID 1, or a tree staged with --root
    LinuxWatchdog,      # Linux without systemd: ollamactl's watchdog
    Macos,              # launchd: a LaunchAgent, or a LaunchDaemon (--system)
    WindowsTask,        # a logon task per user
    WindowsService,     # the Windows service (--system)
)


def for_host(ctx: Context, *, system: bool | None = None) -> Platform:
    """The platform unit that serves ``ctx``. ``system``: ``install --system`` (True), per
    user (False), or whichever is installed (None).

    Raises:
        UnsupportedPlatform: no unit serves this host.
    """
    for backend in BACKENDS:
        if backend.applies(ctx, system=system):
            log.debug("platform: %s (%s)", backend.name, ctx.host.describe())
            return backend(ctx, system=system)
    raise UnsupportedPlatform(f"no service backend for {ctx.host.describe()} in this version")


def get_service_manager(ctx: Context) -> ServiceManager:
    return for_host(ctx).service_manager()


def get_env_store(ctx: Context) -> EnvStore | None:
    """The service's persisted settings store, or None when there is none to persist to."""
    try:
        platform = for_host(ctx)
    except UnsupportedPlatform:
        return None
    return platform.env_store()


def service_environ(ctx: Context) -> dict[str, str] | None:
    """The service's persisted settings; None when there is no service to read them from.

    What the server runs with is these when they exist (a variable exported in a shell never
    reaches a service), else the environment of whoever starts it by hand: doctor and
    ``gpu list`` both judge by that rule.
    """
    store = get_env_store(ctx)
    return dict(store.read()) if store is not None else None


def install(ctx: Context, options: InstallOptions) -> InstallReport:
    """Install, or update what an earlier install put there (stop -> replace -> start)."""
    return for_host(ctx, system=options.system).install(options)


def plan_uninstall(ctx: Context, *, purge: bool) -> UninstallPlan:
    """What uninstall would remove, for the confirmation prompt.

    Raises:
        UsageError: nothing ollamactl installed is here.
    """
    return for_host(ctx).plan_uninstall(purge=purge)


def uninstall(ctx: Context, plan: UninstallPlan) -> list[str]:
    """Reverse exactly what the manifest lists; return what was done."""
    return for_host(ctx).uninstall(plan)

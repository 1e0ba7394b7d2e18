"""The Linux platform unit without an init system (containers, WSL without systemd, a dev
shell): ``ollamactl serve`` under ollamactl's own watchdog (:mod:`.watchdog`).

As root its files are system paths (``/var/lib/ollamactl/watchdog``, ``/var/log/ollamactl``,
``/etc/ollamactl/ollama.env``); otherwise per user (XDG state and config directories);
``OLLAMACTL_STATE_DIR=DIR`` puts them all in DIR. The watchdog also runs without an install: it
then starts this interpreter's ``ollamactl serve`` as whoever runs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ollamactl.host import LINUX
from ollamactl.install import InstallOptions
from ollamactl.install.manifest import Manifest
from ollamactl.service.linux import LinuxLayout, LinuxPlatform
from ollamactl.service.watchdog import WatchdogManager, WatchdogPaths

if TYPE_CHECKING:
    from ollamactl.context import Context

#: Put every watchdog file (pid, state, log, env) in this directory instead (tests, dev shells).
STATE_DIR_ENV = "OLLAMACTL_STATE_DIR"


class WatchdogLayout(LinuxLayout):
    """The Linux layout, plus where this watchdog keeps its pid, state, log and settings."""

    def __init__(self, paths: WatchdogPaths) -> None:
        self.paths = paths

    @property
    def log_path(self) -> str:
        return str(self.paths.log_file)


def watchdog_paths(ctx: Context) -> WatchdogPaths:
    """System paths as root, per-user (XDG) paths otherwise, one directory when overridden."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return WatchdogPaths.in_dir(Path(override))
    if ctx.host.is_root:
        return WatchdogPaths(ctx.path(LinuxLayout.watchdog_state_dir),
                             ctx.path(LinuxLayout.watchdog_log),
                             ctx.path(LinuxLayout.watchdog_env))
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "ollamactl"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "ollamactl"
    return WatchdogPaths(state, state / "ollama.log", config / "ollama.env")


def default_server_argv() -> list[str]:
    """``ollamactl serve`` with the interpreter that runs this ollamactl (``-I``: nothing
    from the working directory or PYTHON* variables)."""
    return [sys.executable, "-I", "-m", "ollamactl", "serve"]


class LinuxWatchdog(LinuxPlatform):
    """Linux where systemd is not PID 1."""

    name = "linux-watchdog"
    family = "watchdog"
    backends = ("watchdog",)

    @classmethod
    def applies(cls, ctx: Context, *, system: bool | None) -> bool:
        return ctx.host.os_name == LINUX and not ctx.host.has_systemd and ctx.root == Path("/")

    @property
    def layout(self) -> WatchdogLayout:
        return WatchdogLayout(watchdog_paths(self.ctx))

    @property
    def backend(self) -> str:
        return "watchdog"

    def service_manager(self) -> WatchdogManager:
        """The watchdog, configured from the install manifest when install chose it."""
        installed = self.load_manifest()
        if installed is not None and installed.backend == "watchdog":
            return self.manager_for(installed)
        return WatchdogManager(self.ctx, self.layout.paths, default_server_argv())

    def manager_for(self, record: Manifest) -> WatchdogManager:
        return WatchdogManager(self.ctx, self.layout.paths, record.exec_argv,
                               user=record.user or None)

    def install_service(self, record: Manifest, options: InstallOptions) -> None:
        paths = self.layout.paths
        for directory in (paths.env_file.parent, paths.state_dir, paths.log_file.parent):
            self._ensure_dir(record, str(directory), mode=0o755,
                             why="watchdog state, log and settings")

    def started_note(self) -> str:
        return ("systemd is not running here: the server runs under ollamactl's watchdog "
                "(`ollamactl status`, `ollamactl logs`)")

    def stop_for_removal(self, record: Manifest) -> None:
        self.manager_for(record).stop()

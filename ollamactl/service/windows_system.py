"""Windows ``--system`` backend: the ``ollama`` service through sc.exe, its Environment value,
the ProgramData log.

``install --system`` registers the service ``ollama`` (run as the virtual account
``NT SERVICE\\ollama``: least privilege, no password, like the dedicated user on Linux) whose
binPath is ``"<python.exe>" -m ollamactl.service.winservice ollama <log>``, the service host
that answers the service control manager and runs ``ollamactl serve`` as its child.

Settings are the service's own environment: the REG_MULTI_SZ value ``Environment`` under
``HKLM\\SYSTEM\\CurrentControlSet\\Services\\ollama`` (``NAME=VALUE`` strings, added to the
machine environment when the SCM starts the process). ``sc.exe delete`` removes it with the
key. Machine variables (Session Manager\\Environment) that the service also sees are reported
when they disagree, as HKCU/HKLM conflicts are for the logon task.

Status comes from ``sc.exe queryex`` (state, PID); stop is ``sc.exe stop`` then ``sc.exe query``
until STOPPED, with a deadline. Everything goes through ``ctx.runner`` and the :class:`Registry`
facade, so it runs on Linux in tests.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ollamactl import settings
from ollamactl.context import Context
from ollamactl.errors import ServiceError, UnsupportedPlatform, UsageError
from ollamactl.identity import SERVICE_NAME
from ollamactl.service import windows
from ollamactl.service.base import ServiceManager, ServiceState
from ollamactl.service.env import EnvStore
from ollamactl.service.logfiles import LogFile
from ollamactl.service.windows import (
    HKLM,
    MACHINE_ENV_KEY,
    Conflict,
    Registry,
    WindowsAccount,
    local_path,
)
from ollamactl.system import Cmd, PlanStep, cmd

SERVICE_KEY = f"SYSTEM\\CurrentControlSet\\Services\\{SERVICE_NAME}"
SERVICE_ACCOUNT = f"NT SERVICE\\{SERVICE_NAME}"
DISPLAY_NAME = "Ollama (ollamactl)"
DESCRIPTION = "Ollama-compatible LLM server (ollamactl serve); settings: ollamactl env set"
ENVIRONMENT_VALUE = "Environment"
#: Restart 5 s, 10 s, then 30 s after each failure; the count resets after a day without one.
RECOVERY = ("reset=", "86400", "actions=", "restart/5000/restart/10000/restart/30000")
STOP_TIMEOUT_S = 30.0
# sc.exe exits with the Win32 error code (winerror.h)
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_SPECIFIC_ERROR = 1066


@dataclass(frozen=True)
class MachineFolders:
    """%ProgramFiles% and %ProgramData% of this machine."""

    program_files: str
    program_data: str


def machine_folders() -> MachineFolders:
    """From the environment Windows sets (the boundary tests replace)."""
    drive = os.environ.get("SYSTEMDRIVE", "C:")
    return MachineFolders(os.environ.get("PROGRAMFILES", f"{drive}\\Program Files"),
                          os.environ.get("PROGRAMDATA", f"{drive}\\ProgramData"))


@dataclass(frozen=True)
class ServiceLayout:
    """Where ``install --system`` puts things (Windows paths, before ``--root``).

    ``account`` is whoever runs ollamactl: only to find Ollama's tray app beside the service.
    """

    account: WindowsAccount
    folders: MachineFolders

    @classmethod
    def for_host(cls, account: WindowsAccount | None = None) -> ServiceLayout:
        return cls(account or windows.login_account(), machine_folders())

    @property
    def program_dir(self) -> PureWindowsPath:
        return PureWindowsPath(self.folders.program_files, "ollamactl")

    @property
    def manifest_path(self) -> PureWindowsPath:
        return self.program_dir / "install-manifest.json"

    @property
    def state_dir(self) -> PureWindowsPath:
        """ollamactl's own records (the manifest)."""
        return self.program_dir

    @property
    def data_dir(self) -> PureWindowsPath:
        """``%ProgramData%\\Ollama``: the service account may modify it (icacls)."""
        return PureWindowsPath(self.folders.program_data, "Ollama")

    @property
    def log_path(self) -> PureWindowsPath:
        return self.data_dir / "logs" / "server.log"

    @property
    def models_dir(self) -> PureWindowsPath:
        return self.data_dir / "models"


def host_command_line(python: str, log_path: str) -> str:
    """The service's binPath: the service host with the service name and its log."""
    return subprocess.list2cmdline([python, "-m", "ollamactl.service.winservice", SERVICE_NAME,
                                    log_path])


# -- sc.exe query ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceInfo:
    """What ``sc.exe query`` / ``queryex`` says about the service."""

    state: str                      # STOPPED | START_PENDING | STOP_PENDING | RUNNING | ...
    pid: int | None = None
    win32_exit_code: int = 0
    service_exit_code: int = 0


def parse_sc_query(text: str) -> ServiceInfo:
    """``KEY : value`` lines; STATE reads ``4  RUNNING``, exit codes ``1066  (0x42a)``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip().upper(), value.strip())

    def first_int(name: str) -> int:
        words = fields.get(name, "").split()
        return int(words[0]) if words and words[0].isdigit() else 0

    state = fields.get("STATE", "").split()
    pid = first_int("PID")
    return ServiceInfo(state[1] if len(state) > 1 else "UNKNOWN", pid or None,
                       first_int("WIN32_EXIT_CODE"), first_int("SERVICE_EXIT_CODE"))


def process_started_at(pid: int) -> float | None:
    """Unix time the process started (None when it is gone)."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


# -- settings ----------------------------------------------------------------------------------

def _entry_name(entry: str) -> str:
    return entry.partition("=")[0].upper()


class ServiceEnvStore(EnvStore):
    """The service's ``Environment`` (REG_MULTI_SZ of ``NAME=VALUE``); entries that are not
    ours are kept in place. Names compare case-insensitively, as Windows does."""

    location = f"HKLM\\{SERVICE_KEY}\\{ENVIRONMENT_VALUE}"

    def __init__(self, ctx: Context, registry: Registry) -> None:
        self.ctx = ctx
        self.registry = registry

    def entries(self) -> list[str]:
        return self.registry.multi_string(HKLM, SERVICE_KEY, ENVIRONMENT_VALUE) or []

    def read(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for entry in self.entries():
            name, sep, value = entry.partition("=")
            if sep and name:
                found[name] = value
        return found

    def set(self, name: str, value: str) -> bool:
        """Raises UsageError for an entry Windows cannot hold: an empty string ends a
        REG_MULTI_SZ, so an empty value is refused along with what :meth:`check` refuses."""
        self.check(name, value)
        if not value:
            raise UsageError(f"cannot store an empty {name} in the service's environment",
                             hint="to remove it, use unset")
        entries = self.entries()
        wanted = f"{name}={value}"
        if wanted in entries:
            return False
        kept = [e for e in entries if _entry_name(e) != name.upper()]
        where = next((i for i, e in enumerate(entries) if _entry_name(e) == name.upper()),
                     len(kept))
        self._write([*kept[:where], wanted, *kept[where:]], f"{name}={value}")
        return True

    def unset(self, name: str) -> bool:
        entries = self.entries()
        kept = [e for e in entries if _entry_name(e) != name.upper()]
        if kept == entries:
            return False
        self._write(kept, f"without {name}")
        return True

    def _write(self, entries: list[str], change: str) -> None:
        self.ctx.runner.plan.append(PlanStep("write", f"{self.location}: {change}",
                                             "the service's setting"))
        if not self.ctx.dry_run:
            self.registry.set_multi_string(HKLM, SERVICE_KEY, ENVIRONMENT_VALUE, entries)

    def changed_at(self) -> float | None:
        """When the service's key was last written (unix time)."""
        return self.registry.modified_at(HKLM, SERVICE_KEY)

    def conflicts(self) -> list[Conflict]:
        """Known settings the machine environment sets to another value (the service's own
        value wins for it; other programs see the machine's)."""
        ours = {n.upper(): v for n, v in self.read().items()}
        machine = self.registry.values(HKLM, MACHINE_ENV_KEY)
        return [Conflict(name, ours[name.upper()], machine[name].data)
                for name in sorted(machine)
                if name in settings.SETTINGS and name.upper() in ours
                and ours[name.upper()] != machine[name].data]

    def machine_only(self) -> dict[str, str]:
        """Known settings only the machine environment sets: the service gets them too."""
        ours = {n.upper() for n in self.read()}
        return {n: v.data for n, v in self.registry.values(HKLM, MACHINE_ENV_KEY).items()
                if n in settings.SETTINGS and n.upper() not in ours}

    def notes(self, name: str) -> list[str]:
        machine = self.registry.values(HKLM, MACHINE_ENV_KEY).get(name)
        if machine is None or self.read().get(name) == machine.data:
            return []
        return [f"the machine environment also sets {name}={machine.data}: the service uses "
                "its own value, other programs the machine's"]


# -- the manager -------------------------------------------------------------------------------

class WindowsServiceManager(ServiceManager):
    """The ``ollama`` service through sc.exe; settings through :class:`ServiceEnvStore`."""

    name = "windows-service"
    poll_interval_s = 0.5
    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, ctx: Context, layout: ServiceLayout, *,
                 registry: Registry | None = None) -> None:
        super().__init__(ctx)
        self.layout = layout
        self.registry = registry

    @property
    def staged(self) -> bool:
        return self.ctx.root != Path("/")

    def sc(self, *args: str, why: str, mutates: bool = True, check: bool = True) -> Cmd:
        return cmd("sc.exe", *args, why=why, mutates=mutates, check=check)

    def query(self, verb: str = "queryex") -> ServiceInfo | None:
        """``sc.exe queryex ollama`` (or ``query``); None when there is no such service.

        Raises:
            ServiceError: sc.exe failed for another reason.
        """
        if self.staged:
            return None
        result = self.ctx.runner.run(self.sc(verb, SERVICE_NAME, why="the service's state",
                                             mutates=False, check=False))
        if result.returncode == ERROR_SERVICE_DOES_NOT_EXIST:
            return None
        if not result.ok:
            raise ServiceError(f"sc.exe {verb} {SERVICE_NAME} failed ({result.returncode}): "
                               f"{(result.stdout or result.stderr).strip()}")
        return parse_sc_query(result.stdout)

    def status(self) -> ServiceState:
        definition = f"HKLM\\{SERVICE_KEY}"
        if self.staged:
            return ServiceState(self.name, installed=local_path(
                self.ctx, self.layout.manifest_path).exists(), active="unknown",
                definition=definition, detail=f"staged under {self.ctx.root}; nothing runs there")
        info = self.query()
        if info is None:
            return ServiceState(self.name, installed=False, active="inactive",
                                definition=definition)
        failed = info.state == "STOPPED" and info.win32_exit_code != 0
        active = {"RUNNING": "active", "START_PENDING": "activating"}.get(
            info.state, "failed" if failed else "inactive")
        extra = {"exit code": f"{info.win32_exit_code} (server {info.service_exit_code})"} \
            if failed else {}
        return ServiceState(
            self.name, installed=True, active=active, enabled=True, pid=info.pid,
            started_at=process_started_at(info.pid) if info.pid else None,
            definition=definition, detail="" if active == "active" else info.state.lower(),
            extra=extra)

    def _live(self, action: str) -> None:
        if self.staged:
            raise UnsupportedPlatform(f"the service staged under {self.ctx.root} cannot be "
                                      f"{action} from here")

    def _accept(self, result_code: int, ok_codes: tuple[int, ...], verb: str,
                output: str) -> None:
        if result_code != 0 and result_code not in ok_codes:
            raise ServiceError(f"sc.exe {verb} {SERVICE_NAME} failed ({result_code}): "
                               f"{output.strip()}",
                               hint="run it from an Administrator prompt; `ollamactl logs` "
                                    "shows the server's own errors")

    def start(self) -> None:
        self._live("started")
        result = self.ctx.runner.run(self.sc("start", SERVICE_NAME, why="start the server",
                                             check=False))
        self._accept(result.returncode, (ERROR_SERVICE_ALREADY_RUNNING,), "start",
                     result.stdout or result.stderr)

    def stop(self) -> None:
        """``sc.exe stop``, then ``sc.exe query`` until STOPPED.

        Raises:
            ServiceError: still not stopped after :attr:`stop_timeout_s`.
        """
        self._live("stopped")
        info = self.query()
        if info is None or info.state == "STOPPED":
            return
        if info.state != "STOP_PENDING":
            result = self.ctx.runner.run(self.sc("stop", SERVICE_NAME, why="stop the server",
                                                 check=False))
            self._accept(result.returncode, (ERROR_SERVICE_NOT_ACTIVE,), "stop",
                         result.stdout or result.stderr)
        if self.ctx.dry_run:
            return
        deadline = time.monotonic() + self.stop_timeout_s
        while True:
            info = self.query("query")
            if info is None or info.state == "STOPPED":
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"the service {SERVICE_NAME} did not stop within "
                                   f"{self.stop_timeout_s:g} s (state {info.state})",
                                   hint="see `ollamactl logs`; `taskkill /F /FI \"SERVICES eq "
                                        f"{SERVICE_NAME}\"` ends it")
            time.sleep(self.poll_interval_s)

    def restart(self) -> None:
        """Stop and start: the SCM builds the new process's environment afresh."""
        self.stop()
        self.start()

    # -- definition (install / uninstall) ----------------------------------------------------
    def define(self, bin_path: str, *, update: bool) -> None:
        """``sc.exe create`` (or ``config`` on update), description, recovery actions."""
        self.ctx.runner.run(self.sc(
            "config" if update else "create", SERVICE_NAME, "binPath=", bin_path,
            "start=", "delayed-auto", "obj=", SERVICE_ACCOUNT, "DisplayName=", DISPLAY_NAME,
            why="the service (virtual account, delayed auto start)"))
        self.ctx.runner.run(self.sc("description", SERVICE_NAME, DESCRIPTION,
                                    why="what the service is"))
        self.ctx.runner.run(self.sc("failure", SERVICE_NAME, *RECOVERY,
                                    why="restart the server when it dies"))
        self.ctx.runner.run(self.sc("failureflag", SERVICE_NAME, "1",
                                    why="also when it stops with an error code"))

    def grant_data(self) -> None:
        """The service account may modify ``%ProgramData%\\Ollama`` (logs, models)."""
        self.ctx.runner.run(cmd("icacls", str(self.layout.data_dir), "/grant",
                                f"{SERVICE_ACCOUNT}:(OI)(CI)M",
                                why="the service writes its logs and models there"))

    def delete(self) -> None:
        """``sc.exe delete``: the key goes, and its Environment value with it."""
        self.ctx.runner.run(self.sc("delete", SERVICE_NAME, why="remove the service"))

    def env_store(self) -> ServiceEnvStore:
        if self.registry is None and self.staged:
            raise UnsupportedPlatform("the Windows registry cannot be staged under --root")
        return ServiceEnvStore(self.ctx, self.registry or windows.open_registry())

    def log_source(self) -> LogFile:
        return LogFile(local_path(self.ctx, self.layout.log_path))

"""Windows backend: a logon task in Task Scheduler, settings in HKCU\\Environment, server.log.

Per user, without Administrator rights: ``schtasks /Create /XML`` registers ``\\ollamactl\\Ollama``
from ``templates/windows/task.xml.j2`` (logon trigger, restart on failure, no time limit). Its
action is ``python -m ollamactl.service.windows serve <log>``, which rotates
``%LOCALAPPDATA%\\Ollama\\server.log`` (``server-1.log`` ... as Ollama's app does) and runs the
server with its output appended there, so ``schtasks /End`` stops the server itself.

Settings are user environment variables (``HKCU\\Environment``), the place the seed's Control
Panel route edits; ``env set`` writes them, broadcasts WM_SETTINGCHANGE (so Explorer and new
shells see them) and the CLI then restarts the task: the seed's manual steps, in one command
(users-and-security A3 #22). Machine values (HKLM) of the same name are reported as conflicts.

The OS boundary is three small facades, so all of this runs on Linux in tests: the command
runner (schtasks), :class:`Registry` (winreg) and :class:`SettingBroadcaster` (user32 through
ctypes). ``winreg`` and ``ctypes.windll`` are imported only inside the real facades.

``install --system`` makes a Windows service instead (:mod:`ollamactl.service.windows_system`);
the platform units (:mod:`ollamactl.service.windows_task`, :mod:`ollamactl.service.windows_service`)
use this module's account, paths, registry and log helpers.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Protocol, TextIO

from ollamactl import settings, templating
from ollamactl.context import Context
from ollamactl.errors import PrivilegeError, ServiceError, UnsupportedPlatform, UsageError
from ollamactl.logrecords import private_opener
from ollamactl.service.base import ServiceManager, ServiceState
from ollamactl.service.env import EnvStore
from ollamactl.service.logfiles import LogFile
from ollamactl.system import Cmd, PlanStep, cmd

TASK_NAME = "\\ollamactl\\Ollama"
HKCU, HKLM = "HKEY_CURRENT_USER", "HKEY_LOCAL_MACHINE"
USER_ENV_KEY = "Environment"
MACHINE_ENV_KEY = "SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment"
LOG_KEEP = 5                       # server-1.log ... server-5.log, as Ollama's app keeps
RESTART_INTERVAL = "PT1M"          # Task Scheduler's shortest restart interval
RESTART_COUNT = 999                # and its largest count
#: A real Ollama's tray app (C40: two servers on one port).
OLLAMA_APP = "Programs\\Ollama\\ollama app.exe"     # under %LOCALAPPDATA%
_SCHTASKS_TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S",
                          "%d.%m.%Y %H:%M:%S")


@dataclass(frozen=True)
class WindowsAccount:
    """The login user: name and the folders Windows gives it."""

    name: str
    local_app_data: str             # C:\Users\<name>\AppData\Local
    user_profile: str               # C:\Users\<name>
    domain: str = ""


def login_account() -> WindowsAccount:
    """The invoking user, from the environment Windows sets (the boundary tests replace).

    Raises:
        UnsupportedPlatform: LOCALAPPDATA or USERPROFILE is missing (not a Windows session).
    """
    try:
        return WindowsAccount(os.environ["USERNAME"], os.environ["LOCALAPPDATA"],
                              os.environ["USERPROFILE"], os.environ.get("USERDOMAIN", ""))
    except KeyError as exc:
        raise UnsupportedPlatform(f"%{exc.args[0]}% is not set: not a Windows user session"
                                  ) from None


def local_path(ctx: Context, target: str | PureWindowsPath) -> Path:
    """Where a Windows path lives for this run: itself, or ``<root>/C/Users/...`` staged.

    A path without a drive (``\\tmp\\x``, as tests give LOCALAPPDATA) stays rooted, so the
    same code reaches a temporary directory on Linux.
    """
    path = PureWindowsPath(target)
    if ctx.root == Path("/"):
        anchor = path.anchor if path.drive else "/"
        return Path(anchor, *path.parts[1:])
    drive = path.drive.rstrip(":") or "_"
    return ctx.root.joinpath(drive, *path.parts[1:])


@dataclass(frozen=True)
class WindowsLayout:
    """Where the per-user install puts things (Windows paths, before ``--root``)."""

    account: WindowsAccount

    @classmethod
    def for_host(cls, account: WindowsAccount | None = None) -> WindowsLayout:
        return cls(account or login_account())

    @property
    def program_dir(self) -> PureWindowsPath:
        return PureWindowsPath(self.account.local_app_data, "Programs", "ollamactl")

    @property
    def task_xml(self) -> PureWindowsPath:
        return self.program_dir / "ollama-task.xml"

    @property
    def manifest_path(self) -> PureWindowsPath:
        return self.program_dir / "install-manifest.json"

    @property
    def state_dir(self) -> PureWindowsPath:
        """ollamactl's own records (the manifest)."""
        return self.program_dir

    @property
    def ledger_path(self) -> PureWindowsPath:
        """Each setting ``env set`` changed, with the value it had before (restored at
        uninstall)."""
        return self.program_dir / "settings-ledger.json"

    @property
    def log_path(self) -> PureWindowsPath:
        return PureWindowsPath(self.account.local_app_data, "Ollama", "server.log")

    @property
    def models_dir(self) -> PureWindowsPath:
        return PureWindowsPath(self.account.user_profile, ".ollama", "models")

    @property
    def user_id(self) -> str:
        return f"{self.account.domain}\\{self.account.name}" if self.account.domain \
            else self.account.name


# -- the OS facades ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RegValue:
    """A string registry value; ``expand``: REG_EXPAND_SZ (``%VAR%`` expanded when read)."""

    data: str
    expand: bool = False


class Registry(ABC):
    """The registry operations ollamactl needs: string values of one key, and its write time."""

    @abstractmethod
    def values(self, hive: str, key: str) -> dict[str, RegValue]:
        """Every string value of ``hive\\key`` ({} when the key does not exist)."""

    @abstractmethod
    def set_value(self, hive: str, key: str, name: str, value: RegValue) -> None: ...

    @abstractmethod
    def delete_value(self, hive: str, key: str, name: str) -> None: ...

    @abstractmethod
    def modified_at(self, hive: str, key: str) -> float | None:
        """Unix time of the key's last write (None when it does not exist)."""

    @abstractmethod
    def multi_string(self, hive: str, key: str, name: str) -> list[str] | None:
        """A REG_MULTI_SZ value's strings (None when the key or value does not exist)."""

    @abstractmethod
    def set_multi_string(self, hive: str, key: str, name: str, items: Sequence[str]) -> None:
        """Write a REG_MULTI_SZ value (the key must exist: a service's key is made by sc.exe)."""


class WinregRegistry(Registry):
    """The real registry through ``winreg``; OSError becomes an ollamactl error here."""

    def _winreg(self) -> Any:
        return importlib.import_module("winreg")

    @contextlib.contextmanager
    def _key(self, hive: str, key: str, *, write: bool = False) -> Iterator[Any]:
        winreg = self._winreg()
        access = winreg.KEY_READ | (winreg.KEY_SET_VALUE if write else 0)
        try:
            opener = winreg.CreateKeyEx if write else winreg.OpenKey
            with opener(getattr(winreg, hive), key, 0, access) as handle:
                yield handle
        except PermissionError as exc:
            raise PrivilegeError(f"cannot write {hive}\\{key}: access denied",
                                 hint="HKLM needs an Administrator prompt") from exc

    def values(self, hive: str, key: str) -> dict[str, RegValue]:
        winreg = self._winreg()
        found: dict[str, RegValue] = {}
        try:
            with self._key(hive, key) as handle:
                index = 0
                while True:
                    try:
                        name, data, kind = winreg.EnumValue(handle, index)
                    except OSError:
                        break
                    if kind in (winreg.REG_SZ, winreg.REG_EXPAND_SZ):
                        found[name] = RegValue(str(data), kind == winreg.REG_EXPAND_SZ)
                    index += 1
        except FileNotFoundError:
            return {}
        return found

    def set_value(self, hive: str, key: str, name: str, value: RegValue) -> None:
        winreg = self._winreg()
        with self._key(hive, key, write=True) as handle:
            winreg.SetValueEx(handle, name, 0,
                              winreg.REG_EXPAND_SZ if value.expand else winreg.REG_SZ,
                              value.data)

    def delete_value(self, hive: str, key: str, name: str) -> None:
        winreg = self._winreg()
        with contextlib.suppress(FileNotFoundError), self._key(hive, key, write=True) as handle:
            winreg.DeleteValue(handle, name)

    def modified_at(self, hive: str, key: str) -> float | None:
        winreg = self._winreg()
        try:
            with self._key(hive, key) as handle:
                ticks = winreg.QueryInfoKey(handle)[2]     # 100 ns since 1601-01-01
        except FileNotFoundError:
            return None
        return float(ticks) / 1e7 - 11644473600.0

    def multi_string(self, hive: str, key: str, name: str) -> list[str] | None:
        winreg = self._winreg()
        try:
            with self._key(hive, key) as handle:
                data, kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        return [str(item) for item in data] if kind == winreg.REG_MULTI_SZ else None

    def set_multi_string(self, hive: str, key: str, name: str, items: Sequence[str]) -> None:
        winreg = self._winreg()
        try:
            handle = winreg.OpenKey(getattr(winreg, hive), key, 0, winreg.KEY_SET_VALUE)
        except FileNotFoundError:
            raise ServiceError(f"{hive}\\{key} does not exist",
                               hint="install the service first (`ollamactl install --system`)"
                               ) from None
        except PermissionError as exc:
            raise PrivilegeError(f"cannot write {hive}\\{key}: access denied",
                                 hint="run it from an Administrator prompt") from exc
        with handle:
            winreg.SetValueEx(handle, name, 0, winreg.REG_MULTI_SZ, list(items))


class SettingBroadcaster(ABC):
    """Tells running programs that the user environment changed."""

    @abstractmethod
    def environment_changed(self) -> bool:
        """Broadcast WM_SETTINGCHANGE "Environment"; True when it was delivered."""


class User32Broadcaster(SettingBroadcaster):
    """``SendMessageTimeoutW(HWND_BROADCAST, WM_SETTINGCHANGE, 0, "Environment",
    SMTO_ABORTIFHUNG, 5000)``, what setx and the Control Panel send."""

    HWND_BROADCAST, WM_SETTINGCHANGE, SMTO_ABORTIFHUNG, TIMEOUT_MS = 0xFFFF, 0x001A, 0x0002, 5000

    def environment_changed(self) -> bool:
        import ctypes

        user32 = getattr(ctypes, "windll").user32  # noqa: B009 (windll exists on Windows only)
        result = ctypes.c_size_t()
        sent = user32.SendMessageTimeoutW(self.HWND_BROADCAST, self.WM_SETTINGCHANGE, 0,
                                          ctypes.c_wchar_p("Environment"),
                                          self.SMTO_ABORTIFHUNG, self.TIMEOUT_MS,
                                          ctypes.byref(result))
        return bool(sent)


def open_registry() -> Registry:
    """This machine's registry (tests replace this function with an in-memory one)."""
    return WinregRegistry()


def open_broadcaster() -> SettingBroadcaster:
    """This session's message broadcaster (tests replace it with a recording one)."""
    return User32Broadcaster()


# -- settings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conflict:
    """A variable set for the user and for the machine with different values."""

    name: str
    user: str
    machine: str


class RegistryEnvStore(EnvStore):
    """User environment variables (``HKCU\\Environment``), as the Control Panel keeps them.

    A value with ``%`` is stored as REG_EXPAND_SZ, like the Control Panel does. Each write is
    recorded in the plan and followed by the WM_SETTINGCHANGE broadcast; when ollamactl is
    installed, the value a setting had before its first change is kept in the ledger, and
    uninstall puts it back.
    """

    location = "HKCU\\Environment"

    def __init__(self, ctx: Context, layout: WindowsLayout, registry: Registry,
                 broadcaster: SettingBroadcaster) -> None:
        self.ctx = ctx
        self.layout = layout
        self.registry = registry
        self.broadcaster = broadcaster

    def read(self) -> dict[str, str]:
        return {n: v.data for n, v in self.registry.values(HKCU, USER_ENV_KEY).items()}

    def set(self, name: str, value: str) -> bool:
        self.check(name, value)
        if not value:
            raise UsageError(f"cannot store an empty {name} as a Windows environment variable",
                             hint="to remove it, use unset")
        current = self.registry.values(HKCU, USER_ENV_KEY).get(name)
        if current is not None and current.data == value:
            return False
        self._remember(name, current)
        self._record("write", f"{self.location}\\{name} = {value}", "the service's setting")
        if not self.ctx.dry_run:
            self.registry.set_value(HKCU, USER_ENV_KEY, name, RegValue(value, "%" in value))
        self.broadcast()
        return True

    def unset(self, name: str) -> bool:
        current = self.registry.values(HKCU, USER_ENV_KEY).get(name)
        if current is None:
            return False
        self._remember(name, current)
        self._record("remove", f"{self.location}\\{name}", "the service's setting")
        if not self.ctx.dry_run:
            self.registry.delete_value(HKCU, USER_ENV_KEY, name)
        self.broadcast()
        return True

    def changed_at(self) -> float | None:
        """When HKCU\\Environment was last written (unix time)."""
        return self.registry.modified_at(HKCU, USER_ENV_KEY)

    def broadcast(self) -> None:
        """WM_SETTINGCHANGE, so Explorer (and what it starts) reads the new environment."""
        self._record("run", "SendMessageTimeoutW(HWND_BROADCAST, WM_SETTINGCHANGE, "
                            "'Environment')", "tell running programs")
        if not self.ctx.dry_run:
            self.broadcaster.environment_changed()

    def conflicts(self) -> list[Conflict]:
        """Known settings that HKLM sets to another value than HKCU (users-and-security C40)."""
        user = self.registry.values(HKCU, USER_ENV_KEY)
        machine = self.registry.values(HKLM, MACHINE_ENV_KEY)
        return [Conflict(name, user[name].data, machine[name].data)
                for name in sorted(set(user) & set(machine))
                if name in settings.SETTINGS and user[name].data != machine[name].data]

    def notes(self, name: str) -> list[str]:
        machine = self.registry.values(HKLM, MACHINE_ENV_KEY).get(name)
        user = self.registry.values(HKCU, USER_ENV_KEY).get(name)
        if machine is None or (user is not None and user.data == machine.data):
            return []
        return [f"HKLM also sets {name}={machine.data} for the whole machine: the task (this "
                "user) gets the user value, services and other users the machine value"]

    def machine_only(self) -> dict[str, str]:
        """Known settings set for the machine only: they apply, but `env set` does not own
        them."""
        user = self.registry.values(HKCU, USER_ENV_KEY)
        return {n: v.data for n, v in self.registry.values(HKLM, MACHINE_ENV_KEY).items()
                if n in settings.SETTINGS and n not in user}

    # -- the ledger ------------------------------------------------------------------------
    def restore_previous(self) -> list[str]:
        """Give each setting `env set` changed the value it had before (or none); the names
        changed."""
        current = self.registry.values(HKCU, USER_ENV_KEY)
        restored = []
        for name, before in self.ledger().items():
            now = current.get(name)
            if before is None and now is not None:
                self._record("remove", f"{self.location}\\{name}", "restore: it was not set")
                if not self.ctx.dry_run:
                    self.registry.delete_value(HKCU, USER_ENV_KEY, name)
            elif before is not None and (now is None or now.data != before):
                self._record("write", f"{self.location}\\{name} = {before}", "restore")
                if not self.ctx.dry_run:
                    self.registry.set_value(HKCU, USER_ENV_KEY, name,
                                            RegValue(before, "%" in before))
            else:
                continue
            restored.append(name)
        if restored:
            self.broadcast()
        return restored

    def ledger(self) -> dict[str, str | None]:
        try:
            data = json.loads(local_path(self.ctx, self.layout.ledger_path).read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ServiceError(f"{self.layout.ledger_path} is damaged: {exc}") from exc
        return {str(k): (None if v is None else str(v)) for k, v in data.items()}

    def _remember(self, name: str, current: RegValue | None) -> None:
        ledger_file = local_path(self.ctx, self.layout.ledger_path)
        if not ledger_file.parent.is_dir():
            return                      # not installed: nothing to undo at uninstall
        ledger = self.ledger()
        if name in ledger:
            return
        ledger[name] = None if current is None else current.data
        self.ctx.runner.write_file(ledger_file, json.dumps(ledger, indent=2) + "\n",
                                   backup=False, why="the value to restore at uninstall")

    def _record(self, action: str, target: str, why: str) -> None:
        self.ctx.runner.plan.append(PlanStep(action, target, why))


# -- Task Scheduler ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """Everything the task template needs; rendering is a pure function of it."""

    user_id: str
    command: str
    arguments: str
    working_directory: str
    task_name: str = TASK_NAME


def server_action(python: str, log_path: str) -> tuple[str, str]:
    """(Command, Arguments) of the task: this module's ``serve`` with the log file."""
    pythonw = Path(python).with_name("pythonw.exe")
    command = str(pythonw) if pythonw.exists() else python
    return command, subprocess.list2cmdline(["-m", "ollamactl.service.windows", "serve",
                                             log_path])


def render_task(spec: TaskSpec) -> str:
    return templating.render(
        "windows/task.xml.j2", user_id=spec.user_id, task_name=spec.task_name,
        command=spec.command, arguments=spec.arguments, working_directory=spec.working_directory,
        restart_interval=RESTART_INTERVAL, restart_count=RESTART_COUNT)


def task_xml_bytes(text: str) -> bytes:
    """UTF-16 with a BOM, the encoding its declaration names and schtasks reads."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-16")


def parse_query(text: str) -> dict[str, str]:
    """``schtasks /Query /FO LIST /V``: one ``Key: value`` per line."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def parse_schtasks_time(text: str) -> float | None:
    for fmt in _SCHTASKS_TIME_FORMATS:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text.strip(), fmt).timestamp()
    return None


class TaskSchedulerManager(ServiceManager):
    """The logon task through schtasks; settings through :class:`RegistryEnvStore`."""

    name = "windows"

    def __init__(self, ctx: Context, layout: WindowsLayout, *, registry: Registry | None = None,
                 broadcaster: SettingBroadcaster | None = None) -> None:
        super().__init__(ctx)
        self.layout = layout
        self.registry = registry
        self.broadcaster = broadcaster

    @property
    def staged(self) -> bool:
        return self.ctx.root != Path("/")

    def schtasks(self, *args: str, why: str, mutates: bool = True, check: bool = True) -> Cmd:
        return cmd("schtasks", *args, why=why, mutates=mutates, check=check)

    def query(self) -> dict[str, str] | None:
        """The task's fields (English schtasks output), or None when it does not exist."""
        if self.staged:
            return None
        result = self.ctx.runner.run(self.schtasks("/Query", "/TN", TASK_NAME, "/FO", "LIST",
                                                   "/V", why="the task's state", mutates=False,
                                                   check=False))
        return parse_query(result.stdout) if result.ok else None

    def status(self) -> ServiceState:
        xml = str(self.layout.task_xml)
        if self.staged:
            return ServiceState(self.name, installed=local_path(self.ctx, xml).exists(),
                                active="unknown", definition=xml,
                                detail=f"staged under {self.ctx.root}; nothing runs there")
        task = self.query()
        if task is None:
            return ServiceState(self.name, installed=False, active="inactive", definition=xml)
        running = task.get("Status") == "Running"
        return ServiceState(
            self.name, installed=True, active="active" if running else "inactive",
            enabled=task.get("Scheduled Task State", "Enabled") == "Enabled",
            started_at=parse_schtasks_time(task.get("Last Run Time", "")) if running else None,
            definition=TASK_NAME, detail="" if running else task.get("Status", ""),
            extra={"last result": task.get("Last Result", "")})

    def _live(self, action: str) -> None:
        if self.staged:
            raise UnsupportedPlatform(f"the task staged under {self.ctx.root} cannot be "
                                      f"{action} from here")

    def create_task(self) -> None:
        self.ctx.runner.run(self.schtasks("/Create", "/TN", TASK_NAME, "/XML",
                                          str(self.layout.task_xml), "/F",
                                          why="start the server at logon"))

    def delete_task(self) -> None:
        self.ctx.runner.run(self.schtasks("/Delete", "/TN", TASK_NAME, "/F",
                                          why="no longer start at logon"))

    def start(self) -> None:
        self._live("started")
        self.ctx.runner.run(self.schtasks("/Run", "/TN", TASK_NAME, why="start the server"))

    def stop(self) -> None:
        self._live("stopped")
        task = self.query()
        if task is not None and task.get("Status") == "Running":
            self.ctx.runner.run(self.schtasks("/End", "/TN", TASK_NAME,
                                              why="stop the server"))

    def restart(self) -> None:
        """End and run again: the new process reads the user environment afresh."""
        self.stop()
        self.start()

    def env_store(self) -> RegistryEnvStore:
        if self.registry is None and self.staged:
            raise UnsupportedPlatform("the Windows registry cannot be staged under --root")
        return RegistryEnvStore(self.ctx, self.layout, self.registry or open_registry(),
                                self.broadcaster or open_broadcaster())

    def log_source(self) -> LogFile:
        return LogFile(local_path(self.ctx, self.layout.log_path))


# -- doctor helpers (users-and-security C40) --------------------------------------------------

class TimedSettings(Protocol):
    """A settings store that knows when it was last written (HKCU\\Environment, the service's
    key)."""

    def changed_at(self) -> float | None: ...


def settings_after_start(store: TimedSettings, state: ServiceState) -> float | None:
    """When the settings changed after the running server started (it still has the old
    values), that time; else None."""
    if not state.running or state.started_at is None:
        return None
    changed = store.changed_at()
    return changed if changed is not None and changed > state.started_at else None


def competing_servers(ctx: Context, layout: WindowsLayout) -> list[str]:
    """A real Ollama's tray app installed beside us (both serve port 11434)."""
    app = PureWindowsPath(layout.account.local_app_data, OLLAMA_APP)
    return [str(app)] if local_path(ctx, app).exists() else []


# -- the task's action -------------------------------------------------------------------------

def rotate_server_logs(path: Path, *, keep: int = LOG_KEEP) -> None:
    """``server.log`` -> ``server-1.log`` -> ... ``server-<keep>.log`` (the oldest goes)."""
    def numbered(index: int) -> Path:
        return path.with_name(f"{path.stem}-{index}{path.suffix}")

    with contextlib.suppress(FileNotFoundError):
        numbered(keep).unlink()
    for index in range(keep - 1, 0, -1):
        if numbered(index).exists():
            os.replace(numbered(index), numbered(index + 1))
    if path.exists():
        os.replace(path, numbered(1))


def open_server_log(log_path: Path) -> TextIO:
    """Rotate the log and open a fresh ``server.log`` for appending (line buffered): the
    logon task's wrapper and the service host both start the server this way."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_server_logs(log_path)
    return open(log_path, "a", buffering=1, encoding="utf-8", errors="replace",
                opener=private_opener)


def serve_logged(log_path: Path) -> None:
    """Rotate the log, send this process's output (and its runners') there, and run
    ``ollamactl serve`` in this very process, as every other service manager runs it (here,
    not as a child: ``schtasks /End`` then stops the server itself). It runs through the
    command line's own entry point, so this backend does not depend on the server's modules.
    """
    stream = open_server_log(log_path)
    os.dup2(stream.fileno(), 1)
    os.dup2(stream.fileno(), 2)
    sys.stdout = sys.stderr = stream
    sys.argv = [sys.argv[0], "serve"]
    runpy.run_module("ollamactl", run_name="__main__", alter_sys=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "serve":
        print("usage: python -m ollamactl.service.windows serve LOGFILE", file=sys.stderr)
        return 2
    serve_logged(Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""OS-boundary fakes for the macOS and Windows backends: host facts, accounts, registry, user32,
the service control manager (sc.exe) and advapi32's service calls.

Only what the OS would answer is faked; every backend's logic runs as it would on the real OS.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ollamactl.errors import ServiceError
from ollamactl.host import HostFacts
from ollamactl.service.launchd import MacAccount
from ollamactl.service.windows import (
    HKLM,
    Registry,
    RegValue,
    SettingBroadcaster,
    WindowsAccount,
)
from ollamactl.service.windows_system import SERVICE_KEY, MachineFolders
from ollamactl.service.winservice import (
    RUNNING,
    STOPPED,
    ControlHandler,
    ServiceControlApi,
    ServiceMain,
    ServiceStatus,
)
from ollamactl.system import Cmd, CmdResult, RecordingRunner


def mac_host(base: HostFacts, *, is_root: bool = False) -> HostFacts:
    return dataclasses.replace(base, os_name="darwin", arch="arm64", machine="arm64",
                               distro_id="macos", distro_version="14.5",
                               distro_name="macOS 14.5", init_system="launchd",
                               is_root=is_root, apple_silicon=True)


def windows_host(base: HostFacts, *, is_admin: bool = False) -> HostFacts:
    return dataclasses.replace(base, os_name="windows", distro_id="windows",
                               distro_version="10.0.22631", distro_name="Windows 11",
                               init_system="windows", is_root=is_admin)


def mac_account(home_base: Path) -> MacAccount:
    home = home_base / "Users" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    return MacAccount("alice", 501, str(home))


def windows_account(profile_base: Path) -> WindowsAccount:
    """A user whose folders are real directories here: ``<base>/Users/alice/AppData/Local``."""
    profile = profile_base / "Users" / "alice"
    (profile / "AppData" / "Local").mkdir(parents=True, exist_ok=True)
    return WindowsAccount("alice", str(profile / "AppData" / "Local"), str(profile),
                          domain="DESKTOP-1")


def machine_folders(base: Path) -> MachineFolders:
    """%ProgramFiles% and %ProgramData% as real directories here."""
    for name in ("Program Files", "ProgramData"):
        (base / name).mkdir(parents=True, exist_ok=True)
    return MachineFolders(str(base / "Program Files"), str(base / "ProgramData"))


class FakeRegistry(Registry):
    """An in-memory registry with write times from a fake clock; a key exists once it has
    string values (REG_MULTI_SZ values live beside them, in :attr:`multi`)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.keys: dict[tuple[str, str], dict[str, RegValue]] = {}
        self.multi: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.written_at: dict[tuple[str, str], float] = {}
        self._clock: Iterator[float] = itertools.count(start, 1.0)

    def values(self, hive: str, key: str) -> dict[str, RegValue]:
        return dict(self.keys.get((hive, key), {}))

    def set_value(self, hive: str, key: str, name: str, value: RegValue) -> None:
        self.keys.setdefault((hive, key), {})[name] = value
        self.written_at[(hive, key)] = next(self._clock)

    def delete_value(self, hive: str, key: str, name: str) -> None:
        self.keys.get((hive, key), {}).pop(name, None)
        self.written_at[(hive, key)] = next(self._clock)

    def modified_at(self, hive: str, key: str) -> float | None:
        return self.written_at.get((hive, key))

    def multi_string(self, hive: str, key: str, name: str) -> list[str] | None:
        found = self.multi.get((hive, key), {}).get(name)
        return None if found is None else list(found)

    def set_multi_string(self, hive: str, key: str, name: str, items: Sequence[str]) -> None:
        if (hive, key) not in self.keys:
            raise ServiceError(f"{hive}\\{key} does not exist")
        self.multi.setdefault((hive, key), {})[name] = list(items)
        self.written_at[(hive, key)] = next(self._clock)

    def delete_key(self, hive: str, key: str) -> None:
        for table in (self.keys, self.multi, self.written_at):
            table.pop((hive, key), None)


class RecordingBroadcaster(SettingBroadcaster):
    """Records each WM_SETTINGCHANGE broadcast that would have been sent."""

    def __init__(self) -> None:
        self.sent = 0

    def environment_changed(self) -> bool:
        self.sent += 1
        return True


class FakeServiceControlManager(RecordingRunner):
    """sc.exe and icacls as Windows answers them: ``create`` makes the service's key in the
    registry, ``delete`` removes it (with its Environment), ``stop`` leaves STOP_PENDING for
    ``stop_polls`` queries; every command is recorded. Other commands follow the script."""

    def __init__(self, registry: FakeRegistry, *, pid: int, stop_polls: int = 1) -> None:
        super().__init__()
        self.registry = registry
        self.pid = pid
        self.stop_polls = stop_polls
        self.config: dict[str, str] | None = None
        self.state = "STOPPED"
        self._polls_left = 0

    def _execute(self, command: Cmd) -> CmdResult:
        if command.argv[0] == "icacls":
            self.calls.append(command)
            return CmdResult(command.argv, 0, "processed file: ...\n")
        if command.argv[0] != "sc.exe":
            return super()._execute(command)
        self.calls.append(command)
        verb, name, *args = command.argv[1:]
        assert name == "ollama", command.argv
        if verb == "create" and self.config is not None:
            return CmdResult(command.argv, 1073, "[SC] CreateService FAILED 1073:\n")
        if verb == "create":
            self.config = {}
        if self.config is None:
            return CmdResult(command.argv, 1060, "[SC] OpenService FAILED 1060:\n\nThe "
                             "specified service does not exist as an installed service.\n")
        return self._service(command.argv, verb, args)

    def _service(self, argv: tuple[str, ...], verb: str, args: list[str]) -> CmdResult:
        assert self.config is not None
        if verb in ("create", "config"):
            pairs = dict(zip(args[::2], args[1::2], strict=True))
            assert all(key.endswith("=") for key in pairs), argv
            self.config.update(pairs)
            self.registry.set_value(HKLM, SERVICE_KEY, "ImagePath", RegValue(pairs["binPath="]))
            self.registry.set_value(HKLM, SERVICE_KEY, "ObjectName", RegValue(pairs["obj="]))
        elif verb in ("description", "failure", "failureflag"):
            self.config[verb] = " ".join(args)
        elif verb == "start":
            if self.state != "STOPPED":
                return CmdResult(argv, 1056, "[SC] StartService FAILED 1056:\n")
            self.state = "RUNNING"
        elif verb == "stop":
            if self.state == "STOPPED":
                return CmdResult(argv, 1062, "[SC] ControlService FAILED 1062:\n")
            self.state, self._polls_left = "STOP_PENDING", self.stop_polls
        elif verb in ("query", "queryex"):
            if self.state == "STOP_PENDING":
                if self._polls_left == 0:
                    self.state = "STOPPED"
                self._polls_left -= 1
            return CmdResult(argv, 0, self.query_text(verb))
        elif verb == "delete":
            self.config = None
            self.registry.delete_key(HKLM, SERVICE_KEY)
        else:
            raise AssertionError(f"sc.exe {verb} is not simulated")
        return CmdResult(argv, 0, f"[SC] {verb} SUCCESS\n")

    def query_text(self, verb: str) -> str:
        code = {"STOPPED": 1, "STOP_PENDING": 3, "RUNNING": 4}[self.state]
        pid = self.pid if self.state != "STOPPED" else 0
        return ("\nSERVICE_NAME: ollama\n        TYPE               : 10  WIN32_OWN_PROCESS\n"
                f"        STATE              : {code}  {self.state}\n"
                "                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)\n"
                "        WIN32_EXIT_CODE    : 0  (0x0)\n"
                "        SERVICE_EXIT_CODE  : 0  (0x0)\n"
                "        CHECKPOINT         : 0x0\n        WAIT_HINT          : 0x0\n"
                + (f"        PID                : {pid}\n        FLAGS              :\n"
                   if verb == "queryex" else ""))


class FakeServiceControl(ServiceControlApi):
    """advapi32 as the SCM drives a service: ``dispatch`` runs ServiceMain on its own thread,
    delivers ``controls`` from another once the service reports RUNNING and ``ready()`` (the
    child is up), and returns when it
    reports STOPPED. Every SetServiceStatus and each handler answer is recorded."""

    HANDLE = 0x5EC

    def __init__(self, controls: Sequence[int] = (),
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.controls = list(controls)
        self.ready = ready
        self.statuses: list[ServiceStatus] = []
        self.answers: list[tuple[int, int]] = []
        self._handler: ControlHandler | None = None
        self._running = threading.Event()
        self._stopped = threading.Event()

    def dispatch(self, name: str, service_main: ServiceMain) -> None:
        main = threading.Thread(target=service_main, args=([name],))
        main.start()
        if self.controls:
            threading.Thread(target=self._deliver).start()
        assert self._stopped.wait(60), "the service never reported STOPPED"
        main.join(10)

    def _deliver(self) -> None:
        if not self._running.wait(30):
            return
        deadline = time.monotonic() + 30
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        for control in self.controls:
            assert self._handler is not None
            self.answers.append((control, self._handler(control)))

    def register_handler(self, name: str, handler: ControlHandler) -> int:
        self._handler = handler
        return self.HANDLE

    def set_status(self, handle: int, status: ServiceStatus) -> None:
        assert handle == self.HANDLE
        self.statuses.append(status)
        if status.state == RUNNING:
            self._running.set()
        if status.state == STOPPED:
            self._stopped.set()

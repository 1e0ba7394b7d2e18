"""The Windows service host: answers the service control manager, runs ``ollamactl serve``.

The service's binPath is ``"<python.exe>" -m ollamactl.service.winservice <name> <log>``. A
plain python.exe cannot be a service: the SCM waits for it to call
``StartServiceCtrlDispatcherW``, whose ServiceMain must register a control handler and report
its state. This module does that with ctypes (no pywin32):

- ServiceMain: START_PENDING (with wait hint and checkpoints), rotate ``server.log``, start the
  server as a child with its output there, RUNNING accepting STOP, SHUTDOWN and PRESHUTDOWN;
- STOP / SHUTDOWN / PRESHUTDOWN: STOP_PENDING with a checkpoint each second, a graceful stop of
  the child (CTRL_BREAK on Windows, which uvicorn handles), the child's tree killed after
  ``stop_timeout_s``, then STOPPED with exit code 0;
- the child dies on its own: STOPPED with ERROR_SERVICE_SPECIFIC_ERROR (1066) and its exit code
  as the service-specific code, so the recovery actions (``sc.exe failure``) restart it.

Every advapi32 call sits behind :class:`ServiceControlApi`; :class:`ServiceHost` is plain Python
that tests drive with a fake one and real child processes.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from ollamactl.errors import ServiceError
from ollamactl.service.windows import open_server_log

SERVICE_WIN32_OWN_PROCESS = 0x10
# dwCurrentState (winsvc.h)
STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4
# dwControlsAccepted
ACCEPT_STOP, ACCEPT_SHUTDOWN, ACCEPT_PRESHUTDOWN = 0x1, 0x4, 0x100
# controls delivered to the handler
CONTROL_STOP, CONTROL_INTERROGATE, CONTROL_SHUTDOWN, CONTROL_PRESHUTDOWN = 0x1, 0x4, 0x5, 0xF
NO_ERROR, ERROR_CALL_NOT_IMPLEMENTED = 0, 120
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
ERROR_SERVICE_SPECIFIC_ERROR = 1066
START_WAIT_HINT_MS = 10_000
STOP_WAIT_HINT_MS = 5_000
STOP_TIMEOUT_S = 20.0
_STOP_CONTROLS = {CONTROL_STOP: "STOP", CONTROL_SHUTDOWN: "SHUTDOWN",
                  CONTROL_PRESHUTDOWN: "PRESHUTDOWN"}


@dataclass(frozen=True)
class ServiceStatus:
    """One SERVICE_STATUS as SetServiceStatus receives it (the service type is always
    SERVICE_WIN32_OWN_PROCESS)."""

    state: int
    controls_accepted: int = 0
    win32_exit_code: int = NO_ERROR
    service_exit_code: int = 0
    checkpoint: int = 0
    wait_hint_ms: int = 0


ServiceMain = Callable[[list[str]], None]
ControlHandler = Callable[[int], int]


class ServiceControlApi(ABC):
    """The three advapi32 calls a service makes."""

    @abstractmethod
    def dispatch(self, name: str, service_main: ServiceMain) -> None:
        """``StartServiceCtrlDispatcherW``: calls ``service_main`` (on another thread) and
        returns once the service reported STOPPED.

        Raises:
            ServiceError: not started by the SCM (1063: run from a console), or another error.
        """

    @abstractmethod
    def register_handler(self, name: str, handler: ControlHandler) -> int:
        """``RegisterServiceCtrlHandlerExW``: the status handle; ``handler(control)`` returns
        a Win32 error code (NO_ERROR when handled)."""

    @abstractmethod
    def set_status(self, handle: int, status: ServiceStatus) -> None:
        """``SetServiceStatus``."""


class Advapi32ServiceControl(ServiceControlApi):
    """The real calls through ctypes (Windows only: built by :func:`open_service_control`)."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        winfunctype = getattr(ctypes, "WINFUNCTYPE")  # noqa: B009 (Windows only)
        self._ctypes = ctypes
        self._main_type = winfunctype(None, wintypes.DWORD, ctypes.POINTER(wintypes.LPWSTR))
        self._handler_type = winfunctype(wintypes.DWORD, wintypes.DWORD, wintypes.DWORD,
                                         wintypes.LPVOID, wintypes.LPVOID)

        class TableEntry(ctypes.Structure):
            _fields_ = [("lpServiceName", wintypes.LPWSTR),
                        ("lpServiceProc", self._main_type)]

        class Status(ctypes.Structure):
            _fields_ = [(n, wintypes.DWORD) for n in (
                "dwServiceType", "dwCurrentState", "dwControlsAccepted", "dwWin32ExitCode",
                "dwServiceSpecificExitCode", "dwCheckPoint", "dwWaitHint")]

        self._entry, self._status = TableEntry, Status
        dll = getattr(ctypes, "WinDLL")("advapi32", use_last_error=True)  # noqa: B009
        dll.StartServiceCtrlDispatcherW.argtypes = [ctypes.POINTER(TableEntry)]
        dll.StartServiceCtrlDispatcherW.restype = wintypes.BOOL
        dll.RegisterServiceCtrlHandlerExW.argtypes = [wintypes.LPCWSTR, self._handler_type,
                                                      wintypes.LPVOID]
        dll.RegisterServiceCtrlHandlerExW.restype = wintypes.HANDLE
        dll.SetServiceStatus.argtypes = [wintypes.HANDLE, ctypes.POINTER(Status)]
        dll.SetServiceStatus.restype = wintypes.BOOL
        self._dll = dll
        self._callbacks: list[Any] = []     # ctypes callbacks must outlive the calls

    def _error(self, call: str) -> ServiceError:
        code = int(getattr(self._ctypes, "get_last_error")())  # noqa: B009
        if code == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            return ServiceError("this is the Windows service's host; it runs only when the "
                                "service control manager starts it",
                                hint="use `ollamactl start` (sc.exe start ollama)")
        return ServiceError(f"{call} failed with Windows error {code}")

    def dispatch(self, name: str, service_main: ServiceMain) -> None:
        def main(argc: int, argv: Any) -> None:
            service_main([str(argv[i]) for i in range(argc)])

        callback = self._main_type(main)
        self._callbacks.append(callback)
        table = (self._entry * 2)(self._entry(name, callback), self._entry(None, self._main_type()))
        if not self._dll.StartServiceCtrlDispatcherW(table):
            raise self._error("StartServiceCtrlDispatcherW")

    def register_handler(self, name: str, handler: ControlHandler) -> int:
        def on_control(control: int, event_type: int, event_data: Any, context: Any) -> int:
            return handler(int(control))

        callback = self._handler_type(on_control)
        self._callbacks.append(callback)
        handle = self._dll.RegisterServiceCtrlHandlerExW(name, callback, None)
        if not handle:
            raise self._error("RegisterServiceCtrlHandlerExW")
        return int(handle)

    def set_status(self, handle: int, status: ServiceStatus) -> None:
        raw = self._status(SERVICE_WIN32_OWN_PROCESS, status.state, status.controls_accepted,
                           status.win32_exit_code, status.service_exit_code, status.checkpoint,
                           status.wait_hint_ms)
        if not self._dll.SetServiceStatus(handle, self._ctypes.byref(raw)):
            raise self._error("SetServiceStatus")


# -- the child ---------------------------------------------------------------------------------

class ChildControl:
    """How the server child is started and asked to stop: SIGTERM (POSIX)."""

    def spawn(self, argv: Sequence[str], log: TextIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)

    def interrupt(self, child: subprocess.Popen[bytes]) -> None:
        child.send_signal(signal.SIGTERM)


class ConsoleChildControl(ChildControl):
    """Windows: a service has no console, so the host makes a hidden one that the child shares,
    and starts the child in its own process group to send it CTRL_BREAK (uvicorn's SIGBREAK
    handler then shuts down as on SIGTERM)."""

    def spawn(self, argv: Sequence[str], log: TextIO) -> subprocess.Popen[bytes]:
        import ctypes

        getattr(ctypes, "windll").kernel32.AllocConsole()  # noqa: B009 (fails if one exists)
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP")  # noqa: B009
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, creationflags=flags)

    def interrupt(self, child: subprocess.Popen[bytes]) -> None:
        child.send_signal(getattr(signal, "CTRL_BREAK_EVENT"))  # noqa: B009


def kill_tree(child: subprocess.Popen[bytes]) -> None:
    """Kill the child and whatever it started (its model runners)."""
    import psutil

    try:
        descendants = psutil.Process(child.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    child.kill()
    for process in descendants:
        with contextlib.suppress(psutil.Error):
            process.kill()
    child.wait()


# -- the lifecycle -----------------------------------------------------------------------------

@dataclass
class ServiceHost:
    """ServiceMain and the control handler of one service (see the module docstring)."""

    api: ServiceControlApi
    name: str
    log_path: Path
    child_argv: Sequence[str]
    children: ChildControl = field(default_factory=ChildControl)
    stop_timeout_s: float = STOP_TIMEOUT_S
    exit_code: int = 0
    _handle: int = 0
    _checkpoint: int = 0
    _state: int = STOPPED
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _log: TextIO | None = None

    def run(self) -> int:
        """Hand the main thread to the SCM; the service's exit code once it stopped."""
        self.api.dispatch(self.name, self.service_main)
        return self.exit_code

    def report(self, state: int, *, wait_hint_ms: int = 0, win32_exit_code: int = NO_ERROR,
               service_exit_code: int = 0) -> None:
        """SetServiceStatus; pending states count their checkpoint up."""
        with self._lock:
            pending = state in (START_PENDING, STOP_PENDING)
            self._checkpoint = self._checkpoint + 1 if pending else 0
            accepted = ACCEPT_STOP | ACCEPT_SHUTDOWN | ACCEPT_PRESHUTDOWN \
                if state == RUNNING else 0
            self._state = state
            self.api.set_status(self._handle, ServiceStatus(
                state, accepted, win32_exit_code, service_exit_code, self._checkpoint,
                wait_hint_ms))

    def on_control(self, control: int) -> int:
        """The control handler: must return at once, so it only flags the stop."""
        if control in _STOP_CONTROLS:
            with self._lock:
                first = not self._stop.is_set()
                self._stop_reason = self._stop_reason or _STOP_CONTROLS[control]
                self._stop.set()
            if first:
                self.report(STOP_PENDING, wait_hint_ms=STOP_WAIT_HINT_MS)
            return NO_ERROR
        if control == CONTROL_INTERROGATE:
            return NO_ERROR
        return ERROR_CALL_NOT_IMPLEMENTED

    def service_main(self, args: list[str]) -> None:
        """Runs on the SCM's thread; never raises (a stuck START_PENDING would hang the SCM)."""
        try:
            self._handle = self.api.register_handler(self.name, self.on_control)
            self.report(START_PENDING, wait_hint_ms=START_WAIT_HINT_MS)
            self._serve()
        except Exception as exc:  # reported to the SCM and the log
            self.note(f"service host failed: {exc}", level="ERROR")
            self.exit_code = 1
            if self._handle:
                self.report(STOPPED, win32_exit_code=ERROR_SERVICE_SPECIFIC_ERROR,
                            service_exit_code=1)
        finally:
            if self._log is not None:
                self._log.close()

    def note(self, message: str, *, level: str = "INFO") -> None:
        """A line in server.log, stamped as the server stamps its own."""
        if self._log is None:
            return
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        self._log.write(f"time={stamp} level={level} source=winservice msg=\"{message}\"\n")

    def _serve(self) -> None:
        self._log = open_server_log(self.log_path)
        self.report(START_PENDING, wait_hint_ms=START_WAIT_HINT_MS)
        child = self.children.spawn(self.child_argv, self._log)
        self.note(f"service {self.name}: server started (pid {child.pid})")
        self.report(RUNNING)
        while not self._stop.wait(0.1):
            if child.poll() is not None:
                break
        code = child.poll()
        if code is not None and not self._stop.is_set():
            self.note(f"service {self.name}: the server exited by itself with code {code}",
                      level="ERROR")
            self.exit_code = ERROR_SERVICE_SPECIFIC_ERROR
            self.report(STOPPED, win32_exit_code=ERROR_SERVICE_SPECIFIC_ERROR,
                        service_exit_code=code & 0xFFFFFFFF)
            return
        self.note(f"service {self.name}: {self._stop_reason} requested; stopping the server")
        self._stop_child(child)
        self.report(STOPPED)

    def _stop_child(self, child: subprocess.Popen[bytes]) -> None:
        """Graceful stop, STOP_PENDING each second meanwhile; kill after the timeout."""
        if child.poll() is None:
            with contextlib.suppress(OSError):
                self.children.interrupt(child)
        deadline = time.monotonic() + self.stop_timeout_s
        while child.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
            if child.poll() is None:
                self.report(STOP_PENDING, wait_hint_ms=STOP_WAIT_HINT_MS)
        if child.poll() is None:
            self.note(f"service {self.name}: the server did not stop within "
                      f"{self.stop_timeout_s:g} s; killing it", level="WARN")
            kill_tree(child)


def open_service_control() -> ServiceControlApi:
    """advapi32 of this machine (Windows only)."""
    return Advapi32ServiceControl()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m ollamactl.service.winservice SERVICE LOGFILE", file=sys.stderr)
        return 2
    host = ServiceHost(open_service_control(), args[0], Path(args[1]),
                       [sys.executable, "-m", "ollamactl", "serve"],
                       children=ConsoleChildControl())
    try:
        return host.run()
    except ServiceError as exc:
        print(f"ollamactl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

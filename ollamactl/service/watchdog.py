"""ollamactl's own supervisor, for hosts where no init system runs (containers, WSL, a dev shell).

It behaves like the systemd unit would: ``ollamactl serve`` runs as a child of a daemonised
supervisor; a crash is followed by a restart (first after 1 s, then backing off, like
``Restart=always`` + ``RestartSec=3``); five quick crashes in a row put it in a ``crash-loop``
state that ``ollamactl status`` reports, while it keeps retrying every minute. Files, all in
one state directory unless placed elsewhere:

    watchdog.pid   {"pid", "started_at"} of the supervisor (pid + start time = identity)
    state.json     what the supervisor is doing: state, server pid, restarts, last exit
    ollama.log     the server's output, one timestamped line each, rotated at 10 MiB (3 kept),
                   mode 0640
    ollama.env     NAME=VALUE lines the server is started with (``ollamactl env set``)

Stop is SIGTERM to the supervisor, which stops the server (SIGTERM, then SIGKILL after a
timeout) and sweeps its process group so no runner is left; ``ollamactl stop`` SIGKILLs
whatever is still there after that.

Run as ``python -m ollamactl.service.watchdog launch|supervise ...`` (``launch`` starts a
detached ``supervise`` and returns once the server process is up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from ollamactl.context import Context
from ollamactl.errors import ServiceError
from ollamactl.logrecords import private_opener
from ollamactl.service._posix import (
    ProcessIdentity,
    kill_process_group,
    read_pid_file,
    terminate_tree,
    write_pid_file,
)
from ollamactl.service.base import ServiceManager, ServiceState
from ollamactl.service.env import EnvStore, file_lines
from ollamactl.service.logfiles import LogFile
from ollamactl.system import Cmd, PlanStep, Runner, atomic_write

FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
QUICK_CRASH_S = 10.0          # a run shorter than this counts towards a crash loop
CRASH_LOOP_AFTER = 5          # consecutive quick crashes
STOP_TIMEOUT_S = 10.0
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
_BASE_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class WatchdogPaths:
    """Where the watchdog keeps its pid, state, log and settings."""

    state_dir: Path
    log_file: Path
    env_file: Path

    @classmethod
    def in_dir(cls, state_dir: Path) -> WatchdogPaths:
        return cls(state_dir, state_dir / "ollama.log", state_dir / "ollama.env")

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "watchdog.pid"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"


# -- settings: the env file --------------------------------------------------------------------

class EnvFileStore(EnvStore):
    """``NAME=VALUE`` lines (one per setting, value verbatim to the end of the line).

    Comments, blank lines and lines we did not write are kept byte for byte.
    """

    def __init__(self, path: Path, *, runner: Runner | None = None) -> None:
        self.path = path
        self.location = str(path)
        self.runner = runner

    def read(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for line in self._lines():
            parsed = _parse_env_line(line)
            if parsed is not None:
                values[parsed[0]] = parsed[1]
        return values

    def set(self, name: str, value: str) -> bool:
        self.check(name, value)
        if self.read().get(name) == value:
            return False
        lines = self._without(name)
        lines.append(f"{name}={value}")
        self._write(lines)
        return True

    def unset(self, name: str) -> bool:
        if name not in self.read():
            return False
        self._write(self._without(name))
        return True

    def render_with(self, lines: list[str]) -> str:
        return "".join(line + "\n" for line in lines)

    def _lines(self) -> list[str]:
        """The file's lines, split at ``\\n`` only; bytes that are not UTF-8 survive."""
        try:
            return file_lines(self.path.read_bytes().decode("utf-8", "surrogateescape"))
        except FileNotFoundError:
            return []

    def _without(self, name: str) -> list[str]:
        return [line for line in self._lines()
                if (_parse_env_line(line) or ("",))[0] != name]

    def _write(self, lines: list[str]) -> None:
        data = self.render_with(lines).encode("utf-8", "surrogateescape")
        if self.runner is not None:
            self.runner.write_file(self.path, data, mode=0o640, why="the watchdog's settings")
        else:
            atomic_write(self.path, data, mode=0o640)


def _parse_env_line(line: str) -> tuple[str, str] | None:
    """``[export ]NAME=VALUE``; the value is the rest of the line, exactly as written."""
    text = line.lstrip(" \t")
    if not text or text.startswith("#"):
        return None
    text = text.removeprefix("export ").lstrip(" \t")
    name, sep, value = text.partition("=")
    if not sep or not _NAME.match(name.rstrip(" \t")):
        return None
    return name.rstrip(" \t"), value


# -- the log file (written here; read by ollamactl.service.logfiles) ---------------------------

class RotatingLog:
    """Append timestamped lines; rotate ``ollama.log`` -> ``.1`` -> ``.2`` ... at ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int = LOG_MAX_BYTES,
                 backups: int = LOG_BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
        data = "".join(f"{stamp} {line}\n" for line in text.splitlines() or [""]).encode()
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                self._rotate()
            with open(self.path, "ab", opener=private_opener) as out:
                out.write(data)

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()


# -- the state file ----------------------------------------------------------------------------

@dataclass
class WatchdogState:
    """What the supervisor is doing, as written to ``state.json``."""

    state: str = "starting"     # starting | running | restarting | crash-loop | stopping | stopped
    server_pid: int | None = None
    server_started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    message: str = ""
    argv: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        data = {**self.__dict__, "updated_at": time.time()}
        atomic_write(path, json.dumps(data, indent=1).encode(), mode=0o644, backup=False)

    @classmethod
    def load(cls, path: Path) -> WatchdogState | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def server_identity(self) -> ProcessIdentity | None:
        if self.server_pid is None or self.server_started_at is None:
            return None
        return ProcessIdentity(self.server_pid, self.server_started_at)


# -- the supervisor (runs detached) ------------------------------------------------------------

@dataclass(frozen=True)
class SupervisorConfig:
    paths: WatchdogPaths
    argv: tuple[str, ...]
    user: str | None = None
    first_delay_s: float = FIRST_RESTART_DELAY_S
    max_delay_s: float = MAX_RESTART_DELAY_S
    stop_timeout_s: float = STOP_TIMEOUT_S
    log_max_bytes: int = LOG_MAX_BYTES


class Supervisor:
    """Keeps one server process running until told to stop (SIGTERM/SIGINT)."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.paths = config.paths
        self.log = RotatingLog(self.paths.log_file, max_bytes=config.log_max_bytes)
        self.state = WatchdogState(argv=list(config.argv))
        self._stop = threading.Event()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())
        write_pid_file(self.paths.pid_file, ProcessIdentity.of(os.getpid()))
        self.log.write(f"watchdog: supervising {' '.join(self.config.argv)} (pid {os.getpid()})")
        quick_crashes = 0
        try:
            while not self._stop.is_set():
                proc = self._spawn()
                if proc is None:
                    exit_code, ran_s = 127, 0.0
                else:
                    started = time.monotonic()
                    while proc.poll() is None and not self._stop.is_set():
                        self._stop.wait(0.2)
                    if self._stop.is_set():
                        self._stop_server(proc)
                        break
                    exit_code, ran_s = proc.returncode, time.monotonic() - started
                    kill_process_group(proc.pid)  # runners the dead server left behind
                quick_crashes = quick_crashes + 1 if ran_s < QUICK_CRASH_S else 1
                delay = min(self.config.first_delay_s * 2 ** (quick_crashes - 1),
                            self.config.max_delay_s)
                looping = quick_crashes >= CRASH_LOOP_AFTER
                self.state.restarts += 1
                self.state.last_exit = exit_code
                self.state.server_pid = self.state.server_started_at = None
                self.state.state = "crash-loop" if looping else "restarting"
                self.state.message = (
                    f"crash loop: {quick_crashes} quick exits in a row (last exit {exit_code}); "
                    f"retrying every {delay:g} s, see `ollamactl logs`" if looping else
                    f"server exited with {_describe_exit(exit_code)}; restarting in {delay:g} s")
                self.state.save(self.paths.state_file)
                self.log.write(f"watchdog: {self.state.message}")
                self._stop.wait(delay)
        finally:
            self.state.state, self.state.message = "stopped", "stopped"
            self.state.server_pid = self.state.server_started_at = None
            self.state.save(self.paths.state_file)
            self.log.write("watchdog: stopped")
            with contextlib.suppress(FileNotFoundError):
                self.paths.pid_file.unlink()
        return 0

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        env, cwd, creds = self._environment()
        try:
            proc = subprocess.Popen(
                list(self.config.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True, **creds)
        except OSError as exc:
            self.log.write(f"watchdog: cannot start {self.config.argv[0]}: {exc}")
            return None
        assert proc.stdout is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()
        identity = ProcessIdentity.of(proc.pid)
        self.state.state, self.state.message = "running", ""
        self.state.server_pid, self.state.server_started_at = identity.pid, identity.started_at
        self.state.save(self.paths.state_file)
        self.log.write(f"watchdog: started server pid {proc.pid}")
        return proc

    def _environment(self) -> tuple[dict[str, str], str, dict[str, Any]]:
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env.update(EnvFileStore(self.paths.env_file).read())
        creds: dict[str, Any] = {}
        home = str(self.paths.state_dir)
        if self.config.user is not None and os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(self.config.user)
            creds = {"user": entry.pw_uid, "group": entry.pw_gid,
                     "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid)}
            home = entry.pw_dir
            env.update(USER=entry.pw_name, LOGNAME=entry.pw_name)
        env["HOME"] = home
        return env, home if os.path.isdir(home) else "/", creds

    def _pump(self, stream: BinaryIO) -> None:
        for raw in iter(stream.readline, b""):
            self.log.write(raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    def _stop_server(self, proc: subprocess.Popen[bytes]) -> None:
        self.state.state, self.state.message = "stopping", "stopping"
        self.state.save(self.paths.state_file)
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            killed = terminate_tree(psutil.Process(proc.pid),
                                    timeout_s=self.config.stop_timeout_s,
                                    process_group=proc.pid)
            if killed:
                self.log.write(f"watchdog: killed {len(killed)} process(es) that ignored SIGTERM")
        with contextlib.suppress(ChildProcessError):
            proc.wait()
        self.log.write("watchdog: server stopped")


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


# -- launching (the short-lived half of `ollamactl start`) ------------------------------------

def launch(config: SupervisorConfig, *, wait_s: float = 15.0) -> ProcessIdentity:
    """Start a detached supervisor and wait until its server process exists.

    Raises:
        ServiceError: the supervisor died or did not start its server in ``wait_s``.
    """
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        config.paths.state_file.unlink()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "ollamactl.service.watchdog", "supervise",
         *_config_args(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd="/", start_new_session=True, close_fds=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        identity = read_pid_file(config.paths.pid_file)
        state = WatchdogState.load(config.paths.state_file)
        if identity is not None and identity.pid == proc.pid and state is not None \
                and state.state != "starting":
            return identity
        if proc.poll() is not None:
            raise ServiceError(f"the watchdog exited at once (status {proc.returncode})",
                               hint=f"see {config.paths.log_file}")
        time.sleep(0.05)
    raise ServiceError(f"the watchdog did not start the server within {wait_s:g} s",
                       hint=f"see {config.paths.log_file}")


def _config_args(config: SupervisorConfig) -> list[str]:
    args = ["--state-dir", str(config.paths.state_dir), "--log-file", str(config.paths.log_file),
            "--env-file", str(config.paths.env_file),
            "--first-delay", str(config.first_delay_s), "--max-delay", str(config.max_delay_s),
            "--stop-timeout", str(config.stop_timeout_s),
            "--log-max-bytes", str(config.log_max_bytes)]
    if config.user:
        args += ["--user", config.user]
    return [*args, "--", *config.argv]


def _parse_config(argv: Sequence[str]) -> tuple[str, SupervisorConfig]:
    parser = argparse.ArgumentParser(prog="python -m ollamactl.service.watchdog")
    parser.add_argument("action", choices=("launch", "supervise"))
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--env-file", type=Path)
    parser.add_argument("--user")
    parser.add_argument("--first-delay", type=float, default=FIRST_RESTART_DELAY_S)
    parser.add_argument("--max-delay", type=float, default=MAX_RESTART_DELAY_S)
    parser.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT_S)
    parser.add_argument("--log-max-bytes", type=int, default=LOG_MAX_BYTES)
    parser.add_argument("argv", nargs="+")
    ns = parser.parse_args(argv)
    base = WatchdogPaths.in_dir(ns.state_dir)
    paths = WatchdogPaths(ns.state_dir, ns.log_file or base.log_file,
                          ns.env_file or base.env_file)
    return ns.action, SupervisorConfig(paths, tuple(ns.argv), ns.user, ns.first_delay,
                                       ns.max_delay, ns.stop_timeout, ns.log_max_bytes)


def main(argv: Sequence[str] | None = None) -> int:
    action, config = _parse_config(sys.argv[1:] if argv is None else argv)
    if action == "supervise":
        os.umask(0o022)
        return Supervisor(config).run()
    try:
        identity = launch(config)
    except ServiceError as exc:
        print(f"ollamactl watchdog: {exc.message}", file=sys.stderr)
        return 1
    print(identity.pid)
    return 0


# -- the ServiceManager ------------------------------------------------------------------------

class WatchdogManager(ServiceManager):
    """``start | stop | restart | status`` through the supervisor above."""

    name = "watchdog"

    def __init__(self, ctx: Context, paths: WatchdogPaths, argv: Sequence[str], *,
                 user: str | None = None, stop_timeout_s: float = STOP_TIMEOUT_S,
                 first_delay_s: float = FIRST_RESTART_DELAY_S) -> None:
        super().__init__(ctx)
        self.paths = paths
        self.config = SupervisorConfig(paths, tuple(argv), user, first_delay_s=first_delay_s,
                                       stop_timeout_s=stop_timeout_s)

    def supervisor(self) -> ProcessIdentity | None:
        """The live supervisor, or None."""
        identity = read_pid_file(self.paths.pid_file)
        return identity if identity is not None and identity.is_alive() else None

    def status(self) -> ServiceState:
        supervisor = self.supervisor()
        state = WatchdogState.load(self.paths.state_file)
        extra = {"state_dir": str(self.paths.state_dir)}
        if supervisor is None or state is None:
            detail = "not running"
            if read_pid_file(self.paths.pid_file) is not None:
                detail = f"not running (stale pid file {self.paths.pid_file})"
            return ServiceState(self.name, installed=True, active="inactive", detail=detail,
                                definition=str(self.paths.state_dir), extra=extra)
        active = {"running": "active", "crash-loop": "failed",
                  "stopping": "deactivating"}.get(state.state, "activating")
        server = state.server_identity()
        extra.update(watchdog_pid=str(supervisor.pid), restarts=str(state.restarts),
                     last_exit="" if state.last_exit is None else str(state.last_exit))
        return ServiceState(self.name, installed=True, active=active,
                            pid=server.pid if server else None,
                            started_at=server.started_at if server else None,
                            definition=str(self.paths.state_dir), detail=state.message,
                            extra=extra)

    def start(self) -> None:
        if self.supervisor() is not None:
            return
        self.ctx.runner.run(Cmd(
            (sys.executable, "-I", "-m", "ollamactl.service.watchdog", "launch",
             *_config_args(self.config)),
            why="start the server under ollamactl's watchdog", timeout_s=60, cwd="/"))

    def stop(self) -> None:
        """SIGTERM the supervisor (it stops the server), then SIGKILL anything left."""
        supervisor = self.supervisor()
        state = WatchdogState.load(self.paths.state_file)
        server = state.server_identity() if state else None
        if supervisor is None and (server is None or not server.is_alive()):
            return
        self.ctx.runner.plan.append(PlanStep(
            "signal", f"SIGTERM watchdog pid {supervisor.pid if supervisor else '-'}",
            "stop the server and its runners"))
        if self.ctx.dry_run:
            return
        import psutil

        if supervisor is not None and (proc := supervisor.process()) is not None:
            proc.send_signal(signal.SIGTERM)
            _gone, alive = psutil.wait_procs([proc], timeout=self.config.stop_timeout_s + 5)
            for leftover in alive:
                leftover.kill()
        if server is not None and (server_proc := server.process()) is not None:
            terminate_tree(server_proc, timeout_s=self.config.stop_timeout_s,
                           process_group=server.pid)
        with contextlib.suppress(FileNotFoundError):
            self.paths.pid_file.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def env_store(self) -> EnvFileStore:
        return EnvFileStore(self.paths.env_file, runner=self.ctx.runner)

    def log_source(self) -> LogFile:
        return LogFile(self.paths.log_file)


if __name__ == "__main__":
    sys.exit(main())

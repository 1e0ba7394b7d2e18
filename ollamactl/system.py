"""The one seam for external commands and privileged file writes.

Every ``useradd``, ``systemctl``, ``journalctl``, ``launchctl``, ``reg``, ``modprobe`` ... goes
through a :class:`Runner`, and so does every file write that changes the system. Three runners:

- :class:`SystemRunner` executes (argv lists only, never a shell, with a timeout);
- :class:`PlanRunner` backs ``--dry-run``: read-only probes (``Cmd(mutates=False)``) still run so
  the plan matches the machine, every mutating command and file change is recorded, not done;
- :class:`RecordingRunner` backs the tests: commands answer from a script and are recorded; file
  changes really happen (tests point them at a staging root).

File writes are atomic (temp file in the same directory, fsync, ``os.replace``, fsync of the
directory), skipped when the content is unchanged, and keep a ``.bak`` of what was there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ollamactl.errors import CommandFailed, OllamactlError, PrivilegeError

log = logging.getLogger(__name__)

BACKUP_SUFFIX = ".bak"


@dataclass(frozen=True)
class Cmd:
    """One external command. ``mutates=False`` marks read-only probes that run even in dry-run."""

    argv: tuple[str, ...]
    why: str = ""
    mutates: bool = True
    check: bool = True
    timeout_s: float | None = 120.0
    env: Mapping[str, str | None] | None = None
    input: str | None = None

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ValueError(f"argv must be a non-empty tuple of str, got {self.argv!r}")

    @property
    def display(self) -> str:
        return " ".join(_quote(a) for a in self.argv)


@dataclass(frozen=True)
class CmdResult:
    """What a command did: exit status and its decoded output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class PlanStep:
    """One change a runner made or (in dry-run) would make."""

    action: str  # run | write | remove | mkdir | chown | chmod | symlink
    target: str
    why: str = ""

    def render(self, *, done: bool) -> str:
        verb = ("did " if done else "would ") + self.action
        line = f"{verb:<13}{self.target}"
        return f"{line:<78}  # {self.why}" if self.why else line


def cmd(*argv: str, why: str = "", mutates: bool = True, check: bool = True,
        timeout_s: float | None = 120.0, env: Mapping[str, str | None] | None = None,
        input: str | None = None) -> Cmd:
    """Shorthand: ``cmd("systemctl", "daemon-reload", why="load the new unit")``."""
    return Cmd(tuple(argv), why=why, mutates=mutates, check=check, timeout_s=timeout_s,
               env=env, input=input)


class Runner(ABC):
    """Runs commands and changes files; records every change in :attr:`plan`."""

    dry_run: bool = False

    def __init__(self) -> None:
        self.plan: list[PlanStep] = []

    # -- commands -------------------------------------------------------------------------------
    def run(self, command: Cmd) -> CmdResult:
        """Run ``command``; raise :class:`CommandFailed` on a non-zero exit when ``check``."""
        if command.mutates:
            self.plan.append(PlanStep("run", command.display, command.why))
        result = self._execute(command)
        if command.check and not result.ok:
            raise CommandFailed(command.argv, result.returncode, result.stderr or result.stdout)
        return result

    @abstractmethod
    def _execute(self, command: Cmd) -> CmdResult:
        """Really run (or pretend to run) one command."""

    # -- files ----------------------------------------------------------------------------------
    def write_file(self, path: Path, data: bytes | str, *, mode: int = 0o644,
                   owner: tuple[int, int] | None = None, why: str = "",
                   backup: bool = True) -> bool:
        """Atomically write ``data`` to ``path``; return False when it already held that content."""
        payload = data.encode() if isinstance(data, str) else data
        if _same_content(path, payload):
            return False
        self.plan.append(PlanStep("write", f"{path} ({mode:04o})", why))
        if not self.dry_run:
            atomic_write(path, payload, mode=mode, owner=owner, backup=backup)
        return True

    def make_dir(self, path: Path, *, mode: int = 0o755, owner: tuple[int, int] | None = None,
                 why: str = "") -> bool:
        """Create ``path`` (and parents); return False when it already exists."""
        if path.is_dir():
            return False
        self.plan.append(PlanStep("mkdir", f"{path} ({mode:04o})", why))
        if not self.dry_run:
            with _os_errors(path):
                path.mkdir(mode=mode, parents=True, exist_ok=True)
                os.chmod(path, mode)
                if owner is not None:
                    os.chown(path, *owner)
        return True

    def chown(self, path: Path, owner: tuple[int, int], *, recursive: bool = False,
              why: str = "") -> bool:
        """Give ``path`` to ``owner`` (uid, gid); return False when nothing changes."""
        targets = [path, *(_walk(path) if recursive else [])]
        todo = [p for p in targets if (p.lstat().st_uid, p.lstat().st_gid) != owner]
        if not todo:
            return False
        self.plan.append(PlanStep("chown", f"{owner[0]}:{owner[1]} {path}"
                                  + (" (recursive)" if recursive else ""), why))
        if not self.dry_run:
            for target in todo:
                with _os_errors(target):
                    os.chown(target, *owner, follow_symlinks=False)
        return True

    def remove(self, path: Path, *, recursive: bool = False, why: str = "") -> bool:
        """Remove a file, an empty directory, or (``recursive``) a tree; False if absent."""
        if not path.exists() and not path.is_symlink():
            return False
        self.plan.append(PlanStep("remove", str(path) + (" (recursive)" if recursive else ""), why))
        if not self.dry_run:
            with _os_errors(path):
                if path.is_dir() and not path.is_symlink():
                    if recursive:
                        shutil.rmtree(path)
                    else:
                        path.rmdir()
                else:
                    path.unlink()
        return True

    def render_plan(self) -> str:
        return "\n".join(step.render(done=not self.dry_run) for step in self.plan)


class SystemRunner(Runner):
    """Executes commands on this machine."""

    def _execute(self, command: Cmd) -> CmdResult:
        env = None
        if command.env is not None:
            env = dict(os.environ)
            for key, value in command.env.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
        log.debug("run: %s", command.display)
        try:
            proc = subprocess.run(
                command.argv, capture_output=True, text=True, timeout=command.timeout_s,
                env=env, input=command.input, check=False,
            )
        except FileNotFoundError as exc:
            raise CommandFailed(command.argv, 127, f"{command.argv[0]}: command not found",
                                hint=f"install {command.argv[0]} or put it on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(command.argv, 124,
                                f"timed out after {command.timeout_s:g} s") from exc
        log.debug("exit %d: %s", proc.returncode, command.display)
        return CmdResult(command.argv, proc.returncode, proc.stdout, proc.stderr)


class PlanRunner(Runner):
    """Dry-run: probes run for real (through ``probe_runner``), changes are only recorded."""

    dry_run = True

    def __init__(self, probe_runner: Runner | None = None) -> None:
        super().__init__()
        self._probe = probe_runner or SystemRunner()

    def _execute(self, command: Cmd) -> CmdResult:
        if command.mutates:
            return CmdResult(command.argv, 0)
        return self._probe._execute(command)


@dataclass
class _Script:
    prefix: tuple[str, ...]
    result: CmdResult
    times: int | None  # None = any number of times


class UnexpectedCommand(AssertionError):
    """A RecordingRunner met a command nobody scripted (strict mode)."""


@dataclass
class RecordingRunner(Runner):
    """Test double: answers commands from a script (longest matching argv prefix wins) and records
    them in :attr:`calls`. File changes go to disk for real; point them at a staging root."""

    strict: bool = True
    calls: list[Cmd] = field(default_factory=list)
    _scripts: list[_Script] = field(default_factory=list)

    def __post_init__(self) -> None:
        Runner.__init__(self)

    def on(self, *prefix: str, returncode: int = 0, stdout: str = "", stderr: str = "",
           times: int | None = None) -> RecordingRunner:
        """Script the answer for commands starting with ``prefix``."""
        self._scripts.append(_Script(tuple(prefix), CmdResult(tuple(prefix), returncode, stdout,
                                                              stderr), times))
        return self

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [c.argv for c in self.calls]

    def _execute(self, command: Cmd) -> CmdResult:
        self.calls.append(command)
        matches = [s for s in self._scripts
                   if command.argv[: len(s.prefix)] == s.prefix and s.times != 0]
        if not matches:
            if self.strict:
                raise UnexpectedCommand(f"unscripted command: {command.display}")
            return CmdResult(command.argv, 0)
        script = max(matches, key=lambda s: len(s.prefix))
        if script.times is not None:
            script.times -= 1
        r = script.result
        return CmdResult(command.argv, r.returncode, r.stdout, r.stderr)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644,
                 owner: tuple[int, int] | None = None, backup: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    The previous content, if any, is kept in ``path.bak`` (also written atomically).
    """
    with _os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if backup and path.is_file():
            _replace_with(path.with_name(path.name + BACKUP_SUFFIX), path.read_bytes(),
                          mode=path.stat().st_mode & 0o7777, owner=None)
        _replace_with(path, data, mode=mode, owner=owner)


def _replace_with(path: Path, data: bytes, *, mode: int, owner: tuple[int, int] | None) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            if owner is not None:
                os.fchown(tmp.fileno(), *owner)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _same_content(path: Path, payload: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(payload) \
            and path.read_bytes() == payload
    except OSError:
        return False


def _walk(root: Path) -> Iterable[Path]:
    if not root.is_dir() or root.is_symlink():
        return []
    return sorted(root.rglob("*"))


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=@%+,^" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


@contextlib.contextmanager
def _os_errors(path: Path) -> Iterator[None]:
    """Turn OSError at the file-system edge into OllamactlError naming the path."""
    try:
        yield
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PrivilegeError(f"cannot change {path}: {reason}",
                                 hint="run with sudo (or as Administrator)") from exc
        raise OllamactlError(f"cannot change {path}: {reason}") from exc



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
``make_dir``, ``chown`` and ``remove`` walk paths by fds and never act through a link that
another user could have placed (:func:`open_dir`): root must not follow the service user's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping
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
    cwd: str | None = None

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
        """Create ``path`` (and parents); return False when it already exists. Never through a
        link another user could have placed (:func:`open_dir`)."""
        with _os_errors(path):
            if _is_dir(path):
                return False
        self.plan.append(PlanStep("mkdir", f"{path} ({mode:04o})", why))
        if not self.dry_run:
            with _os_errors(path):
                _make_dirs(path, mode=mode, owner=owner)
        return True

    def chown(self, path: Path, owner: tuple[int, int], *, recursive: bool = False,
              why: str = "") -> bool:
        """Give ``path`` (``recursive``: and its tree) to ``owner`` (uid, gid); return False
        when nothing changes. A refusal (:class:`UnsafePath`) comes before any change."""
        with _os_errors(path):
            if not _chown_tree(path, owner, recursive=recursive, apply=False):
                return False
        self.plan.append(PlanStep("chown", f"{owner[0]}:{owner[1]} {path}"
                                  + (" (recursive)" if recursive else ""), why))
        if not self.dry_run:
            with _os_errors(path):
                _chown_tree(path, owner, recursive=recursive, apply=True)
        return True

    def remove(self, path: Path, *, recursive: bool = False, why: str = "") -> bool:
        """Remove a file, a link (not what it points to), an empty directory, or
        (``recursive``) a tree; False if absent."""
        with _os_errors(path):
            if _entry_stat(path) is None:
                return False
        self.plan.append(PlanStep("remove", str(path) + (" (recursive)" if recursive else ""), why))
        if not self.dry_run:
            with _os_errors(path):
                _remove_entry(path, recursive=recursive)
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
                env=env, input=command.input, cwd=command.cwd, check=False,
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


# -- acting on trees another user can write ---------------------------------------------------
#
# The service user owns its home (/usr/share/ollama) and can put a link anywhere under it. Root
# that resolves such a path by name acts on whatever the link points to: a chown hands any
# directory named ``models`` on the system to that user, a purge deletes it. So these walk from
# ``/`` one name at a time (``openat`` with ``O_NOFOLLOW``) and act through fds. Windows has no
# ``openat``: there the plain calls remain (``_FD_PATHS`` false).

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FD_PATHS = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd
_TRAVERSE = getattr(os, "O_PATH", os.O_RDONLY) | _DIRECTORY | _NOFOLLOW | _CLOEXEC
_READ_DIR = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
_MAX_LINKS = 32


class UnsafePath(OllamactlError):
    """A link that another user could have placed sits on a path ollamactl was to act on."""


def open_dir(path: Path, *, create_mode: int | None = None) -> int:
    """A readable fd of the directory ``path``, reached as :func:`_walk_to` does; the caller
    closes it. ``create_mode``: make what is missing (the last with that mode).

    Raises:
        UnsafePath: a link another user could have placed is on the way.
        OSError: a component is missing (without ``create_mode``) or not a directory.
    """
    where = _walk_to(path, create_mode=create_mode)
    try:
        return os.open(".", _READ_DIR, dir_fd=where)
    finally:
        os.close(where)


def check_links(path: Path) -> None:
    """Refuse (:class:`UnsafePath`) when such a link sits on the part of ``path`` that exists:
    a command checks this before it changes anything."""
    if not _FD_PATHS:
        return
    try:
        os.close(_walk_to(path))
    except (FileNotFoundError, NotADirectoryError):
        if path.parent != path:
            check_links(path.parent)


def _walk_to(path: Path, *, create_mode: int | None = None) -> int:
    """An ``O_PATH`` fd of the directory ``path``, opened from ``/`` one name at a time with
    ``O_NOFOLLOW``. A link is followed only when nobody but root (or this user) could have
    made it: it and its directory belong to them and nobody else may write that directory."""
    pending = deque(Path(os.path.abspath(path)).parts[1:])
    stack = [os.open("/", _TRAVERSE)]
    names: list[str] = []
    links = 0
    try:
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            try:
                stack.append(os.open(name, _TRAVERSE, dir_fd=stack[-1]))
                names.append(name)
                continue
            except FileNotFoundError:
                if create_mode is None:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, create_mode if not pending else 0o777, dir_fd=stack[-1])
                pending.appendleft(name)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not stat.S_ISLNK(
                        os.stat(name, dir_fd=stack[-1], follow_symlinks=False).st_mode):
                    raise
            target = _trusted_link(path, "/" + "/".join([*names, name]), stack[-1], name)
            links += 1
            if links > _MAX_LINKS:
                raise UnsafePath(f"refusing {path}: more than {_MAX_LINKS} links on the way")
            while target.startswith("/") and len(stack) > 1:
                os.close(stack.pop())
                names.pop()
            pending.extendleft(reversed(target.split("/")))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _trusted_link(path: Path, where: str, dir_fd: int, name: str) -> str:
    """The target of the link ``name`` in ``dir_fd``, or :class:`UnsafePath` naming why it
    is not followed."""
    trusted = {0, os.geteuid()}
    link = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    directory = os.fstat(dir_fd)
    target = os.readlink(name, dir_fd=dir_fd)
    parent = where.rsplit("/", 1)[0] or "/"
    if directory.st_uid not in trusted:
        reason = f"{parent} belongs to uid {directory.st_uid}"
    elif directory.st_mode & 0o022:
        reason = f"{parent} is writable by others"
    elif link.st_uid not in trusted:
        reason = f"the link belongs to uid {link.st_uid}"
    else:
        return target
    raise UnsafePath(f"refusing {path}: {where} is a symbolic link ({reason}), which ollamactl "
                     "does not follow", hint=f"remove the link (to {target!r}) or put a "
                                             "directory there, then run the command again")


def _is_dir(path: Path) -> bool:
    if not _FD_PATHS:
        return path.is_dir()
    try:
        os.close(_walk_to(path))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _make_dirs(path: Path, *, mode: int, owner: tuple[int, int] | None) -> None:
    if not _FD_PATHS:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(path, mode)
        return
    fd = open_dir(path, create_mode=mode)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)


def _entry_stat(path: Path) -> os.stat_result | None:
    """What is at ``path`` itself (a link is not followed); None when nothing is."""
    try:
        if not _FD_PATHS:
            return path.lstat()
        parent = _walk_to(path.parent)
    except FileNotFoundError:
        return None
    try:
        return os.stat(path.name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(parent)


def _remove_entry(path: Path, *, recursive: bool) -> None:
    """Delete what is at ``path``: a link itself, a file, an empty directory or a tree (an
    fd-based ``rmtree``, which never leaves the tree through a link inside it)."""
    if not _FD_PATHS:
        if not path.is_dir() or path.is_symlink():
            path.unlink()
        elif recursive:
            shutil.rmtree(path)
        else:
            path.rmdir()
        return
    parent = _walk_to(path.parent)
    try:
        st = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path.name, dir_fd=parent)
        elif recursive:
            shutil.rmtree(path.name, dir_fd=parent)
        else:
            os.rmdir(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def _chown_tree(path: Path, owner: tuple[int, int], *, recursive: bool, apply: bool) -> bool:
    """Whether ``path`` (``recursive``: or anything in its tree) is not ``owner``'s; with
    ``apply``, make it so. Directories through their fds (``os.fwalk`` never enters a link),
    anything else by name without following it."""
    try:
        top = open_dir(path)
    except NotADirectoryError:
        parent = _walk_to(path.parent)
        try:
            return _chown_at(parent, path.name, owner, apply=apply, shown=path)
        finally:
            os.close(parent)
    try:
        if not recursive:
            return _chown_fd(top, owner, apply=apply)
        changed = False
        for where, dirs, files, dir_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            changed |= _chown_fd(dir_fd, owner, apply=apply)
            for name in [*dirs, *files]:
                if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    changed |= _chown_at(dir_fd, name, owner, apply=apply,
                                         shown=path / where / name)
        return changed
    finally:
        os.close(top)


def _chown_fd(fd: int, owner: tuple[int, int], *, apply: bool) -> bool:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) == owner:
        return False
    if apply:
        os.fchown(fd, *owner)
    return True


def _chown_at(dir_fd: int, name: str, owner: tuple[int, int], *, apply: bool,
              shown: Path) -> bool:
    """Change ``name`` itself (a link, not its target). A file with other hard links is
    refused: one may be a file from outside the tree (where ``fs.protected_hardlinks`` is
    off, anyone may link anything)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if (st.st_uid, st.st_gid) == owner:
        return False
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise UnsafePath(f"refusing {shown}: it has {st.st_nlink} hard links, and another may "
                         "be a file outside this tree", hint="copy it instead of linking it")
    if apply:
        os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
    return True


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



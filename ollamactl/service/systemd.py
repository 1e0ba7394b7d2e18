"""systemd backend: the unit file, the drop-in that holds settings, systemctl, journalctl.

Settings live in ``/etc/systemd/system/ollama.service.d/override.conf``, the very file
``systemctl edit ollama`` opens, as ``Environment="NAME=VALUE"`` lines: quoted, ``%`` doubled,
and only values :func:`ollamactl.settings.check_storable` lets through, so a value can never end
its line. The file is read at ``\\n`` only. Lines we did not write are kept byte for byte; an
assignment to the same name inside a foreign multi-assignment line is cut out of that line, the
rest of it left as it was (otherwise ``unset`` could not work).

Under a staging root (``--root DIR``) nothing is started: files are written under DIR and
``systemctl --root DIR enable`` makes the offline symlinks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ollamactl import settings, templating
from ollamactl.context import Context
from ollamactl.errors import UnsupportedPlatform, UsageError
from ollamactl.identity import GPU_GROUPS, SERVICE_GROUP, SERVICE_HOME, SERVICE_NAME, SERVICE_USER
from ollamactl.service.base import LogQuery, LogSource, ServiceManager, ServiceState
from ollamactl.service.env import EnvStore, file_lines
from ollamactl.system import Cmd, Runner, cmd

UNIT = f"{SERVICE_NAME}.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
DROPIN_DIR = f"/etc/systemd/system/{UNIT}.d"
DROPIN_PATH = f"{DROPIN_DIR}/override.conf"

#: Device groups (``/proc/devices`` names) the GPU runtimes open; majors of uvm/caps are dynamic,
#: so the unit names groups, not numbers (nixpkgs ollama module, nix#331069).
GPU_DEVICE_ALLOW = ("char-nvidiactl rw", "char-nvidia-frontend rw", "char-nvidia-uvm rw",
                    "char-nvidia-caps rw", "char-drm rw", "char-kfd rw", "char-fb rw")
WSL_DEVICE_ALLOW = ("/dev/dxg rw",)
#: ProtectHome=yes hides these; a models dir below them needs ProtectHome=tmpfs + BindPaths=.
HOME_TREES = ("/home", "/root", "/run/user")


@dataclass(frozen=True)
class UnitSpec:
    """Everything the unit template needs; rendering is a pure function of it."""

    exec_argv: tuple[str, ...]
    user: str = SERVICE_USER
    group: str = SERVICE_GROUP
    home: str = SERVICE_HOME
    supplementary_groups: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    read_write_paths: tuple[str, ...] = ("/usr/share/ollama",)
    device_allow: tuple[str, ...] = GPU_DEVICE_ALLOW


def render_unit(spec: UnitSpec) -> str:
    return templating.render(
        "systemd/ollama.service.j2", dropin_path=DROPIN_PATH, exec_argv=spec.exec_argv,
        user=spec.user, group=spec.group, home=spec.home,
        supplementary_groups=spec.supplementary_groups, environment=spec.environment,
        read_write_paths=spec.read_write_paths, device_allow=spec.device_allow)


def is_ollamactl_unit(text: str) -> bool:
    """True for a unit that ollamactl rendered (a real Ollama's unit is never ours)."""
    return templating.MANAGED_HEADER in text


# -- systemd's Environment= syntax -------------------------------------------------------------

#: What systemd's unit-file parser takes for whitespace (WHITESPACE in its sources): no more.
WHITESPACE = " \t\n\r"
#: ``Key=Value`` of one line, with the offset of the value kept for cutting words out of it.
_ASSIGNMENT = re.compile(r"[ \t\r]*([^#;\[ \t\r=][^=]*?)[ \t\r]*=[ \t\r]*(.*?)[ \t\r]*")


@dataclass(frozen=True)
class Word:
    """One assignment of an ``Environment=`` value: where it sits in the raw value, and the
    text systemd reads from it."""

    start: int
    end: int
    text: str


def scan_words(value: str) -> list[Word]:
    """Split an ``Environment=`` value as systemd does (systemd.exec(5), "Environment="):
    whitespace separates, quotes group, backslash escapes, ``%%`` is a literal ``%``."""
    words: list[Word] = []
    current: list[str] = []
    start: int | None = None
    quote = ""
    i = 0
    while i < len(value):
        c = value[i]
        if quote:
            if c == "\\" and i + 1 < len(value):
                i += 1
                current.append(value[i])
            elif c == quote:
                quote = ""
            else:
                current.append(c)
        elif c in WHITESPACE:
            if start is not None:
                words.append(Word(start, i, "".join(current).replace("%%", "%")))
                current, start = [], None
        else:
            start = i if start is None else start
            if c in "\"'":
                quote = c
            elif c == "\\" and i + 1 < len(value):
                i += 1
                current.append(value[i])
            else:
                current.append(c)
        i += 1
    if start is not None:
        words.append(Word(start, len(value), "".join(current).replace("%%", "%")))
    return words


def split_words(value: str) -> list[str]:
    """The assignments of an ``Environment=`` value, as systemd reads them."""
    return [word.text for word in scan_words(value)]


def format_assignment(name: str, value: str) -> str:
    """``Environment="NAME=VALUE"``, always quoted, as `systemctl edit` users write it: ``\\``
    and ``"`` escaped, ``%`` doubled (a specifier otherwise); refuses what no line can hold."""
    settings.require_storable(name, value)
    escaped = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{escape_specifiers(escaped)}"'


def escape_specifiers(text: str) -> str:
    """``%`` doubled: systemd expands ``%h``-style specifiers in these values."""
    return text.replace("%", "%%")


def path_word(directory: str) -> str:
    """``directory`` as one word of ReadWritePaths=/BindPaths=: ``%`` doubled (they expand
    specifiers); raises UsageError for a path those lists would split or unquote."""
    try:
        settings.check_storable(directory)
        settings.check_path_list_word(directory)
    except settings.Invalid as exc:
        raise UsageError(f"cannot let the service write {directory!r}: {exc}") from None
    return escape_specifiers(directory)


def _cut(text: str, offset: int, words: list[Word]) -> str:
    """``text`` without ``words`` (of the value at ``offset``), each with the whitespace that
    parted it from its neighbour; every other byte stays as it was."""
    for word in reversed(words):
        start, end = offset + word.start, offset + word.end
        if word.start > 0:
            while text[start - 1] in WHITESPACE:
                start -= 1
        else:
            while end < len(text) and text[end] in WHITESPACE:
                end += 1
        text = text[:start] + text[end:]
    return text


@dataclass
class _Line:
    text: str
    section: str

    @property
    def assignment(self) -> re.Match[str] | None:
        """``Key=Value`` of this line (group 1 and 2); None for a comment, section or blank."""
        return _ASSIGNMENT.fullmatch(self.text)

    @property
    def key_value(self) -> tuple[str, str] | None:
        match = self.assignment
        return (match[1], match[2]) if match else None


@dataclass
class DropIn:
    """An override.conf as lines, each knowing its section, so edits keep everything else."""

    lines: list[_Line] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> DropIn:
        section = ""
        lines = []
        for raw in file_lines(text):
            stripped = raw.strip(WHITESPACE)
            if stripped.startswith("[") and stripped.endswith("]"):
                section = stripped[1:-1]
            lines.append(_Line(raw, section))
        return cls(lines)

    def render(self) -> str:
        return "".join(line.text + "\n" for line in self.lines)

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for line in self.lines:
            kv = line.key_value
            if line.section != "Service" or kv is None or kv[0] != "Environment":
                continue
            if not kv[1]:
                env.clear()  # an empty assignment resets the list
            for word in split_words(kv[1]):
                name, sep, value = word.partition("=")
                if sep:
                    env[name] = value
        return env

    def values(self, key: str) -> list[str]:
        return [kv[1] for line in self.lines
                if line.section == "Service" and (kv := line.key_value) and kv[0] == key]

    def set_env(self, name: str, value: str | None) -> None:
        """Make ``name`` have ``value`` (None: not set at all)."""
        index = self._drop_assignments(name)
        if value is not None:
            self._insert(format_assignment(name, value), index)

    def add_directive(self, key: str, value: str) -> None:
        if value not in self.values(key):
            self._insert(f"{key}={value}", None)

    def remove_directive(self, key: str, value: str) -> None:
        self.lines = [line for line in self.lines
                      if not (line.section == "Service" and line.key_value == (key, value))]

    def _drop_assignments(self, name: str) -> int | None:
        """Remove ``name`` from every Environment= line, cutting out only its own words (the
        rest of a line stays byte for byte); the index of the first line it was in."""
        first: int | None = None
        kept: list[_Line] = []
        for line in self.lines:
            match = line.assignment if line.section == "Service" else None
            if match is not None and match[1] == "Environment":
                words = scan_words(match[2])
                doomed = [w for w in words if w.text.partition("=")[0] == name]
                if doomed:
                    first = len(kept) if first is None else first
                    if len(doomed) == len(words):
                        continue
                    line = _Line(_cut(line.text, match.start(2), doomed), line.section)
            kept.append(line)
        self.lines = kept
        return first

    def _insert(self, text: str, index: int | None) -> None:
        if index is None:
            service = [i for i, line in enumerate(self.lines) if line.section == "Service"]
            if not service:
                self.lines.append(_Line("[Service]", "Service"))
                index = len(self.lines)
            else:
                index = service[-1] + 1
                while index - 1 > service[0] and not self.lines[index - 1].text.strip():
                    index -= 1
        self.lines.insert(index, _Line(text, "Service"))


class DropInEnvStore(EnvStore):
    """The service's settings as ``Environment=`` lines in the drop-in (see module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.path = ctx.path(DROPIN_PATH)
        self.location = str(self.path)

    def load(self) -> DropIn:
        """The drop-in as it is; bytes that are not UTF-8 survive (surrogateescape)."""
        try:
            text = self.path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            text = templating.render("systemd/override.conf.j2")
        return DropIn.parse(text)

    def save(self, dropin: DropIn, *, why: str) -> bool:
        data = dropin.render().encode("utf-8", "surrogateescape")
        return self.ctx.runner.write_file(self.path, data, mode=0o644, why=why)

    def read(self) -> dict[str, str]:
        return self.load().environment() if self.path.exists() else {}

    def set(self, name: str, value: str) -> bool:
        self.check(name, value)
        return self._edit(lambda d: d.set_env(name, value), f"set {name}")

    def check(self, name: str, value: str) -> None:
        """Also refuses a models directory that `env set` could not grant (:func:`path_word`)."""
        super().check(name, value)
        if name == "OLLAMA_MODELS":
            settings.require_path_list_word(name, value)

    def unset(self, name: str) -> bool:
        if name not in self.read():
            return False
        return self._edit(lambda d: d.set_env(name, None), f"unset {name}")

    def grant_path(self, directory: str) -> bool:
        """Let the hardened unit write ``directory`` (ReadWritePaths=, or BindPaths= below a
        home tree, which ProtectHome=yes hides)."""
        word = path_word(directory)

        def edit(dropin: DropIn) -> None:
            if is_under_home(directory):
                dropin.add_directive("ProtectHome", "tmpfs")
                dropin.add_directive("BindPaths", word)
            else:
                dropin.add_directive("ReadWritePaths", word)
        return self._edit(edit, f"let the service write {directory}")

    def revoke_path(self, directory: str) -> bool:
        """Undo :meth:`grant_path` (no check: a grant an older version wrote must go too)."""
        word = escape_specifiers(directory)

        def edit(dropin: DropIn) -> None:
            dropin.remove_directive("ReadWritePaths", word)
            dropin.remove_directive("BindPaths", word)
            if not any(is_under_home(p) for p in dropin.values("BindPaths")):
                dropin.remove_directive("ProtectHome", "tmpfs")
        return self._edit(edit, f"stop granting {directory}")

    def _edit(self, change: Callable[[DropIn], None], why: str) -> bool:
        dropin = self.load()
        before = dropin.render()
        change(dropin)
        if dropin.render() == before and self.path.exists():
            return False
        return self.save(dropin, why=why)


def is_under_home(directory: str) -> bool:
    path = PurePosixPath(directory)
    return any(path == PurePosixPath(t) or PurePosixPath(t) in path.parents for t in HOME_TREES)


# -- journalctl ------------------------------------------------------------------------------

class JournalLogSource(LogSource):
    """``journalctl -u ollama``; ``follow`` polls with ``--after-cursor`` through the runner.

    ``output`` is journalctl's ``-o``: ``short-iso`` for people, ``cat`` (the messages alone)
    for doctor, which reads what the server wrote.
    """

    def __init__(self, ctx: Context, *, poll_s: float = 1.0, output: str = "short-iso") -> None:
        self.ctx = ctx
        self.location = f"journalctl -u {UNIT}"
        self.poll_s = poll_s
        self.output = output

    def command(self, query: LogQuery, cursor: str | None = None) -> Cmd:
        argv = ["journalctl", "-u", UNIT, "--no-pager", "-o", self.output]
        if cursor is not None:
            argv += ["--after-cursor", cursor]
        else:
            if query.lines is not None:
                argv += ["-n", str(query.lines)]
            if query.since is not None:
                argv += ["--since", f"@{int(query.since)}"]
        if query.follow:
            argv.append("--show-cursor")
        return cmd(*argv, why="read the service's journal", mutates=False)

    def read(self, query: LogQuery) -> Iterator[str]:
        cursor: str | None = None
        while True:
            result = self.ctx.runner.run(self.command(query, cursor))
            for line in result.stdout.splitlines():
                if line.startswith("-- cursor: "):
                    cursor = line.removeprefix("-- cursor: ").strip()
                elif line != "-- No entries --":
                    yield line
            if not query.follow:
                return
            time.sleep(self.poll_s)


# -- systemctl -------------------------------------------------------------------------------

_SHOW_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID",
                    "ExecMainStartTimestamp", "FragmentPath", "Result")


def show_unit(runner: Runner, properties: Sequence[str], *,
              timeout_s: float | None = 120.0) -> dict[str, str]:
    """``systemctl show ollama.service --property=...``: the one reader of the unit's state
    (``status``, doctor). Timestamps as ``@<unix time>``; a repeated key (``DeviceAllow=``) has
    its values joined by newlines; {} when systemctl fails.

    Raises:
        CommandFailed: systemctl is missing or timed out.
    """
    result = runner.run(cmd("systemctl", "show", UNIT, "--no-pager", "--timestamp=unix",
                            *(f"--property={p}" for p in properties),
                            why="read the unit's state", mutates=False, check=False,
                            timeout_s=timeout_s))
    props: dict[str, str] = {}
    if not result.ok:
        return props
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = f"{props[key]}\n{value}" if props.get(key) else value
    return props


class SystemdManager(ServiceManager):
    """The ollama.service unit through systemctl (or offline, under a staging root)."""

    name = "systemd"

    @property
    def staged(self) -> bool:
        return self.ctx.root != Path("/")

    def systemctl(self, *args: str, why: str, mutates: bool = True, check: bool = True) -> Cmd:
        root = (f"--root={self.ctx.root}",) if self.staged else ()
        return cmd("systemctl", *root, *args, why=why, mutates=mutates, check=check)

    def status(self) -> ServiceState:
        unit_path = self.ctx.path(UNIT_PATH)
        if self.staged:
            enabled = self.ctx.path(f"/etc/systemd/system/default.target.wants/{UNIT}")
            return ServiceState(self.name, installed=unit_path.exists(), active="unknown",
                                enabled=enabled.is_symlink(), definition=str(unit_path),
                                detail=f"staged under {self.ctx.root}; nothing runs there")
        props = show_unit(self.ctx.runner, _SHOW_PROPERTIES)
        pid = int(props.get("MainPID") or 0) or None
        started = props.get("ExecMainStartTimestamp", "")
        return ServiceState(
            self.name, installed=props.get("LoadState") == "loaded",
            active=props.get("ActiveState") or "unknown",
            enabled=props.get("UnitFileState") == "enabled" if props.get("UnitFileState")
            else None,
            pid=pid, started_at=float(started[1:]) if started.startswith("@") else None,
            definition=props.get("FragmentPath") or str(unit_path),
            detail=" ".join(v for v in (props.get("SubState"), props.get("Result"))
                            if v and v != "success"),
        )

    def _live(self, *args: str, why: str) -> None:
        if self.staged:
            raise UnsupportedPlatform(f"the service staged under {self.ctx.root} cannot be "
                                      f"{args[0]}ed from here")
        self.ctx.runner.run(self.systemctl(*args, why=why))

    def start(self) -> None:
        self._live("start", UNIT, why="start the server")

    def stop(self) -> None:
        self._live("stop", UNIT, why="stop the server and its runners")

    def restart(self) -> None:
        self._live("restart", UNIT, why="restart with the new settings")

    def try_restart(self) -> None:
        """Restart only if running (`systemctl try-restart`)."""
        self._live("try-restart", UNIT, why="apply the new settings if it runs")

    def daemon_reload(self) -> None:
        if not self.staged:
            self.ctx.runner.run(self.systemctl("daemon-reload", why="load the changed unit"))

    def is_enabled(self) -> bool:
        """``systemctl is-enabled ollama.service`` (works offline under --root too)."""
        result = self.ctx.runner.run(self.systemctl("is-enabled", UNIT, why="enabled already?",
                                                    mutates=False, check=False))
        return result.ok and result.stdout.strip() == "enabled"

    def enable(self) -> None:
        self.ctx.runner.run(self.systemctl("enable", UNIT, why="start at boot"))

    def disable(self) -> None:
        self.ctx.runner.run(self.systemctl("disable", UNIT, why="no longer start at boot",
                                           check=False))

    def env_store(self) -> DropInEnvStore:
        return DropInEnvStore(self.ctx)

    def log_source(self) -> JournalLogSource:
        return JournalLogSource(self.ctx)


def unit_groups(existing: Sequence[str]) -> tuple[str, ...]:
    """SupplementaryGroups= for the unit: render and video, where the host has them (a group
    that does not exist makes the unit fail to start)."""
    return tuple(g for g in GPU_GROUPS if g in existing)

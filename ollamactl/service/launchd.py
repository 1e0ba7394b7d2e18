"""launchd backend: the LaunchAgent (or LaunchDaemon) plist, launchctl, the server.log files.

Per user (the default) the job is ``~/Library/LaunchAgents/com.ollamactl.ollama.plist`` in the
``gui/<uid>`` domain; ``--system`` makes it ``/Library/LaunchDaemons/com.ollamactl.ollama.plist``
in the ``system`` domain, run as the hidden ``_ollama`` account (headless Macs, no login needed).

Settings are the plist's ``EnvironmentVariables``: they survive a reboot, which the seed's
``launchctl setenv`` does not (users-and-security A3 #20). ``env set`` still runs that
``launchctl setenv`` so apps started in this login session agree. launchd reads a plist only when
the job is bootstrapped, so a changed definition is applied by ``bootout`` + ``bootstrap``;
``kickstart -k`` restarts a job whose definition is unchanged (launchctl(1)).

Every launchctl call goes through ``ctx.runner``; nothing here needs macOS to run, which is how
the tests exercise it on Linux with a recording runner and a staged home directory.
"""

from __future__ import annotations

import os
import plistlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from ollamactl import settings, templating
from ollamactl.context import Context
from ollamactl.errors import CommandFailed, ServiceError, UnsupportedPlatform, UsageError
from ollamactl.service.base import ServiceManager, ServiceState
from ollamactl.service.env import EnvStore
from ollamactl.service.logfiles import LogFile
from ollamactl.system import Cmd, CmdResult, cmd

LABEL = "com.ollamactl.ollama"
DAEMON_PLIST = f"/Library/LaunchDaemons/{LABEL}.plist"
DAEMON_USER = "_ollama"
DAEMON_HOME = "/usr/local/var/ollama"
DAEMON_STATE_DIR = "/Library/Application Support/ollamactl"
SERVER_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
#: Another server on port 11434 (C39): the Ollama app, Homebrew's service (relative to home).
OLLAMA_APP = "/Applications/Ollama.app"
BREW_AGENT = "Library/LaunchAgents/homebrew.mxcl.ollama.plist"
#: launchctl print adds this to every job's environment block.
_LAUNCHD_ADDED = frozenset({"XPC_SERVICE_NAME"})


@dataclass(frozen=True)
class MacAccount:
    """The login user ollamactl acts for: whose gui/<uid> domain and home the agent uses."""

    name: str
    uid: int
    home: str


def login_account() -> MacAccount:
    """The invoking user (the OS boundary that tests replace with a staged home)."""
    import getpass

    return MacAccount(getpass.getuser(), os.getuid(), str(Path.home()))


@dataclass(frozen=True)
class LaunchdLayout:
    """Where one flavour of the job lives: paths on the Mac (before ``--root``) and its domain."""

    account: MacAccount
    system: bool = False

    @classmethod
    def detect(cls, ctx: Context, account: MacAccount | None = None) -> LaunchdLayout:
        """The installed flavour: the daemon when only its plist exists, else the agent."""
        agent = cls(account or login_account())
        daemon = cls(agent.account, system=True)
        if not ctx.path(agent.plist).exists() and ctx.path(daemon.plist).exists():
            return daemon
        return agent

    @property
    def home(self) -> str:
        return DAEMON_HOME if self.system else self.account.home

    @property
    def plist(self) -> str:
        return DAEMON_PLIST if self.system else f"{self.account.home}/Library/LaunchAgents/" \
                                                 f"{LABEL}.plist"

    @property
    def domain(self) -> str:
        return "system" if self.system else f"gui/{self.account.uid}"

    @property
    def target(self) -> str:
        """launchctl's service target, ``gui/501/com.ollamactl.ollama``."""
        return f"{self.domain}/{LABEL}"

    @property
    def log_path(self) -> str:
        return f"{self.home}/.ollama/logs/server.log"

    @property
    def models_dir(self) -> str:
        return f"{self.home}/.ollama/models"

    @property
    def state_dir(self) -> str:
        return DAEMON_STATE_DIR if self.system else \
            f"{self.account.home}/Library/Application Support/ollamactl"

    @property
    def manifest_path(self) -> str:
        return f"{self.state_dir}/install-manifest.json"


# -- the plist -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlistSpec:
    """Everything the plist template needs; rendering is a pure function of it."""

    program_arguments: tuple[str, ...]
    log_path: str
    working_directory: str
    environment: tuple[tuple[str, str], ...] = ()
    user_name: str = ""
    group_name: str = ""
    label: str = LABEL


def render_plist(spec: PlistSpec) -> str:
    return templating.render(
        "launchd/ollama.plist.j2", label=spec.label, program_arguments=spec.program_arguments,
        environment=spec.environment, user_name=spec.user_name, group_name=spec.group_name,
        working_directory=spec.working_directory, log_path=spec.log_path)


def parse_plist(data: bytes, *, source: str) -> dict[str, Any]:
    """The plist's top-level dict.

    Raises:
        ServiceError: not a property list, or not a dict at the top.
    """
    try:
        parsed = plistlib.loads(data)
    except (plistlib.InvalidFileException, ExpatError, ValueError) as exc:
        raise ServiceError(f"{source} is not a valid property list: {exc}",
                           hint="fix it (plutil -lint) or reinstall with `ollamactl install`"
                           ) from exc
    if not isinstance(parsed, dict):
        raise ServiceError(f"{source} does not hold a dict at the top")
    return parsed


def dump_plist(data: Mapping[str, Any]) -> bytes:
    """XML plist bytes, keys in their order, with the managed-by comment before ``<plist>``."""
    body = plistlib.dumps(dict(data), fmt=plistlib.FMT_XML, sort_keys=False)
    comment = f"<!-- {templating.MANAGED_HEADER} -->\n".encode()
    return body.replace(b"<plist ", comment + b"<plist ", 1)


def is_ollamactl_plist(data: Mapping[str, Any]) -> bool:
    return data.get("Label") == LABEL


# -- launchctl print -------------------------------------------------------------------------

@dataclass(frozen=True)
class JobInfo:
    """What ``launchctl print <target>`` says about a loaded job."""

    state: str                                   # running | not running | waiting | ...
    pid: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    last_exit: str = ""


def parse_print(text: str) -> JobInfo:
    """Read the top-level ``key = value`` lines and ``name = { ... }`` blocks of launchctl print.

    The format is meant for people and changes between releases; only stable fields are used.
    """
    props: dict[str, str] = {}
    blocks: dict[str, list[str]] = {}
    depth, current = 0, ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.endswith("{"):
            depth += 1
            if depth == 2:
                current = line[:-1].strip().removesuffix("=").strip()
                blocks[current] = []
            continue
        if line == "}":
            depth -= 1
            current = "" if depth < 2 else current
            continue
        if depth == 1 and " = " in line:
            key, _, value = line.partition(" = ")
            props[key.strip()] = value.strip()
        elif depth == 2 and current and line:
            blocks[current].append(line)
    environment = {}
    for entry in blocks.get("environment", []):
        name, sep, value = entry.partition(" => ")
        if sep:
            environment[name.strip()] = value.strip()
    pid = props.get("pid", "")
    return JobInfo(state=props.get("state", "unknown"), pid=int(pid) if pid.isdigit() else None,
                   environment=environment, arguments=tuple(blocks.get("arguments", [])),
                   last_exit=props.get("last exit code", ""))


# -- settings ----------------------------------------------------------------------------------

class PlistEnvStore(EnvStore):
    """``EnvironmentVariables`` of the job's plist; every other key, ours or not, is kept."""

    def __init__(self, ctx: Context, layout: LaunchdLayout) -> None:
        self.ctx = ctx
        self.layout = layout
        self.path = ctx.path(layout.plist)
        self.location = str(self.path)

    def load(self) -> dict[str, Any]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{self.location} does not exist: the service is not installed",
                             hint="run `ollamactl install` first") from None
        return parse_plist(data, source=self.location)

    def read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        env = self.load().get("EnvironmentVariables", {})
        return {k: v for k, v in env.items() if isinstance(v, str)} if isinstance(env, dict) \
            else {}

    def set(self, name: str, value: str) -> bool:
        self.check(name, value)
        changed = self._edit(name, value)
        self._session("setenv", name, value)
        return changed

    def unset(self, name: str) -> bool:
        if name not in self.read():
            return False
        self._edit(name, None)
        self._session("unsetenv", name)
        return True

    def _edit(self, name: str, value: str | None) -> bool:
        data = self.load()
        env = data.setdefault("EnvironmentVariables", {})
        if not isinstance(env, dict):
            raise ServiceError(f"EnvironmentVariables in {self.location} is not a dict")
        if env.get(name) == value:
            return False
        if value is None:
            del env[name]
        else:
            env[name] = value
        return self.ctx.runner.write_file(self.path, dump_plist(data), mode=0o644,
                                          why=f"{'set' if value is not None else 'unset'} "
                                              f"{name} for the service")

    def _session(self, verb: str, *args: str) -> None:
        """The seed's ``launchctl setenv`` (login session only: the agent, never staged)."""
        if self.layout.system or self.ctx.root != Path("/"):
            return
        self.ctx.runner.run(cmd("launchctl", verb, *args,
                                why="the same for apps started in this login session"))


# -- the manager -------------------------------------------------------------------------------

class LaunchdManager(ServiceManager):
    """The job through launchctl: bootstrap, kickstart, bootout, print."""

    name = "launchd"

    def __init__(self, ctx: Context, layout: LaunchdLayout) -> None:
        super().__init__(ctx)
        self.layout = layout

    @property
    def staged(self) -> bool:
        return self.ctx.root != Path("/")

    @property
    def plist_file(self) -> Path:
        return self.ctx.path(self.layout.plist)

    def launchctl(self, *args: str, why: str, mutates: bool = True, check: bool = True) -> Cmd:
        return cmd("launchctl", *args, why=why, mutates=mutates, check=check)

    def job(self) -> JobInfo | None:
        """``launchctl print <target>``; None when the job is not loaded (or staged)."""
        if self.staged:
            return None
        result = self.ctx.runner.run(self.launchctl("print", self.layout.target,
                                                    why="is the job loaded?", mutates=False,
                                                    check=False))
        return parse_print(result.stdout) if result.ok else None

    def status(self) -> ServiceState:
        installed = self.plist_file.exists()
        if self.staged:
            return ServiceState(self.name, installed=installed, active="unknown",
                                definition=str(self.plist_file),
                                detail=f"staged under {self.ctx.root}; nothing runs there")
        job = self.job()
        if job is None:
            return ServiceState(self.name, installed=installed, active="inactive",
                                enabled=False, definition=self.layout.plist,
                                detail="not loaded" if installed else "")
        return ServiceState(
            self.name, installed=installed,
            active="active" if job.state == "running" else "inactive", enabled=True,
            pid=job.pid, definition=self.layout.plist,
            detail="" if job.state == "running" else job.state,
            extra={"domain": self.layout.domain, "last exit": job.last_exit})

    def _live(self, action: str) -> None:
        if self.staged:
            raise UnsupportedPlatform(f"the job staged under {self.ctx.root} cannot be "
                                      f"{action} from here")
        if not self.plist_file.exists():
            raise ServiceError(f"{self.layout.plist} does not exist",
                               hint="run `ollamactl install` first")

    def bootstrap(self) -> None:
        """``launchctl enable`` + ``launchctl bootstrap <domain> <plist>`` (RunAtLoad starts it).

        Raises:
            ServiceError: launchd refused (e.g. no GUI session for ``gui/<uid>`` over ssh).
        """
        self.ctx.runner.run(self.launchctl("enable", self.layout.target,
                                           why="allow the job to load"))
        try:
            self.ctx.runner.run(self.launchctl("bootstrap", self.layout.domain,
                                               self.layout.plist, why="load and start the job"))
        except CommandFailed as exc:
            hint = ("log in to the desktop session first (gui domains do not exist over ssh), "
                    "or install with --system on a headless Mac") if not self.layout.system \
                else f"check the plist with `plutil -lint {self.layout.plist}`"
            raise ServiceError(f"launchctl bootstrap {self.layout.domain} failed: "
                               f"{exc.stderr_tail or exc}", hint=hint) from exc

    def bootout(self) -> bool:
        """Unload the job (stops the server); False when it was not loaded."""
        if self.job() is None:
            return False
        self.ctx.runner.run(self.launchctl("bootout", self.layout.target,
                                           why="stop and unload the job"))
        return True

    def start(self) -> None:
        self._live("started")
        if self.job() is None:
            self.bootstrap()
        else:
            self.ctx.runner.run(self.launchctl("kickstart", self.layout.target,
                                               why="start the loaded job"))

    def stop(self) -> None:
        self._live("stopped")
        self.bootout()

    def restart(self) -> None:
        """``kickstart -k``; when the plist changed since launchd loaded it, bootout + bootstrap
        instead (kickstart would restart with the old environment)."""
        self._live("restarted")
        job = self.job()
        if job is None:
            self.bootstrap()
        elif self.definition_changed(job):
            self.ctx.runner.run(self.launchctl("bootout", self.layout.target,
                                               why="unload the old definition"))
            self.bootstrap()
        else:
            self.ctx.runner.run(self.launchctl("kickstart", "-k", self.layout.target,
                                               why="restart the server"))

    def definition_changed(self, job: JobInfo) -> bool:
        """True when the loaded job's environment or arguments differ from the plist's."""
        data = parse_plist(self.plist_file.read_bytes(), source=self.layout.plist)
        wanted = {k: str(v) for k, v in (data.get("EnvironmentVariables") or {}).items()}
        loaded = {k: v for k, v in job.environment.items() if k not in _LAUNCHD_ADDED}
        arguments = tuple(str(a) for a in data.get("ProgramArguments") or ())
        return wanted != loaded or (bool(job.arguments) and job.arguments != arguments)

    def env_store(self) -> PlistEnvStore:
        return PlistEnvStore(self.ctx, self.layout)

    def log_source(self) -> LogFile:
        return LogFile(self.ctx.path(self.layout.log_path))


# -- doctor helpers (users-and-security C39) --------------------------------------------------

@dataclass(frozen=True)
class SessionDrift:
    """A setting whose ``launchctl getenv`` value is not what the plist holds."""

    name: str
    session: str
    plist: str | None      # None: missing from the plist (lost at the next reboot)


def session_drift(ctx: Context, layout: LaunchdLayout,
                  names: tuple[str, ...] = tuple(settings.SETTINGS)) -> list[SessionDrift]:
    """Settings set with ``launchctl setenv`` (``launchctl getenv NAME``) but missing from, or
    different in, the plist: they hold until the next reboot only."""
    persisted = PlistEnvStore(ctx, layout).read()
    drift = []
    for name in names:
        result: CmdResult = ctx.runner.run(cmd("launchctl", "getenv", name, mutates=False,
                                               check=False, why="session value"))
        value = result.stdout.strip()
        if result.ok and value and persisted.get(name) != value:
            drift.append(SessionDrift(name, value, persisted.get(name)))
    return drift


def competing_servers(ctx: Context, account: MacAccount) -> list[str]:
    """Other things that start an Ollama server on this Mac (the app, Homebrew's service)."""
    found = []
    if ctx.path(OLLAMA_APP).exists():
        found.append(OLLAMA_APP)
    brew = f"{account.home}/{BREW_AGENT}"
    if ctx.path(brew).exists():
        found.append(brew)
    return found

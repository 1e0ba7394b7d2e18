"""The interfaces of the service layer: Platform (one per OS backend), and the ServiceManager,
LogSource and Layout each platform provides.

A :class:`Platform` is everything ollamactl does differently on one OS backend (its paths, its
service manager, where settings persist, where logs are, the install and uninstall steps, its
doctor checks); :func:`ollamactl.service.platforms.for_host` picks one, once. A ServiceManager
drives one mechanism (systemd, launchd, Task Scheduler, the SCM, the watchdog). Backends never
print: they return data or raise :class:`~ollamactl.errors.OllamactlError` subclasses, and run
every command through ``ctx.runner``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, ClassVar, Protocol

from ollamactl.context import Context
from ollamactl.install import manifest
from ollamactl.service.env import EnvStore

if TYPE_CHECKING:
    from ollamactl.doctor.finding import Finding
    from ollamactl.doctor.probe import Probe
    from ollamactl.install import InstallOptions, InstallReport, UninstallPlan
    from ollamactl.install.manifest import Manifest
    from ollamactl.install.users import Account



@dataclass(frozen=True)
class ServiceState:
    """What the service manager knows about the service (``systemctl show`` and friends)."""

    backend: str                     # systemd | watchdog | launchd | windows | windows-service
    installed: bool
    active: str                      # active | activating | inactive | failed | unknown
    enabled: bool | None = None
    pid: int | None = None
    started_at: float | None = None  # unix time
    definition: str | None = None    # unit file / plist / task path
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.active == "active"


@dataclass(frozen=True)
class LogQuery:
    """Options of ``ollamactl logs``, the same for every backend."""

    lines: int | None = None         # -n N: last N lines
    since: float | None = None       # unix time; --since
    follow: bool = False             # -f


class LogSource(ABC):
    """Where the service's log lines come from."""

    location: str

    @abstractmethod
    def read(self, query: LogQuery) -> Iterator[str]:
        """Yield log lines (without newlines) matching ``query``; follows when asked."""


class ServiceManager(ABC):
    """Start, stop and inspect the service; give access to its settings and logs."""

    name: str

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    def status(self) -> ServiceState:
        """Current state; never raises for a service that is simply not installed."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def restart(self) -> None: ...

    @abstractmethod
    def env_store(self) -> EnvStore:
        """The persisted settings of the service."""

    @abstractmethod
    def log_source(self) -> LogSource: ...


class Layout(Protocol):
    """The paths every platform's layout has (paths on the target system, before ``--root``);
    each layout adds its own (unit, plist, task definition, ...)."""

    @property
    def manifest_path(self) -> str | PurePath:
        """The install manifest: what install created, for uninstall."""

    @property
    def models_dir(self) -> str | PurePath:
        """Where the service keeps models unless OLLAMA_MODELS says otherwise."""

    @property
    def log_path(self) -> str | PurePath | None:
        """The server's log file; None where the service manager keeps it (the journal)."""

    @property
    def state_dir(self) -> str | PurePath:
        """ollamactl's own records for this install."""


class Platform(ABC):
    """One OS backend: its layout, service manager, settings store, log source, install and
    uninstall steps, the hooks ``env set`` needs, and the facts and checks doctor needs.

    Built from a Context by :func:`ollamactl.service.platforms.for_host`, the one place that
    looks at the host; nothing outside ``ollamactl.service`` asks which OS this is.
    """

    #: linux-systemd | linux-watchdog | macos | windows-task | windows-service
    name: ClassVar[str]
    #: What a doctor check of this platform names when it does not apply ("not macOS").
    family: ClassVar[str]
    #: The install manifest's ``backend`` values this platform installs and removes.
    backends: ClassVar[tuple[str, ...]]
    #: ``/proc`` exists: ports map to processes (``/proc/net/tcp``, ``/proc/<pid>/fd``).
    has_procfs: ClassVar[bool] = False
    #: ``/sys`` exists: GPUs are read from sysfs and the KFD topology; device nodes in /dev.
    has_sysfs: ClassVar[bool] = False

    def __init__(self, ctx: Context, *, system: bool | None = None) -> None:
        self.ctx = ctx
        #: ``install --system`` (True), per user (False), or whichever is installed (None).
        self.system = system

    @classmethod
    @abstractmethod
    def applies(cls, ctx: Context, *, system: bool | None) -> bool:
        """Whether this platform serves ``ctx``: the host's facts, ``ctx.root`` and what is
        installed. ``system``: ``install --system`` (True), per user (False), or whichever is
        installed (None)."""

    @property
    @abstractmethod
    def layout(self) -> Layout:
        """Every path this platform uses."""

    @property
    def staged(self) -> bool:
        """Everything goes under ``--root``; nothing runs."""
        return self.ctx.root != Path("/")

    def local(self, path: str | PurePath) -> Path:
        """Where a path of the layout is on this machine (under ``--root``)."""
        return self.ctx.path(str(path))

    def manifest_file(self) -> Path:
        return self.local(self.layout.manifest_path)

    def load_manifest(self) -> Manifest | None:
        """What install recorded here; None when nothing is installed.

        Raises:
            OllamactlError: the manifest is damaged.
        """
        return manifest.load(self.manifest_file())

    # -- the service ----------------------------------------------------------------------
    @abstractmethod
    def service_manager(self) -> ServiceManager: ...

    def env_store(self) -> EnvStore | None:
        """The service's persisted settings; None when nothing is installed to persist to."""
        return self.service_manager().env_store()

    def log_source(self) -> LogSource:
        return self.service_manager().log_source()

    # -- install and uninstall ------------------------------------------------------------
    @abstractmethod
    def install(self, options: InstallOptions) -> InstallReport:
        """Install, or update what an earlier install put there (stop, replace, start)."""

    @abstractmethod
    def plan_uninstall(self, *, purge: bool) -> UninstallPlan:
        """What uninstall would remove, for the confirmation prompt.

        Raises:
            UsageError: nothing ollamactl installed is here.
        """

    @abstractmethod
    def uninstall(self, plan: UninstallPlan) -> list[str]:
        """Reverse exactly what the manifest lists; return what was done."""

    # -- what `env set` needs -------------------------------------------------------------
    def apply_setting_change(self, *, changed: bool, restart: bool) -> list[str]:
        """Make a persisted change take effect (restart a running service unless told not
        to); the lines that say what happened."""
        if not changed:
            return []
        manager = self.service_manager()
        if restart and manager.status().running:
            manager.restart()
            return [f"restarted the service ({manager.name})"]
        return ["takes effect at the next (re)start"]

    def service_account(self) -> Account | None:
        """The account whose access to a models directory can be checked here; None where
        the service runs as the login user or its account is not in ``/etc/passwd``."""
        return None

    def grant_models_dir(self, directory: str) -> None:
        """Let the service write ``directory`` (systemd: the sandbox's ReadWritePaths=);
        nothing to do where no sandbox hides it."""
        return None

    def revoke_models_dir(self, directory: str) -> None:
        """Undo :meth:`grant_models_dir`."""
        return None

    # -- what doctor needs ----------------------------------------------------------------
    def unit_properties(self) -> dict[str, str]:
        """What systemd says about the unit (``systemctl show``); {} without systemd."""
        return {}

    def recent_log_lines(self, limit: int) -> list[str] | None:
        """The last ``limit`` lines of the service's log as the server wrote them; None when
        they cannot be read."""
        return list(self.log_source().read(LogQuery(lines=limit)))

    def service_finding(self, probe: Probe) -> Finding | None:
        """This platform's own verdict for doctor's ``service.unit``; None for the generic
        one, from the manager's status."""
        return None

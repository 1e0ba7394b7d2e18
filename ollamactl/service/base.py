"""The interfaces every service backend implements: ServiceManager and LogSource.

One backend per mechanism (systemd, launchd, windows, watchdog), chosen once by
:func:`ollamactl.service.get_service_manager`. Backends never print: they return data or raise
:class:`~ollamactl.errors.OllamactlError` subclasses, and run every command through ``ctx.runner``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from ollamactl.context import Context
from ollamactl.service.env import EnvStore

SERVICE_NAME = "ollama"


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

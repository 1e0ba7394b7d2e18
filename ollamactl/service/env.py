"""Where settings live and which one wins: process environment > persisted > default.

An :class:`EnvStore` is the service's persisted settings (a systemd drop-in, a launchd plist, the
Windows user environment, the watchdog's env file). :func:`resolve` layers it under the process
environment and over the registry's defaults, and reports where each value came from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from ollamactl import settings
from ollamactl.host import HostFacts

SOURCE_PROCESS = "environment"
SOURCE_DEFAULT = "default"
SOURCE_UNSET = "unset"


class EnvStore(ABC):
    """The service's persisted settings, as one backend keeps them."""

    #: Human-readable location, e.g. "/etc/systemd/system/ollama.service.d/override.conf".
    location: str

    @abstractmethod
    def read(self) -> dict[str, str]:
        """Every NAME=VALUE the service will be started with (ours and the user's own)."""

    @abstractmethod
    def set(self, name: str, value: str) -> bool:
        """Persist ``name=value`` (after :meth:`check`); return False when it was already so."""

    @abstractmethod
    def unset(self, name: str) -> bool:
        """Remove ``name``; return False when it was not set."""

    def check(self, name: str, value: str) -> None:
        """Refuse (SettingError) what this store could not hold as exactly that one value;
        ``set`` calls it first, ``env set`` before it changes anything else."""
        settings.require_storable(name, value)

    def notes(self, name: str) -> list[str]:
        """What the user should know about ``name`` here, e.g. a value elsewhere that shadows
        it (Windows: the machine's HKLM value)."""
        return []


def file_lines(text: str) -> list[str]:
    """A settings file's lines, split at ``\\n`` only: str.splitlines() also splits at CR, VT,
    FF, FS-RS, NEL, U+2028 and U+2029, which would turn part of a value into a line of its own."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


@dataclass(frozen=True)
class ResolvedSetting:
    """The effective value of one setting, where it came from, and what it shadows."""

    name: str
    value: str
    source: str                    # environment | <store location> | default | unset
    default: str
    persisted: str | None          # the store's value, even when the environment shadows it
    doc: str
    restart: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "value": self.value, "source": self.source,
            "default": self.default, "persisted": self.persisted, "doc": self.doc,
            "restart_required": self.restart,
        }


def resolve(name: str, *, environ: Mapping[str, str], store: EnvStore | None,
            host: HostFacts, persisted: Mapping[str, str] | None = None) -> ResolvedSetting:
    """Effective value of ``name`` (which must be a known setting)."""
    setting = settings.lookup(name)
    stored = dict(persisted) if persisted is not None else (store.read() if store else {})
    default = setting.default_for(host, service=store is not None)
    persisted_value = stored.get(name)
    if name in environ:
        value, source = environ[name], SOURCE_PROCESS
    elif persisted_value is not None and store is not None:
        value, source = persisted_value, store.location
    elif default:
        value, source = default, SOURCE_DEFAULT
    else:
        value, source = "", SOURCE_UNSET
    return ResolvedSetting(name, value, source, default, persisted_value, setting.doc,
                           setting.restart)


def resolve_all(*, environ: Mapping[str, str], store: EnvStore | None,
                host: HostFacts) -> list[ResolvedSetting]:
    stored = store.read() if store else {}
    return [resolve(n, environ=environ, store=store, host=host, persisted=stored)
            for n in settings.SETTINGS]

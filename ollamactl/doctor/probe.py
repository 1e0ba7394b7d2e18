"""The facts doctor checks share, each read lazily and at most once.

Checks never run commands or open sockets themselves: they ask the :class:`Probe`, which reads
files under ``ctx.root``, runs read-only probes (``Cmd(mutates=False)``) through ``ctx.runner``,
asks the server over HTTP with a short timeout, and scans the GPUs once. A fact that cannot be
had is None (with the reason where a check needs it), never an exception.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamactl import settings
from ollamactl.context import Context
from ollamactl.errors import CommandFailed, OllamactlError
from ollamactl.logrecords import self_written
from ollamactl.system import Cmd, CmdResult

if TYPE_CHECKING:
    from ollamactl.gpu import GpuInventory, Nvml
    from ollamactl.service.base import ServiceState

log = logging.getLogger(__name__)

SERVICE = "ollama"
UNIT_PROPERTIES = (
    "LoadState", "ActiveState", "SubState", "UnitFileState", "FragmentPath", "DropInPaths",
    "User", "Group", "ExecStart", "ExecStartPre", "MainPID", "NeedDaemonReload", "Environment",
    "PrivateDevices", "DevicePolicy", "DeviceAllow", "SupplementaryGroups", "ProtectHome",
    "ProtectSystem", "ReadWritePaths", "BindPaths", "InaccessiblePaths", "After", "MemoryMax",
)
LOG_LINES = 2000


@dataclass(frozen=True)
class HttpAnswer:
    """One GET to the server: status and body, or why there is none."""

    url: str
    status: int | None
    body: str = ""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class Manifest:
    """A model manifest from the store: its name and the blobs it needs."""

    name: str
    path: Path
    digests: tuple[str, ...]
    size_bytes: int   # in bytes, the sum of its layers


class Probe:
    """Lazily gathered facts about the service, the server, the machine and its GPUs."""

    def __init__(self, ctx: Context, *, environ: Mapping[str, str], nvml: Nvml | None = None,
                 http_timeout_s: float = 0.5) -> None:
        self.ctx = ctx
        self.environ = dict(environ)
        self._nvml = nvml
        self.http_timeout_s = http_timeout_s
        self._http: dict[str, HttpAnswer] = {}

    # -- files and commands ---------------------------------------------------------------
    def path(self, absolute: str) -> Path:
        return self.ctx.path(absolute)

    def read(self, absolute: str) -> str | None:
        try:
            return self.path(absolute).read_text(errors="replace")
        except OSError:
            return None

    def run(self, *argv: str, why: str = "", timeout_s: float = 5.0) -> CmdResult | None:
        """A read-only probe; None when the program is missing or timed out."""
        try:
            return self.ctx.runner.run(Cmd(tuple(argv), why=why or "doctor probe", mutates=False,
                                           check=False, timeout_s=timeout_s))
        except CommandFailed as exc:
            log.debug("probe %s: %s", argv, exc)
            return None

    # -- the service ----------------------------------------------------------------------
    @property
    def no_systemd_reason(self) -> str | None:
        if self.ctx.host.has_systemd:
            return None
        return "systemd is not PID 1" if self.ctx.host.os_name == "linux" \
            else f"no systemd on {self.ctx.host.os_name}"

    @cached_property
    def unit(self) -> dict[str, str]:
        """``systemctl show ollama -p ...``; repeated keys (DeviceAllow) joined by newlines."""
        if self.no_systemd_reason:
            return {}
        result = self.run("systemctl", "show", SERVICE, "--no-pager",
                          *(f"-p{p}" for p in UNIT_PROPERTIES), why="read the unit's state")
        props: dict[str, str] = {}
        if result is None or not result.ok:
            return props
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key] = f"{props[key]}\n{value}" if props.get(key) else value
        return props

    @property
    def unit_installed(self) -> bool:
        return self.unit.get("LoadState") == "loaded"

    @cached_property
    def service_state(self) -> ServiceState | None:
        """The service as its manager sees it (systemd or the watchdog), or None."""
        try:
            from ollamactl.service import get_service_manager

            return get_service_manager(self.ctx).status()
        except (ImportError, OllamactlError, OSError, NotImplementedError) as exc:
            log.debug("service state: %s", exc)
            return None

    @property
    def service_installed(self) -> bool:
        if self.unit:
            return self.unit_installed
        state = self.service_state
        return bool(state and state.installed)

    @property
    def service_running(self) -> bool:
        if self.unit:
            return self.unit.get("ActiveState") == "active"
        state = self.service_state
        return bool(state and state.running)

    @property
    def service_pid(self) -> int | None:
        if self.unit:
            pid = self.unit.get("MainPID", "0")
            return int(pid) if pid.isdigit() and int(pid) > 0 else None
        state = self.service_state
        return state.pid if state else None

    @cached_property
    def service_env(self) -> dict[str, str] | None:
        """The environment the installed service starts with; None when none is installed."""
        if self.unit:
            if not self.unit_installed:
                return None
            env: dict[str, str] = {}
            for item in shlex.split(self.unit.get("Environment", "").replace("\n", " ")):
                key, sep, value = item.partition("=")
                if sep:
                    env[key] = value
            return env
        try:
            from ollamactl.service import service_environ

            return service_environ(self.ctx)
        except (ImportError, OllamactlError, OSError) as exc:
            log.debug("env store: %s", exc)
            return None

    @property
    def server_env(self) -> dict[str, str]:
        """What the server runs with: the installed service's settings (an exported shell
        variable never reaches it; settings.shell-only says so), else this environment, which a
        server started by hand inherits."""
        service = self.service_env
        return dict(service) if service is not None else dict(self.environ)

    @cached_property
    def service_user(self) -> str | None:
        if self.unit_installed:
            return self.unit.get("User") or "root"
        return None

    def setting(self, name: str) -> str:
        """Effective raw value of a setting for the server ("" = unset, default applies)."""
        return self.server_env.get(name, "")

    # -- the server over HTTP -------------------------------------------------------------
    @cached_property
    def client_address(self) -> settings.HostAddress:
        return settings.host_from(self.environ)

    @cached_property
    def bind_address(self) -> settings.HostAddress:
        return settings.host_from(self.server_env)

    def http(self, path: str) -> HttpAnswer:
        """GET ``path`` at the client URL (0.0.0.0 -> 127.0.0.1) with a short timeout."""
        if path not in self._http:
            import requests

            url = self.client_address.client_url.rstrip("/") + path
            try:
                response = requests.get(url, timeout=(self.http_timeout_s, 2.0))
                answer = HttpAnswer(url, response.status_code, response.text[:65536])
            except requests.RequestException as exc:
                reason = "connection refused" if isinstance(exc, requests.ConnectionError) \
                    else type(exc).__name__
                answer = HttpAnswer(url, None, error=reason)
            self._http[path] = answer
        return self._http[path]

    # -- GPUs, logs, models ---------------------------------------------------------------
    @cached_property
    def gpus(self) -> GpuInventory:
        from ollamactl.gpu import Nvml, scan_gpus

        return scan_gpus(host=self.ctx.host, environ=self.server_env, root=self.ctx.root,
                         runner=self.ctx.runner, nvml=self._nvml or Nvml(init_timeout_s=2.0))

    @cached_property
    def log_lines(self) -> list[str] | None:
        """The last lines of the service's log, each cut to what the server or runner wrote
        about itself (:func:`self_written`): records about requests are left out, so request
        text cannot raise a finding. None when there is no log to read."""
        lines = self._raw_log_lines()
        if lines is None:
            return None
        return [text for line in lines if (text := self_written(line)) is not None]

    def _raw_log_lines(self) -> list[str] | None:
        if self.unit_installed:
            result = self.run("journalctl", "-u", SERVICE, "-n", str(LOG_LINES), "--no-pager",
                              "-o", "cat", why="read the service's recent log")
            return result.stdout.splitlines() if result is not None and result.ok else None
        if self.unit or not self.service_installed:
            return None
        try:
            from ollamactl.service import get_service_manager
            from ollamactl.service.base import LogQuery

            source = get_service_manager(self.ctx).log_source()
            return list(source.read(LogQuery(lines=LOG_LINES)))
        except (ImportError, OllamactlError, OSError, NotImplementedError) as exc:
            log.debug("logs: %s", exc)
            return None

    @cached_property
    def models_path(self) -> str:
        """OLLAMA_MODELS as the server sees it (a path on the target system)."""
        raw = self.server_env.get("OLLAMA_MODELS", "").strip()
        return raw or settings.SETTINGS["OLLAMA_MODELS"].default_for(
            self.ctx.host, service=self.service_installed)

    @property
    def models_dir(self) -> Path:
        """:attr:`models_path` under the staging root, for reading."""
        raw = self.models_path
        return self.path(raw) if raw.startswith("/") else Path(raw)

    @cached_property
    def manifests(self) -> list[Manifest]:
        """Every manifest under models/manifests that parses (others are listed as strays)."""
        base = self.models_dir / "manifests"
        found = []
        if base.is_dir():
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                manifest = _read_manifest(base, path)
                if manifest is not None:
                    found.append(manifest)
        return found


def _read_manifest(base: Path, path: Path) -> Manifest | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    layers = [item for item in [data.get("config"), *data.get("layers", [])]
              if isinstance(item, dict) and isinstance(item.get("digest"), str)]
    size = sum(int(item.get("size", 0)) for item in layers if isinstance(item.get("size"), int))
    rel = path.relative_to(base).parts
    name = f"{'/'.join(rel[:-1])}:{rel[-1]}" if len(rel) > 1 else rel[0]
    return Manifest(name, path, tuple(item["digest"] for item in layers), size)

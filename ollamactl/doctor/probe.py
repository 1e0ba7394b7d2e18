"""The facts doctor checks share, each read lazily and at most once.

Checks never run commands or open sockets themselves: they ask the :class:`Probe`, which reads
files under ``ctx.root``, runs read-only probes (``Cmd(mutates=False)``) through ``ctx.runner``,
asks the server over HTTP with a short timeout, and scans the GPUs once. A fact that cannot be
had is None (with the reason where a check needs it), never an exception.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamactl import settings
from ollamactl.client import Client, HttpAnswer
from ollamactl.context import Context
from ollamactl.errors import CommandFailed, OllamactlError
from ollamactl.logrecords import self_written
from ollamactl.system import Cmd, CmdResult

if TYPE_CHECKING:
    from ollamactl.gpu import GpuInventory, Nvml
    from ollamactl.install.manifest import Manifest as InstallManifest
    from ollamactl.runtime.store.manifests import ManifestSummary
    from ollamactl.service.base import Platform, ServiceState

log = logging.getLogger(__name__)

LOG_LINES = 2000


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
    @cached_property
    def platform(self) -> Platform:
        """The platform unit of this host, chosen once: it answers what differs by OS."""
        from ollamactl.service.platforms import for_host

        return for_host(self.ctx)

    @cached_property
    def install_record(self) -> InstallManifest | None:
        """What install recorded here; None when nothing is installed or the record cannot
        be read."""
        try:
            return self.platform.load_manifest()
        except (OllamactlError, OSError) as exc:
            log.debug("install manifest: %s", exc)
            return None

    @cached_property
    def unit(self) -> dict[str, str]:
        """What systemd says about the unit (``systemctl show``; repeated keys such as
        DeviceAllow joined by newlines); {} where the platform has no systemd unit."""
        return self.platform.unit_properties()

    @property
    def unit_installed(self) -> bool:
        return self.unit.get("LoadState") == "loaded"

    @cached_property
    def service_state(self) -> ServiceState | None:
        """The service as its manager sees it (systemd or the watchdog), or None."""
        try:
            return self.platform.service_manager().status()
        except (OllamactlError, OSError, NotImplementedError) as exc:
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
            store = self.platform.env_store()
            return dict(store.read()) if store is not None else None
        except (OllamactlError, OSError) as exc:
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
            with Client(self.client_address.client_url, connect_timeout_s=self.http_timeout_s,
                        read_timeout_s=2.0) as client:
                self._http[path] = client.get(path)
        return self._http[path]

    # -- GPUs, logs, models ---------------------------------------------------------------
    @cached_property
    def gpus(self) -> GpuInventory:
        from ollamactl.gpu import Nvml, scan_gpus

        return scan_gpus(host=self.ctx.host, environ=self.server_env, root=self.ctx.root,
                         runner=self.ctx.runner, nvml=self._nvml or Nvml(init_timeout_s=2.0))

    @cached_property
    def runtime(self) -> dict[str, Any] | str:
        """The service's runtime as it describes itself (CPU libraries, self-test, GPU
        runtimes), asked of the interpreter the service runs; a string says why not."""
        from ollamactl.install.runtime import runtime_report, service_python

        try:
            return runtime_report(self.ctx, service_python(self.ctx, self.install_record),
                                  self.setting("OLLAMA_LLM_LIBRARY"))
        except OllamactlError as exc:
            return exc.message

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
        if not self.service_installed:
            return None
        try:
            return self.platform.recent_log_lines(LOG_LINES)
        except (OllamactlError, OSError, NotImplementedError) as exc:
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
    def manifests(self) -> list[ManifestSummary]:
        """The manifests the server would find in :attr:`models_dir`, read through its store
        (:meth:`Store.summaries`: read-only, so a staged root or another user's store works)."""
        from ollamactl.runtime.store.manifests import Store

        return Store(self.models_dir).summaries()

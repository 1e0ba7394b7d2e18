"""The Linux platform unit under systemd: the unit file and its drop-in, journalctl, and the
checks that read the unit (``systemctl show``).

Chosen where systemd is PID 1, and for a tree staged with ``--root`` (which targets a systemd
host: files are written, ``systemctl --root`` enables, nothing starts). Settings live in the
drop-in ``systemctl edit`` opens; ``env set`` reloads systemd and ``try-restart``s the service,
and a models directory outside the unit's sandbox is granted there (ReadWritePaths=).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.registry import CheckFn, check
from ollamactl.errors import CommandFailed
from ollamactl.host import LINUX
from ollamactl.humanize import GIB, MIB, gib
from ollamactl.identity import GPU_GROUPS, SERVICE_NAME
from ollamactl.install import InstallOptions, users
from ollamactl.install.manifest import Manifest
from ollamactl.service import systemd
from ollamactl.service.base import LogQuery
from ollamactl.service.linux import LinuxLayout, LinuxPlatform
from ollamactl.service.systemd import DropInEnvStore, SystemdManager

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.doctor.probe import Probe

#: What doctor reads of the unit (``systemctl show ollama.service -p ...``).
DOCTOR_PROPERTIES = (
    "LoadState", "ActiveState", "SubState", "UnitFileState", "FragmentPath", "DropInPaths",
    "User", "Group", "ExecStart", "ExecStartPre", "MainPID", "NeedDaemonReload", "Environment",
    "PrivateDevices", "DevicePolicy", "DeviceAllow", "SupplementaryGroups", "ProtectHome",
    "ProtectSystem", "ReadWritePaths", "BindPaths", "InaccessiblePaths", "After", "MemoryMax",
)
RESTART = Fix("restart the service so it reads its settings",
              (("systemctl", "restart", SERVICE_NAME),), safe=True)
GPU_NODES = ("char-nvidiactl", "char-nvidia-frontend", "char-nvidia-uvm", "char-drm", "char-kfd")
TRACKED_PREFIXES = ("OLLAMA_", "CUDA_", "HIP_", "ROCR_", "HSA_", "GGML_", "HTTP_PROXY",
                    "HTTPS_PROXY", "NO_PROXY")
#: Doctor's probes of systemd give up after this many seconds: doctor never hangs on systemd.
DOCTOR_TIMEOUT_S = 5.0


class SystemdLayout(LinuxLayout):
    """The Linux layout, plus the drop-in that holds the settings; logs go to the journal."""

    dropin_path = systemd.DROPIN_PATH


class LinuxSystemd(LinuxPlatform):
    """Linux with systemd as PID 1 (or a tree staged for such a host)."""

    name = "linux-systemd"
    family = "systemd"
    backends = ("systemd", "staged")

    @classmethod
    def applies(cls, ctx: Context, *, system: bool | None) -> bool:
        return ctx.host.os_name == LINUX and (ctx.host.has_systemd or ctx.root != Path("/"))

    @property
    def layout(self) -> SystemdLayout:
        return SystemdLayout()

    @property
    def backend(self) -> str:
        return "staged" if self.staged else "systemd"

    def service_manager(self) -> SystemdManager:
        return SystemdManager(self.ctx)

    def manager_for(self, record: Manifest) -> SystemdManager:
        return SystemdManager(self.ctx)

    def env_store(self) -> DropInEnvStore | None:
        """The drop-in, once the unit is installed."""
        if not self.ctx.path(self.layout.unit_path).exists():
            return None
        return self.service_manager().env_store()

    # -- install and uninstall ------------------------------------------------------------
    def install_service(self, record: Manifest, options: InstallOptions) -> None:
        """The unit (a foreign one kept for uninstall with --force), daemon-reload, enable."""
        ctx, layout = self.ctx, self.layout
        unit = ctx.path(layout.unit_path)
        if ctx.path(layout.dropin_dir).exists():
            record.existed_path(layout.dropin_dir)
        if unit.exists() and not systemd.is_ollamactl_unit(unit.read_text(errors="replace")):
            backup = f"{layout.backup_dir}/ollama.service"
            self._ensure_dir(record, layout.backup_dir, why="keep the replaced unit")
            record.created_path(backup)
            ctx.runner.write_file(ctx.path(backup), unit.read_bytes(), backup=False,
                                  why="copy of the unit --force replaces")
            record.replaced_files[layout.unit_path] = backup
        elif not unit.exists():
            self._ensure_dir(record, str(Path(layout.unit_path).parent), why="systemd units")
            record.created_path(layout.unit_path)
        spec = systemd.UnitSpec(
            exec_argv=tuple(record.exec_argv), user=record.user, group=record.group,
            home=layout.home,
            supplementary_groups=systemd.unit_groups(list(users.read_groups(ctx))),
            environment=(("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
                         ("HOME", layout.home)),
            read_write_paths=tuple(dict.fromkeys([layout.home, record.models_dir])),
        )
        manager = self.service_manager()
        if ctx.runner.write_file(unit, systemd.render_unit(spec), mode=0o644,
                                 why="the service unit"):
            manager.daemon_reload()
        if not manager.is_enabled():
            manager.enable()
        record.enabled = True

    def stop_for_removal(self, record: Manifest) -> None:
        manager = self.service_manager()
        if not manager.staged:
            self.ctx.runner.run(manager.systemctl("stop", systemd.UNIT, why="stop the server",
                                                  check=False))
        if record.enabled:
            manager.disable()

    def remove_settings(self, record: Manifest) -> None:
        """The drop-in goes with the unit, unless it was there before install."""
        dropin = self.ctx.path(self.layout.dropin_dir)
        if self.layout.dropin_dir not in record.existed_paths and dropin.exists():
            self.ctx.runner.remove(dropin, recursive=True, why="settings of the removed unit")

    def after_removal(self, record: Manifest) -> None:
        self.service_manager().daemon_reload()

    # -- env set --------------------------------------------------------------------------
    def apply_setting_change(self, *, changed: bool, restart: bool) -> list[str]:
        """``daemon-reload`` (the drop-in changed), then ``try-restart`` (only if it runs)."""
        manager = self.service_manager()
        if not changed or manager.staged:
            return super().apply_setting_change(changed=changed, restart=restart)
        manager.daemon_reload()
        if not restart:
            return []
        manager.try_restart()
        return ["restarted the service (if it was running)"]

    def grant_models_dir(self, directory: str) -> None:
        """ReadWritePaths= (or BindPaths= below /home) for ``directory``, instead of the
        previous models directory's."""
        store = self.service_manager().env_store()
        previous = store.read().get("OLLAMA_MODELS")
        if previous and previous != directory:
            store.revoke_path(previous)
        store.grant_path(directory)

    def revoke_models_dir(self, directory: str) -> None:
        self.service_manager().env_store().revoke_path(directory)

    # -- doctor ---------------------------------------------------------------------------
    def unit_properties(self) -> dict[str, str]:
        """``systemctl show`` of the unit, where systemd runs (not for a staged tree seen
        from a host without it)."""
        if not self.ctx.host.has_systemd:
            return {}
        try:
            return systemd.show_unit(self.ctx.runner, DOCTOR_PROPERTIES,
                                     timeout_s=DOCTOR_TIMEOUT_S)
        except CommandFailed:
            return {}

    def recent_log_lines(self, limit: int) -> list[str] | None:
        """``journalctl -u ollama.service -o cat -n LIMIT``: the messages alone."""
        source = systemd.JournalLogSource(self.ctx, output="cat")
        command = dataclasses.replace(source.command(LogQuery(lines=limit)),
                                      timeout_s=DOCTOR_TIMEOUT_S)
        try:
            result = self.ctx.runner.run(command)
        except CommandFailed:
            return None
        return result.stdout.splitlines() if result.ok else None

    def service_finding(self, probe: Probe) -> Finding | None:
        """C4 from the unit's state (``systemctl show ollama -p LoadState,ActiveState,
        UnitFileState``); the generic finding for a staged tree seen from a host without
        systemd."""
        if not self.ctx.host.has_systemd:
            return None
        unit = probe.unit
        if unit.get("LoadState") != "loaded":
            return fail(f"ollama.service is {unit.get('LoadState') or 'unknown'}",
                        "no unit file was found for the service",
                        Fix("install the service", (("ollamactl", "install"),)))
        active, enabled = unit.get("ActiveState", ""), unit.get("UnitFileState", "")
        summary = f"ollama.service {active} ({unit.get('SubState', '')}), {enabled}"
        if active == "failed":
            return fail(summary, "the service failed; see `ollamactl logs -n 50`",
                        Fix("restart it", (("systemctl", "restart", SERVICE_NAME),), safe=True))
        if active != "active":
            return warn(summary, fix=Fix("enable and start it",
                                         (("systemctl", "enable", "--now", SERVICE_NAME),),
                                         safe=True))
        if enabled not in ("enabled", "static", "enabled-runtime"):
            return warn(summary, "it will not start at boot",
                        Fix("enable it", (("systemctl", "enable", SERVICE_NAME),), safe=True))
        return ok(summary)


# -- doctor checks of the unit ---------------------------------------------------------------

PLATFORM = (LinuxSystemd,)


def _needs_unit(p: Probe) -> Finding | None:
    if not p.ctx.host.has_systemd:
        return skip("systemd is not PID 1")
    if not p.unit_installed:
        return skip("the ollama unit is not installed")
    return None


def unit_check(check_id: str, title: str, *, area: str, after: str
               ) -> Callable[[CheckFn], CheckFn]:
    """A check of the installed unit, for this platform only: it skips (saying why) where
    systemd does not run or the unit is not installed, before the check looks at the unit."""
    return check(check_id, title, area=area, platforms=PLATFORM, needs=_needs_unit, after=after)


@unit_check("service.daemon-reload", "Unit files reloaded", area="service", after="service.unit")
def daemon_reload(p: Probe) -> Finding:
    """C6: ``systemctl show -p NeedDaemonReload``."""
    if p.unit.get("NeedDaemonReload") == "yes":
        return warn("the unit changed on disk but systemd still runs the old version",
                    fix=Fix("reload systemd and restart the service",
                            (("systemctl", "daemon-reload"),
                             ("systemctl", "restart", SERVICE_NAME)),
                            safe=True))
    return ok("systemd runs the unit as it is on disk")


@unit_check("service.unit-edited", "Settings kept in a drop-in",
            area="service", after="service.unit")
def unit_edited(p: Probe) -> Finding:
    """C5: Environment= lines in the main unit file are lost when an upgrade rewrites it."""
    fragment = p.unit.get("FragmentPath", "")
    text = p.read(fragment) if fragment else None
    if text is None:
        return skip(f"cannot read the unit file {fragment or '(none)'}")
    inline = [line.strip() for line in text.splitlines()
              if re.match(r"\s*Environment\s*=", line)]
    if inline:
        return warn(f"{len(inline)} Environment= line(s) edited into {fragment}",
                    "an upgrade that rewrites the unit loses them: "
                    + "; ".join(inline[:3]),
                    Fix("move each into the drop-in with `ollamactl env set NAME VALUE`, then "
                        "delete the line from the unit"))
    return ok("no settings inside the unit file; drop-ins: "
              + (p.unit.get("DropInPaths") or "none"))


@unit_check("service.env-drift", "Running server uses the configured settings",
            area="service", after="service.unit")
def env_drift(p: Probe) -> Finding:
    """C7: ``/proc/<MainPID>/environ`` against the unit's Environment."""
    pid = p.service_pid
    if pid is None:
        return skip("the service is not running")
    raw = None
    try:
        raw = p.path(f"/proc/{pid}/environ").read_bytes()
    except OSError as exc:
        return skip(f"cannot read /proc/{pid}/environ ({exc.strerror}); run as root")
    running = dict(item.partition("=")[::2] for item in raw.decode(errors="replace").split("\0")
                   if "=" in item)
    wanted = p.service_env or {}
    keys = {k for k in (*running, *wanted) if k.startswith(TRACKED_PREFIXES)}
    differ = sorted(k for k in keys if running.get(k) != wanted.get(k))
    if differ:
        return warn(f"the running server's settings differ from the unit's: {', '.join(differ)}",
                    "the settings changed after the server started", RESTART)
    return ok("the running server has the configured settings")


@unit_check("service.gpu-sandbox", "Unit sandbox lets the GPU through",
            area="service", after="service.unit")
def gpu_sandbox(p: Probe) -> Finding:
    """C32: PrivateDevices / DevicePolicy / DeviceAllow / SupplementaryGroups."""
    unit = p.unit
    if unit.get("PrivateDevices") == "yes":
        return fail("PrivateDevices=yes hides /dev/nvidia*, /dev/kfd and /dev/dri from the server",
                    fix=Fix("set PrivateDevices=no in a drop-in (then daemon-reload, restart)"))
    if unit.get("DevicePolicy") in ("closed", "strict"):
        allowed = unit.get("DeviceAllow", "")
        lacking = [n for n in GPU_NODES if n not in allowed]
        vendor_needs = []
        if p.gpus.by_vendor("nvidia"):
            vendor_needs += [n for n in lacking if "nvidia" in n]
        if p.gpus.by_vendor("amd"):
            vendor_needs += [n for n in lacking if n in ("char-drm", "char-kfd")]
        if vendor_needs:
            return fail(f"DevicePolicy={unit['DevicePolicy']} without {', '.join(vendor_needs)}",
                        fix=Fix("add DeviceAllow=<group> rw lines for them in a drop-in"))
    groups = unit.get("SupplementaryGroups", "")
    if p.gpus.by_vendor("amd") and not set(GPU_GROUPS) & set(groups.split()):
        return warn("the unit does not add the render/video groups ROCm needs",
                    fix=Fix("SupplementaryGroups=render video in a drop-in"))
    return ok("GPU device nodes are reachable from the unit's sandbox")


@unit_check("service.hardening", "Unit hardening score", area="service", after="service.unit")
def hardening(p: Probe) -> Finding:
    """C33: ``systemd-analyze security --offline=true <unit>``."""
    fragment = p.unit.get("FragmentPath", "")
    result = p.run("systemd-analyze", "security", "--offline=true", fragment,
                   why="score the unit's sandbox", timeout_s=15.0)
    if result is None:
        return skip("systemd-analyze is not available")
    match = re.search(r"Overall exposure level for \S+:\s*([\d.]+)\s+(\w+)", result.stdout)
    if not match:
        return skip("systemd-analyze gave no exposure score (systemd < 240?)")
    score = float(match[1])
    text = f"exposure {score:.1f} {match[2]} (0 = locked down, 10 = unprotected)"
    fix = Fix("apply the hardened unit template: `ollamactl install` writes it")
    if score > 9.0:
        return fail(text, "the stock unit scores 9.2; a GPU-friendly hardened one 1.6", fix)
    if score > 3.0:
        return warn(text, fix=fix)
    return ok(text)


@unit_check("service.boot-order", "Service starts after the GPU driver",
            area="service", after="service.unit")
def boot_order(p: Probe) -> Finding:
    """C25: a GPU present later but "no compatible GPUs" logged at start: a boot race."""
    if not p.gpus.gpus:
        return skip("no GPU on this machine")
    after = p.unit.get("After", "") + " " + p.unit.get("ExecStartPre", "")
    raced = any("no compatible GPUs were discovered" in line for line in p.log_lines or [])
    if raced and "nvidia-persistenced" not in after and "nvidia-uvm" not in after:
        return warn("the server started before the GPU was ready (\"no compatible GPUs\" logged "
                    "while a GPU is present now)",
                    fix=Fix("order the unit after the driver: After=nvidia-persistenced.service "
                            "in a drop-in, or a bounded ExecStartPre wait for /dev/nvidia-uvm"))
    return ok("no start-before-driver race in the log")


@unit_check("models.sandbox", "Models directory visible inside the unit's sandbox",
            area="storage", after="models.dir")
def models_sandbox(p: Probe) -> Finding:
    """C13: ProtectHome / ProtectSystem / InaccessiblePaths against the models directory."""
    models = p.models_path
    writable = (p.unit.get("ReadWritePaths", "") + " " + p.unit.get("BindPaths", "")).split()
    inside_rw = any(models == w or models.startswith(w.rstrip("/") + "/") for w in writable)
    fix = Fix("add ReadWritePaths=<models dir> in a drop-in (then daemon-reload, restart)")
    for hidden in p.unit.get("InaccessiblePaths", "").split():
        if models.startswith(hidden.rstrip("/") + "/") or models == hidden:
            return fail(f"InaccessiblePaths={hidden} hides {models}", fix=fix)
    home = p.unit.get("ProtectHome", "no")
    if home in ("yes", "read-only", "tmpfs") and models.startswith(("/home/", "/root/",
                                                                     "/run/user/")) \
            and not inside_rw:
        return fail(f"ProtectHome={home} hides {models} from the service", fix=fix)
    system = p.unit.get("ProtectSystem", "no")
    if system == "strict" and not inside_rw:
        return fail(f"ProtectSystem=strict makes {models} read-only", fix=fix)
    if system in ("yes", "full") and models.startswith(("/usr/", "/boot/", "/etc/")) \
            and not inside_rw:
        return fail(f"ProtectSystem={system} makes {models} read-only", fix=fix)
    return ok(f"{models} is writable inside the sandbox")


@unit_check("logs.backend", "Logs are kept", area="logs", after="logs.patterns")
def backend(p: Probe) -> Finding:
    """C37: journald persistence (/var/log/journal) for the systemd service."""
    if not p.path("/var/log/journal").is_dir():
        return warn("the journal is volatile: the service's logs vanish at reboot",
                    fix=Fix("make it persistent", (("mkdir", "-p", "/var/log/journal"),
                                                   ("systemctl", "restart",
                                                    "systemd-journald")), safe=True))
    size = sum(f.stat().st_size for f in p.path("/var/log/journal").rglob("*.journal"))
    if size > GIB:
        return warn(f"the journal holds {gib(size)}",
                    fix=Fix("cap it", (("journalctl", "--vacuum-size=500M"),), safe=True))
    return ok(f"persistent journal, {size / MIB:.0f} MiB")

"""The platform units and their chooser: which unit serves which host, that doctor shows every
check in its old place, and that a unit never asks another OS's questions (an ``ollama``
account on the Linux machine that runs the tests says nothing about a Windows or Mac target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamactl import host as hostmod
from ollamactl.context import Context
from ollamactl.doctor.suite import all_checks
from ollamactl.host import HostFacts
from ollamactl.install import users
from ollamactl.service import windows, windows_system
from ollamactl.service.launchd import LaunchdLayout, MacAccount
from ollamactl.service.platforms import BACKENDS, for_host
from ollamactl.service.windows import HKCU, HKLM, MACHINE_ENV_KEY, USER_ENV_KEY, RegValue
from ollamactl.service.windows_system import ServiceLayout
from ollamactl.system import RecordingRunner
from tests.conftest import Cli
from tests.platform_fakes import (
    FakeRegistry,
    RecordingBroadcaster,
    mac_account,
    mac_host,
    machine_folders,
    windows_account,
    windows_host,
)

#: Doctor's checks in the order they were shown before the platform units held their own.
SHOWN = [
    "service.unit", "service.daemon-reload", "service.unit-edited", "service.env-drift",
    "service.gpu-sandbox", "service.hardening", "service.boot-order", "service.version",
    "service.security-floor", "server.reachable", "server.port-owner", "settings.host-exposure",
    "settings.origins", "network.proxy", "network.lan-reachability", "network.exposure-front",
    "network.metrics-exposure",
    "settings.service-valid", "settings.process-valid", "settings.unknown", "settings.shell-only",
    "models.dir", "models.sandbox", "models.disk-space", "models.store", "models.blob-names",
    "system.memory", "system.cpu-avx", "system.tmp-noexec", "system.wsl", "system.container-gpu",
    "system.cpu-runtime", "gpu.nvml", "gpu.nvidia-compute", "gpu.nvidia-driver",
    "gpu.nvidia-devices", "gpu.after-suspend", "gpu.suspend-config", "gpu.vram-headroom",
    "gpu.visible-devices", "gpu.offload", "gpu.runtime", "gpu.runtime-targets", "gpu.amd-gfx",
    "gpu.amd-access", "gpu.amd-driver",
    "gpu.igpu", "logs.patterns", "logs.backend", "platform.launchd-setenv",
    "platform.launchd-loaded", "platform.launchd-competing", "platform.windows-conflicts",
    "platform.windows-restart", "platform.windows-competing", "platform.windows-service",
]


def ctx_for(host: HostFacts, root: Path = Path("/")) -> Context:
    return Context(host=host, runner=RecordingRunner(), root=root)


@pytest.fixture
def win_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> windows.WindowsAccount:
    acc = windows_account(tmp_path)
    folders = machine_folders(tmp_path)
    monkeypatch.setattr(windows, "login_account", lambda: acc)
    monkeypatch.setattr(windows_system, "machine_folders", lambda: folders)
    return acc


@pytest.fixture
def mac_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MacAccount:
    from ollamactl.service import launchd

    acc = mac_account(tmp_path)
    monkeypatch.setattr(launchd, "login_account", lambda: acc)
    return acc


def test_every_unit_is_in_the_chooser_once_with_its_own_name() -> None:
    names = [backend.name for backend in BACKENDS]
    assert names == ["linux-systemd", "linux-watchdog", "macos", "windows-task",
                     "windows-service"]
    backends = [b for backend in BACKENDS for b in backend.backends]
    assert sorted(backends) == sorted(set(backends)) == sorted(
        ["systemd", "staged", "watchdog", "launchd-agent", "launchd-daemon", "windows-task",
         "windows-service"])


def test_linux_is_systemd_where_it_runs_or_for_a_staged_tree_else_the_watchdog(
        linux_host: HostFacts, tmp_path: Path) -> None:
    bare = HostFacts(**{**linux_host.__dict__, "init_system": "none"})
    assert for_host(ctx_for(linux_host)).name == "linux-systemd"
    assert for_host(ctx_for(bare)).name == "linux-watchdog"
    assert for_host(ctx_for(bare, tmp_path)).name == "linux-systemd"
    assert for_host(ctx_for(bare), system=True).name == "linux-watchdog"


def test_macos_picks_the_installed_flavour_or_the_one_asked_for(
        linux_host: HostFacts, mac_login: MacAccount, tmp_path: Path) -> None:
    mac = ctx_for(mac_host(linux_host), tmp_path / "stage")
    (tmp_path / "stage").mkdir()
    assert for_host(mac).name == "macos"
    assert not for_host(mac).layout.system
    assert for_host(mac, system=True).layout.system
    daemon = mac.path(LaunchdLayout(mac_login, system=True).plist)
    daemon.parent.mkdir(parents=True)
    daemon.write_text("<plist/>")
    assert for_host(mac).layout.system                 # only the daemon is installed
    assert not for_host(mac, system=False).layout.system


def test_windows_is_the_service_when_only_its_manifest_exists_or_system_is_asked(
        linux_host: HostFacts, win_account: windows.WindowsAccount) -> None:
    win = ctx_for(windows_host(linux_host))
    assert for_host(win).name == "windows-task"
    assert for_host(win, system=True).name == "windows-service"
    manifest = windows.local_path(win, ServiceLayout.for_host(win_account).manifest_path)
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    assert for_host(win).name == "windows-service"
    assert for_host(win, system=False).name == "windows-task"


def test_doctor_shows_every_check_where_it_was(linux_host: HostFacts) -> None:
    assert [item.id for item in all_checks()] == SHOWN


def test_a_platforms_check_skips_elsewhere_saying_which_platform_this_is(
        linux_host: HostFacts, mac_login: MacAccount) -> None:
    from ollamactl.doctor.probe import Probe
    from ollamactl.service.linux_systemd import daemon_reload
    from ollamactl.service.macos import launchd_loaded

    mac = Probe(ctx_for(mac_host(linux_host)), environ={})
    linux = Probe(ctx_for(linux_host), environ={})
    assert (daemon_reload(mac).status, daemon_reload(mac).summary) == (
        "skip", "not systemd (macos)")
    assert launchd_loaded(linux).summary == "not macOS (linux-systemd)"


def test_models_dir_access_is_checked_for_the_linux_service_user_only(
        linux_host: HostFacts, mac_login: MacAccount, win_account: windows.WindowsAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A users reader that knows an ``ollama`` account (as a Linux host with Ollama installed
    does): the Linux units check its access; the Windows and Mac units never ask."""
    asked: list[Path] = []
    ollama = users.Account("ollama", 998, 998, "/usr/share/ollama", "/bin/false")

    def read_users(ctx: Context) -> dict[str, users.Account]:
        asked.append(ctx.root)
        return {"ollama": ollama}

    monkeypatch.setattr(users, "read_users", read_users)
    assert for_host(ctx_for(linux_host)).service_account() == ollama
    assert asked == [Path("/")]
    del asked[:]
    for host in (windows_host(linux_host), mac_host(linux_host)):
        assert for_host(ctx_for(host)).service_account() is None
    assert asked == []


def test_env_set_models_on_windows_is_the_same_whether_or_not_the_host_has_ollama(cli: Cli,
        linux_host: HostFacts, win_account: windows.WindowsAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The test that used to depend on the machine (``env set OLLAMA_MODELS`` for a Windows
    target walked /etc/passwd), run with an ``ollama`` account in the users reader."""
    registry = FakeRegistry()
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_MODELS", RegValue("C:\\models"))
    monkeypatch.setattr(windows, "open_registry", lambda: registry)
    monkeypatch.setattr(windows, "open_broadcaster", RecordingBroadcaster)
    monkeypatch.setattr(users, "read_users", lambda ctx: {
        "ollama": users.Account("ollama", 998, 998, "/usr/share/ollama", "/bin/false")})
    win = windows_host(linux_host)
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): win)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner",
                        lambda: RecordingRunner().on("schtasks", "/Query", returncode=1))
    result = cli("env", "set", "OLLAMA_MODELS", "D:\\models")
    assert result.code == 0, result.output
    assert "problem:" not in result.output
    assert registry.values(HKCU, USER_ENV_KEY)["OLLAMA_MODELS"].data == "D:\\models"

"""systemctl and journalctl steps, checked through the recording runner (systemd is not PID 1
on the build machine, so these commands cannot run for real there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.errors import UnsupportedPlatform
from ollamactl.host import HostFacts
from ollamactl.service.base import LogQuery
from ollamactl.service.platforms import get_service_manager
from ollamactl.service.systemd import SystemdManager, UnitSpec, render_unit
from ollamactl.system import RecordingRunner


@pytest.fixture
def live(linux_host: HostFacts, recorder: RecordingRunner) -> SystemdManager:
    """A systemd manager for the real root; only the runner is fake, and it writes nothing."""
    manager = get_service_manager(Context(host=linux_host, runner=recorder))
    assert isinstance(manager, SystemdManager)
    return manager


def test_start_stop_restart_reload_enable(live: SystemdManager, recorder: RecordingRunner
                                          ) -> None:
    recorder.on("systemctl")
    recorder.on("systemctl", "is-enabled", "ollama.service", stdout="disabled\n", returncode=1)
    live.daemon_reload()
    assert not live.is_enabled()
    live.enable()
    live.start()
    live.try_restart()
    live.restart()
    live.stop()
    assert recorder.argvs == [
        ("systemctl", "daemon-reload"), ("systemctl", "is-enabled", "ollama.service"),
        ("systemctl", "enable", "ollama.service"), ("systemctl", "start", "ollama.service"),
        ("systemctl", "try-restart", "ollama.service"),
        ("systemctl", "restart", "ollama.service"), ("systemctl", "stop", "ollama.service")]


def test_status_parses_systemctl_show(live: SystemdManager, recorder: RecordingRunner) -> None:
    recorder.on("systemctl", "show", stdout=(
        "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n"
        "MainPID=4242\nExecMainStartTimestamp=@1700000000\n"
        "FragmentPath=/etc/systemd/system/ollama.service\nResult=success\n"))
    state = live.status()
    assert (state.installed, state.active, state.enabled, state.pid, state.started_at) == (
        True, "active", True, 4242, 1700000000.0)
    assert state.detail == "running"
    assert recorder.calls[0].argv[:3] == ("systemctl", "show", "ollama.service")
    assert not recorder.calls[0].mutates


def test_journal_query_and_follow_by_cursor(live: SystemdManager, recorder: RecordingRunner,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source = live.log_source()
    recorder.on("journalctl", stdout="2025-01-01T10:00:00+0000 host ollama[1]: hello\n")
    assert list(source.read(LogQuery(lines=5, since=1700000000.0))) == [
        "2025-01-01T10:00:00+0000 host ollama[1]: hello"]
    assert recorder.argvs[-1] == ("journalctl", "-u", "ollama.service", "--no-pager", "-o",
                                  "short-iso", "-n", "5", "--since", "@1700000000")
    recorder.on("journalctl", "-u", "ollama.service", "--no-pager", "-o", "short-iso",
                "--show-cursor", stdout="a\n-- cursor: s=1\n", times=1)
    recorder.on("journalctl", "-u", "ollama.service", "--no-pager", "-o", "short-iso",
                "--after-cursor", "s=1", stdout="b\n-- cursor: s=2\n")
    monkeypatch.setattr("ollamactl.service.systemd.time.sleep", lambda _s: None)
    follow = source.read(LogQuery(follow=True))
    assert [next(follow), next(follow)] == ["a", "b"]
    assert recorder.argvs[-1][-3:] == ("--after-cursor", "s=1", "--show-cursor")


def test_staged_manager_uses_systemctl_root_and_refuses_to_start(ctx: Context,
                                                                 recorder: RecordingRunner
                                                                 ) -> None:
    manager = get_service_manager(ctx)
    assert isinstance(manager, SystemdManager) and manager.staged
    recorder.on("systemctl")
    manager.enable()
    manager.daemon_reload()  # nothing to reload in a staged tree
    assert recorder.argvs == [("systemctl", f"--root={ctx.root}", "enable", "ollama.service")]
    with pytest.raises(UnsupportedPlatform):
        manager.start()


def test_watchdog_is_chosen_without_systemd(linux_host: HostFacts, recorder: RecordingRunner,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("OLLAMACTL_STATE_DIR", str(tmp_path))
    host = HostFacts(**{**linux_host.__dict__, "init_system": "none"})
    assert get_service_manager(Context(host=host, runner=recorder)).name == "watchdog"


def test_unit_quotes_and_hardening() -> None:
    text = render_unit(UnitSpec(exec_argv=("/opt/x y/python", "-m", "ollamactl", "serve"),
                                supplementary_groups=("render", "video"),
                                environment=(("PATH", "/usr/bin:/bin"),)))
    assert 'ExecStart="/opt/x y/python" -m ollamactl serve' in text
    for line in ("User=ollama", "Group=ollama", "Restart=always", "RestartSec=3",
                 "After=network-online.target", "WantedBy=default.target",
                 "SupplementaryGroups=render video", "DeviceAllow=char-nvidia-uvm rw",
                 "DeviceAllow=char-kfd rw", "DeviceAllow=char-drm rw", "PrivateDevices=no",
                 "ReadWritePaths=/usr/share/ollama", "ProtectSystem=strict"):
        assert line in text.splitlines(), line

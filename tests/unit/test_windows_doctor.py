"""Doctor on Windows (C40): HKCU/HKLM conflicts, settings newer than the server, the tray app."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.doctor.finding import OK, SKIP, WARN
from ollamactl.doctor.probe import Probe
from ollamactl.host import HostFacts
from ollamactl.service import windows
from ollamactl.service.windows import HKCU, HKLM, MACHINE_ENV_KEY, USER_ENV_KEY, RegValue
from ollamactl.service.windows_task import windows_competing, windows_conflicts, windows_restart
from ollamactl.system import RecordingRunner
from tests.platform_fakes import FakeRegistry, RecordingBroadcaster, windows_account, windows_host


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    acc = windows_account(tmp_path)
    fake = FakeRegistry()
    monkeypatch.setattr(windows, "login_account", lambda: acc)
    monkeypatch.setattr(windows, "open_registry", lambda: fake)
    monkeypatch.setattr(windows, "open_broadcaster", RecordingBroadcaster)
    return fake


def probe(host: HostFacts, runner: RecordingRunner | None = None) -> Probe:
    return Probe(Context(host=host, runner=runner or RecordingRunner()), environ={})


def test_conflicting_user_and_machine_values_are_reported(linux_host: HostFacts,
                                                          registry: FakeRegistry) -> None:
    win = windows_host(linux_host)
    registry.set_value(HKCU, USER_ENV_KEY, "OLLAMA_MODELS", RegValue("D:\\models"))
    assert windows_conflicts(probe(win)).status == OK
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_MODELS", RegValue("C:\\models"))
    finding = windows_conflicts(probe(win))
    assert finding.status == WARN
    assert "OLLAMA_MODELS: user 'D:\\\\models', machine 'C:\\\\models'" in finding.detail
    assert finding.fix is not None and finding.fix.commands[0][:2] == ("reg", "delete")
    assert windows_conflicts(probe(linux_host)).status == SKIP


def test_settings_written_after_the_server_started_want_a_restart(
        linux_host: HostFacts, registry: FakeRegistry) -> None:
    win = windows_host(linux_host)
    running = RecordingRunner().on("schtasks", "/Query", stdout=(
        "Status: Running\nLast Run Time: 1/31/2025 12:00:00 PM\n"))
    registry.written_at[(HKCU, USER_ENV_KEY)] = 0.0
    assert windows_restart(probe(win, running)).status == OK
    registry.written_at[(HKCU, USER_ENV_KEY)] = datetime(2025, 1, 31, 12, 5).timestamp()
    finding = windows_restart(probe(win, running))
    assert finding.status == WARN and finding.fix is not None
    assert finding.fix.commands == (("ollamactl", "restart"),)


def test_the_tray_app_beside_the_task_is_reported(linux_host: HostFacts,
                                                  registry: FakeRegistry) -> None:
    win = windows_host(linux_host)
    assert windows_competing(probe(win)).status == OK
    account = windows.login_account()
    app = Path(account.local_app_data, "Programs", "Ollama", "ollama app.exe")
    app.parent.mkdir(parents=True)
    app.write_bytes(b"MZ")
    assert windows_competing(probe(win)).status == WARN

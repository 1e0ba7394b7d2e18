"""Windows: the task XML, HKCU settings through the registry facade, the WM_SETTINGCHANGE
broadcast, the schtasks lines, and an uninstall that leaves nothing install or env set made.
Only the OS boundary is faked: schtasks (recording runner), the registry, user32, the user's
folders (real temporary directories)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PureWindowsPath

import pytest

from ollamactl import host as hostmod
from ollamactl.context import Context
from ollamactl.errors import UsageError
from ollamactl.host import HostFacts
from ollamactl.install import InstallOptions
from ollamactl.service import windows
from ollamactl.service.base import LogQuery
from ollamactl.service.platforms import (
    for_host,
    get_env_store,
    get_service_manager,
    install,
    plan_uninstall,
    uninstall,
)
from ollamactl.service.windows import (
    HKCU,
    HKLM,
    MACHINE_ENV_KEY,
    TASK_NAME,
    USER_ENV_KEY,
    RegValue,
    TaskSpec,
    WindowsAccount,
    WindowsLayout,
    local_path,
    parse_query,
    render_task,
    rotate_server_logs,
    settings_after_start,
    task_xml_bytes,
)
from ollamactl.system import RecordingRunner
from tests import tree
from tests.conftest import Cli
from tests.platform_fakes import FakeRegistry, RecordingBroadcaster, windows_account, windows_host

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
RUNNING = "Status: Running\nLast Run Time: 1/31/2025 12:00:00 PM\nLast Result: 267009\n"
READY = "Status: Ready\nLast Run Time: N/A\nLast Result: 0\n"


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WindowsAccount:
    acc = windows_account(tmp_path)
    monkeypatch.setattr(windows, "login_account", lambda: acc)
    return acc


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    fake.set_value(HKCU, USER_ENV_KEY, "Path", RegValue("%USERPROFILE%\\bin", expand=True))
    fake.set_value(HKLM, MACHINE_ENV_KEY, "ComSpec", RegValue("C:\\Windows\\system32\\cmd.exe"))
    monkeypatch.setattr(windows, "open_registry", lambda: fake)
    return fake


@pytest.fixture
def broadcaster(monkeypatch: pytest.MonkeyPatch) -> RecordingBroadcaster:
    fake = RecordingBroadcaster()
    monkeypatch.setattr(windows, "open_broadcaster", lambda: fake)
    return fake


@pytest.fixture
def win(linux_host: HostFacts) -> HostFacts:
    return windows_host(linux_host)


def lines(runner: RecordingRunner) -> list[str]:
    return [" ".join(argv) for argv in runner.argvs]


def test_task_xml_parses_with_trigger_action_and_restart_policy() -> None:
    spec = TaskSpec("DESKTOP-1\\alice", "C:\\Python311\\pythonw.exe",
                    '-m ollamactl.service.windows serve "C:\\Users\\a b\\server.log"',
                    "C:\\Users\\alice\\AppData\\Local\\Programs\\ollamactl")
    root = ET.fromstring(task_xml_bytes(render_task(spec)))
    trigger = root.find("t:Triggers/t:LogonTrigger", NS)
    assert trigger is not None and trigger.findtext("t:UserId", namespaces=NS) == \
        "DESKTOP-1\\alice"
    exec_ = root.find("t:Actions/t:Exec", NS)
    assert exec_ is not None
    assert exec_.findtext("t:Command", namespaces=NS) == "C:\\Python311\\pythonw.exe"
    assert exec_.findtext("t:Arguments", namespaces=NS) == spec.arguments
    assert root.findtext("t:Settings/t:RestartOnFailure/t:Interval", namespaces=NS) == "PT1M"
    assert root.findtext("t:Settings/t:RestartOnFailure/t:Count", namespaces=NS) == "999"
    assert root.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT0S"
    assert root.findtext("t:RegistrationInfo/t:URI", namespaces=NS) == TASK_NAME


def test_env_set_writes_hkcu_broadcasts_and_unset_removes(
        win: HostFacts, account: WindowsAccount, registry: FakeRegistry,
        broadcaster: RecordingBroadcaster) -> None:
    store = get_service_manager(Context(host=win, runner=RecordingRunner())).env_store()
    assert store.set("OLLAMA_MODELS", "D:\\models") is True
    assert store.set("OLLAMA_MODELS", "D:\\models") is False
    assert store.set("OLLAMA_TMPDIR", "%TEMP%\\ollama") is True
    user_env = registry.values(HKCU, USER_ENV_KEY)
    assert user_env["OLLAMA_MODELS"] == RegValue("D:\\models")
    assert user_env["OLLAMA_TMPDIR"] == RegValue("%TEMP%\\ollama", expand=True)
    assert broadcaster.sent == 2
    assert store.unset("OLLAMA_MODELS") is True and store.unset("OLLAMA_MODELS") is False
    assert "OLLAMA_MODELS" not in registry.values(HKCU, USER_ENV_KEY)
    assert registry.values(HKCU, USER_ENV_KEY)["Path"].data == "%USERPROFILE%\\bin"
    assert broadcaster.sent == 3
    with pytest.raises(UsageError):
        store.set("OLLAMA_HOST", "")


def test_machine_values_that_conflict_are_reported(
        win: HostFacts, account: WindowsAccount, registry: FakeRegistry,
        broadcaster: RecordingBroadcaster) -> None:
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_HOST", RegValue("0.0.0.0"))
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_DEBUG", RegValue("1"))
    store = for_host(Context(host=win, runner=RecordingRunner())).service_manager().env_store()
    store.set("OLLAMA_HOST", "127.0.0.1:11500")
    assert [(c.name, c.user, c.machine) for c in store.conflicts()] == [
        ("OLLAMA_HOST", "127.0.0.1:11500", "0.0.0.0")]
    assert store.machine_only() == {"OLLAMA_DEBUG": "1"}
    assert store.notes("OLLAMA_HOST") == [
        "HKLM also sets OLLAMA_HOST=0.0.0.0 for the whole machine: the task (this user) gets "
        "the user value, services and other users the machine value"]
    assert store.notes("OLLAMA_NUM_PARALLEL") == []


def test_cli_env_set_reports_the_machine_value_it_does_not_override(cli: Cli,
        win: HostFacts, account: WindowsAccount, registry: FakeRegistry,
        broadcaster: RecordingBroadcaster, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_MODELS", RegValue("C:\\models"))
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): win)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner",
                        lambda: RecordingRunner().on("schtasks", "/Query", returncode=1))
    result = cli("env", "set", "OLLAMA_MODELS", "D:\\models")
    assert result.code == 0, result.output
    assert "note: HKLM also sets OLLAMA_MODELS=C:\\models" in result.output
    assert registry.values(HKCU, USER_ENV_KEY)["OLLAMA_MODELS"].data == "D:\\models"


def test_a_setting_changed_after_the_server_started_is_found(
        win: HostFacts, account: WindowsAccount, registry: FakeRegistry,
        broadcaster: RecordingBroadcaster) -> None:
    runner = RecordingRunner().on("schtasks", "/Query", stdout=RUNNING)
    manager = for_host(Context(host=win, runner=runner)).service_manager()
    state = manager.status()
    assert state.running and state.started_at is not None
    store = manager.env_store()
    registry.written_at[(HKCU, USER_ENV_KEY)] = state.started_at - 60
    assert settings_after_start(store, state) is None
    registry.written_at[(HKCU, USER_ENV_KEY)] = state.started_at + 60
    assert settings_after_start(store, state) == state.started_at + 60


def test_install_env_set_restart_uninstall(cli: Cli, win: HostFacts, account: WindowsAccount,
                                           registry: FakeRegistry,
                                           broadcaster: RecordingBroadcaster,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    registry.set_value(HKCU, USER_ENV_KEY, "OLLAMA_KEEP_ALIVE", RegValue("10m"))
    registry_before = {k: dict(v) for k, v in registry.keys.items()}
    users = tmp_path / "Users"
    before = tree.snapshot(users)
    layout = WindowsLayout(account)

    runner = RecordingRunner().on("schtasks", "/Create").on("schtasks", "/Run")
    report = install(Context(host=win, runner=runner), InstallOptions(wait_s=0))
    assert lines(runner) == [f"schtasks /Create /TN {TASK_NAME} /XML {layout.task_xml} /F",
                             f"schtasks /Run /TN {TASK_NAME}"]
    assert report.backend == "windows-task"
    xml = ET.fromstring(local_path(Context(host=win, runner=runner),
                                   layout.task_xml).read_bytes())
    arguments = xml.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS) or ""
    assert arguments.endswith(f"serve {layout.log_path}")
    assert Path(account.user_profile, ".ollama", "models").is_dir()

    # env set through the CLI: registry, broadcast, then the running task is restarted
    runner = RecordingRunner().on("schtasks", "/Query", stdout=RUNNING) \
        .on("schtasks", "/End").on("schtasks", "/Run")
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): win)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner", lambda: runner)
    result = cli("env", "set", "OLLAMA_KEEP_ALIVE", "1h")
    assert result.code == 0, result.output
    assert registry.values(HKCU, USER_ENV_KEY)["OLLAMA_KEEP_ALIVE"].data == "1h"
    assert broadcaster.sent == 1
    assert lines(runner) == [f"schtasks /Query /TN {TASK_NAME} /FO LIST /V"] * 2 + [
        f"schtasks /End /TN {TASK_NAME}", f"schtasks /Run /TN {TASK_NAME}"]
    store = get_env_store(Context(host=win, runner=RecordingRunner()))
    assert store is not None and store.read()["OLLAMA_KEEP_ALIVE"] == "1h"
    cli("env", "set", "OLLAMA_NUM_PARALLEL", "2", "--no-restart")
    assert registry.values(HKCU, USER_ENV_KEY)["OLLAMA_NUM_PARALLEL"].data == "2"

    runner = RecordingRunner().on("schtasks", "/Query", stdout=READY) \
        .on("schtasks", "/Delete")
    context = Context(host=win, runner=runner)
    uninstall(context, plan_uninstall(context, purge=False))
    assert lines(runner) == [f"schtasks /Query /TN {TASK_NAME} /FO LIST /V"] * 2 + [
        f"schtasks /Delete /TN {TASK_NAME} /F"]
    assert registry.keys == registry_before        # 10m is back, OLLAMA_NUM_PARALLEL gone
    assert broadcaster.sent == 3
    assert tree.diff(before, tree.snapshot(users)) == []


def test_cli_install_dry_run_on_simulated_windows_prints_the_full_plan(cli: Cli,
        tmp_path: Path, win: HostFacts, monkeypatch: pytest.MonkeyPatch) -> None:
    account = WindowsAccount("alice", "C:\\Users\\alice\\AppData\\Local", "C:\\Users\\alice")
    monkeypatch.setattr(windows, "login_account", lambda: account)
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): win)
    stage = tmp_path / "stage"
    stage.mkdir()
    result = cli("--root", str(stage), "install", "--dry-run")
    assert result.code == 0, result.output
    program = stage / "C/Users/alice/AppData/Local/Programs/ollamactl"
    for expected in (f"would mkdir  {program}", f"would write  {program}/ollama-task.xml",
                     f"would write  {program}/install-manifest.json",
                     f"would mkdir  {stage}/C/Users/alice/AppData/Local/Ollama",
                     f"would mkdir  {stage}/C/Users/alice/.ollama/models",
                     "schtasks /Create /TN \\ollamactl\\Ollama /XML "
                     "C:\\Users\\alice\\AppData\\Local\\Programs\\ollamactl\\ollama-task.xml"):
        assert expected in result.output
    assert list(stage.iterdir()) == []


def test_logs_include_rotated_files_and_the_launcher_rotates(
        win: HostFacts, account: WindowsAccount) -> None:
    layout = WindowsLayout(account)
    context = Context(host=win, runner=RecordingRunner())
    log = local_path(context, layout.log_path)
    log.parent.mkdir(parents=True)
    log.write_text("time=2025-01-31 12:00:00,000 level=INFO msg=first\n")
    rotate_server_logs(log, keep=2)
    log.write_text("time=2025-01-31 13:00:00,000 level=INFO msg=second\n")
    rotate_server_logs(log, keep=2)
    log.write_text("time=2025-01-31 14:00:00,000 level=INFO msg=third\n")
    rotate_server_logs(log, keep=2)
    log.write_text("time=2025-01-31 15:00:00,000 level=INFO msg=current\n")
    assert sorted(p.name for p in log.parent.iterdir()) == [
        "server-1.log", "server-2.log", "server.log"]
    source = for_host(context).log_source()
    assert [line.rsplit("=", 1)[1] for line in source.read(LogQuery())] == [
        "second", "third", "current"]
    assert [line.rsplit("=", 1)[1] for line in source.read(LogQuery(lines=2))] == [
        "third", "current"]


def test_schtasks_list_output_and_staged_paths() -> None:
    fields = parse_query("Folder: \\ollamactl\nHostName: PC\nStatus: Running\n"
                         "Task To Run: C:\\py\\pythonw.exe -m x\n")
    assert fields["Status"] == "Running"
    assert fields["Task To Run"] == "C:\\py\\pythonw.exe -m x"
    staged = Context(host=windows_host_for_paths(), runner=RecordingRunner(),
                     root=Path("/stage"))
    assert local_path(staged, PureWindowsPath("C:\\Users\\a\\x.log")) == \
        Path("/stage/C/Users/a/x.log")


def windows_host_for_paths() -> HostFacts:
    return HostFacts(os_name="windows", arch="amd64", machine="amd64", distro_id="windows",
                     distro_version="10", distro_name="Windows 11", init_system="windows",
                     wsl=0, container="", is_root=False, selinux="")

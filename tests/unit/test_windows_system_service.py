"""Windows ``install --system``: the service host's status sequence (real child processes, a
fake advapi32), the exact sc.exe/icacls lines, the service's Environment multi-sz, restart,
uninstall, doctor and logs. Only the OS boundary is faked: advapi32 (FakeServiceControl), sc.exe
and icacls (FakeServiceControlManager), the registry, the user's and machine's folders (real
temporary directories)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path, PureWindowsPath

import psutil
import pytest

from ollamactl import __version__
from ollamactl import host as hostmod
from ollamactl.cli import main
from ollamactl.context import Context
from ollamactl.doctor.finding import FAIL, OK, WARN
from ollamactl.doctor.probe import Probe
from ollamactl.errors import EXIT_USAGE, OllamactlError, PrivilegeError, ServiceError
from ollamactl.host import HostFacts
from ollamactl.install import InstallOptions
from ollamactl.service import windows, windows_system
from ollamactl.service.base import LogQuery
from ollamactl.service.platforms import (
    get_env_store,
    get_service_manager,
    install,
    plan_uninstall,
    uninstall,
)
from ollamactl.service.windows import (
    HKLM,
    MACHINE_ENV_KEY,
    RegValue,
    WindowsAccount,
    local_path,
)
from ollamactl.service.windows_service import service_interpreter, windows_service
from ollamactl.service.windows_system import (
    SERVICE_KEY,
    ServiceLayout,
    WindowsServiceManager,
    host_command_line,
    parse_sc_query,
)
from ollamactl.service.windows_task import windows_conflicts, windows_restart
from ollamactl.service.winservice import (
    ACCEPT_PRESHUTDOWN,
    ACCEPT_SHUTDOWN,
    ACCEPT_STOP,
    CONTROL_INTERROGATE,
    CONTROL_SHUTDOWN,
    CONTROL_STOP,
    ERROR_CALL_NOT_IMPLEMENTED,
    ERROR_SERVICE_SPECIFIC_ERROR,
    NO_ERROR,
    RUNNING,
    START_PENDING,
    STOP_PENDING,
    STOPPED,
    ServiceHost,
)
from ollamactl.system import RecordingRunner
from tests import tree
from tests.conftest import Cli
from tests.loopback import VersionStub, serving
from tests.platform_fakes import (
    FakeRegistry,
    FakeServiceControl,
    FakeServiceControlManager,
    RecordingBroadcaster,
    machine_folders,
    windows_account,
    windows_host,
)

ALL_STOPS = ACCEPT_STOP | ACCEPT_SHUTDOWN | ACCEPT_PRESHUTDOWN
CONTROL_PAUSE = 0x2
SERVER = ("import signal, sys, time\n"
          "signal.signal(signal.SIGTERM, lambda *a: (print('graceful stop', flush=True), "
          "sys.exit(0)))\n"
          "print('server up', flush=True)\n"
          "time.sleep(60)\n")
STUBBORN = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "runner = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('runner', runner.pid, flush=True)\n"
            "time.sleep(60)\n")


# -- the service host --------------------------------------------------------------------------

def run_host(tmp_path: Path, script: str, controls: list[int], *, stop_timeout_s: float = 10.0
             ) -> tuple[ServiceHost, FakeServiceControl, str]:
    log = tmp_path / "ProgramData" / "Ollama" / "logs" / "server.log"
    api = FakeServiceControl(controls, ready=lambda: log.exists() and re.search(
        r"server up|runner \d+", log.read_text()) is not None)
    host = ServiceHost(api, "ollama", log, [sys.executable, "-c", script],
                       stop_timeout_s=stop_timeout_s)
    # Session fixtures (the adversarial tests' server) may own children of their own: only
    # what the host started must be gone.
    before = set(psutil.Process().children(recursive=True))
    assert host.run() == host.exit_code
    assert set(psutil.Process().children(recursive=True)) - before == set()
    return host, api, log.read_text()


def states(api: FakeServiceControl) -> list[int]:
    return [s.state for s in api.statuses]


def test_host_starts_the_server_then_stops_it_on_stop(tmp_path: Path) -> None:
    log = tmp_path / "ProgramData" / "Ollama" / "logs" / "server.log"
    log.parent.mkdir(parents=True)
    log.write_text("the previous run\n")
    host, api, text = run_host(tmp_path, SERVER, [CONTROL_INTERROGATE, CONTROL_PAUSE,
                                                  CONTROL_STOP])
    assert states(api) == [START_PENDING, START_PENDING, RUNNING, STOP_PENDING, STOPPED]
    start1, start2, running, stopping, stopped = api.statuses
    assert (start1.checkpoint, start2.checkpoint) == (1, 2)
    assert start1.wait_hint_ms > 0 and start1.controls_accepted == 0
    assert running.controls_accepted == ALL_STOPS and running.checkpoint == 0
    assert stopping.wait_hint_ms > 0 and stopping.checkpoint == 1
    assert (stopped.win32_exit_code, stopped.service_exit_code, stopped.controls_accepted) == \
        (NO_ERROR, 0, 0)
    assert api.answers == [(CONTROL_INTERROGATE, NO_ERROR),
                           (CONTROL_PAUSE, ERROR_CALL_NOT_IMPLEMENTED), (CONTROL_STOP, NO_ERROR)]
    assert host.exit_code == 0
    assert "server up" in text and "graceful stop" in text and "STOP requested" in text
    assert (log.parent / "server-1.log").read_text() == "the previous run\n"


def test_a_server_that_dies_stops_the_service_with_1066_and_its_code(tmp_path: Path) -> None:
    host, api, text = run_host(tmp_path, "import sys; print('boom', flush=True); sys.exit(3)",
                               [])
    assert states(api) == [START_PENDING, START_PENDING, RUNNING, STOPPED]
    assert (api.statuses[-1].win32_exit_code, api.statuses[-1].service_exit_code) == \
        (ERROR_SERVICE_SPECIFIC_ERROR, 3)
    assert host.exit_code == ERROR_SERVICE_SPECIFIC_ERROR
    assert "boom" in text and "exited by itself with code 3" in text


def test_shutdown_stops_the_server_like_stop(tmp_path: Path) -> None:
    _, api, text = run_host(tmp_path, SERVER, [CONTROL_SHUTDOWN, CONTROL_STOP])
    assert states(api) == [START_PENDING, START_PENDING, RUNNING, STOP_PENDING, STOPPED]
    assert api.statuses[-1].win32_exit_code == NO_ERROR
    assert api.answers == [(CONTROL_SHUTDOWN, NO_ERROR), (CONTROL_STOP, NO_ERROR)]
    assert "SHUTDOWN requested" in text and "graceful stop" in text


def test_a_server_that_ignores_the_stop_is_killed_with_its_runners(tmp_path: Path) -> None:
    _, api, text = run_host(tmp_path, STUBBORN, [CONTROL_STOP], stop_timeout_s=1.5)
    pending = [s for s in api.statuses if s.state == STOP_PENDING]
    assert len(pending) >= 2
    assert [s.checkpoint for s in pending] == list(range(1, len(pending) + 1))
    assert api.statuses[-1].state == STOPPED and api.statuses[-1].win32_exit_code == NO_ERROR
    assert "did not stop within 1.5 s; killing it" in text
    match = re.search(r"runner (\d+)", text)
    assert match is not None
    runner = int(match.group(1))

    def dead() -> bool:  # its parent is gone: it may linger as a zombie until PID 1 reaps it
        try:
            return psutil.Process(runner).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 5   # SIGKILL is delivered, not waited for
    while not dead() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead()


def test_host_reports_stopped_when_the_server_cannot_start(tmp_path: Path) -> None:
    api2 = FakeServiceControl()
    host = ServiceHost(api2, "ollama", tmp_path / "logs" / "server.log",
                       [str(tmp_path / "no-such-python")])
    host.run()
    assert states(api2) == [START_PENDING, START_PENDING, STOPPED]
    assert api2.statuses[-1].win32_exit_code == ERROR_SERVICE_SPECIFIC_ERROR
    assert "service host failed" in (tmp_path / "logs" / "server.log").read_text()


# -- install --system, env, restart, uninstall -------------------------------------------------

@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WindowsAccount:
    acc = windows_account(tmp_path)
    monkeypatch.setattr(windows, "login_account", lambda: acc)
    folders = machine_folders(tmp_path)
    monkeypatch.setattr(windows_system, "machine_folders", lambda: folders)
    return acc


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    fake.set_value(HKLM, MACHINE_ENV_KEY, "ComSpec", RegValue("C:\\Windows\\system32\\cmd.exe"))
    monkeypatch.setattr(windows, "open_registry", lambda: fake)
    monkeypatch.setattr(windows, "open_broadcaster", RecordingBroadcaster)
    return fake


@pytest.fixture
def admin(linux_host: HostFacts) -> HostFacts:
    return windows_host(linux_host, is_admin=True)


def lines(runner: RecordingRunner) -> list[str]:
    return [" ".join(argv) for argv in runner.argvs]


def on_disk(host: HostFacts, path: PureWindowsPath) -> Path:
    return local_path(Context(host=host, runner=RecordingRunner()), path)


def scm(registry: FakeRegistry) -> FakeServiceControlManager:
    """The service's process is this test process: a real PID with a real start time."""
    return FakeServiceControlManager(registry, pid=os.getpid())


def test_bin_path_and_the_sc_create_line_quote_as_windows_reads_them() -> None:
    bin_path = host_command_line("C:\\Program Files\\Python311\\python.exe",
                                 "C:\\ProgramData\\Ollama\\logs\\server.log")
    assert bin_path == ('"C:\\Program Files\\Python311\\python.exe" -m '
                        'ollamactl.service.winservice ollama '
                        'C:\\ProgramData\\Ollama\\logs\\server.log')
    argv = ["sc.exe", "create", "ollama", "binPath=", bin_path, "start=", "delayed-auto",
            "obj=", "NT SERVICE\\ollama", "DisplayName=", "Ollama (ollamactl)"]
    assert subprocess.list2cmdline(argv) == (
        'sc.exe create ollama binPath= "\\"C:\\Program Files\\Python311\\python.exe\\" -m '
        'ollamactl.service.winservice ollama C:\\ProgramData\\Ollama\\logs\\server.log" '
        'start= delayed-auto obj= "NT SERVICE\\ollama" DisplayName= "Ollama (ollamactl)"')


def test_a_venv_runs_as_its_base_interpreter_with_its_site_packages() -> None:
    assert service_interpreter("C:\\Py\\python.exe", "C:\\Py\\python.exe", ["x"]) == \
        ("C:\\Py\\python.exe", {})
    assert service_interpreter("C:\\venv\\Scripts\\python.exe", "C:\\Py\\python.exe",
                               ["C:\\venv\\Lib\\site-packages"] * 2) == \
        ("C:\\Py\\python.exe", {"PYTHONPATH": "C:\\venv\\Lib\\site-packages"})


def test_install_env_set_restart_uninstall_as_a_service(cli: Cli,
        admin: HostFacts, account: WindowsAccount, registry: FakeRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry_before = {k: dict(v) for k, v in registry.keys.items()}
    before = tree.snapshot(tmp_path)
    layout = ServiceLayout.for_host(account)
    fake = scm(registry)

    report = install(Context(host=admin, runner=fake), InstallOptions(system=True, wait_s=0))
    record = json.loads(on_disk(admin, layout.manifest_path).read_text())
    python = record["exec_argv"][0]
    bin_path = host_command_line(python, str(layout.log_path))
    assert fake.argvs == [
        ("sc.exe", "queryex", "ollama"),
        ("sc.exe", "create", "ollama", "binPath=", bin_path, "start=", "delayed-auto",
         "obj=", "NT SERVICE\\ollama", "DisplayName=", "Ollama (ollamactl)"),
        ("sc.exe", "description", "ollama",
         "Ollama-compatible LLM server (ollamactl serve); settings: ollamactl env set"),
        ("sc.exe", "failure", "ollama", "reset=", "86400", "actions=",
         "restart/5000/restart/10000/restart/30000"),
        ("sc.exe", "failureflag", "ollama", "1"),
        ("icacls", str(layout.data_dir), "/grant", "NT SERVICE\\ollama:(OI)(CI)M"),
        ("sc.exe", "start", "ollama")]
    assert report.backend == "windows-service" and not report.update
    assert Path(python).is_file() and record["exec_argv"][1:] == ["-m", "ollamactl", "serve"]
    assert (record["backend"], record["user"], record["models_dir"]) == (
        "windows-service", "NT SERVICE\\ollama", str(layout.models_dir))
    assert str(layout.manifest_path) in record["created_paths"]
    assert on_disk(admin, layout.models_dir).is_dir()
    assert on_disk(admin, layout.log_path.parent).is_dir()
    environment = registry.multi_string(HKLM, SERVICE_KEY, "Environment") or []
    assert f"OLLAMA_MODELS={layout.models_dir}" in environment
    assert registry.values(HKLM, SERVICE_KEY)["ObjectName"].data == "NT SERVICE\\ollama"

    # a foreign entry (someone's own) stays where it is through set and unset
    registry.set_multi_string(HKLM, SERVICE_KEY, "Environment",
                              ["MY_PROXY=http://proxy:3128", *environment])
    manager = get_service_manager(Context(host=admin, runner=fake))
    assert isinstance(manager, WindowsServiceManager)
    assert manager.status().running and manager.status().pid == os.getpid()
    monkeypatch.setattr(WindowsServiceManager, "poll_interval_s", 0.01)
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): admin)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner", lambda: fake)
    del fake.calls[:]
    result = cli("env", "set", "OLLAMA_HOST", "0.0.0.0:11500")
    assert result.code == 0, result.output
    assert registry.multi_string(HKLM, SERVICE_KEY, "Environment") == [
        "MY_PROXY=http://proxy:3128", *environment, "OLLAMA_HOST=0.0.0.0:11500"]
    assert lines(fake) == ["sc.exe queryex ollama"] * 2 + [
        "sc.exe stop ollama", "sc.exe query ollama", "sc.exe query ollama",
        "sc.exe start ollama"]
    assert "restarted the service (windows-service)" in result.output
    store = get_env_store(Context(host=admin, runner=RecordingRunner()))
    assert store is not None and store.read()["OLLAMA_HOST"] == "0.0.0.0:11500"

    result = cli("env", "set", "OLLAMA_NUM_PARALLEL", "many")
    assert result.code == EXIT_USAGE and "OLLAMA_NUM_PARALLEL" in result.error
    assert "OLLAMA_NUM_PARALLEL=many" not in (
        registry.multi_string(HKLM, SERVICE_KEY, "Environment") or [])
    result = cli("env", "unset", "OLLAMA_HOST", "--no-restart")
    assert result.code == 0, result.output
    assert registry.multi_string(HKLM, SERVICE_KEY, "Environment") == [
        "MY_PROXY=http://proxy:3128", *environment]

    del fake.calls[:]
    context = Context(host=admin, runner=fake)
    plan = plan_uninstall(context, purge=False)
    assert plan.steps[0].startswith("stop the service ollama and delete it")
    uninstall(context, plan)
    assert lines(fake) == ["sc.exe queryex ollama"] * 2 + [
        "sc.exe stop ollama", "sc.exe query ollama", "sc.exe query ollama",
        "sc.exe delete ollama"]
    assert fake.config is None
    assert registry.keys == registry_before and registry.multi == {}
    assert tree.diff(before, tree.snapshot(tmp_path)) == []


def test_update_reconfigures_the_service_instead_of_creating_it(
        admin: HostFacts, account: WindowsAccount, registry: FakeRegistry,
        monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    fake = scm(registry)
    install(Context(host=admin, runner=fake), InstallOptions(system=True, wait_s=0))
    del fake.calls[:]
    monkeypatch.setattr(WindowsServiceManager, "poll_interval_s", 0.01)
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): admin)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner", lambda: fake)
    # `ollamactl update` names no flavour: the one installed (the service) is updated, and
    # waits for the server it started (a stand-in on the port the service's settings name)
    stub = type("Stub", (VersionStub,), {"body": json.dumps(
        {"version": "0.33.0", "ollamactl": __version__}).encode()})
    with serving(stub) as port:
        registry.set_multi_string(HKLM, SERVICE_KEY, "Environment", [
            *(registry.multi_string(HKLM, SERVICE_KEY, "Environment") or []),
            f"OLLAMA_HOST=127.0.0.1:{port}"])
        result = cli("update", "--yes", "--json")
    assert result.code == 0, result.output
    report = json.loads(result.output)
    assert report["update"] and report["backend"] == "windows-service"
    assert [argv[:2] for argv in fake.argvs] == [
        ("sc.exe", "queryex"), ("sc.exe", "queryex"), ("sc.exe", "stop"), ("sc.exe", "query"),
        ("sc.exe", "query"), ("sc.exe", "config"), ("sc.exe", "description"),
        ("sc.exe", "failure"), ("sc.exe", "failureflag"), ("icacls", str(
            ServiceLayout.for_host(account).data_dir)), ("sc.exe", "start")]


def test_without_administrator_rights_install_system_refuses_in_one_line(
        linux_host: HostFacts, account: WindowsAccount, registry: FakeRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    user = windows_host(linux_host)
    before = tree.snapshot(tmp_path)
    with pytest.raises(PrivilegeError, match="Administrator"):
        install(Context(host=user, runner=scm(registry)), InstallOptions(system=True))
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): user)
    fake = scm(registry)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner", lambda: fake)
    with pytest.raises(SystemExit) as exited:
        main(["install", "--system"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines()[:2] == [
        "ollamactl: error: a Windows service needs Administrator rights",
        "hint: run it from an Administrator prompt (Run as administrator), or drop --system "
        "for a per-user logon task"]
    assert fake.argvs == [] and tree.diff(before, tree.snapshot(tmp_path)) == []


def test_cli_install_system_dry_run_prints_the_full_plan(cli: Cli,
        linux_host: HostFacts, account: WindowsAccount, registry: FakeRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user = windows_host(linux_host)
    before = tree.snapshot(tmp_path)
    fake = scm(registry)
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): user)
    monkeypatch.setattr("ollamactl.system.SystemRunner", lambda: fake)
    result = cli("install", "--system", "--dry-run")
    assert result.code == 0, result.output
    layout = ServiceLayout.for_host(account)
    for expected in (f"would mkdir  {on_disk(user, layout.program_dir)}",
                     f"would mkdir  {on_disk(user, layout.log_path.parent)}",
                     f"would mkdir  {on_disk(user, layout.models_dir)}",
                     f"would write  {on_disk(user, layout.manifest_path)}",
                     "would run    sc.exe create ollama binPath= ",
                     "start= delayed-auto obj= 'NT SERVICE\\ollama' DisplayName= "
                     "'Ollama (ollamactl)'",
                     "would run    sc.exe failure ollama reset= 86400 actions= "
                     "restart/5000/restart/10000/restart/30000",
                     "would run    sc.exe failureflag ollama 1",
                     f"would run    icacls '{layout.data_dir}' /grant "
                     "'NT SERVICE\\ollama:(OI)(CI)M'",
                     f"would write  HKLM\\{SERVICE_KEY}\\Environment: OLLAMA_MODELS=",
                     "would run    sc.exe start ollama"):
        assert expected in result.output
    assert fake.argvs == [("sc.exe", "queryex", "ollama")]     # only the probe ran
    assert fake.config is None and tree.diff(before, tree.snapshot(tmp_path)) == []


def test_a_service_ollamactl_did_not_create_is_left_alone(
        admin: HostFacts, account: WindowsAccount, registry: FakeRegistry) -> None:
    fake = scm(registry)
    fake.config = {"binPath=": "C:\\nssm\\nssm.exe"}
    with pytest.raises(OllamactlError, match="ollamactl did not create it"):
        install(Context(host=admin, runner=fake), InstallOptions(system=True, wait_s=0))
    assert fake.argvs == [("sc.exe", "queryex", "ollama")]


# -- status, stop deadline, doctor, logs -------------------------------------------------------

def test_sc_query_output_is_read() -> None:
    info = parse_sc_query("SERVICE_NAME: ollama\n        STATE              : 1  STOPPED\n"
                          "        WIN32_EXIT_CODE    : 1066  (0x42a)\n"
                          "        SERVICE_EXIT_CODE  : 3  (0x3)\n"
                          "        PID                : 0\n")
    assert (info.state, info.pid, info.win32_exit_code, info.service_exit_code) == \
        ("STOPPED", None, 1066, 3)


def test_stop_gives_up_after_its_deadline(admin: HostFacts, account: WindowsAccount,
                                          registry: FakeRegistry) -> None:
    fake = FakeServiceControlManager(registry, pid=os.getpid(), stop_polls=10_000)
    fake.config, fake.state = {}, "RUNNING"
    manager = WindowsServiceManager(Context(host=admin, runner=fake),
                                    ServiceLayout.for_host(account))
    manager.stop_timeout_s, manager.poll_interval_s = 0.2, 0.02
    with pytest.raises(ServiceError, match=r"did not stop within 0\.2 s"):
        manager.stop()


def probe(host: HostFacts, runner: RecordingRunner) -> Probe:
    return Probe(Context(host=host, runner=runner), environ={})


def test_doctor_covers_the_service(admin: HostFacts, account: WindowsAccount,
                                   registry: FakeRegistry) -> None:
    fake = scm(registry)
    install(Context(host=admin, runner=fake), InstallOptions(system=True, wait_s=0))
    assert windows_service(probe(admin, fake)).status == OK
    started = psutil.Process().create_time()
    registry.written_at[(HKLM, SERVICE_KEY)] = started - 60
    assert windows_restart(probe(admin, fake)).status == OK
    registry.written_at[(HKLM, SERVICE_KEY)] = started + 60
    finding = windows_restart(probe(admin, fake))
    assert finding.status == WARN and "service's settings changed" in finding.summary

    store = get_service_manager(Context(host=admin, runner=fake)).env_store()
    store.set("OLLAMA_HOST", "127.0.0.1:11500")
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_HOST", RegValue("0.0.0.0"))
    registry.set_value(HKLM, MACHINE_ENV_KEY, "OLLAMA_DEBUG", RegValue("1"))
    finding = windows_conflicts(probe(admin, fake))
    assert finding.status == WARN
    assert "OLLAMA_HOST: service '127.0.0.1:11500', machine '0.0.0.0'" in finding.detail
    assert "machine-wide only: OLLAMA_DEBUG" in finding.detail
    assert store.notes("OLLAMA_HOST") == [
        "the machine environment also sets OLLAMA_HOST=0.0.0.0: the service uses its own "
        "value, other programs the machine's"]

    fake.state = "STOPPED"
    fake.query_text = lambda verb: ("SERVICE_NAME: ollama\n STATE : 1  STOPPED\n"  # type: ignore[method-assign]
                                    " WIN32_EXIT_CODE : 1066  (0x42a)\n"
                                    " SERVICE_EXIT_CODE : 3  (0x3)\n")
    finding = windows_service(probe(admin, fake))
    assert finding.status == FAIL and "1066 (server 3)" in finding.summary


def test_logs_of_the_service_come_from_programdata(admin: HostFacts, account: WindowsAccount,
                                                   registry: FakeRegistry) -> None:
    install(Context(host=admin, runner=scm(registry)), InstallOptions(system=True, wait_s=0))
    layout = ServiceLayout.for_host(account)
    log = on_disk(admin, layout.log_path)
    log.write_text("time=2025-01-31 12:00:00,000 level=INFO msg=old\n")
    (log.parent / "server-1.log").write_text("time=2025-01-31 11:00:00,000 level=INFO msg=older\n")
    source = get_service_manager(Context(host=admin, runner=RecordingRunner())).log_source()
    assert [line.rsplit("=", 1)[1] for line in source.read(LogQuery())] == ["older", "old"]

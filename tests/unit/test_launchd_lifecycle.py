"""launchd: the exact launchctl lines for install, env set, restart, uninstall; the settings
store keeps foreign keys; uninstall leaves the home as it was. Only launchctl (the recording
runner), the login account and the home directory are faked."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from ollamactl import host as hostmod
from ollamactl.context import Context
from ollamactl.errors import EXIT_USAGE, ServiceError, UsageError
from ollamactl.host import HostFacts
from ollamactl.install import InstallOptions
from ollamactl.service import launchd
from ollamactl.service.launchd import LABEL, LaunchdLayout, MacAccount, PlistEnvStore
from ollamactl.service.platforms import get_service_manager, install, plan_uninstall, uninstall
from ollamactl.system import PlanRunner, RecordingRunner
from tests import tree
from tests.conftest import Cli
from tests.platform_fakes import mac_account, mac_host

TARGET = f"gui/501/{LABEL}"


def loaded(env: dict[str, str], state: str = "running") -> str:
    block = "".join(f"\t\t{k} => {v}\n" for k, v in env.items())
    return (f"{TARGET} = {{\n\tstate = {state}\n\tenvironment = {{\n{block}"
            "\t\tXPC_SERVICE_NAME => com.ollamactl.ollama\n\t}\n\tpid = 4242\n}\n")


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MacAccount:
    acc = mac_account(tmp_path)
    monkeypatch.setattr(launchd, "login_account", lambda: acc)
    return acc


@pytest.fixture
def mac(linux_host: HostFacts) -> HostFacts:
    return mac_host(linux_host)


def live(mac: HostFacts, runner: RecordingRunner | PlanRunner) -> Context:
    return Context(host=mac, runner=runner, dry_run=runner.dry_run)


def launchctl_lines(runner: RecordingRunner) -> list[str]:
    return [" ".join(argv) for argv in runner.argvs]


def plist_of(account: MacAccount) -> Path:
    return Path(LaunchdLayout(account).plist)


def test_install_env_set_restart_uninstall_run_these_launchctl_lines(
        mac: HostFacts, account: MacAccount) -> None:
    home = Path(account.home)
    (home / "Library/LaunchAgents").mkdir(parents=True)
    (home / "Library/LaunchAgents/com.example.other.plist").write_text("not ours")
    before = tree.snapshot(home)

    runner = RecordingRunner().on("launchctl", "print", returncode=113, times=1) \
        .on("launchctl", "enable").on("launchctl", "bootstrap")
    install(live(mac, runner), InstallOptions(wait_s=0))
    assert launchctl_lines(runner) == [
        f"launchctl print {TARGET}", f"launchctl enable {TARGET}",
        f"launchctl bootstrap gui/501 {plist_of(account)}"]
    data = plistlib.loads(plist_of(account).read_bytes())
    assert data["ProgramArguments"][-3:] == ["-m", "ollamactl", "serve"]

    # env set: plist + the seed's setenv, then a restart that reloads the changed definition
    runner = RecordingRunner().on("launchctl", "setenv") \
        .on("launchctl", "print", stdout=loaded({"PATH": data["EnvironmentVariables"]["PATH"]})) \
        .on("launchctl", "bootout").on("launchctl", "enable").on("launchctl", "bootstrap")
    manager = get_service_manager(live(mac, runner))
    assert manager.env_store().set("OLLAMA_HOST", "0.0.0.0") is True
    manager.restart()
    assert launchctl_lines(runner) == [
        "launchctl setenv OLLAMA_HOST 0.0.0.0", f"launchctl print {TARGET}",
        f"launchctl bootout {TARGET}", f"launchctl enable {TARGET}",
        f"launchctl bootstrap gui/501 {plist_of(account)}"]

    # restart with the definition unchanged: kickstart -k
    env = plistlib.loads(plist_of(account).read_bytes())["EnvironmentVariables"]
    runner = RecordingRunner().on("launchctl", "print", stdout=loaded(env)) \
        .on("launchctl", "kickstart")
    get_service_manager(live(mac, runner)).restart()
    assert launchctl_lines(runner) == [f"launchctl print {TARGET}",
                                       f"launchctl kickstart -k {TARGET}"]

    runner = RecordingRunner().on("launchctl", "print", stdout=loaded(env)) \
        .on("launchctl", "bootout").on("launchctl", "unsetenv")
    context = live(mac, runner)
    uninstall(context, plan_uninstall(context, purge=False))
    assert launchctl_lines(runner) == [f"launchctl print {TARGET}", f"launchctl bootout {TARGET}",
                                       "launchctl unsetenv OLLAMA_HOST"]
    assert tree.diff(before, tree.snapshot(home)) == []


def test_env_set_and_unset_keep_keys_that_are_not_ours(mac: HostFacts,
                                                      account: MacAccount) -> None:
    plist = plist_of(account)
    plist.parent.mkdir(parents=True)
    plist.write_bytes(plistlib.dumps({
        "Label": LABEL, "ProgramArguments": ["/bin/python3", "-m", "ollamactl", "serve"],
        "EnvironmentVariables": {"PATH": "/usr/bin", "MY_OWN": "kept"},
        "SoftResourceLimits": {"NumberOfFiles": 4096}, "Nice": -5}))
    runner = RecordingRunner().on("launchctl", "setenv").on("launchctl", "unsetenv")
    store = PlistEnvStore(live(mac, runner), LaunchdLayout(account))

    assert store.set("OLLAMA_KEEP_ALIVE", "1h") is True
    assert store.read() == {"PATH": "/usr/bin", "MY_OWN": "kept", "OLLAMA_KEEP_ALIVE": "1h"}
    assert store.unset("OLLAMA_KEEP_ALIVE") is True
    assert store.unset("OLLAMA_KEEP_ALIVE") is False
    data = plistlib.loads(plist.read_bytes())
    assert data["EnvironmentVariables"] == {"PATH": "/usr/bin", "MY_OWN": "kept"}
    assert data["SoftResourceLimits"] == {"NumberOfFiles": 4096} and data["Nice"] == -5
    assert launchctl_lines(runner) == ["launchctl setenv OLLAMA_KEEP_ALIVE 1h",
                                       "launchctl unsetenv OLLAMA_KEEP_ALIVE"]
    assert plist.with_name(plist.name + ".bak").exists()


def test_env_set_refuses_a_broken_plist_and_writes_nothing(mac: HostFacts,
                                                          account: MacAccount) -> None:
    plist = plist_of(account)
    plist.parent.mkdir(parents=True)
    plist.write_text("<plist><dict><key>Label</key>")
    store = PlistEnvStore(live(mac, RecordingRunner()), LaunchdLayout(account))
    with pytest.raises(ServiceError, match="not a valid property list"):
        store.set("OLLAMA_HOST", "0.0.0.0")
    assert plist.read_text() == "<plist><dict><key>Label</key>"
    plist.unlink()
    with pytest.raises(UsageError, match="not installed"):
        store.set("OLLAMA_HOST", "0.0.0.0")


def test_update_keeps_the_users_settings_in_the_plist(mac: HostFacts,
                                                      account: MacAccount) -> None:
    runner = RecordingRunner(strict=False).on("launchctl", "print", returncode=113)
    context = live(mac, runner)
    install(context, InstallOptions(wait_s=0))
    PlistEnvStore(context, LaunchdLayout(account)).set("OLLAMA_MODELS", "/Volumes/ext/models")
    report = install(context, InstallOptions(wait_s=0))
    assert report.update
    env = plistlib.loads(plist_of(account).read_bytes())["EnvironmentVariables"]
    assert env["OLLAMA_MODELS"] == "/Volumes/ext/models" and "PATH" in env


def test_system_daemon_dry_run_plans_the_account_with_dscl(linux_host: HostFacts,
                                                           account: MacAccount) -> None:
    probes = RecordingRunner() \
        .on("dscl", ".", "-list", "/Users", stdout="root 0\n_www 70\n_ollama_old 200\n") \
        .on("dscl", ".", "-list", "/Groups", stdout="wheel 0\nstaff 20\n_x 201\n") \
        .on("launchctl", "print", returncode=113)
    runner = PlanRunner(probes)
    report = install(live(mac_host(linux_host, is_root=True), runner),
                     InstallOptions(system=True, wait_s=0))
    plan = runner.render_plan()
    assert "would run    dscl . -create /Groups/_ollama PrimaryGroupID 202" in plan
    assert "dscl . -create /Users/_ollama UniqueID 202" in plan
    assert "dscl . -create /Users/_ollama UserShell /usr/bin/false" in plan
    assert "chown -R _ollama:_ollama /usr/local/var/ollama" in plan
    assert f"launchctl bootstrap system /Library/LaunchDaemons/{LABEL}.plist" in plan
    assert f"would write  /Library/LaunchDaemons/{LABEL}.plist" in plan
    assert report.backend == "launchd-daemon"
    assert not Path("/Library/LaunchDaemons").exists()


def test_cli_install_dry_run_on_a_simulated_mac_prints_the_full_plan(cli: Cli,
        tmp_path: Path, mac: HostFacts, account: MacAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): mac)
    stage = tmp_path / "stage"
    stage.mkdir()
    result = cli("--root", str(stage), "install", "--dry-run")
    assert result.code == 0, result.output
    plist = f"{stage}{account.home}/Library/LaunchAgents/{LABEL}.plist"
    for expected in (f"would write  {plist}", f"would mkdir  {stage}{account.home}/.ollama/logs",
                     "install-manifest.json", f"launchctl bootstrap gui/501 {account.home}"):
        assert expected in result.output
    assert list(stage.iterdir()) == []

    # the same without --root: launchctl answers through the recording runner
    probes = RecordingRunner().on("launchctl", "print", returncode=113)
    monkeypatch.setattr("ollamactl.system.SystemRunner", lambda: probes)
    result = cli("install", "--dry-run")
    assert result.code == 0, result.output
    assert f"would run    launchctl bootstrap gui/501 {plist_of(account)}" in result.output
    assert not plist_of(account).exists()


def test_cli_env_set_writes_the_plist_then_restarts(cli: Cli, mac: HostFacts, account: MacAccount,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    install(live(mac, RecordingRunner(strict=False).on("launchctl", "print", returncode=113)),
            InstallOptions(wait_s=0))
    env = plistlib.loads(plist_of(account).read_bytes())["EnvironmentVariables"]
    runner = RecordingRunner().on("launchctl", "print", stdout=loaded(env)) \
        .on("launchctl", "setenv").on("launchctl", "bootout").on("launchctl", "enable") \
        .on("launchctl", "bootstrap")
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): mac)
    monkeypatch.setattr("ollamactl.cli.common.SystemRunner", lambda: runner)
    result = cli("env", "set", "OLLAMA_NUM_PARALLEL", "2")
    assert result.code == 0, result.output
    assert plistlib.loads(plist_of(account).read_bytes())["EnvironmentVariables"][
        "OLLAMA_NUM_PARALLEL"] == "2"
    lines = launchctl_lines(runner)
    assert lines[lines.index("launchctl setenv OLLAMA_NUM_PARALLEL 2") + 1:] == [
        f"launchctl print {TARGET}", f"launchctl print {TARGET}", f"launchctl bootout {TARGET}",
        f"launchctl enable {TARGET}", f"launchctl bootstrap gui/501 {plist_of(account)}"]
    before = plist_of(account).read_bytes()
    result = cli("env", "set", "OLLAMA_NUM_PARALLEL", "lots")
    assert result.code == EXIT_USAGE and "OLLAMA_NUM_PARALLEL" in result.error
    assert plist_of(account).read_bytes() == before

"""Doctor on macOS (C39): setenv-only values, a plist not reloaded, a second Ollama server."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.doctor.finding import FAIL, OK, SKIP, WARN
from ollamactl.doctor.probe import Probe
from ollamactl.host import HostFacts
from ollamactl.install import InstallOptions
from ollamactl.service import launchd
from ollamactl.service.launchd import LABEL, LaunchdLayout, MacAccount
from ollamactl.service.macos import launchd_competing, launchd_loaded, launchd_setenv
from ollamactl.service.platforms import install
from ollamactl.system import RecordingRunner
from tests.platform_fakes import mac_account, mac_host


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MacAccount:
    acc = mac_account(tmp_path)
    monkeypatch.setattr(launchd, "login_account", lambda: acc)
    return acc


def installed(linux_host: HostFacts, account: MacAccount) -> HostFacts:
    mac = mac_host(linux_host)
    install(Context(host=mac, runner=RecordingRunner(strict=False).on(
        "launchctl", "print", returncode=113)), InstallOptions(wait_s=0))
    return mac


def probe(host: HostFacts, runner: RecordingRunner) -> Probe:
    return Probe(Context(host=host, runner=runner), environ={})


def test_a_setenv_only_value_is_found_with_the_fix(linux_host: HostFacts,
                                                  account: MacAccount) -> None:
    mac = installed(linux_host, account)
    runner = RecordingRunner().on("launchctl", "getenv", returncode=1) \
        .on("launchctl", "getenv", "OLLAMA_HOST", stdout="0.0.0.0\n")
    finding = launchd_setenv(probe(mac, runner))
    assert finding.status == WARN
    assert "OLLAMA_HOST=0.0.0.0 (plist: missing)" in finding.detail
    assert finding.fix is not None
    assert finding.fix.commands == (("ollamactl", "env", "set", "OLLAMA_HOST", "0.0.0.0"),)
    assert launchd_setenv(probe(mac, RecordingRunner().on("launchctl", "getenv", returncode=1))
                          ).status == OK
    assert launchd_setenv(probe(linux_host, RecordingRunner())).status == SKIP


def test_a_plist_changed_but_not_reloaded_is_found(linux_host: HostFacts,
                                                  account: MacAccount) -> None:
    mac = installed(linux_host, account)
    env = plistlib.loads(Path(LaunchdLayout(account).plist).read_bytes())["EnvironmentVariables"]
    block = "".join(f"\t\t{k} => {v}\n" for k, v in env.items())
    current = f"gui/501/{LABEL} = {{\n\tstate = running\n\tenvironment = {{\n{block}\t}}\n}}\n"
    stale = current.replace("\t}", "\t\tOLLAMA_HOST => 0.0.0.0\n\t}", 1)
    assert launchd_loaded(probe(mac, RecordingRunner().on("launchctl", "print", stdout=current))
                          ).status == OK
    assert launchd_loaded(probe(mac, RecordingRunner().on("launchctl", "print", stdout=stale))
                          ).status == WARN


def test_the_ollama_app_beside_our_job_fails(linux_host: HostFacts, account: MacAccount) -> None:
    mac = installed(linux_host, account)
    assert launchd_competing(probe(mac, RecordingRunner())).status == OK
    brew = Path(account.home, launchd.BREW_AGENT)
    brew.parent.mkdir(parents=True, exist_ok=True)
    brew.write_text("<plist/>")
    finding = launchd_competing(probe(mac, RecordingRunner()))
    assert finding.status == FAIL and str(brew) in finding.summary

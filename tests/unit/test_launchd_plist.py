"""The rendered LaunchAgent/LaunchDaemon plists parse with plistlib and hold the required keys."""

from __future__ import annotations

import plistlib

import pytest

from ollamactl.errors import ServiceError
from ollamactl.service.launchd import (
    LABEL,
    JobInfo,
    LaunchdLayout,
    MacAccount,
    PlistSpec,
    dump_plist,
    parse_plist,
    parse_print,
    render_plist,
)

ACCOUNT = MacAccount("alice", 501, "/Users/alice")


def test_agent_plist_parses_and_holds_the_required_keys() -> None:
    layout = LaunchdLayout(ACCOUNT)
    text = render_plist(PlistSpec(("/opt/py/bin/python3", "-m", "ollamactl", "serve"),
                                  layout.log_path, layout.home, (("PATH", "/usr/bin:/bin"),)))
    data = plistlib.loads(text.encode())
    assert data["Label"] == LABEL
    assert data["ProgramArguments"] == ["/opt/py/bin/python3", "-m", "ollamactl", "serve"]
    assert data["KeepAlive"] is True and data["RunAtLoad"] is True
    assert data["EnvironmentVariables"] == {"PATH": "/usr/bin:/bin"}
    assert data["StandardOutPath"] == data["StandardErrorPath"] == \
        "/Users/alice/.ollama/logs/server.log"
    assert "UserName" not in data
    assert layout.plist == f"/Users/alice/Library/LaunchAgents/{LABEL}.plist"
    assert layout.target == f"gui/501/{LABEL}"


def test_daemon_plist_runs_as_the_service_account() -> None:
    layout = LaunchdLayout(ACCOUNT, system=True)
    data = plistlib.loads(render_plist(PlistSpec(
        ("/usr/local/bin/python3", "-m", "ollamactl", "serve"), layout.log_path, layout.home,
        user_name="_ollama", group_name="_ollama")).encode())
    assert (data["UserName"], data["GroupName"]) == ("_ollama", "_ollama")
    assert data["StandardOutPath"] == "/usr/local/var/ollama/.ollama/logs/server.log"
    assert layout.plist == f"/Library/LaunchDaemons/{LABEL}.plist"
    assert layout.target == f"system/{LABEL}"


def test_markup_in_values_is_escaped_and_round_trips() -> None:
    hostile = 'a<b>&"c\'</string><key>KeepAlive</key><false/>'
    data = plistlib.loads(render_plist(PlistSpec(
        ("/bin/python", hostile), "/tmp/log", "/tmp", (("OLLAMA_ORIGINS", hostile),))).encode())
    assert data["ProgramArguments"][1] == hostile
    assert data["EnvironmentVariables"]["OLLAMA_ORIGINS"] == hostile
    assert data["KeepAlive"] is True


def test_dump_keeps_key_order_and_marks_the_file_as_managed() -> None:
    raw = dump_plist({"Label": LABEL, "Zeta": 1, "Alpha": {"b": "1", "a": "2"}})
    assert b"<!-- Managed by ollamactl" in raw
    assert list(plistlib.loads(raw)) == ["Label", "Zeta", "Alpha"]


@pytest.mark.parametrize("raw", [b"not a plist", b"<?xml version='1.0'?><plist><array/>"
                                                 b"</plist>"])
def test_a_broken_plist_is_one_clear_error(raw: bytes) -> None:
    with pytest.raises(ServiceError, match=r"broken\.plist"):
        parse_plist(raw, source="broken.plist")


PRINT = """gui/501/com.ollamactl.ollama = {
\tactive count = 1
\tpath = /Users/alice/Library/LaunchAgents/com.ollamactl.ollama.plist
\tstate = running

\tprogram = /opt/py/bin/python3
\targuments = {
\t\t/opt/py/bin/python3
\t\t-m
\t\tollamactl
\t\tserve
\t}

\tinherited environment = {
\t\tSSH_AUTH_SOCK => /private/tmp/com.apple.launchd.x/Listeners
\t}

\tenvironment = {
\t\tPATH => /usr/bin:/bin
\t\tOLLAMA_HOST => 0.0.0.0
\t\tXPC_SERVICE_NAME => com.ollamactl.ollama
\t}

\tdomain = gui/501 [100005]
\tpid = 4242
\tlast exit code = (never exited)
}
"""


def test_launchctl_print_is_read_for_state_pid_environment_and_arguments() -> None:
    job = parse_print(PRINT)
    assert job == JobInfo(state="running", pid=4242,
                          environment={"PATH": "/usr/bin:/bin", "OLLAMA_HOST": "0.0.0.0",
                                       "XPC_SERVICE_NAME": "com.ollamactl.ollama"},
                          arguments=("/opt/py/bin/python3", "-m", "ollamactl", "serve"),
                          last_exit="(never exited)")

"""Settings smuggling syntax: a value set with `ollamactl env set` stays one value in every file
that holds settings (systemd drop-in, watchdog env file, launchd plist, Windows registry, the
Windows service's Environment). Line breaks that some reader splits on (CR for systemd; VT, FF,
FS-RS, NEL, U+2028/U+2029 for str.splitlines) are refused, a path list cannot be widened by a
space, a user's ``%%`` survives our re-render, and a property test over every setting and every
store shows that a value either round-trips exactly or is refused, and never adds a line.

Only OS boundaries are faked (staging roots, tmp dirs, an in-memory registry); the stores, the
CLI and the parsers are the real ones.
"""

from __future__ import annotations

import collections
import contextlib
import plistlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ollamactl import host as hostmod
from ollamactl import settings
from ollamactl.context import Context
from ollamactl.errors import SettingError, UsageError
from ollamactl.host import HostFacts
from ollamactl.service.env import EnvStore
from ollamactl.service.launchd import LABEL, LaunchdLayout, MacAccount, PlistEnvStore
from ollamactl.service.systemd import DROPIN_PATH, UNIT_PATH, DropInEnvStore, format_assignment
from ollamactl.service.watchdog import EnvFileStore
from ollamactl.service.windows import HKCU, HKLM, USER_ENV_KEY, RegistryEnvStore, RegValue
from ollamactl.service.windows import WindowsLayout as TaskLayout
from ollamactl.service.windows_system import ENVIRONMENT_VALUE, SERVICE_KEY, ServiceEnvStore
from ollamactl.system import RecordingRunner
from tests.adversarial.conftest import Reliability
from tests.conftest import Cli, CliRun
from tests.platform_fakes import (
    FakeRegistry,
    RecordingBroadcaster,
    mac_host,
    windows_account,
    windows_host,
)

#: Every character some reader of a settings file takes as a line end (systemd: LF, CR, NUL;
#: str.splitlines: also VT, FF, FS, GS, RS, NEL, U+2028, U+2029).
LINE_BREAKS = ["\r", "\n", "\0", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
               "\u2029"]
#: Settings whose validators let such a character through before the fix.
CARRIERS = {"OLLAMA_EDITOR": "vi{}", "OLLAMA_EXPERIMENT": "a{}", "OLLAMA_MODELS": "/srv/m{}",
            "OLLAMA_ORIGINS": "https://a.example/x{}"}
ROOT_DIRECTIVE = "ExecStartPre=+/bin/sh -c 'id > /tmp/pwned'"

FOREIGN_DROPIN = """[Unit]
Description=mine

[Service]
# set by hand with systemctl edit
Environment="MY_RATIO=50%%" "MY_QUOTE=a \\"b\\"" MY_PLAIN=1
LimitNOFILE=65536
"""


def reader_lines(text: str) -> list[str]:
    """The lines as the most eager reader sees them: systemd (LF, CR, CRLF, NUL) and
    str.splitlines (also VT, FF, FS, GS, RS, NEL, U+2028, U+2029) together."""
    return re.split("\r\n|[\n\r\0\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]", text)


@pytest.fixture
def dropin(staging_root: Path) -> Path:
    """A staged systemd install: the unit and a drop-in with the user's own lines."""
    unit = staging_root / UNIT_PATH.lstrip("/")
    unit.parent.mkdir(parents=True)
    unit.write_text("# unit\n")
    path = staging_root / DROPIN_PATH.lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_text(FOREIGN_DROPIN)
    return path


def env(cli: Cli, root: Path, *args: str) -> CliRun:
    """``ollamactl --root ROOT env ARGS``."""
    return cli("--root", str(root), "env", *args)


def test_line_breaks_in_a_value_never_become_drop_in_directives(cli: Cli,
        dropin: Path, staging_root: Path, reliability: Reliability) -> None:
    for name, template in CARRIERS.items():
        for brk in LINE_BREAKS:
            value = template.format(brk + ROOT_DIRECTIVE)
            before = dropin.read_bytes()
            run = env(cli, staging_root, "set", name, value)
            code, message = run.code, run.error
            reliability.tried()
            assert code == 2, (name, value, message)
            assert name in message and "\n" not in message
            assert dropin.read_bytes() == before
    # a later, unrelated `env set` re-renders the file: still no line of ours but that one
    assert env(cli, staging_root, "set", "OLLAMA_DEBUG", "1").code == 0
    lines = reader_lines(dropin.read_text())
    assert not [line for line in lines if line.lstrip().startswith("ExecStartPre")]
    assert lines == [*reader_lines(FOREIGN_DROPIN)[:-1], 'Environment="OLLAMA_DEBUG=1"', ""]


def test_a_models_path_with_whitespace_cannot_undo_protect_system(cli: Cli,
        dropin: Path, staging_root: Path, reliability: Reliability) -> None:
    for value in ("/srv/models /", "/srv/models\u3000/", "/srv/models\u00a0/", "/srv/a\"b",
                  "/srv/a'b", "/srv/a\\", "/home/alice/a:/etc"):
        before = dropin.read_bytes()
        run = env(cli, staging_root, "set", "OLLAMA_MODELS", value)
        code, message = run.code, run.error
        reliability.tried()
        assert code == 2, (value, message)
        assert "ReadWritePaths" in message and "\n" not in message
        assert dropin.read_bytes() == before
    # what it may hold is written so that systemd reads back exactly that path
    assert env(cli, staging_root, "set", "OLLAMA_MODELS", "/srv/50%h/models").code == 0
    reliability.tried()
    text = dropin.read_text()
    assert "ReadWritePaths=/srv/50%%h/models\n" in text
    assert 'Environment="OLLAMA_MODELS=/srv/50%%h/models"\n' in text


def test_line_separators_cannot_smuggle_variables_into_the_watchdog_environment(cli: Cli,
        linux_host: HostFacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        reliability: Reliability) -> None:
    no_systemd = HostFacts(**{**linux_host.__dict__, "init_system": "none"})
    monkeypatch.setattr(hostmod, "detect", lambda root=Path("/"): no_systemd)
    monkeypatch.setenv("OLLAMACTL_STATE_DIR", str(tmp_path))
    env_file = tmp_path / "ollama.env"
    for brk in LINE_BREAKS:
        for smuggled in ("LD_PRELOAD=/tmp/evil.so", "PYTHONPATH=/tmp/evil"):
            run = env(cli, Path("/"), "set", "OLLAMA_EDITOR", f"vi{brk}{smuggled}")
            code, message = run.code, run.error
            reliability.tried()
            assert code == 2, (brk, message)
            # what the supervisor starts the server with
            assert EnvFileStore(env_file).read().keys() <= {"OLLAMA_EDITOR"}


def test_a_value_written_before_the_fix_stays_inside_its_line(cli: Cli,
        dropin: Path, staging_root: Path, tmp_path: Path, reliability: Reliability) -> None:
    legacy = 'Environment="OLLAMA_EDITOR=vi\u2028ExecStartPre=+/bin/sh\x85x\x0by"'
    dropin.write_text(FOREIGN_DROPIN + legacy + "\n")
    assert env(cli, staging_root, "set", "OLLAMA_DEBUG", "1").code == 0
    reliability.tried()
    assert dropin.read_text() == FOREIGN_DROPIN + legacy + '\nEnvironment="OLLAMA_DEBUG=1"\n'

    env_file = tmp_path / "ollama.env"
    env_file.write_text("OLLAMA_EDITOR=vi\u2028LD_PRELOAD=/tmp/evil.so\x85PYTHONPATH=/x\n")
    reliability.tried()
    assert EnvFileStore(env_file).read() == {
        "OLLAMA_EDITOR": "vi\u2028LD_PRELOAD=/tmp/evil.so\x85PYTHONPATH=/x"}


def test_a_users_double_percent_survives_a_rerender(cli: Cli,
        dropin: Path, staging_root: Path, linux_host: HostFacts,
        reliability: Reliability) -> None:
    mine = 'Environment="OLLAMA_DEBUG=1" "GREETING=100%%" \'NOTE=a%%b c\'\n'
    dropin.write_text(FOREIGN_DROPIN + mine)
    assert env(cli, staging_root, "set", "OLLAMA_DEBUG", "2").code == 0
    reliability.tried()
    kept = "Environment=\"GREETING=100%%\" 'NOTE=a%%b c'\n"
    assert dropin.read_text() == FOREIGN_DROPIN + 'Environment="OLLAMA_DEBUG=2"\n' + kept
    store = DropInEnvStore(Context(host=linux_host, runner=RecordingRunner(), root=staging_root))
    assert store.read()["GREETING"] == "100%" and store.read()["NOTE"] == "a%b c"
    assert store.read()["MY_RATIO"] == "50%"
    assert env(cli, staging_root, "set", "OLLAMA_EXPERIMENT", "50%,x%%y").code == 0
    assert store.read()["OLLAMA_EXPERIMENT"] == "50%,x%%y"
    assert env(cli, staging_root, "unset", "OLLAMA_EXPERIMENT").code == 0
    assert env(cli, staging_root, "unset", "OLLAMA_DEBUG").code == 0
    assert dropin.read_text() == FOREIGN_DROPIN + kept


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_itself_reads_our_lines_without_complaint(tmp_path: Path,
                                                          reliability: Reliability) -> None:
    """systemd-analyze verify warns about a line it splits, a bad quote or escape, or a ``%``
    that is not a specifier; our lines, for values full of its syntax, draw no warning."""
    values = ['a "quoted" word', "back\\slash\\", "50% %h %% %z", "it's", "$HOME ${X}", "; # x",
              "\u00e9\u4e2d\U0001f600", " lead and trail ", "=", "a\\\"b"]
    unit = tmp_path / "probe.service"
    unit.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n" + "".join(
        format_assignment(f"V{i}", value) + "\n" for i, value in enumerate(values)))
    reliability.tried(len(values))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert f"{unit}:" not in result.stdout + result.stderr, result.stdout + result.stderr


# -- the property: every setting, every store ----------------------------------------------------

MAC = MacAccount("alice", 501, "/Users/alice")
FOREIGN_ENV_FILE = "# mine\nexport HTTPS_PROXY_MINE=http://proxy:3128\nnot a setting\n" \
                   "MY_RATIO=50%% \r\n"
FOREIGN_PLIST = {"Label": LABEL, "ProgramArguments": ["/bin/python3", "-m", "ollamactl"],
                 "EnvironmentVariables": {"PATH": "/usr/bin", "MY_OWN": "a\u2028b"},
                 "KeepAlive": True}
FOREIGN_SERVICE_ENV = ["PATH=C:\\Python", "MY_OWN=a=b", "=C:=C:\\"]


@dataclass
class Staged:
    """A store on a fresh staged tree: a second store on the same files (to read back), the
    raw content (unchanged after a refusal) and its lines as a reader sees them."""

    store: EnvStore
    reopen: Callable[[], EnvStore]
    snapshot: Callable[[], object]
    lines: Callable[[], list[str]]


def _dropin(root: Path, host: HostFacts) -> Staged:
    path = root / DROPIN_PATH.lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_text(FOREIGN_DROPIN)

    def reopen() -> DropInEnvStore:
        return DropInEnvStore(Context(host=host, runner=RecordingRunner(), root=root))

    return Staged(reopen(), reopen, path.read_bytes, lambda: reader_lines(path.read_text()))


def _env_file(root: Path, host: HostFacts) -> Staged:
    path = root / "ollama.env"
    path.write_text(FOREIGN_ENV_FILE)
    return Staged(EnvFileStore(path), lambda: EnvFileStore(path), path.read_bytes,
                  lambda: reader_lines(path.read_text()))


def _plist(root: Path, host: HostFacts) -> Staged:
    layout = LaunchdLayout(MAC)
    path = root / layout.plist.lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_bytes(plistlib.dumps(FOREIGN_PLIST))

    def reopen() -> PlistEnvStore:
        return PlistEnvStore(Context(host=mac_host(host), runner=RecordingRunner(), root=root),
                             layout)

    return Staged(reopen(), reopen, path.read_bytes, lambda: _plist_lines(path))


def _plist_lines(path: Path) -> list[str]:
    """The plist as one line per key, and per variable of EnvironmentVariables."""
    data = plistlib.loads(path.read_bytes())
    env = data.pop("EnvironmentVariables")
    return [f"{k}={v!r}" for k, v in data.items()] + [f"env {k}={v}" for k, v in env.items()]


def _registry(root: Path, host: HostFacts) -> Staged:
    registry = FakeRegistry()
    registry.set_value(HKCU, USER_ENV_KEY, "Path", RegValue("%USERPROFILE%\\bin", expand=True))
    context = Context(host=windows_host(host), runner=RecordingRunner(), root=root)
    layout = TaskLayout(windows_account(root))

    def reopen() -> RegistryEnvStore:
        return RegistryEnvStore(context, layout, registry, RecordingBroadcaster())

    return Staged(reopen(), reopen, lambda: registry.values(HKCU, USER_ENV_KEY),
                  lambda: [f"{n}={v}" for n, v in registry.values(HKCU, USER_ENV_KEY).items()])


def _service(root: Path, host: HostFacts) -> Staged:
    registry = FakeRegistry()
    registry.set_value(HKLM, SERVICE_KEY, "ImagePath", RegValue("C:\\python.exe"))
    registry.set_multi_string(HKLM, SERVICE_KEY, ENVIRONMENT_VALUE, FOREIGN_SERVICE_ENV)
    context = Context(host=windows_host(host, is_admin=True), runner=RecordingRunner(),
                      root=root)

    def entries() -> list[str]:
        return registry.multi_string(HKLM, SERVICE_KEY, ENVIRONMENT_VALUE) or []

    return Staged(ServiceEnvStore(context, registry), lambda: ServiceEnvStore(context, registry),
                  entries, entries)


STORES: dict[str, Callable[[Path, HostFacts], Staged]] = {
    "systemd drop-in": _dropin, "watchdog env file": _env_file, "launchd plist": _plist,
    "HKCU environment": _registry, "service Environment": _service}
SMUGGLED = ["ExecStartPre=+/bin/sh", "LD_PRELOAD=/tmp/x.so", "[Service]", "Environment=A=1",
            '"', "\\", "%", "%%", "</string><key>KeepAlive</key><false/>", "X=1\0Y=2"]
BREAKS_AND_SYNTAX = [*LINE_BREAKS, "\t", "\x1f", "\x7f", "\x9b", "\ufeff", "\ufffe", "\uffff",
                     "\udc80", " ", "\u00a0", "\u3000", "%", '"', "'", "\\", "=", "$", "#", ":"]
CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from(BREAKS_AND_SYNTAX))
VALUES = st.one_of(
    st.text(CHARS, max_size=24),
    st.builds(lambda a, brk, b: a + brk + b, st.text(CHARS, max_size=6),
              st.sampled_from(BREAKS_AND_SYNTAX), st.sampled_from(SMUGGLED)))
EXAMPLES = 200


@contextlib.contextmanager
def _staged_tree() -> Iterator[Path]:
    """A fresh tree per example (hypothesis runs many inside one test)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@pytest.mark.parametrize("kind", list(STORES))
def test_every_value_round_trips_exactly_or_is_refused_in_every_store(
        kind: str, linux_host: HostFacts, reliability: Reliability) -> None:
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(name=st.sampled_from(sorted(settings.SETTINGS)), value=VALUES)
    def round_trip(name: str, value: str) -> None:
        reliability.tried()
        with _staged_tree() as root:
            staged = STORES[kind](root, linux_host)
            before, before_lines = staged.snapshot(), staged.lines()
            env_before = staged.store.read()
            try:
                staged.store.set(name, value)
            except UsageError as refused:
                assert isinstance(refused, SettingError) or not value  # Windows: no empty value
                assert staged.snapshot() == before
                return
            assert staged.reopen().read() == {**env_before, name: value}
            gained = collections.Counter(staged.lines()) - collections.Counter(before_lines)
            lost = collections.Counter(before_lines) - collections.Counter(staged.lines())
            assert sum(gained.values()) == 1 and not lost, (gained, lost)
            assert name in next(iter(gained))

    round_trip()


@pytest.mark.parametrize("kind", list(STORES))
def test_every_store_keeps_ordinary_values_with_syntax_characters(
        kind: str, linux_host: HostFacts, reliability: Reliability) -> None:
    """The rule refuses line breaks and control characters, not the text people write."""
    for value in ('a "quoted" word', "C:\\Program Files\\x", "50% %USERPROFILE% %%", "it's",
                  "$HOME ${X} `id`", "; # [Service]", "\u00e9\u4e2d\U0001f600",
                  " lead and trail ", "=", "<string>&amp;</string>"):
        reliability.tried()
        with _staged_tree() as root:
            staged = STORES[kind](root, linux_host)
            staged.store.set("OLLAMA_EDITOR", value)
            assert staged.reopen().read()["OLLAMA_EDITOR"] == value


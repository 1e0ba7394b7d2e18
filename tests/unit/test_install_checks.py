"""Install pre-checks, the manifest, and the service user's access checks (staged files only;
the real useradd runs in tests/integration/test_install_root.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ollamactl import __version__
from ollamactl.context import Context
from ollamactl.errors import OllamactlError, PrivilegeError
from ollamactl.host import HostFacts
from ollamactl.install import InstallOptions, InstallReport, models_dir, users
from ollamactl.install.manifest import Manifest
from ollamactl.service.platforms import for_host, install
from ollamactl.system import RecordingRunner
from tests.loopback import VersionStub, serving


def test_manifest_round_trip_and_merge_keeps_first_origin() -> None:
    record = Manifest(backend="staged")
    record.existed_path("/etc/systemd/system/ollama.service.d")
    record.created_path("/usr/share/ollama")
    record.created_path("/usr/share/ollama")
    record.created_path("/etc/systemd/system/ollama.service.d")
    record.created_membership("alice", "ollama")
    again = Manifest.from_json(record.to_json())
    assert again == record
    assert again.created_paths == ["/usr/share/ollama"]
    assert again.owns("/usr/share/ollama")
    assert not again.owns("/etc/systemd/system/ollama.service.d")


def test_damaged_manifest_is_a_clear_error(ctx: Context) -> None:
    path = for_host(ctx).manifest_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(OllamactlError, match="damaged"):
        for_host(ctx).load_manifest()


def test_install_needs_root(linux_host: HostFacts, staging_root: Path) -> None:
    host = HostFacts(**{**linux_host.__dict__, "is_root": False})
    runner = RecordingRunner()
    with pytest.raises(PrivilegeError):
        install(Context(host=host, runner=runner, root=staging_root), InstallOptions())
    assert runner.calls == [] and list(staging_root.iterdir()) == []


def test_real_ollama_binary_is_not_clobbered(ctx: Context, recorder: RecordingRunner) -> None:
    binary = ctx.path("/usr/local/bin/ollama")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    with pytest.raises(OllamactlError, match="real Ollama"):
        install(ctx, InstallOptions())
    assert recorder.calls == []


def _staged_accounts(root: Path) -> users.Account:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                     "ollama:x:64001:64001::/usr/share/ollama:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:ollama\nollama:x:64001:\n")
    return users.Account("ollama", 64001, 64001, "/usr/share/ollama", "/bin/false", (44,))


def test_accounts_are_read_from_the_staged_files(ctx: Context) -> None:
    _staged_accounts(ctx.root)
    account = users.read_users(ctx)["ollama"]
    assert (account.uid, account.gid, account.home, account.groups) == (
        64001, 64001, "/usr/share/ollama", (44,))
    assert set(users.read_groups(ctx)) == {"root", "video", "ollama"}


def test_models_dir_problems_and_fixes(ctx: Context, recorder: RecordingRunner) -> None:
    account = _staged_accounts(ctx.root)
    private = ctx.path("/srv/private")
    private.mkdir(parents=True)
    os.chmod(private, 0o700)
    problems = models_dir.check(ctx, "/srv/private/models", account)
    assert [p.message for p in problems] == [
        f"ollama cannot enter {private}", f"{private / 'models'} does not exist"]
    recorder.on("chmod")
    recorder.on("setfacl")
    for problem in problems:
        problem.apply()
    assert recorder.argvs[0][-1] == str(private)
    made = private / "models"
    assert made.is_dir() and (made.stat().st_uid, made.stat().st_gid) == (64001, 64001)
    root_owned = ctx.path("/srv/shared")
    root_owned.mkdir()
    (problem,) = models_dir.check(ctx, "/srv/shared", account)
    assert problem.message == f"ollama cannot write {root_owned}"
    problem.apply()
    assert root_owned.stat().st_uid == 64001
    assert models_dir.check(ctx, "/srv/shared", account) == []


@pytest.mark.parametrize(("answer", "shown", "noted"), [
    ({"version": "0.33.0", "ollamactl": __version__},
     f"ollamactl {__version__}, Ollama API 0.33.0", False),
    ({"version": "0.33.0", "ollamactl": "0.0.1"}, "ollamactl 0.0.1, Ollama API 0.33.0", True),
    ({"version": "0.12.0"}, "Ollama 0.12.0", True),       # a real Ollama kept the port
])
def test_install_names_the_server_that_answers_and_notes_a_foreign_one(
        answer: dict[str, str], shown: str, noted: bool) -> None:
    handler = type("Handler", (VersionStub,), {"body": json.dumps(answer).encode()})
    with serving(handler) as port:
        url = f"http://127.0.0.1:{port}"
        report = InstallReport(backend="watchdog", update=True)
        report.await_server(url, timeout_s=5)
    assert (report.url, report.version) == (url, shown)
    if noted:
        assert report.notes == [f"the server at {url} reports {shown}, not ollamactl "
                                f"{__version__}: another server holds the port or an old one "
                                "is still running (`ollamactl restart`)"]
    else:
        assert report.notes == []

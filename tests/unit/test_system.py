"""The command/file seam: real runs, recording, dry-run, atomic writes with backups."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from ollamactl.errors import CommandFailed, OllamactlError, PrivilegeError
from ollamactl.system import (
    PlanRunner,
    RecordingRunner,
    SystemRunner,
    UnexpectedCommand,
    atomic_write,
    cmd,
)


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under root with its mode and (for files) content."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mode, path.read_bytes() if path.is_file()
                                              else None)
    return out


def test_system_runner_runs_argv_and_captures_output() -> None:
    runner = SystemRunner()
    result = runner.run(cmd(sys.executable, "-c", "import sys; print('out'); "
                            "print('err', file=sys.stderr)", why="probe", mutates=False))
    assert result.ok and result.stdout == "out\n" and result.stderr == "err\n"
    assert runner.plan == []  # read-only probes are not changes


def test_system_runner_env_overrides_and_deletions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMACTL_TEST_DROP", "x")
    result = SystemRunner().run(cmd(
        sys.executable, "-c",
        "import os; print(os.environ.get('A'), os.environ.get('OLLAMACTL_TEST_DROP'))",
        env={"A": "1", "OLLAMACTL_TEST_DROP": None}, mutates=False))
    assert result.stdout.strip() == "1 None"


def test_failed_command_raises_with_argv_status_and_stderr_tail() -> None:
    with pytest.raises(CommandFailed) as info:
        SystemRunner().run(cmd(sys.executable, "-c",
                               "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"))
    assert info.value.returncode == 3
    assert info.value.argv[0] == sys.executable
    assert "status 3" in str(info.value) and "boom" in str(info.value)


def test_unchecked_failure_returns_result() -> None:
    result = SystemRunner().run(cmd(sys.executable, "-c", "raise SystemExit(4)", check=False))
    assert result.returncode == 4 and not result.ok


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(CommandFailed, match="command not found") as info:
        SystemRunner().run(cmd("ollamactl-no-such-program-xyz"))
    assert info.value.returncode == 127


def test_timeout_is_a_clear_error() -> None:
    with pytest.raises(CommandFailed, match="timed out"):
        SystemRunner().run(cmd(sys.executable, "-c", "import time; time.sleep(5)",
                               timeout_s=0.2))


def test_recording_runner_scripts_and_records_in_order() -> None:
    rec = RecordingRunner()
    rec.on("systemctl", "is-active", returncode=3, stdout="inactive\n")
    rec.on("systemctl")
    assert rec.run(cmd("systemctl", "is-active", "ollama", mutates=False,
                       check=False)).stdout == "inactive\n"
    rec.run(cmd("systemctl", "daemon-reload", why="load unit"))
    rec.run(cmd("systemctl", "restart", "ollama"))
    assert rec.argvs == [("systemctl", "is-active", "ollama"), ("systemctl", "daemon-reload"),
                         ("systemctl", "restart", "ollama")]
    assert [s.target for s in rec.plan] == ["systemctl daemon-reload", "systemctl restart ollama"]


def test_recording_runner_refuses_unscripted_commands() -> None:
    with pytest.raises(UnexpectedCommand, match="useradd"):
        RecordingRunner().run(cmd("useradd", "ollama"))


def test_recording_runner_limited_answers() -> None:
    rec = RecordingRunner().on("probe", returncode=1, times=1).on("probe")
    assert rec.run(cmd("probe", check=False)).returncode == 1
    assert rec.run(cmd("probe", check=False)).returncode == 0


def test_dry_run_changes_nothing_but_plans_everything(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "existing.conf").write_text("old\n")
    (tree / "var").mkdir()
    (tree / "var" / "gone").write_text("x")
    before = snapshot(tree)

    probe = RecordingRunner().on("id", "-u", stdout="0\n")
    plan = PlanRunner(probe_runner=probe)
    assert plan.run(cmd("id", "-u", mutates=False)).stdout == "0\n"   # probes still run
    plan.run(cmd("useradd", "--system", "ollama", why="service user"))
    plan.write_file(tree / "etc" / "existing.conf", "new\n", why="config")
    plan.write_file(tree / "etc" / "new.conf", "x\n", mode=0o600)
    plan.make_dir(tree / "srv" / "models", why="models")
    plan.remove(tree / "var" / "gone", why="cleanup")
    plan.chown(tree / "etc" / "existing.conf", (12345, 12345))

    assert snapshot(tree) == before
    assert probe.argvs == [("id", "-u")]            # the mutating command never ran
    rendered = plan.render_plan().splitlines()
    assert rendered[0].startswith("would run    useradd --system ollama")
    assert rendered[0].endswith("# service user")
    assert [s.action for s in plan.plan] == ["run", "write", "write", "mkdir", "remove", "chown"]


def test_write_file_is_atomic_keeps_backup_and_skips_unchanged(tmp_path: Path) -> None:
    runner = RecordingRunner()
    target = tmp_path / "etc" / "unit.service"
    assert runner.write_file(target, "one\n", mode=0o640)
    assert target.read_text() == "one\n" and (target.stat().st_mode & 0o777) == 0o640
    assert not (tmp_path / "etc" / "unit.service.bak").exists()
    assert runner.write_file(target, "two\n")
    assert target.read_text() == "two\n"
    assert (tmp_path / "etc" / "unit.service.bak").read_text() == "one\n"
    assert not runner.write_file(target, "two\n")     # unchanged: no write, no plan step
    assert len([s for s in runner.plan if s.action == "write"]) == 2
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_write_leaves_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    target = tmp_path / "override.conf"
    target.write_text("keep me\n")

    real_replace = os.replace

    def crash_on_target(src: str, dst: str | Path) -> None:
        if Path(dst) == target:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_target)
    with pytest.raises(OllamactlError, match="no space left on device"):
        atomic_write(target, b"new content\n")
    assert target.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["override.conf", "override.conf.bak"]


def test_permission_denied_becomes_privilege_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)   # the OS boundary: a write is refused
    locked = tmp_path / "ollama.service"
    with pytest.raises(PrivilegeError) as info:
        SystemRunner().write_file(locked, "x")
    assert str(info.value) == f"cannot change {locked}: permission denied"
    assert not locked.exists()
    assert info.value.hint is not None and "sudo" in info.value.hint


def test_remove_and_make_dir_report_changes(tmp_path: Path) -> None:
    runner = RecordingRunner()
    assert runner.make_dir(tmp_path / "a" / "b", mode=0o750)
    assert (tmp_path / "a" / "b").is_dir()
    assert not runner.make_dir(tmp_path / "a" / "b")
    assert runner.remove(tmp_path / "a", recursive=True)
    assert not (tmp_path / "a").exists()
    assert not runner.remove(tmp_path / "a")

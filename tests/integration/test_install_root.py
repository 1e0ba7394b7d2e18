"""`ollamactl install/uninstall --root TMP` as root with the real useradd/groupadd/systemctl and
systemd-analyze, compared as trees. Nothing outside the staging root is touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tree import diff, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd --root)"),
              pytest.mark.skipif(shutil.which("useradd") is None or shutil.which(
                  "systemd-analyze") is None, reason="needs the shadow tools and systemd")]

ETC_FILES = ("passwd", "group", "shadow", "gshadow", "login.defs", "passwd-", "group-",
             "shadow-", "gshadow-")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A staging root with this machine's account files and one admin user, alice."""
    staged = tmp_path / "root"
    (staged / "etc").mkdir(parents=True)
    for name in ETC_FILES:
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), staged / "etc" / name)
    subprocess.run(["useradd", "--root", str(staged), "--no-create-home", "alice"], check=True,
                   capture_output=True)
    return staged


def ollamactl(root: Path, *args: str, sudo_user: str = "alice") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SUDO_USER": sudo_user}
    env.pop("OLLAMACTL_STATE_DIR", None)
    return subprocess.run([sys.executable, "-m", "ollamactl", *args, "--root", str(root)],
                          capture_output=True, text=True, env=env, timeout=300)


def entry(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return []


def test_install_second_install_and_uninstall(root: Path) -> None:
    before = snapshot(root)
    first = ollamactl(root, "install", "--yes")
    assert first.returncode == 0, first.stderr
    user = entry(root, "passwd", "ollama")
    group = entry(root, "group", "ollama")
    assert user[5:] == ["/usr/share/ollama", "/bin/false"] and int(user[2]) < 1000
    assert user[3] == group[2] and "alice" in group[3].split(",")
    video = entry(root, "group", "video")
    if video:
        assert "ollama" in video[3].split(",")
    models = root / "usr/share/ollama/.ollama/models"
    assert (models.stat().st_uid, models.stat().st_gid) == (int(user[2]), int(group[2]))
    unit = root / "etc/systemd/system/ollama.service"
    text = unit.read_text()
    manifest = json.loads((root / "var/lib/ollamactl/install-manifest.json").read_text())
    python = manifest["exec_argv"][0]
    assert f"ExecStart={python} -I -m ollamactl serve" in text
    assert (root / "etc/systemd/system/default.target.wants/ollama.service").is_symlink()
    _verify(root, unit, python)
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                              capture_output=True, text=True)
    score = re.search(r"Overall exposure level for ollama.service: ([0-9.]+)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score.group(1)) <= 2.0

    installed = snapshot(root)
    second = ollamactl(root, "install", "--yes")
    assert second.returncode == 0, second.stderr
    assert diff(installed, snapshot(root)) == []
    assert "nothing to change" in second.stdout

    gone = ollamactl(root, "uninstall", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert diff(before, snapshot(root)) == []


def _verify(root: Path, unit: Path, python: str) -> None:
    """`systemd-analyze verify` on the staged unit. systemd 252 checks ExecStart= on the host
    even with --root; a staged interpreter is checked in the staging root instead."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system",
                    dirs_exist_ok=True, symlinks=True)
    try:
        result = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                                 "/etc/systemd/system/ollama.service"],
                                capture_output=True, text=True)
    finally:
        shutil.rmtree(root / "usr/lib/systemd")
        if not any((root / "usr/lib").iterdir()):
            (root / "usr/lib").rmdir()
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    staged_exec = f"ollama.service: Command {python} is not executable: No such file or directory"
    if staged_exec in problems and os.access(root / python.lstrip("/"), os.X_OK):
        problems.remove(staged_exec)
    assert problems == [], problems


def test_dry_run_changes_nothing(root: Path) -> None:
    before = snapshot(root)
    result = ollamactl(root, "install", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would run    useradd --root" in result.stdout
    assert "would write" in result.stdout and "ollama.service" in result.stdout
    assert diff(before, snapshot(root)) == []


def test_uninstall_keeps_models_unless_purge(root: Path) -> None:
    before = snapshot(root)
    assert ollamactl(root, "install", "--yes").returncode == 0
    blob = root / "usr/share/ollama/.ollama/models/blobs/sha256-00"
    blob.parent.mkdir()
    blob.write_bytes(b"x" * 4096)
    owner = root / "usr/share/ollama/.ollama/models"
    for path in (blob.parent, blob):            # as the server would have written them
        os.chown(path, owner.stat().st_uid, owner.stat().st_gid)
    kept = ollamactl(root, "uninstall", "--yes")
    assert kept.returncode == 0, kept.stderr
    assert "keep the models" in kept.stdout and blob.exists()
    assert entry(root, "passwd", "ollama") == []
    assert not (root / "etc/systemd/system/ollama.service").exists()
    assert [p for p in diff(before, snapshot(root)) if "usr" not in p] == []

    # Another system user takes the old uid: the next ollama user gets a new one, and the kept
    # models (left to a uid that is no longer ollama) are handed over to it.
    old_uid = blob.parent.stat().st_uid
    subprocess.run(["useradd", "--root", str(root), "--system", "--uid", str(old_uid),
                    "--no-create-home", "squatter"], check=True, capture_output=True)
    again = ollamactl(root, "install", "--yes")
    assert again.returncode == 0, again.stderr
    uid, gid = (int(n) for n in entry(root, "passwd", "ollama")[2:4])
    assert uid != old_uid
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (blob.parent, blob)} == {(uid, gid)}
    assert "models kept from an earlier install" in again.stdout


def test_purge_removes_models(root: Path) -> None:
    before = snapshot(root)
    assert ollamactl(root, "install", "--yes").returncode == 0
    blob = root / "usr/share/ollama/.ollama/models/blobs/sha256-00"
    blob.parent.mkdir()
    blob.write_bytes(b"x" * 4096)
    purged = ollamactl(root, "uninstall", "--purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "delete the models" in purged.stdout and "4.1 KB" in purged.stdout
    assert not blob.exists()
    leftover = diff(before, snapshot(root))
    assert leftover == [], leftover


def test_foreign_unit_is_not_clobbered_without_force(root: Path) -> None:
    unit = root / "etc/systemd/system/ollama.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/local/bin/ollama serve\n")
    before = snapshot(root)
    refused = ollamactl(root, "install", "--yes")
    assert refused.returncode == 1 and "belongs to another Ollama" in refused.stderr
    assert diff(before, snapshot(root)) == []
    forced = ollamactl(root, "install", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Managed by ollamactl" in unit.read_text()
    assert ollamactl(root, "uninstall", "--yes").returncode == 0
    assert unit.read_text() == "[Service]\nExecStart=/usr/local/bin/ollama serve\n"

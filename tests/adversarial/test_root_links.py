"""Root through the service user's links: the ``ollama`` user owns its home, so it can replace
``~/.ollama`` (or anything under it) with a link. ``install`` (an update), ``uninstall --purge``
and ``doctor --fix`` run as root; each must refuse, naming the link, and change nothing: not
the directory the link points to (here a ``models`` directory inside a Python package, which
root would later run), not the staged tree.

The CLI runs as root on a staged ``--root`` with the real ``useradd --root``, as in
tests/integration/test_install_root.py; nothing outside the tmp tree is touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.doctor.finding import Fix
from ollamactl.doctor.fixes import apply_fixes, safe_fixes
from ollamactl.system import RecordingRunner
from tests.adversarial.conftest import Reliability
from tests.doctor_helpers import INSTALLED_UNIT, make_probe, one
from tests.integration.test_install_root import entry, ollamactl, root
from tests.tree import diff, snapshot

__all__ = ["root"]  # the staging-root fixture, reused

pytestmark = [pytest.mark.integration, pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd --root)"),
              pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd")]

HOME = "usr/share/ollama"
MODELS = f"{HOME}/.ollama/models"


def _victim(tmp_path: Path) -> Path:
    """A root-owned package outside the staging root with a ``models`` directory in it."""
    models = tmp_path / "site-packages" / "pkg" / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text("# root runs this\n")
    return models


def _service_ids(staged: Path) -> tuple[int, int]:
    fields = entry(staged, "passwd", "ollama")
    return int(fields[2]), int(fields[3])


def _plant(staged: Path, where: str, target: Path) -> None:
    """As the service user would: put a link at ``where`` (its own) in place of what is there."""
    path = staged / where
    shutil.rmtree(path)
    path.symlink_to(target)
    os.lchown(path, *_service_ids(staged))


def _refused(result: subprocess.CompletedProcess[str], link: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("ollamactl: error: refusing ") and \
        f"{link} is a symbolic link" in first, result.stderr
    assert "which ollamactl does not follow" in first


@pytest.mark.parametrize(("where", "points_at"), [
    (f"{HOME}/.ollama", "pkg"),              # a parent of the models directory
    (MODELS, "models"),                      # the models directory itself
])
def test_update_refuses_a_link_on_the_models_path(root: Path, tmp_path: Path, where: str,
                                                  points_at: str,
                                                  reliability: Reliability) -> None:
    assert ollamactl(root, "install", "--yes").returncode == 0
    victim = _victim(tmp_path)
    _plant(root, where, victim if points_at == "models" else victim.parent)
    before, victim_before = snapshot(root), snapshot(victim.parent)
    for args in (("install", "--yes"), ("install", "--dry-run")):
        reliability.tried()
        _refused(ollamactl(root, *args), str(root / where))
        assert diff(victim_before, snapshot(victim.parent)) == []
        assert diff(before, snapshot(root)) == []
    assert (victim.stat().st_uid, victim.stat().st_gid) == (0, 0)


@pytest.mark.parametrize("purge", [True, False])
def test_uninstall_deletes_nothing_through_the_link(root: Path, tmp_path: Path, purge: bool,
                                                    reliability: Reliability) -> None:
    assert ollamactl(root, "install", "--yes").returncode == 0
    victim = _victim(tmp_path)
    _plant(root, f"{HOME}/.ollama", victim.parent)
    before, victim_before = snapshot(root), snapshot(victim.parent)
    reliability.tried()
    result = ollamactl(root, "uninstall", "--yes", *(["--purge"] if purge else []))
    _refused(result, str(root / HOME / ".ollama"))
    assert (victim / "__init__.py").read_text() == "# root runs this\n"
    assert diff(victim_before, snapshot(victim.parent)) == []
    assert diff(before, snapshot(root)) == []
    # Once the link is gone, uninstall goes ahead and removes only what install created.
    (root / HOME / ".ollama").unlink()
    assert ollamactl(root, "uninstall", "--yes", "--purge").returncode == 0
    assert entry(root, "passwd", "ollama") == []
    assert diff(victim_before, snapshot(victim.parent)) == []


def test_update_never_leaves_the_models_tree(root: Path, tmp_path: Path,
                                             reliability: Reliability) -> None:
    """Kept models of another uid are handed to the service user: a link inside the tree is
    changed itself (never its target), and a hard link to a file outside is refused before
    anything changes."""
    assert ollamactl(root, "install", "--yes").returncode == 0
    victim = _victim(tmp_path)
    models = root / MODELS
    (models / "blobs").mkdir()
    (models / "blobs" / "sha256-00").write_bytes(b"x" * 64)
    (models / "escape").symlink_to(victim)
    for path in (models, models / "blobs", models / "blobs" / "sha256-00"):
        os.chown(path, 4242, 4242)                  # left by an earlier install's user
    os.lchown(models / "escape", 4242, 4242)
    reliability.tried()
    assert ollamactl(root, "install", "--yes").returncode == 0
    ids = _service_ids(root)
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in (
        models, models / "blobs", models / "blobs" / "sha256-00", models / "escape")} == {ids}
    assert (victim.stat().st_uid, (victim / "__init__.py").stat().st_uid) == (0, 0)

    os.link(victim / "__init__.py", models / "blobs" / "sha256-11")
    os.chown(models / "blobs" / "sha256-00", 4242, 4242)
    before = snapshot(root)
    reliability.tried()
    result = ollamactl(root, "install", "--yes")
    assert result.returncode == 1
    assert "sha256-11: it has 2 hard links, and another may be a file outside this tree" in \
        result.stderr.splitlines()[0]
    assert (victim / "__init__.py").stat().st_uid == 0
    assert diff(before, snapshot(root)) == []


def test_doctor_fix_never_chowns_through_the_link(ctx: Context, recorder: RecordingRunner,
                                                  free_port: int, tmp_path: Path,
                                                  reliability: Reliability) -> None:
    """doctor learns the service user from systemd, which this machine does not run: the
    probe answers ``systemctl show`` from a script (as the doctor unit tests do); the files
    are real. The check names the link and offers no safe fix; the chown fix it offered before
    is refused by ``--fix`` itself."""
    nobody = pwd.getpwnam("nobody")
    (ctx.root / "etc").mkdir()
    for name in ("passwd", "group"):
        shutil.copy2(f"/etc/{name}", ctx.root / "etc" / name)
    home = ctx.path(f"/{HOME}")
    home.mkdir(parents=True)
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    victim = _victim(tmp_path)
    (home / ".ollama").symlink_to(victim.parent)
    os.lchown(home / ".ollama", nobody.pw_uid, nobody.pw_gid)
    unit = {**INSTALLED_UNIT, "User": "nobody", "Environment": f"OLLAMA_MODELS=/{MODELS}"}
    reliability.tried()
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "models.dir")
    assert finding.status == "fail"
    assert finding.summary.startswith(f"refusing {ctx.path('/' + MODELS)}: {home}/.ollama is "
                                      "a symbolic link")
    assert safe_fixes([finding]) == []
    offered = Fix("give it to the service user", (("chown", "-R", "nobody:", f"/{MODELS}"),),
                  safe=True)
    reliability.tried()
    (applied,) = apply_fixes(ctx, [(finding, offered)])
    assert not applied.ok and applied.error.startswith("refusing ")
    assert (victim.stat().st_uid, (victim / "__init__.py").stat().st_uid) == (0, 0)
    assert all(argv[0] != "chown" for argv in recorder.argvs)

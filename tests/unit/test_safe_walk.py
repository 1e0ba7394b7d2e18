"""The link-safe file operations of ollamactl.system: paths walked from ``/`` one name at a time,
links followed only where nobody but root (or this user) could have placed them, changes made
through fds; the runner's make_dir/chown/remove use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ollamactl.system import PlanRunner, RecordingRunner, UnsafePath, check_links, open_dir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another uid)")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``real/dir/file``, a ``shared`` directory anyone may write holding a link to ``real``,
    and ``outside/keep`` that no operation may reach."""
    (tmp_path / "real" / "dir").mkdir(parents=True)
    (tmp_path / "real" / "dir" / "file").write_text("mine\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("keep\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "link").symlink_to(tmp_path / "outside")
    return tmp_path


def test_links_only_root_or_this_user_could_place_are_followed(tree: Path) -> None:
    (tree / "rel").symlink_to("real/../real/dir")
    (tree / "abs").symlink_to(tree / "real")
    for path in (tree / "rel" / "file", tree / "abs" / "dir", tree / "real" / "dir"):
        check_links(path)
    fd = open_dir(tree / "rel")
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(tree / "real" / "dir"))
    finally:
        os.close(fd)


def test_a_link_someone_else_could_place_is_refused_anywhere_on_the_path(tree: Path) -> None:
    link = tree / "shared" / "link"
    for path in (link, link / "keep", link / "missing" / "deeper"):
        with pytest.raises(UnsafePath) as refused:
            check_links(path)
        assert str(refused.value) == (f"refusing {path}: {link} is a symbolic link "
                                      f"({tree / 'shared'} is writable by others), which "
                                      "ollamactl does not follow")
        assert refused.value.hint is not None and repr(str(tree / "outside")) in \
            refused.value.hint
    check_links(tree / "missing" / "deeper")         # nothing there yet: nothing to refuse


@as_root
def test_a_link_in_a_directory_of_another_uid_is_refused(tree: Path) -> None:
    home = tree / "home"
    home.mkdir()
    os.chown(home, 4242, 4242)
    (home / ".ollama").symlink_to(tree / "outside")
    with pytest.raises(UnsafePath, match=rf"{home} belongs to uid 4242\)"):
        check_links(home / ".ollama" / "models")


def test_a_link_loop_is_refused(tree: Path) -> None:
    (tree / "loop").symlink_to("loop")
    with pytest.raises(UnsafePath, match="more than 32 links on the way"):
        check_links(tree / "loop" / "x")


def test_make_dir_never_creates_through_a_refused_link(tree: Path) -> None:
    for runner in (RecordingRunner(), PlanRunner(probe_runner=RecordingRunner())):
        with pytest.raises(UnsafePath):
            runner.make_dir(tree / "shared" / "link" / "models")
        assert runner.plan == []
    assert sorted(p.name for p in (tree / "outside").iterdir()) == ["keep"]
    runner = RecordingRunner()
    assert runner.make_dir(tree / "real" / "a" / "b", mode=0o750)
    assert (tree / "real" / "a" / "b").stat().st_mode & 0o777 == 0o750
    assert not runner.make_dir(tree / "real" / "a" / "b")


def test_remove_acts_on_the_entry_never_through_a_link(tree: Path) -> None:
    runner = RecordingRunner()
    with pytest.raises(UnsafePath):
        runner.remove(tree / "shared" / "link" / "keep")
    (tree / "real" / "escape").symlink_to(tree / "outside")
    (tree / "real" / "dir" / "inner").symlink_to(tree / "outside" / "keep")
    assert runner.remove(tree / "real" / "escape")          # the link, not its target
    assert runner.remove(tree / "real", recursive=True)
    assert not (tree / "real").exists()
    assert (tree / "outside" / "keep").read_text() == "keep\n"
    assert not runner.remove(tree / "real")


@as_root
def test_chown_walks_the_tree_by_fds_and_changes_links_themselves(tree: Path) -> None:
    real = tree / "real"
    (real / "dir" / "escape").symlink_to(tree / "outside")
    runner = RecordingRunner()
    assert runner.chown(real, (4242, 4343), recursive=True)
    inside = [real, real / "dir", real / "dir" / "file", real / "dir" / "escape"]
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in inside} == {(4242, 4343)}
    outside = [tree / "outside", tree / "outside" / "keep"]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in outside} == {(0, 0)}
    assert not runner.chown(real, (4242, 4343), recursive=True)
    assert [s.action for s in runner.plan] == ["chown"]
    with pytest.raises(UnsafePath):
        runner.chown(tree / "shared" / "link", (4242, 4343), recursive=True)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in outside} == {(0, 0)}


@as_root
def test_chown_refuses_a_hard_link_before_changing_anything(tree: Path) -> None:
    real = tree / "real"
    os.link(tree / "outside" / "keep", real / "dir" / "blob")
    with pytest.raises(UnsafePath, match="blob: it has 2 hard links"):
        RecordingRunner().chown(real, (4242, 4343), recursive=True)
    assert {p.stat().st_uid for p in (real, real / "dir", real / "dir" / "file",
                                      tree / "outside" / "keep")} == {0}

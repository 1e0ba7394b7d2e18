"""The systemd drop-in EnvStore and `env set/unset` on a staged override.conf with foreign lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.errors import SettingError, UsageError
from ollamactl.service.systemd import (
    DROPIN_PATH,
    UNIT_PATH,
    DropIn,
    DropInEnvStore,
    format_assignment,
    split_words,
)
from tests.conftest import Cli, CliRun

FOREIGN = """[Unit]
Description=mine

[Service]
# set by hand with systemctl edit
Environment="CUDA_VISIBLE_DEVICES=0" "OLLAMA_DEBUG=1"
LimitNOFILE=65536
Environment=OLLAMA_ORIGINS=https://a.example
"""


def env(cli: Cli, root: Path, *args: str) -> CliRun:
    """``ollamactl --root ROOT env ARGS``."""
    return cli("--root", str(root), "env", *args)


def test_split_words_follows_systemd_quoting() -> None:
    assert split_words('"A=1 2" B=3 \'C=x y\' D=50%%') == ["A=1 2", "B=3", "C=x y", "D=50%"]
    assert split_words("") == []


def test_environment_reads_every_assignment_and_reset() -> None:
    dropin = DropIn.parse(FOREIGN)
    assert dropin.environment() == {"CUDA_VISIBLE_DEVICES": "0", "OLLAMA_DEBUG": "1",
                                    "OLLAMA_ORIGINS": "https://a.example"}
    reset = DropIn.parse(FOREIGN + "Environment=\nEnvironment=X=1\n")
    assert reset.environment() == {"X": "1"}


@pytest.fixture
def staged(ctx: Context) -> DropInEnvStore:
    unit = ctx.path(UNIT_PATH)
    unit.parent.mkdir(parents=True)
    unit.write_text("# unit\n")
    path = ctx.path(DROPIN_PATH)
    path.parent.mkdir(parents=True)
    path.write_text(FOREIGN)
    return DropInEnvStore(ctx)


def test_set_unset_round_trip_keeps_foreign_lines(staged: DropInEnvStore) -> None:
    assert staged.set("OLLAMA_HOST", "0.0.0.0:11500")
    assert not staged.set("OLLAMA_HOST", "0.0.0.0:11500")
    text = staged.path.read_text()
    assert 'Environment="OLLAMA_HOST=0.0.0.0:11500"' in text
    assert staged.path.with_name("override.conf.bak").read_text() == FOREIGN
    assert staged.unset("OLLAMA_HOST")
    assert not staged.unset("OLLAMA_HOST")
    assert staged.path.read_text() == FOREIGN


def test_set_name_in_foreign_multi_assignment_only_takes_that_name_out(
        staged: DropInEnvStore) -> None:
    staged.set("OLLAMA_DEBUG", "2")
    text = staged.path.read_text()
    assert 'Environment="OLLAMA_DEBUG=2"' in text
    assert "CUDA_VISIBLE_DEVICES=0" in text and "LimitNOFILE=65536" in text
    assert "# set by hand with systemctl edit" in text and "Description=mine" in text
    assert staged.read()["OLLAMA_DEBUG"] == "2"
    staged.unset("OLLAMA_DEBUG")
    assert "OLLAMA_DEBUG" not in staged.read()
    assert staged.read()["CUDA_VISIBLE_DEVICES"] == "0"


def test_grant_path_under_home_uses_bind_paths(staged: DropInEnvStore) -> None:
    staged.grant_path("/home/alice/models")
    staged.grant_path("/srv/models")
    dropin = staged.load()
    assert dropin.values("BindPaths") == ["/home/alice/models"]
    assert dropin.values("ProtectHome") == ["tmpfs"]
    assert dropin.values("ReadWritePaths") == ["/srv/models"]
    staged.revoke_path("/home/alice/models")
    staged.revoke_path("/srv/models")
    assert staged.path.read_text() == FOREIGN


def test_lines_split_at_newline_only_and_render_byte_for_byte() -> None:
    text = 'Environment="X=a\u2028b\x85c\x0cd\x1ce" Y=1\r\n[Service]\n'
    dropin = DropIn.parse("[Service]\n" + text)
    assert dropin.render() == "[Service]\n" + text
    assert dropin.environment() == {"X": "a\u2028b\x85c\x0cd\x1ce", "Y": "1"}


def test_taking_one_assignment_out_keeps_the_rest_of_the_line_byte_for_byte() -> None:
    line = "  Environment = A=1\t\"B=2 %%\"   'C=3'  "
    for name, left in (("B", "  Environment = A=1   'C=3'  "),
                       ("A", "  Environment = \"B=2 %%\"   'C=3'  "),
                       ("C", "  Environment = A=1\t\"B=2 %%\"  ")):
        dropin = DropIn.parse(f"[Service]\n{line}\n")
        dropin.set_env(name, None)
        assert dropin.render() == f"[Service]\n{left}\n"


def test_values_are_quoted_and_percent_doubled_and_line_ends_refused() -> None:
    assert format_assignment("X", 'a "b" \\ 50%h') == 'Environment="X=a \\"b\\" \\\\ 50%%h"'
    dropin = DropIn.parse("[Service]\n")
    dropin.set_env("X", 'a "b" \\ 50%h')
    assert dropin.environment() == {"X": 'a "b" \\ 50%h'}
    for value in ("a\rExecStartPre=+/bin/sh", "a\u2028b", "a\tb"):
        with pytest.raises(SettingError):
            format_assignment("X", value)


def test_granted_paths_are_one_word_with_percent_doubled(staged: DropInEnvStore) -> None:
    staged.grant_path("/srv/50%h")
    assert staged.load().values("ReadWritePaths") == ["/srv/50%%h"]
    staged.revoke_path("/srv/50%h")
    assert staged.path.read_text() == FOREIGN
    for bad in ("/srv/models /", "/home/a:/etc", "/srv/a\\", '/srv/"a', "/srv/a\rb"):
        with pytest.raises(UsageError, match="cannot let the service write"):
            staged.grant_path(bad)
    assert staged.path.read_text() == FOREIGN


def test_env_cli_round_trip_and_invalid_values_write_nothing(cli: Cli, staged: DropInEnvStore,
                                                           staging_root: Path) -> None:
    run = env(cli, staging_root, "set", "OLLAMA_KEEP_ALIVE", "10m")
    code, out = run.code, run.output
    assert code == 0, out
    run = env(cli, staging_root, "get", "OLLAMA_KEEP_ALIVE")
    code, out = run.code, run.output
    assert "OLLAMA_KEEP_ALIVE=10m" in out and str(staged.path) in out
    before = staged.path.read_bytes()
    for name, value in (("OLLAMA_KEEP_ALIVE", "forever-ish"), ("OLLAMA_HOST", "http://a b"),
                        ("OLLAMA_FLASH_ATTENTION", "yes-please"), ("OLLAMA_HOSTT", "x")):
        code = env(cli, staging_root, "set", name, value).code
        assert code == 2
        assert staged.path.read_bytes() == before
    code = env(cli, staging_root, "unset", "OLLAMA_KEEP_ALIVE").code
    assert code == 0
    assert staged.path.read_text() == FOREIGN


def test_env_set_without_installed_unit_is_refused(cli: Cli, staging_root: Path) -> None:
    code = env(cli, staging_root, "set", "OLLAMA_DEBUG", "1").code
    assert code == 1
    assert not (staging_root / DROPIN_PATH.lstrip("/")).exists()

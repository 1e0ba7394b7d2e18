"""The watchdog's env file, rotated log, log reading (-n, --since, -f) and --since parsing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ollamactl.cli.service_cmds import parse_since
from ollamactl.errors import UsageError
from ollamactl.service.base import LogQuery
from ollamactl.service.logfiles import LogFile, line_time, rotated_logs
from ollamactl.service.watchdog import EnvFileStore, RotatingLog


def test_env_file_keeps_foreign_lines(tmp_path: Path) -> None:
    path = tmp_path / "ollama.env"
    path.write_text("# mine\nexport HTTPS_PROXY=http://proxy:3128\nnot a setting\n")
    store = EnvFileStore(path)
    assert store.set("OLLAMA_HOST", "127.0.0.1:1234")
    assert not store.set("OLLAMA_HOST", "127.0.0.1:1234")
    assert store.read() == {"HTTPS_PROXY": "http://proxy:3128", "OLLAMA_HOST": "127.0.0.1:1234"}
    assert store.unset("OLLAMA_HOST") and not store.unset("OLLAMA_HOST")
    assert path.read_text() == "# mine\nexport HTTPS_PROXY=http://proxy:3128\nnot a setting\n"
    with pytest.raises(UsageError):
        store.set("OLLAMA_HOST", "a\nOLLAMA_DEBUG=1")


def test_env_file_values_are_the_rest_of_their_line_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ollama.env"
    foreign = b"# caf\xe9 in latin-1\nMINE=a\xe2\x80\xa8LD_PRELOAD=/x.so\n"
    path.write_bytes(foreign)
    store = EnvFileStore(path)
    for value in (" lead and trail ", "a=b # not a comment", '"quoted"', "50%"):
        assert store.set("OLLAMA_EDITOR", value)
        assert EnvFileStore(path).read() == {"MINE": "a\u2028LD_PRELOAD=/x.so",
                                             "OLLAMA_EDITOR": value}
    assert path.read_bytes().startswith(foreign)
    for value in ("vi\u2028LD_PRELOAD=/x.so", "vi\x85X=1", "vi\rX=1", "vi\tx"):
        with pytest.raises(UsageError):
            store.set("OLLAMA_EDITOR", value)
    assert store.unset("OLLAMA_EDITOR") and path.read_bytes() == foreign


def test_log_rotates_and_keeps_backups(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "ollama.log", max_bytes=200, backups=2)
    for i in range(30):
        log.write(f"line {i:02d}")
    files = rotated_logs(tmp_path / "ollama.log")
    assert [f.name for f in files] == ["ollama.log.2", "ollama.log.1", "ollama.log"]
    assert all(f.stat().st_size <= 200 for f in files)
    lines = [line for f in files for line in f.read_text().splitlines()]
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert numbers == sorted(numbers) and numbers[-1] == 29
    assert all(line_time(line) is not None for line in lines)


def _stamped(when: datetime, text: str) -> str:
    return f"{when.astimezone().isoformat(timespec='milliseconds')} {text}"


def test_read_lines_and_since_across_rotation(tmp_path: Path) -> None:
    old, new = datetime(2025, 1, 1, 10, 0), datetime(2025, 1, 1, 12, 0)
    (tmp_path / "ollama.log.1").write_text(_stamped(old, "old one") + "\n")
    (tmp_path / "ollama.log").write_text(
        _stamped(old, "old two") + "\n" + _stamped(new, "new one") + "\n  continuation\n"
        + _stamped(new, "new two") + "\n")
    source = LogFile(tmp_path / "ollama.log")
    every = list(source.read(LogQuery()))
    assert [line.split(" ", 1)[1] for line in every] == [
        "old one", "old two", "new one", " continuation", "new two"]
    assert list(source.read(LogQuery(lines=2))) == every[-2:]
    since = list(source.read(LogQuery(since=datetime(2025, 1, 1, 11, 0).timestamp())))
    assert since == every[2:]
    assert list(source.read(LogQuery(lines=0))) == []


def test_follow_yields_appended_lines(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "ollama.log")
    log.write("before")
    reader = LogFile(tmp_path / "ollama.log", poll_s=0.01).read(
        LogQuery(lines=1, follow=True))
    assert next(reader).endswith(" before")
    log.write("after")
    assert next(reader).endswith(" after")
    reader.close()


def test_parse_since() -> None:
    now = datetime(2025, 1, 31, 12, 0).timestamp()
    assert parse_since("10m", now=now) == now - 600
    assert parse_since("-1h30m", now=now) == now - 5400
    assert parse_since("@1700000000", now=now) == 1700000000
    assert parse_since("2025-01-31 11:00", now=now) == datetime(2025, 1, 31, 11, 0).timestamp()
    assert parse_since("today", now=now) == datetime(2025, 1, 31).timestamp()
    with pytest.raises(UsageError):
        parse_since("last tuesday", now=now)

"""`ollamactl logs` on macOS and Windows: server.log and its rotated copies, -n, --since, -f."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

from ollamactl.context import Context
from ollamactl.host import HostFacts
from ollamactl.service.base import LogQuery
from ollamactl.service.launchd import LaunchdLayout, LaunchdManager
from ollamactl.service.logfiles import line_time, rotated_logs
from ollamactl.system import RecordingRunner
from tests.platform_fakes import mac_account, mac_host


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_line_time_reads_the_stamps_servers_write() -> None:
    assert line_time("time=2025-01-31 12:00:00,250 level=INFO msg=x") == \
        stamp("2025-01-31 12:00:00.250")
    assert line_time('time=2025-01-31T12:00:00.000+01:00 level=INFO msg="server config"') == \
        datetime.fromisoformat("2025-01-31T12:00:00+01:00").timestamp()
    assert line_time("[GIN] 2025/01/31 - 12:00:05 | 200 | 1ms | 127.0.0.1 | GET \"/\"") == \
        stamp("2025-01-31 12:00:05")
    assert line_time("llama_model_loader: loaded meta data") is None


def test_rotated_copies_are_read_oldest_first(tmp_path: Path) -> None:
    for name in ("server.log", "server-1.log", "server-2.log", "server.log.3", "other-1.log"):
        (tmp_path / name).write_text(name)
    assert [p.name for p in rotated_logs(tmp_path / "server.log")] == [
        "server.log.3", "server-2.log", "server-1.log", "server.log"]


def test_logs_from_the_agent_log_with_lines_since_and_follow(tmp_path: Path,
                                                             linux_host: HostFacts) -> None:
    account = mac_account(tmp_path)
    layout = LaunchdLayout(account)
    log = Path(layout.log_path)
    log.parent.mkdir(parents=True)
    log.with_name("server-1.log").write_text(
        "time=2025-01-30 09:00:00,000 level=INFO msg=old\n")
    log.write_text("time=2025-01-31 12:00:00,000 level=INFO msg=start\n"
                   "ggml_metal_init: found device Apple M2\n"
                   "time=2025-01-31 12:05:00,000 level=INFO msg=ready\n")
    source = LaunchdManager(Context(host=mac_host(linux_host), runner=RecordingRunner()),
                            layout).log_source()
    assert list(source.read(LogQuery())) == [
        "time=2025-01-30 09:00:00,000 level=INFO msg=old",
        "time=2025-01-31 12:00:00,000 level=INFO msg=start",
        "ggml_metal_init: found device Apple M2",
        "time=2025-01-31 12:05:00,000 level=INFO msg=ready"]
    assert list(source.read(LogQuery(lines=1))) == [
        "time=2025-01-31 12:05:00,000 level=INFO msg=ready"]
    assert list(source.read(LogQuery(since=stamp("2025-01-31 11:00:00")))) == [
        "time=2025-01-31 12:00:00,000 level=INFO msg=start",
        "ggml_metal_init: found device Apple M2",
        "time=2025-01-31 12:05:00,000 level=INFO msg=ready"]

    source.poll_s = 0.01
    followed = source.read(LogQuery(lines=0, follow=True))

    def append() -> None:
        with log.open("a") as out:
            out.write("time=2025-01-31 12:06:00,000 level=INFO msg=new\n")

    timer = threading.Timer(0.05, append)
    timer.start()
    assert next(followed) == "time=2025-01-31 12:06:00,000 level=INFO msg=new"
    timer.join()

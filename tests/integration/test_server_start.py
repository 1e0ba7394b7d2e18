"""The server's start: a spare runner readies llama.cpp beside the first requests, the first
load takes it, later loads start their own, and a spare nobody took ends with the server."""

from __future__ import annotations

from pathlib import Path

from tests.integration.server_process import (
    SMOLLM2,
    Server,
    holds_a_model,
    runner_processes,
    serving,
    wait_for,
)


def spare_pids(server: Server) -> list[int]:
    """The spare runner that waits for the first load."""
    return [p.pid for p in runner_processes(server.pid, spare=True)
            if not holds_a_model(p)]


def runner_lines(server: Server) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "runner started" in line]


def test_the_first_load_takes_the_spare_and_the_next_starts_its_own(tmp_path: Path) -> None:
    with serving(tmp_path, {}) as server:
        wait_for(lambda: spare_pids(server), timeout_s=30)
        (spare,) = spare_pids(server)
        assert server.post("/api/embed", {"model": SMOLLM2, "input": "hi"}).status_code == 200
        (first,) = runner_lines(server)
        assert first.endswith("(the spare)") and f"pid={spare} " in first
        assert [p.pid for p in server.runners()] == [spare]   # no second spare appears
        server.unload_all()
        assert server.post("/api/embed", {"model": SMOLLM2, "input": "hi"}).status_code == 200
        second = runner_lines(server)[1]
        assert not second.endswith("(the spare)") and f"pid={spare} " not in second


def test_an_unused_spare_ends_with_the_server(tmp_path: Path) -> None:
    with serving(tmp_path, {}) as server:       # the fixture fails on any child left behind
        wait_for(lambda: spare_pids(server), timeout_s=30)
        (spare,) = spare_pids(server)
    assert not Path(f"/proc/{spare}").exists()

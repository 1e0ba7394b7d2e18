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


def test_the_model_loads_while_the_prompt_renders_and_a_failed_render_frees_the_slot(
        tmp_path: Path) -> None:
    """A templated request starts its model's load before its prompt is rendered (Ollama
    loads, then renders; here the two overlap): the load is logged before the render fails,
    and the one slot the failed request took is free for the next."""
    with serving(tmp_path, {"OLLAMA_NUM_PARALLEL": "1"}) as server:
        broken = server.post("/api/generate", {"model": SMOLLM2, "prompt": "hi",
                                               "template": "{{ .Prompt ", "stream": False})
        assert broken.status_code == 400 and "template" in broken.json()["error"]
        wait_for(lambda: "POST /api/generate status=400" in server.log.read_text())
        lines = server.log.read_text().splitlines()
        loading = next(i for i, line in enumerate(lines) if "msg=loading model=" in line)
        refused = next(i for i, line in enumerate(lines)
                       if "POST /api/generate status=400" in line)
        assert loading < refused
        fine = server.post("/api/generate", {"model": SMOLLM2, "prompt": "hi", "stream": False,
                                             "options": {"num_predict": 2}}, timeout=60)
        assert fine.status_code == 200 and fine.json()["done"] is True

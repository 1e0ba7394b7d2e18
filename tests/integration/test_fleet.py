"""`ollamactl fleet status` against two real servers (one with a loaded model) and a dead port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ollamactl import __version__
from ollamactl.runtime.http.management import OLLAMA_API_VERSION
from tests.integration.expose_servers import (
    Server,
    linked_store,
    ollamactl,
    shared_store,
)
from tests.integration.server_process import SMOLLM2, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    base = tmp_path_factory.mktemp("fleet")
    shared = shared_store(tmp_path_factory.getbasetemp())
    started: list[Server] = []
    try:
        for alias in ("fleet-a", "fleet-b"):
            started.append(Server(linked_store(shared, base / alias, alias),
                                  base / f"{alias}.log"))
        busy, idle = started
        loaded = requests.post(busy.url + "/api/generate", timeout=120,
                               json={"model": SMOLLM2, "keep_alive": "5m"})
        assert loaded.status_code == 200, loaded.text
        yield busy, idle
    finally:
        for server in started:
            server.stop()


def test_status_table_and_json(servers: tuple[Server, Server], tmp_path: Path) -> None:
    busy, idle = servers
    dead = f"127.0.0.1:{free_port()}"
    hosts = [busy.url, f"127.0.0.1:{idle.port}", dead]
    result = ollamactl("fleet", "status", *hosts, "--json", "--timeout", "5")
    assert result.returncode == 1, result.stderr  # one host is down
    data = {item["host"]: item for item in json.loads(result.stdout)}
    a, b, down = (data[f"127.0.0.1:{busy.port}"], data[f"127.0.0.1:{idle.port}"], data[dead])
    assert a["status"] == b["status"] == "up"
    assert a["version"] == b["version"] == OLLAMA_API_VERSION
    assert a["ollamactl"] == b["ollamactl"] == __version__
    assert [m["name"] for m in a["models"]] == [SMOLLM2]
    assert a["models"][0]["size_bytes"] > 50_000_000
    assert b["models"] == []
    assert a["queue"] == b["queue"] == {"pending": 0, "max": 512}   # the server's default
    assert down["status"] == "unreachable" and down["error"] == "connection refused"

    table = ollamactl("fleet", "status", *hosts).stdout.splitlines()
    assert table[0].split() == ["HOST", "STATUS", "VERSION", "LATENCY", "LOADED", "QUEUE"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert SMOLLM2 in rows[f"127.0.0.1:{busy.port}"]
    assert f"{OLLAMA_API_VERSION} (ollamactl {__version__})" in rows[f"127.0.0.1:{busy.port}"]
    assert rows[f"127.0.0.1:{idle.port}"].split()[-1] == "0/512"
    assert "unreachable (connection refused)" in rows[dead]

    both_up = ollamactl("fleet", "status", busy.url, idle.url)
    assert both_up.returncode == 0, both_up.stderr

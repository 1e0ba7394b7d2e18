"""doctor's exposure check: a non-loopback bind or front without auth fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.doctor.finding import FAIL, OK, WARN
from ollamactl.expose.nginx import build_spec, render_site
from ollamactl.system import RecordingRunner
from tests.doctor_helpers import make_probe, one

TOKEN = "s3cret-token_0123456789"
CHECK = "network.exposure-front"


def enable(root: Path, name: str, **kwargs: object) -> None:
    folder = root / "etc/nginx/sites-enabled"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.conf").write_text(render_site(build_spec(name=name, **kwargs)))  # type: ignore[arg-type]


@pytest.mark.parametrize(("bind", "fronts", "status"), [
    ("127.0.0.1:11434", {}, OK),
    ("0.0.0.0", {}, FAIL),
    ("192.168.1.20:11434", {}, FAIL),
    ("0.0.0.0", {"tok": {"listen": "443", "tokens": [TOKEN]}}, WARN),
    ("0.0.0.0", {"basic": {"listen": "443", "htpasswd": Path("/etc/nginx/htpasswd")}}, WARN),
    ("127.0.0.1:11434", {"tok": {"listen": "443", "tokens": [TOKEN]}}, OK),
    ("127.0.0.1:11434", {"open": {"listen": "0.0.0.0:80"}}, FAIL),
    ("127.0.0.1:11434", {"local": {"listen": "127.0.0.1:8080"}}, OK),
    ("0.0.0.0", {"tok": {"listen": "443", "tokens": [TOKEN]},
                 "open": {"listen": "8080"}}, FAIL),
])
def test_exposure(ctx: Context, recorder: RecordingRunner, staging_root: Path, bind: str,
                  fronts: dict[str, dict[str, object]], status: str) -> None:
    for name, kwargs in fronts.items():
        enable(staging_root, name, **kwargs)
    finding = one(make_probe(ctx, recorder, port=11434, environ={"OLLAMA_HOST": bind}), CHECK)
    assert finding.status == status, finding.summary
    assert len(finding.data["fronts"]) == len(fronts)
    if status == FAIL:
        assert finding.fix is not None and finding.fix.commands


def test_open_front_is_named(ctx: Context, recorder: RecordingRunner,
                             staging_root: Path) -> None:
    enable(staging_root, "open", listen="0.0.0.0:80")
    finding = one(make_probe(ctx, recorder, port=11434), CHECK)
    assert "open.conf on 0.0.0.0:80" in finding.summary


METRICS = "network.metrics-exposure"


@pytest.mark.parametrize(("environ", "fronts", "status", "says"), [
    ({"OLLAMA_HOST": "127.0.0.1:11434"}, {}, OK, "127.0.0.1:11434 only"),
    ({"OLLAMA_HOST": "0.0.0.0"}, {}, WARN, "reachable without auth on 0.0.0.0:11434"),
    ({"OLLAMA_HOST": "0.0.0.0", "OLLAMA_METRICS": "1"}, {}, WARN, "without auth"),
    ({"OLLAMA_HOST": "0.0.0.0", "OLLAMA_METRICS": "0"}, {}, OK, "metrics are off"),
    ({"OLLAMA_HOST": "0.0.0.0"}, {"tok": {"listen": "443", "tokens": [TOKEN]}}, WARN,
     "reachable around it"),
    ({"OLLAMA_HOST": "127.0.0.1:11434"}, {"tok": {"listen": "443", "tokens": [TOKEN]}}, OK,
     "only"),
    ({"OLLAMA_HOST": "127.0.0.1:11434"}, {"open": {"listen": "0.0.0.0:80"}}, WARN,
     "through the front"),
    ({"OLLAMA_HOST": "127.0.0.1:11434", "OLLAMA_METRICS": "false"},
     {"open": {"listen": "0.0.0.0:80"}}, OK, "metrics are off"),
])
def test_metrics_exposure(ctx: Context, recorder: RecordingRunner, staging_root: Path,
                          environ: dict[str, str], fronts: dict[str, dict[str, object]],
                          status: str, says: str) -> None:
    for name, kwargs in fronts.items():
        enable(staging_root, name, **kwargs)
    finding = one(make_probe(ctx, recorder, port=11434, environ=environ), METRICS)
    assert finding.status == status, finding.summary
    assert says in finding.summary
    if status == WARN:
        assert finding.fix is not None
        assert ("ollamactl", "env", "set", "OLLAMA_METRICS", "0") in finding.fix.commands

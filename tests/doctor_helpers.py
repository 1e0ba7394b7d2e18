"""Build a doctor Probe over a staging root with a scripted `systemctl show` and fake NVML."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from ollamactl.context import Context
from ollamactl.doctor.finding import Finding
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.suite import run_checks
from ollamactl.gpu import Nvml
from ollamactl.system import RecordingRunner
from tests.gpu_fakes import FakeNvml
from tests.loopback import serving

INSTALLED_UNIT = {
    "LoadState": "loaded", "ActiveState": "active", "SubState": "running",
    "UnitFileState": "enabled", "FragmentPath": "/etc/systemd/system/ollama.service",
    "User": "root", "MainPID": "0", "NeedDaemonReload": "no", "Environment": "",
    "PrivateDevices": "no", "DevicePolicy": "auto", "ProtectHome": "no", "ProtectSystem": "no",
}


def make_probe(ctx: Context, recorder: RecordingRunner, *, port: int,
               unit: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None,
               nvml: FakeNvml | None = None, log: str = "") -> Probe:
    if ctx.host.has_systemd:
        unit = unit if unit is not None else {"LoadState": "not-found"}
        recorder.on("systemctl", "show", "ollama.service",
                    stdout="".join(f"{k}={v}\n" for k, v in unit.items()))
    recorder.on("journalctl", stdout=log)
    env = {"OLLAMA_HOST": f"127.0.0.1:{port}", **(environ or {})}
    return Probe(ctx, environ=env, nvml=Nvml(nvml or FakeNvml()), http_timeout_s=0.5)


def one(probe: Probe, check_id: str) -> Finding:
    (finding,) = run_checks(probe, [check_id])
    return finding


@contextlib.contextmanager
def serving_json(routes: Mapping[str, Any]) -> Iterator[int]:
    """A loopback HTTP server answering GET ``path`` with ``routes[path]`` as JSON (404
    otherwise); yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path in routes
            body = json.dumps(routes[self.path]).encode() if found else b""
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as port:
        yield port

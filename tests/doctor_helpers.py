"""Build a doctor Probe over a staging root with a scripted `systemctl show` and fake NVML."""

from __future__ import annotations

from collections.abc import Mapping

from ollamactl.context import Context
from ollamactl.doctor.finding import Finding
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.suite import run_checks
from ollamactl.gpu import Nvml
from ollamactl.system import RecordingRunner
from tests.gpu_fakes import FakeNvml

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

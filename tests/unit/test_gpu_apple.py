"""Apple: Apple Silicon -> Metal, Intel Mac -> CPU; facts through a scripted sysctl."""

from __future__ import annotations

import dataclasses

from ollamactl.gpu import Nvml, scan_gpus
from ollamactl.system import RecordingRunner
from tests.gpu_fakes import GIB, FakeNvml


def _mac(linux_host, *, apple_silicon: bool):
    return dataclasses.replace(linux_host, os_name="darwin", init_system="launchd",
                               arch="arm64" if apple_silicon else "amd64",
                               apple_silicon=apple_silicon)


def test_apple_silicon_uses_metal(linux_host, tmp_path):
    runner = RecordingRunner()
    runner.on("sysctl", "-n", "machdep.cpu.brand_string", stdout="Apple M2 Pro\n")
    runner.on("sysctl", "-n", "hw.memsize", stdout=f"{32 * GIB}\n")
    inventory = scan_gpus(host=_mac(linux_host, apple_silicon=True), environ={}, root=tmp_path,
                          runner=runner, nvml=Nvml(FakeNvml()))
    (gpu,) = inventory.gpus
    assert (gpu.vendor, gpu.name, gpu.compute, gpu.verdict.code) == (
        "apple", "Apple M2 Pro", "metal", "supported")
    assert gpu.vram_total_bytes == 32 * GIB and gpu.integrated
    assert all(not c.mutates for c in runner.calls)   # read-only probes only


def test_intel_mac_runs_on_the_cpu(linux_host, tmp_path):
    runner = RecordingRunner()
    runner.on("sysctl", stdout="Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz\n")
    inventory = scan_gpus(host=_mac(linux_host, apple_silicon=False), environ={}, root=tmp_path,
                          runner=runner, nvml=Nvml(FakeNvml()))
    assert inventory.gpus == ()
    assert "Intel Macs run models on the CPU" in inventory.notes[0]

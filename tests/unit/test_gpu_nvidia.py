"""NVIDIA inventory and verdicts through a fake NVML that fails with real pynvml errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pynvml
import pytest

from ollamactl.gpu import NA, Nvml, NvmlUnavailable, scan_gpus
from ollamactl.gpu.nvidia import read_free_vram, read_nvidia
from ollamactl.gpu.support import cuda_family, nvidia_verdict
from ollamactl.host import HostFacts
from tests.gpu_fakes import GIB, FakeNvml, gtx750ti, h100, k80, rtx3060, write_nvidia_pci


def _scan(linux_host: HostFacts, fake: FakeNvml, root: Path, **environ: str):
    return scan_gpus(host=linux_host, environ=environ, root=root, nvml=Nvml(fake))


@pytest.mark.parametrize(("profile", "driver", "cc", "code", "level", "needle"), [
    (h100, "550.54.15", "9.0", "supported", "ok", "(NVIDIA)"),
    (rtx3060, "550.54.15", "8.6", "supported", "ok", "(GeForce RTX 30xx)"),
    (gtx750ti, "570.86.10", "5.0", "supported", "ok", "(GeForce GTX)"),
    (gtx750ti, "550.54.15", "5.0", "driver-too-old", "fail", "needs driver >= 570"),
    (h100, "535.104.05", "9.0", "driver-too-old", "fail", "need driver >= 550"),
    (k80, "550.54.15", "3.7", "unsupported", "fail", "below Ollama's minimum 5.0"),
])
def test_device_profiles_get_the_expected_verdicts(linux_host, tmp_path, profile, driver, cc,
                                                   code, level, needle):
    inventory = _scan(linux_host, FakeNvml([profile()], driver=driver), tmp_path)
    (gpu,) = inventory.gpus
    assert (gpu.vendor, gpu.compute, gpu.driver_version) == ("nvidia", cc, driver)
    assert (gpu.verdict.code, gpu.verdict.level) == (code, level)
    assert needle in gpu.verdict.reason
    if level == "fail":
        assert gpu.verdict.advice   # every failure says what to do


def test_k80_advice_points_to_cpu_or_source_build(linux_host, tmp_path):
    (gpu,) = _scan(linux_host, FakeNvml([k80()]), tmp_path).gpus
    assert "CPU" in gpu.verdict.advice and "CMAKE_CUDA_ARCHITECTURES" in gpu.verdict.advice


def test_h100_facts_are_read_with_units(linux_host, tmp_path):
    inventory = _scan(linux_host, FakeNvml([h100()], cuda=12040), tmp_path)
    (gpu,) = inventory.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-5b9c1d2e-aaaa-4bbb-8ccc-000000000001"
    assert gpu.vram_total_bytes == 80 * GIB and gpu.vram_free_bytes == 79 * GIB
    assert gpu.pci_bus_id == "00000000:18:00.0"
    assert inventory.nvidia is not None and inventory.nvidia.cuda_driver_version == "12.4"
    assert gpu.mig_enabled is NA   # NotSupported became the sentinel, not an error


@pytest.mark.parametrize(("error", "reason", "words"), [
    (pynvml.NVMLError_LibraryNotFound, "library-not-found", "install the NVIDIA driver"),
    (pynvml.NVMLError_DriverNotLoaded, "driver-not-loaded", "modprobe nvidia"),
    (pynvml.NVMLError_LibRmVersionMismatch, "version-mismatch", "reboot"),
    (pynvml.NVMLError_NoPermission, "no-permission", "/dev/nvidia"),
    (pynvml.NVMLError_Unknown, "init-failed", "reload-uvm"),
])
def test_fatal_nvml_errors_become_one_problem_with_advice(linux_host, tmp_path, error, reason,
                                                          words):
    write_nvidia_pci(tmp_path)   # a GPU is plugged in, so a missing library is a problem
    inventory = _scan(linux_host, FakeNvml([h100()], init_error=error), tmp_path)
    assert inventory.gpus == ()
    (problem,) = inventory.problems
    assert (problem.vendor, problem.reason) == ("nvidia", reason)
    assert words in problem.hint
    assert problem.hardware == ("0000:01:00.0",)


def test_missing_library_without_nvidia_hardware_is_not_a_problem(linux_host, tmp_path):
    inventory = _scan(linux_host, FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound), tmp_path)
    assert inventory.gpus == () and inventory.problems == ()


def test_init_is_lazy_happens_once_and_failure_is_remembered():
    fake = FakeNvml([h100()], init_error=pynvml.NVMLError_DriverNotLoaded)
    nvml = Nvml(fake)
    assert fake.init_calls == 0
    for _ in range(3):
        with pytest.raises(NvmlUnavailable) as info:
            nvml.query("nvmlDeviceGetCount")
        assert info.value.reason == "driver-not-loaded"
    assert fake.init_calls == 1
    assert nvml.is_available() is False


def test_init_that_hangs_is_bounded():
    class HangingNvml(FakeNvml):
        def nvmlInit(self) -> None:
            import threading
            threading.Event().wait(2.0)

    nvml = Nvml(HangingNvml(), init_timeout_s=0.05)
    with pytest.raises(NvmlUnavailable) as info:
        nvml.init()
    assert info.value.reason == "init-timeout" and "reload-uvm" in (info.value.hint or "")


def test_per_query_errors_become_na_not_exceptions():
    gpu = h100()
    gpu.memory_error = pynvml.NVMLError_NotSupported     # unified-memory board
    gpu.uuid = pynvml.NVMLError_GpuIsLost
    report = read_nvidia(Nvml(FakeNvml([gpu])))
    (device,) = report.devices
    assert device.vram_total_bytes is NA and device.vram_free_bytes is NA
    assert device.uuid is NA
    assert device.compute_capability == (9, 0)


def test_processes_on_the_gpu_are_listed_in_bytes(linux_host, tmp_path):
    gpu = rtx3060()
    gpu.processes = [(4242, 3 * GIB)]
    (info,) = _scan(linux_host, FakeNvml([gpu]), tmp_path).gpus
    assert [(p.pid, p.used_bytes) for p in info.processes] == [(4242, 3 * GIB)]


def test_shutdown_after_use_calls_nvml_once():
    fake = FakeNvml([h100()])
    nvml = Nvml(fake)
    assert nvml.query("nvmlDeviceGetCount") == 1
    nvml.shutdown()
    nvml.shutdown()
    assert fake.shutdown_calls == 1


def test_seed_table_names_families():
    assert cuda_family("NVIDIA GeForce RTX 3060 Ti", (8, 6)).cards[-2] == "RTX 3060 Ti"
    assert cuda_family("NVIDIA GeForce GTX 750 Ti", (5, 0)).family == "GeForce GTX"
    assert cuda_family("Tesla K80", (3, 7)) is None
    assert nvidia_verdict("x", None, "550.1").level == "warn"


def test_inventory_json_turns_na_into_null(linux_host, tmp_path):
    gpu = h100()
    gpu.memory_error = pynvml.NVMLError_NotSupported
    data = _scan(linux_host, FakeNvml([gpu]), tmp_path).as_dict()
    assert data["gpus"][0]["vram_total_bytes"] is None
    assert data["gpus"][0]["verdict"]["code"] == "supported"
    assert data["nvidia_driver_version"] == "550.54.15"


def test_free_vram_reads_memory_only_and_na_where_nvml_will_not_say():
    board = h100()
    board.memory_error = pynvml.NVMLError_NotSupported     # unified-memory board
    assert read_free_vram(Nvml(FakeNvml([rtx3060(), board]))) == [11 * GIB, NA]
    assert read_free_vram(Nvml(FakeNvml([]))) == []
    with pytest.raises(NvmlUnavailable) as info:
        read_free_vram(Nvml(FakeNvml(init_error=pynvml.NVMLError_DriverNotLoaded)))
    assert info.value.reason == "driver-not-loaded"


def test_a_missing_nvml_package_is_unavailable_not_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)     # `import pynvml` raises ImportError
    with pytest.raises(NvmlUnavailable) as info:
        Nvml().init()
    assert info.value.reason == "library-not-found"
    assert Nvml().is_available() is False

"""AMD inventory from fake sysfs/KFD trees: gfx targets, iGPUs, overrides, verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamactl.gpu import GpuInventory, Nvml, scan_gpus
from ollamactl.gpu.amd import read_amd
from ollamactl.gpu.support import gfx_from_target_version, nearest_supported
from ollamactl.host import HostFacts
from tests.gpu_fakes import (
    GIB,
    FakeNvml,
    mi300x,
    radeon680m,
    radeon780m,
    rx5400,
    rx7900xtx,
    write_amd_sysfs,
)


def _scan(host: HostFacts, root: Path, **environ: str) -> GpuInventory:
    return scan_gpus(host=host, environ=environ, root=root, nvml=Nvml(FakeNvml()))


@pytest.mark.parametrize(("value", "target"), [
    (90008, "gfx908"), (90010, "gfx90a"), (100300, "gfx1030"), (100304, "gfx1034"),
    (110000, "gfx1100"), (120001, "gfx1201"), (90402, "gfx942"),
])
def test_gfx_target_version_decoding(value, target):
    assert gfx_from_target_version(value) == target


def test_nearest_supported_follows_the_seed():
    assert nearest_supported("gfx1034") == "gfx1030"
    assert nearest_supported("gfx90c") == "gfx900"
    assert nearest_supported("gfx1010") is None


def test_rx7900xtx_is_native(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx7900xtx()])
    (gpu,) = _scan(linux_host, tmp_path).gpus
    assert (gpu.vendor, gpu.compute, gpu.verdict.code) == ("amd", "gfx1100", "supported")
    assert "Radeon PRO W7900" in gpu.verdict.reason   # the seed's example for gfx1100
    assert gpu.name == "Radeon RX 7900 XTX / XT / GRE"
    assert gpu.vram_total_bytes == 24 * GIB and not gpu.integrated
    assert gpu.uuid == "GPU-1a2b3c4d5e6f7081" and gpu.pci_bus_id == "0000:03:00.0"


def test_rx5400_needs_the_seed_override(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx5400()])
    inventory = _scan(linux_host, tmp_path)
    (gpu,) = inventory.gpus
    assert gpu.compute == "gfx1034" and gpu.name == "AMD Radeon RX 5400"
    assert (gpu.verdict.code, gpu.verdict.level) == ("needs-override", "fail")
    assert gpu.override == "10.3.0"
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in gpu.verdict.advice
    assert inventory.amd_overrides == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}


def test_rx5400_with_the_override_set_runs_as_gfx1030(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx5400()])
    (gpu,) = _scan(linux_host, tmp_path, HSA_OVERRIDE_GFX_VERSION="10.3.0").gpus
    assert (gpu.verdict.code, gpu.verdict.level) == ("override", "ok")
    assert "runs as gfx1030" in gpu.verdict.reason


@pytest.mark.parametrize(("value", "code", "words"), [
    ("11.0.0", "override-conflict", "supported natively"),      # forced onto a native card
    ("gfx1030", "override-conflict", "write 10.3.0"),           # malformed
    ("11.0.0x", "override-conflict", "malformed"),
])
def test_bad_overrides_on_a_native_card(linux_host, tmp_path, value, code, words):
    write_amd_sysfs(tmp_path, [mi300x()])
    (gpu,) = _scan(linux_host, tmp_path, HSA_OVERRIDE_GFX_VERSION=value).gpus
    assert (gpu.verdict.code, gpu.verdict.level) == (code, "fail")
    assert words in gpu.verdict.reason


def test_override_to_itself_is_unneeded(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx7900xtx()])
    (gpu,) = _scan(linux_host, tmp_path, HSA_OVERRIDE_GFX_VERSION="11.0.0").gpus
    assert (gpu.verdict.code, gpu.verdict.level) == ("override-unneeded", "warn")


def test_override_to_an_unshipped_target_is_refused(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx5400()])
    (gpu,) = _scan(linux_host, tmp_path, HSA_OVERRIDE_GFX_VERSION="10.3.4").gpus
    assert gpu.verdict.code == "override-unneeded"
    (gpu,) = _scan(linux_host, tmp_path, HSA_OVERRIDE_GFX_VERSION="10.1.0").gpus
    assert gpu.verdict.code == "override-conflict" and "use 10.3.0" in gpu.verdict.advice


def test_mi300x_is_native(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [mi300x()], driver_version="6.8.5")
    inventory = _scan(linux_host, tmp_path)
    (gpu,) = inventory.gpus
    assert (gpu.compute, gpu.verdict.code, gpu.name) == ("gfx942", "supported",
                                                         "AMD Instinct MI300X")
    assert gpu.vram_total_bytes == 192 * GIB
    assert inventory.amd is not None
    assert (inventory.amd.rocm_version, inventory.amd.driver_version) == ("6.1.2", "6.8.5")


def test_radeon_780m_is_an_igpu_skipped_by_default(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [radeon780m()])
    inventory = _scan(linux_host, tmp_path)
    (gpu,) = inventory.gpus
    assert gpu.integrated and gpu.compute == "gfx1103" and gpu.name == "Radeon 780M"
    assert (gpu.verdict.code, gpu.verdict.level) == ("igpu-disabled", "warn")
    assert "OLLAMA_IGPU_ENABLE=1" in gpu.verdict.advice and "11.0.0" in gpu.verdict.advice
    assert inventory.usable == () and inventory.amd_overrides == {}


def test_radeon_780m_enabled_needs_an_override(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [radeon780m()])
    inventory = _scan(linux_host, tmp_path, OLLAMA_IGPU_ENABLE="1")
    (gpu,) = inventory.gpus
    assert (gpu.verdict.code, gpu.override) == ("needs-override", "11.0.0")
    assert inventory.amd_overrides == {"HSA_OVERRIDE_GFX_VERSION": "11.0.0"}


def test_mixed_igpu_and_dgpu_get_per_device_overrides(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx7900xtx(), radeon680m()])
    inventory = _scan(linux_host, tmp_path)
    dgpu, igpu = inventory.gpus
    assert (dgpu.index, dgpu.verdict.code, dgpu.integrated) == (0, "supported", False)
    assert (igpu.index, igpu.verdict.code, igpu.integrated) == (1, "igpu-disabled", True)
    assert [g.index for g in inventory.usable] == [0]
    assert inventory.amd_overrides == {}   # the iGPU is not used, nothing to override
    enabled = _scan(linux_host, tmp_path, OLLAMA_IGPU_ENABLE="1")
    # a global 10.3.0 would push the 7900 XTX onto gfx1030 kernels: per-device form only
    assert enabled.amd_overrides == {"HSA_OVERRIDE_GFX_VERSION_1": "10.3.0"}
    per_device = _scan(linux_host, tmp_path, OLLAMA_IGPU_ENABLE="1",
                       HSA_OVERRIDE_GFX_VERSION_1="10.3.0")
    assert [g.verdict.code for g in per_device.gpus] == ["supported", "override"]
    global_override = _scan(linux_host, tmp_path, OLLAMA_IGPU_ENABLE="1",
                            HSA_OVERRIDE_GFX_VERSION="10.3.0")
    assert global_override.gpus[0].verdict.code == "override-conflict"


def test_cpu_nodes_and_garbage_are_skipped(tmp_path):
    write_amd_sysfs(tmp_path, [rx7900xtx()])
    nodes = tmp_path / "sys/class/kfd/kfd/topology/nodes"
    (nodes / "7").mkdir()
    (nodes / "7/properties").write_text("garbage line\nvendor_id x\n")
    (nodes / "notanode").mkdir()
    report = read_amd(tmp_path)
    assert [d.gfx for d in report.devices] == ["gfx1100"]
    assert report.devices[0].node == 1


def test_installed_rocblas_kernels_decide_support(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx5400()])
    library = tmp_path / "opt/rocm/lib/rocblas/library"
    library.mkdir(parents=True)
    (library / "TensileLibrary_lazy_gfx1034.dat").write_text("")
    (gpu,) = _scan(linux_host, tmp_path).gpus
    assert gpu.verdict.code == "supported"


def test_no_kfd_means_no_amd_gpus(linux_host, tmp_path):
    inventory = _scan(linux_host, tmp_path)
    assert inventory.gpus == () and inventory.amd is not None and not inventory.amd.kfd_present

"""Fakes for the GPU boundary only: a fake pynvml module and fake sysfs/KFD/PCI trees.

:class:`FakeNvml` answers like pynvml and fails like it: every error is a real
``pynvml.NVMLError`` subclass, so the code under test sees exactly what the library raises.
The sysfs builders write the files Ollama's discovery reads, under ``tmp_path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

GIB = 1024**3
MIB = 1024**2


@dataclass
class FakeGpu:
    """One device as NVML would describe it; a field set to an NVMLError class raises it."""

    name: str
    compute_capability: Any
    uuid: Any = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total_bytes: int = 8 * GIB
    memory_free_bytes: int = 7 * GIB
    memory_error: type[pynvml.NVMLError] | None = None
    pci_bus_id: str = "00000000:01:00.0"
    mig_error: type[pynvml.NVMLError] | None = pynvml.NVMLError_NotSupported
    processes: list[tuple[int, int]] = field(default_factory=list)


class FakeNvml:
    """A stand-in for the ``pynvml`` module with the functions ollamactl calls."""

    def __init__(self, gpus: list[FakeGpu] | None = None, *, driver: str = "550.54.15",
                 cuda: int = 12040, init_error: type[pynvml.NVMLError] | None = None) -> None:
        self.gpus = gpus or []
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0

    # -- library state --------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error()

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return self.gpus[index]

    # -- per device -----------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return _value(handle.uuid)

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeGpu) -> tuple[int, int]:
        return _value(handle.compute_capability)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        if handle.memory_error is not None:
            raise handle.memory_error()
        return SimpleNamespace(total=handle.memory_total_bytes, free=handle.memory_free_bytes,
                               used=handle.memory_total_bytes - handle.memory_free_bytes)

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(busId=handle.pci_bus_id)

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        if handle.mig_error is not None:
            raise handle.mig_error()
        return [0, 0]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in handle.processes]


def _value(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, pynvml.NVMLError):
        raise value()
    return value


# -- NVML device profiles (must-show list) ------------------------------------------------------

def h100() -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", (9, 0), "GPU-5b9c1d2e-aaaa-4bbb-8ccc-000000000001",
                   80 * GIB, 79 * GIB, pci_bus_id="00000000:18:00.0")


def rtx3060() -> FakeGpu:
    return FakeGpu("NVIDIA GeForce RTX 3060", (8, 6), "GPU-3060aaaa-1111-2222-3333-444455556666",
                   12 * GIB, 11 * GIB, pci_bus_id="00000000:01:00.0")


def gtx750ti() -> FakeGpu:
    return FakeGpu("NVIDIA GeForce GTX 750 Ti", (5, 0), "GPU-750ti000-1111-2222-3333-444455556666",
                   2 * GIB, 2 * GIB - 100 * MIB, pci_bus_id="00000000:02:00.0")


def k80() -> FakeGpu:
    return FakeGpu("Tesla K80", (3, 7), "GPU-k8000000-1111-2222-3333-444455556666",
                   12 * GIB, 12 * GIB, pci_bus_id="00000000:03:00.0")


# -- sysfs trees ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FakeAmdCard:
    """A KFD node plus its DRM render device."""

    gfx_target_version: int
    device_id: int
    vram_total_bytes: int
    gtt_total_bytes: int
    vram_vendor: str | None = "samsung"     # iGPUs have none
    product_name: str = ""
    unique_id: int = 0
    pci_slot: str = "0000:03:00.0"


def rx7900xtx() -> FakeAmdCard:
    return FakeAmdCard(110000, 0x744C, 24 * GIB, 32 * GIB, unique_id=0x1A2B3C4D5E6F7081,
                       pci_slot="0000:03:00.0")


def rx5400() -> FakeAmdCard:
    return FakeAmdCard(100304, 0x743F, 4 * GIB, 16 * GIB, product_name="AMD Radeon RX 5400",
                       pci_slot="0000:04:00.0")


def mi300x() -> FakeAmdCard:
    return FakeAmdCard(90402, 0x74A1, 192 * GIB, 512 * GIB, vram_vendor="hynix",
                       product_name="AMD Instinct MI300X", pci_slot="0000:05:00.0")


def radeon780m() -> FakeAmdCard:
    return FakeAmdCard(110003, 0x15BF, 512 * MIB, 16 * GIB, vram_vendor=None,
                       pci_slot="0000:c4:00.0")


def radeon680m() -> FakeAmdCard:
    return FakeAmdCard(100305, 0x1681, 2 * GIB, 16 * GIB, vram_vendor=None,
                       pci_slot="0000:e5:00.0")


def write_amd_sysfs(root: Path, cards: list[FakeAmdCard], *, with_cpu_node: bool = True,
                    rocm_version: str | None = "6.1.2", driver_version: str | None = None,
                    dev_nodes: bool = True) -> Path:
    """Write KFD topology nodes (a CPU node first, as real machines have) and DRM cards."""
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    number = 0
    if with_cpu_node:
        _write(nodes / "0/properties", "cpu_cores_count 16\nsimd_count 0\n"
               "gfx_target_version 0\nvendor_id 0\ndevice_id 0\ndrm_render_minor 0\n")
        number = 1
    for position, card in enumerate(cards):
        minor = 128 + position
        _write(nodes / f"{number + position}/properties",
               f"cpu_cores_count 0\nsimd_count 96\ngfx_target_version {card.gfx_target_version}\n"
               f"vendor_id 4098\ndevice_id {card.device_id}\nunique_id {card.unique_id}\n"
               f"drm_render_minor {minor}\nlocation_id 768\n")
        device = root / f"sys/class/drm/renderD{minor}/device"
        _write(device / "vendor", "0x1002\n")
        _write(device / "device", f"0x{card.device_id:04x}\n")
        _write(device / "mem_info_vram_total", f"{card.vram_total_bytes}\n")
        _write(device / "mem_info_vram_used", f"{card.vram_total_bytes // 16}\n")
        _write(device / "mem_info_gtt_total", f"{card.gtt_total_bytes}\n")
        _write(device / "uevent", f"DRIVER=amdgpu\nPCI_SLOT_NAME={card.pci_slot}\n")
        if card.vram_vendor:
            _write(device / "mem_info_vram_vendor", card.vram_vendor + "\n")
        _write(device / "product_name", card.product_name + "\n")
        if dev_nodes:
            _write(root / f"dev/dri/renderD{minor}", "")
    if dev_nodes and cards:
        _write(root / "dev/kfd", "")
    if rocm_version:
        _write(root / "opt/rocm/.info/version", rocm_version + "\n")
    if driver_version:
        _write(root / "sys/module/amdgpu/version", driver_version + "\n")
    return root


def write_nvidia_pci(root: Path, slots: tuple[str, ...] = ("0000:01:00.0",)) -> None:
    """PCI devices with NVIDIA's vendor id and the VGA class, as /sys/bus/pci/devices shows."""
    for slot in slots:
        base = root / "sys/bus/pci/devices" / slot
        _write(base / "vendor", "0x10de\n")
        _write(base / "class", "0x030000\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

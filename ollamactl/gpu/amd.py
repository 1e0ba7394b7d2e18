"""AMD GPUs from sysfs: the KFD topology (gfx targets) joined with the DRM cards (VRAM, PCI ids).

Read as Ollama's discovery does (ollama-compat.md §10): each node under
``/sys/class/kfd/kfd/topology/nodes/<n>/properties`` is ``key value`` lines; a node is a GPU when
``vendor_id``, ``device_id`` and ``drm_render_minor`` are non-zero; ``gfx_target_version`` is
decimal MMmmss. The node is matched to ``/sys/class/drm/renderD<minor>/device`` (vendor 0x1002)
for VRAM (``mem_info_vram_total``), GTT and the PCI slot. Everything is read under ``root`` so
tests build the tree in a temporary directory; files that are missing or do not parse are
skipped, never fatal (psutil's ``sensors_temperatures`` habit). ``pyudev`` is only asked for a
marketing name, on the real ``/sys``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ollamactl.gpu.na import NA, NaType
from ollamactl.gpu.support import AMD_DEVICE_NAMES, gfx_from_target_version
from ollamactl.humanize import GIB

log = logging.getLogger(__name__)

AMD_VENDOR_ID = 0x1002
KFD_NODES = "sys/class/kfd/kfd/topology/nodes"

#: Where ROCm (or Ollama's bundled ROCm) keeps rocBLAS kernels: one file per supported target.
ROCBLAS_DIRS = ("opt/rocm/lib/rocblas/library", "usr/lib/ollama/rocm/rocblas/library",
                "usr/local/lib/ollama/rocm/rocblas/library", "usr/lib/ollama/lib/rocblas/library")


@dataclass(frozen=True)
class AmdDevice:
    """One ROCm-visible GPU as sysfs describes it."""

    index: int                       # order among KFD GPU nodes = ROCm/HIP device index
    node: int                        # KFD topology node number
    gfx: str                         # LLVM target, e.g. gfx1100
    gfx_target_version: int          # raw KFD value, e.g. 110000
    name: str
    device_id: int
    unique_id: str | NaType          # GPU-<hex>, as ROCR_VISIBLE_DEVICES accepts
    render_minor: int
    pci_slot: str | NaType
    vram_total_bytes: int | NaType   # in bytes
    vram_used_bytes: int | NaType    # in bytes
    gtt_total_bytes: int | NaType    # in bytes
    integrated: bool

    @property
    def vram_free_bytes(self) -> int | NaType:
        if isinstance(self.vram_total_bytes, int) and isinstance(self.vram_used_bytes, int):
            return max(self.vram_total_bytes - self.vram_used_bytes, 0)
        return NA


@dataclass(frozen=True)
class AmdReport:
    devices: tuple[AmdDevice, ...]
    rocm_version: str | NaType       # /opt/rocm/.info/version
    driver_version: str | NaType     # /sys/module/amdgpu/version (DKMS driver only)
    rocblas_targets: frozenset[str] | None   # targets with rocBLAS kernels installed, if found
    kfd_present: bool


def read_amd(root: Path = Path("/")) -> AmdReport:
    """Every AMD GPU ROCm would see on the machine whose file system is at ``root``."""
    nodes_dir = root / KFD_NODES
    devices: list[AmdDevice] = []
    if nodes_dir.is_dir():
        numbered = sorted((int(p.name), p) for p in nodes_dir.iterdir() if p.name.isdigit())
        for node, path in numbered:
            device = _read_node(root, node, path, len(devices))
            if device is not None:
                devices.append(device)
    return AmdReport(
        devices=tuple(devices),
        rocm_version=_first_line(root / "opt/rocm/.info/version"),
        driver_version=_first_line(root / "sys/module/amdgpu/version"),
        rocblas_targets=rocblas_targets(root),
        kfd_present=(root / "dev/kfd").exists() or nodes_dir.is_dir(),
    )


def read_properties(path: Path) -> dict[str, int]:
    """A KFD ``properties`` file as {key: int}; lines that do not parse are skipped."""
    props: dict[str, int] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return props
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
            props[parts[0]] = int(parts[1])
    return props


def _read_node(root: Path, node: int, path: Path, index: int) -> AmdDevice | None:
    props = read_properties(path / "properties")
    if not (props.get("vendor_id") and props.get("device_id") and props.get("drm_render_minor")):
        return None   # a CPU node (gfx_target_version 0) or an unreadable one
    if props.get("vendor_id") != AMD_VENDOR_ID:
        return None
    try:
        gfx = gfx_from_target_version(props.get("gfx_target_version", 0))
    except ValueError as exc:
        log.debug("KFD node %d: %s", node, exc)
        return None
    minor = props["drm_render_minor"]
    card = root / f"sys/class/drm/renderD{minor}/device"
    vram = _int_file(card / "mem_info_vram_total")
    gtt = _int_file(card / "mem_info_gtt_total")
    unique = props.get("unique_id")
    return AmdDevice(
        index=index, node=node, gfx=gfx, gfx_target_version=props["gfx_target_version"],
        name=_name(root, card, props["device_id"], gfx),
        device_id=props["device_id"],
        unique_id=f"GPU-{unique:016x}" if unique else NA,
        render_minor=minor, pci_slot=_pci_slot(card),
        vram_total_bytes=vram, vram_used_bytes=_int_file(card / "mem_info_vram_used"),
        gtt_total_bytes=gtt,
        integrated=is_integrated(vram, gtt, has_vram_vendor=(card / "mem_info_vram_vendor")
                                 .exists()),
    )


def is_integrated(vram_total_bytes: int | NaType, gtt_total_bytes: int | NaType, *,
                  has_vram_vendor: bool) -> bool:
    """Ollama's iGPU test: no ``mem_info_vram_vendor``, VRAM <= 4 GiB (the BIOS carve-out) and
    GTT >= 8 GiB and >= 4 x VRAM (the system memory it shares)."""
    if has_vram_vendor or not isinstance(vram_total_bytes, int) \
            or not isinstance(gtt_total_bytes, int):
        return False
    return vram_total_bytes <= 4 * GIB and gtt_total_bytes >= max(8 * GIB, 4 * vram_total_bytes)


def rocblas_targets(root: Path) -> frozenset[str] | None:
    """gfx targets with rocBLAS kernels installed (``TensileLibrary_lazy_gfx*.dat``), or None."""
    found: set[str] = set()
    for rel in ROCBLAS_DIRS:
        directory = root / rel
        if directory.is_dir():
            for item in directory.glob("TensileLibrary_lazy_gfx*.dat"):
                match = re.search(r"_(gfx[0-9a-f]+)\.dat$", item.name)
                if match:
                    found.add(match[1])
    return frozenset(found) if found else None


def _name(root: Path, card: Path, device_id: int, gfx: str) -> str:
    product = _first_line(card / "product_name")
    if isinstance(product, str) and product:
        return product
    if root == Path("/"):
        udev_name = _udev_model(card)
        if udev_name:
            return udev_name
    return AMD_DEVICE_NAMES.get(device_id, f"AMD GPU {gfx}")


def _udev_model(card: Path) -> str | None:
    """The card's PCI database name via udev (``udevadm info``: ID_MODEL_FROM_DATABASE)."""
    try:
        import pyudev

        device = pyudev.Devices.from_sys_path(pyudev.Context(), str(card.resolve()))
        model = device.properties.get("ID_MODEL_FROM_DATABASE")
    except Exception as exc:  # pyudev raises several unrelated types; a name is optional
        log.debug("udev name of %s: %s", card, exc)
        return None
    return str(model) if model else None


def _pci_slot(card: Path) -> str | NaType:
    try:
        for line in (card / "uevent").read_text().splitlines():
            if line.startswith("PCI_SLOT_NAME="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return NA


def _int_file(path: Path) -> int | NaType:
    text = _first_line(path)
    if isinstance(text, str) and text.isdigit():
        return int(text)
    return NA


def _first_line(path: Path) -> str | NaType:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return NA
    return lines[0].strip() if lines else NA

"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``) behind one careful door.

Habits from nvitop (``nvitop/api/libnvml.py``): every NVML call goes through :meth:`Nvml.query`;
NVML is initialised lazily, once, under a lock, with a time bound (a driver wedged after a
suspend can hang ``nvmlInit``) and shut down at exit. **Fatal** errors (library missing, kernel
driver not loaded, library/driver version mismatch, no permission) raise :class:`NvmlUnavailable`
with a plain-words hint; a failed **single query** (``NotSupported`` on unified-memory boards,
``FunctionNotFound`` on old drivers) becomes :data:`~ollamactl.gpu.na.NA`.

Tests hand :class:`Nvml` a fake module that raises the real ``pynvml.NVMLError`` subclasses.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamactl.errors import GpuError
from ollamactl.gpu.na import NA, NaType

log = logging.getLogger(__name__)

DEFAULT_INIT_TIMEOUT_S = 5.0


class NvmlUnavailable(GpuError):
    """NVML cannot be used at all; ``reason`` is a stable code for scripts and doctor."""

    def __init__(self, reason: str, message: str, *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason   # library-not-found | driver-not-loaded | version-mismatch |
        #                        no-permission | function-not-found | init-timeout | init-failed


# (pynvml class name, reason, message, hint)
_FATAL: tuple[tuple[str, str, str, str], ...] = (
    ("NVMLError_LibraryNotFound", "library-not-found",
     "the NVIDIA driver's NVML library (libnvidia-ml.so.1 / nvml.dll) was not found",
     "install the NVIDIA driver for this GPU (afterwards `nvidia-smi` must work)"),
    ("NVMLError_DriverNotLoaded", "driver-not-loaded",
     "the NVIDIA kernel driver is not loaded",
     "load it with `modprobe nvidia` or reboot after installing the driver; see `dmesg`"),
    ("NVMLError_LibRmVersionMismatch", "version-mismatch",
     "the NVML library and the loaded NVIDIA kernel driver have different versions "
     "(driver upgraded without a reboot)",
     "reboot, or unload and reload the nvidia kernel modules"),
    ("NVMLError_NoPermission", "no-permission",
     "no permission to open the NVIDIA device nodes (/dev/nvidiactl)",
     "check the permissions of /dev/nvidia*; run as a user allowed to use the GPU"),
    ("NVMLError_FunctionNotFound", "function-not-found",
     "the installed NVIDIA driver is too old for this NVML binding",
     "upgrade the NVIDIA driver (Ollama needs 550 or newer)"),
)


class Nvml:
    """The one door to NVML: lazy, locked, bounded init; fatal errors raise, queries degrade.

    ``lib`` is the pynvml module (imported on first use when None); tests pass a fake.
    """

    def __init__(self, lib: Any | None = None, *,
                 init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S) -> None:
        self._lib = lib
        self._init_timeout_s = init_timeout_s
        self._lock = threading.Lock()
        self._ready = False
        self._fatal: NvmlUnavailable | None = None

    @property
    def lib(self) -> Any:
        if self._lib is None:
            try:
                import pynvml
            except ImportError as exc:
                raise NvmlUnavailable("library-not-found", "the nvidia-ml-py package is missing",
                                      hint="reinstall ollamactl (it depends on nvidia-ml-py)"
                                      ) from exc
            self._lib = pynvml
        return self._lib

    def init(self) -> None:
        """Initialise NVML once (``nvidia-smi`` does the same on start).

        Raises:
            NvmlUnavailable: the library is missing, the kernel driver is not loaded, library
                and driver differ after an upgrade, no permission, or init hung for longer than
                ``init_timeout_s`` (a GPU lost after suspend). The same error is raised again on
                every later call, without retrying.
        """
        with self._lock:
            if self._ready:
                return
            if self._fatal is not None:
                raise self._fatal
            try:
                self._init_bounded()
            except NvmlUnavailable as exc:
                self._fatal = exc
                raise
            self._ready = True
            atexit.register(self.shutdown)

    def _init_bounded(self) -> None:
        lib = self.lib   # first: without nvidia-ml-py this raises NvmlUnavailable, not ImportError
        import pynvml

        outcome: list[BaseException | None] = []

        def target() -> None:
            try:
                lib.nvmlInit()
                outcome.append(None)
            except BaseException as exc:  # handed to the caller's thread below
                outcome.append(exc)

        worker = threading.Thread(target=target, name="nvml-init", daemon=True)
        worker.start()
        worker.join(self._init_timeout_s)
        if not outcome:
            raise NvmlUnavailable(
                "init-timeout", f"NVML did not initialise within {self._init_timeout_s:g} s",
                hint="the driver may be wedged after a suspend/resume: try "
                     "`ollamactl gpu reload-uvm`, or reboot")
        error = outcome[0]
        if error is None:
            return
        if isinstance(error, pynvml.NVMLError):
            raise _translate(error) from error
        raise error

    def query(self, name: str, *args: Any, default: Any = NA) -> Any:
        """Call ``pynvml.<name>(*args)``; a per-query NVML error returns ``default``.

        Raises:
            NvmlUnavailable: only from the (lazy) init, see :meth:`init`.
        """
        self.init()
        import pynvml

        func: Callable[..., Any] | None = getattr(self.lib, name, None)
        if func is None:
            log.debug("NVML binding has no %s", name)
            return default
        try:
            return func(*args)
        except pynvml.NVMLError as exc:
            log.debug("NVML %s%r failed: %s", name, args, exc)
            return default

    def is_available(self) -> bool:
        """Yes/no: does NVML work here? Never raises."""
        try:
            self.init()
        except NvmlUnavailable:
            return False
        return True

    def shutdown(self) -> None:
        import pynvml

        with self._lock:
            if not self._ready:
                return
            self._ready = False
            try:
                self.lib.nvmlShutdown()
            except pynvml.NVMLError as exc:
                log.debug("nvmlShutdown failed: %s", exc)


def _translate(error: Exception) -> NvmlUnavailable:
    import pynvml

    for class_name, reason, message, hint in _FATAL:
        cls = getattr(pynvml, class_name, None)
        if cls is not None and isinstance(error, cls):
            return NvmlUnavailable(reason, message, hint=hint)
    return NvmlUnavailable(
        "init-failed", f"NVML failed to initialise: {error}",
        hint="if this follows a suspend/resume, run `ollamactl gpu reload-uvm`; "
             "otherwise check `nvidia-smi` and `dmesg`")


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU (``nvidia-smi --query-compute-apps``)."""

    pid: int
    used_bytes: int | NaType   # in bytes


@dataclass(frozen=True)
class NvidiaDevice:
    """Facts NVML gave about one device; anything it would not say is NA."""

    index: int
    name: str
    uuid: str | NaType
    compute_capability: tuple[int, int] | NaType
    vram_total_bytes: int | NaType       # in bytes; NA on unified-memory boards
    vram_free_bytes: int | NaType        # in bytes
    pci_bus_id: str | NaType
    mig_enabled: bool | NaType
    processes: tuple[GpuProcess, ...] | NaType


@dataclass(frozen=True)
class NvidiaReport:
    """What NVML says about this machine: driver versions and every device."""

    driver_version: str | NaType        # "550.54.15" (nvidia-smi's "Driver Version")
    cuda_driver_version: str | NaType   # "12.4" (nvidia-smi's "CUDA Version")
    devices: tuple[NvidiaDevice, ...]


def read_nvidia(nvml: Nvml) -> NvidiaReport:
    """Everything NVML tells about the GPUs (``nvidia-smi -q``, in short).

    Raises:
        NvmlUnavailable: NVML cannot be initialised (see :meth:`Nvml.init`).
    """
    driver = _text(nvml.query("nvmlSystemGetDriverVersion"))
    cuda = nvml.query("nvmlSystemGetCudaDriverVersion")
    cuda_text: str | NaType = f"{cuda // 1000}.{(cuda % 1000) // 10}" \
        if isinstance(cuda, int) and cuda > 0 else NA
    count = nvml.query("nvmlDeviceGetCount", default=0)
    devices = []
    for index in range(int(count)):
        handle = nvml.query("nvmlDeviceGetHandleByIndex", index)
        if handle is NA:
            continue
        devices.append(_read_device(nvml, index, handle))
    return NvidiaReport(driver, cuda_text, tuple(devices))


def read_free_vram(nvml: Nvml) -> list[int | NaType]:
    """Free bytes per device in NVML's order (``nvidia-smi --query-gpu=memory.free``), and
    nothing else: the server asks before each model load. NA for a device whose handle or
    memory NVML would not give (``NotSupported`` on unified-memory boards).

    Raises:
        NvmlUnavailable: NVML cannot be initialised (see :meth:`Nvml.init`).
    """
    free: list[int | NaType] = []
    for index in range(int(nvml.query("nvmlDeviceGetCount", default=0))):
        handle = nvml.query("nvmlDeviceGetHandleByIndex", index)
        memory = NA if handle is NA else nvml.query("nvmlDeviceGetMemoryInfo", handle)
        free.append(NA if memory is NA else int(memory.free))   # in bytes
    return free


def _read_device(nvml: Nvml, index: int, handle: Any) -> NvidiaDevice:
    name = _text(nvml.query("nvmlDeviceGetName", handle))
    cc = nvml.query("nvmlDeviceGetCudaComputeCapability", handle)
    memory = nvml.query("nvmlDeviceGetMemoryInfo", handle)
    total: int | NaType = NA
    free: int | NaType = NA
    # unified-memory boards (Grace Hopper, Jetson) answer NotSupported or a zero total
    if memory is not NA and int(getattr(memory, "total", 0)) > 0:
        total, free = int(memory.total), int(memory.free)
    pci = nvml.query("nvmlDeviceGetPciInfo", handle)
    bus_id = _text(getattr(pci, "busId", NA)) if pci is not NA else NA
    mig = nvml.query("nvmlDeviceGetMigMode", handle)
    mig_enabled: bool | NaType = bool(mig[0]) if isinstance(mig, list | tuple) else NA
    procs = nvml.query("nvmlDeviceGetComputeRunningProcesses", handle)
    processes: tuple[GpuProcess, ...] | NaType = NA
    if isinstance(procs, list | tuple):
        processes = tuple(
            GpuProcess(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else NA)
            for p in procs)
    return NvidiaDevice(
        index=index, name=name if isinstance(name, str) else f"NVIDIA GPU {index}",
        uuid=_text(nvml.query("nvmlDeviceGetUUID", handle)),
        compute_capability=(int(cc[0]), int(cc[1])) if isinstance(cc, tuple | list) else NA,
        vram_total_bytes=total, vram_free_bytes=free, pci_bus_id=bus_id,
        mig_enabled=mig_enabled, processes=processes,
    )


def _text(value: Any) -> str | NaType:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str):
        return value
    return NA


NVIDIA_VENDOR_ID = "0x10de"


def nvidia_pci_slots(root: Path = Path("/")) -> tuple[str, ...]:
    """PCI slots of NVIDIA display/3D controllers (``lspci -d 10de::03xx``), from sysfs.

    Tells "no NVIDIA GPU here" apart from "a GPU whose driver is missing".
    """
    base = root / "sys/bus/pci/devices"
    slots = []
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return ()
    for entry in entries:
        try:
            vendor = (entry / "vendor").read_text().strip().lower()
            pci_class = (entry / "class").read_text().strip().lower()
        except OSError:
            continue
        if vendor == NVIDIA_VENDOR_ID and pci_class.startswith("0x03"):
            slots.append(entry.name)
    return tuple(slots)

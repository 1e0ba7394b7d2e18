"""Apple GPUs: Apple Silicon Macs run models on the GPU through Metal; Intel Macs on the CPU.

macOS gives no sysfs; the facts come from ``sysctl`` through the command runner (read-only
probes), so tests script the answers. Memory is unified: the GPU may use most of RAM (Metal's
``recommendedMaxWorkingSetSize``, about two thirds to three quarters of it, needs Metal itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from ollamactl.errors import CommandFailed
from ollamactl.gpu.na import NA, NaType
from ollamactl.host import HostFacts
from ollamactl.system import Cmd, Runner


@dataclass(frozen=True)
class AppleReport:
    chip: str                          # "Apple M2 Pro", or the Intel CPU's brand
    metal: bool                        # True on Apple Silicon
    unified_memory_bytes: int | NaType # in bytes (hw.memsize)


def read_apple(host: HostFacts, runner: Runner) -> AppleReport | None:
    """None off macOS; otherwise the chip and whether Metal acceleration applies."""
    if host.os_name != "darwin":
        return None
    chip = _sysctl(runner, "machdep.cpu.brand_string")
    memsize = _sysctl(runner, "hw.memsize")
    return AppleReport(
        chip=chip or ("Apple Silicon" if host.apple_silicon else "Intel"),
        metal=host.apple_silicon,
        unified_memory_bytes=int(memsize) if memsize.isdigit() else NA,
    )


def _sysctl(runner: Runner, key: str) -> str:
    try:
        result = runner.run(Cmd(("sysctl", "-n", key), why="read the Mac's hardware facts",
                                mutates=False, check=False, timeout_s=5.0))
    except CommandFailed:
        return ""
    return result.stdout.strip() if result.ok else ""

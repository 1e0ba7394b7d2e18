"""CUDA_VISIBLE_DEVICES and HIP/ROCR_VISIBLE_DEVICES: parse them and apply them to an inventory.

The CUDA rules (CUDA C Programming Guide, "CUDA Environment Variables"; nvitop's
``parse_cuda_visible_devices`` handles the same cases): entries are indices or UUIDs
(``GPU-8932f937-...``, a unique prefix is enough, ``GPU-`` may be left out), MIG instances are
``MIG-...``; the list is read left to right and **stops at the first invalid entry**, so ``-1``
(the seed's way to force the CPU) hides every GPU after it, and an empty value hides them all.
ROCm reads ``ROCR_VISIBLE_DEVICES`` (indices or ``GPU-<unique id>``) first, then
``HIP_VISIBLE_DEVICES`` / ``GPU_DEVICE_ORDINAL`` index into what ROCR left visible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ollamactl.gpu.na import NaType


@dataclass(frozen=True)
class Visibility:
    """Which devices a visibility variable leaves to the runtime, in the runtime's order."""

    variables: tuple[tuple[str, str], ...]   # (name, raw value) of each variable that was set
    visible: tuple[int, ...]                  # inventory indices, in the order the runtime counts
    notes: tuple[str, ...] = ()
    mig: tuple[str, ...] = ()                 # MIG instances named (not enumerated here)

    @property
    def is_set(self) -> bool:
        return bool(self.variables)

    @property
    def force_cpu(self) -> bool:
        """Set, and nothing is left visible: the seed's ``-1`` trick."""
        return self.is_set and not self.visible and not self.mig


Device = tuple[int, "str | NaType"]   # (index, uuid)


def parse_device_list(raw: str) -> tuple[str, ...]:
    """Split a visibility list: ``" 0, GPU-ab ,1"`` -> ("0", "GPU-ab", "1"); "" -> ()."""
    text = raw.strip().strip("\"'")
    return tuple(item.strip() for item in text.split(",")) if text else ()


def apply_cuda_visible_devices(raw: str | None, devices: Sequence[Device]) -> Visibility:
    """Which of ``devices`` CUDA would use under ``CUDA_VISIBLE_DEVICES=raw`` (None = unset)."""
    if raw is None:
        return Visibility((), tuple(i for i, _ in devices))
    visible, notes, mig = _select(parse_device_list(raw), devices, allow_mig=True,
                                  variable="CUDA_VISIBLE_DEVICES")
    return Visibility((("CUDA_VISIBLE_DEVICES", raw),), tuple(visible), tuple(notes), tuple(mig))


def apply_amd_visible_devices(environ: Mapping[str, str], devices: Sequence[Device]) -> Visibility:
    """ROCR_VISIBLE_DEVICES first, then HIP_VISIBLE_DEVICES and GPU_DEVICE_ORDINAL on the rest."""
    current: list[Device] = list(devices)
    variables: list[tuple[str, str]] = []
    notes: list[str] = []
    for name in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"):
        raw = environ.get(name)
        if raw is None:
            continue
        variables.append((name, raw))
        # each later variable numbers devices 0..n-1 among those still visible
        renumbered: list[Device] = [(pos, uuid) for pos, (_, uuid) in enumerate(current)]
        chosen, more_notes, _ = _select(parse_device_list(raw), renumbered, allow_mig=False,
                                        variable=name)
        notes.extend(more_notes)
        current = [current[pos] for pos in chosen]
    return Visibility(tuple(variables), tuple(i for i, _ in current), tuple(notes))


def _select(entries: Sequence[str], devices: Sequence[Device], *, allow_mig: bool,
            variable: str) -> tuple[list[int], list[str], list[str]]:
    chosen: list[int] = []
    notes: list[str] = []
    mig: list[str] = []
    for pos, entry in enumerate(entries):
        if allow_mig and entry.upper().startswith("MIG-"):
            mig.append(entry)
            continue
        index = _resolve(entry, devices)
        if index is None or index in chosen:
            why = "a duplicate" if index is not None else "not a device"
            if entry.lstrip("-").isdigit() and int(entry) < 0:
                why = "negative (the usual way to force the CPU)"
            ignored = f"; {len(entries) - pos - 1} later entries are ignored" \
                if pos + 1 < len(entries) else ""
            notes.append(f"{variable}: entry {entry!r} is {why}, so the list stops there{ignored}")
            break
        chosen.append(index)
    return chosen, notes, mig


def _resolve(entry: str, devices: Sequence[Device]) -> int | None:
    """The device index an entry names: an index in range, or a unique UUID prefix."""
    if entry.lstrip("-").isdigit():
        number = int(entry)
        return devices[number][0] if 0 <= number < len(devices) else None
    wanted = entry.lower()
    if not wanted.startswith(("gpu-", "mig-")):
        wanted = "gpu-" + wanted
    matches = [index for index, uuid in devices
               if isinstance(uuid, str) and uuid.lower().startswith(wanted)]
    return matches[0] if len(matches) == 1 else None

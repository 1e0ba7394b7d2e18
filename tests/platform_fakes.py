"""OS-boundary fakes for the macOS and Windows backends: host facts, accounts, registry, user32.

Only what the OS would answer is faked; every backend's logic runs as it would on the real OS.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

from ollamactl.host import HostFacts
from ollamactl.service.launchd import MacAccount
from ollamactl.service.windows import Registry, RegValue, SettingBroadcaster, WindowsAccount


def mac_host(base: HostFacts, *, is_root: bool = False) -> HostFacts:
    return dataclasses.replace(base, os_name="darwin", arch="arm64", machine="arm64",
                               distro_id="macos", distro_version="14.5",
                               distro_name="macOS 14.5", init_system="launchd",
                               is_root=is_root, apple_silicon=True)


def windows_host(base: HostFacts) -> HostFacts:
    return dataclasses.replace(base, os_name="windows", distro_id="windows",
                               distro_version="10.0.22631", distro_name="Windows 11",
                               init_system="windows", is_root=False)


def mac_account(home_base: Path) -> MacAccount:
    home = home_base / "Users" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    return MacAccount("alice", 501, str(home))


def windows_account(profile_base: Path) -> WindowsAccount:
    """A user whose folders are real directories here: ``<base>/Users/alice/AppData/Local``."""
    profile = profile_base / "Users" / "alice"
    (profile / "AppData" / "Local").mkdir(parents=True, exist_ok=True)
    return WindowsAccount("alice", str(profile / "AppData" / "Local"), str(profile),
                          domain="DESKTOP-1")


class FakeRegistry(Registry):
    """An in-memory registry with write times from a fake clock."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.keys: dict[tuple[str, str], dict[str, RegValue]] = {}
        self.written_at: dict[tuple[str, str], float] = {}
        self._clock: Iterator[float] = itertools.count(start, 1.0)

    def values(self, hive: str, key: str) -> dict[str, RegValue]:
        return dict(self.keys.get((hive, key), {}))

    def set_value(self, hive: str, key: str, name: str, value: RegValue) -> None:
        self.keys.setdefault((hive, key), {})[name] = value
        self.written_at[(hive, key)] = next(self._clock)

    def delete_value(self, hive: str, key: str, name: str) -> None:
        self.keys.get((hive, key), {}).pop(name, None)
        self.written_at[(hive, key)] = next(self._clock)

    def modified_at(self, hive: str, key: str) -> float | None:
        return self.written_at.get((hive, key))


class RecordingBroadcaster(SettingBroadcaster):
    """Records each WM_SETTINGCHANGE broadcast that would have been sent."""

    def __init__(self) -> None:
        self.sent = 0

    def environment_changed(self) -> bool:
        self.sent += 1
        return True

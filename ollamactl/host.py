"""Facts about this machine: OS, distro, arch, init system, WSL, container, root, SELinux.

The only module that reads ``sys.platform``. Facts are read once (:func:`detect`, cached) from
files under ``root`` (``/`` by default), so tests point it at a fake tree.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath

LINUX, DARWIN, WINDOWS = "linux", "darwin", "windows"

_ARCH_ALIASES = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
}


@dataclass(frozen=True)
class HostFacts:
    """What ollamactl needs to know about the machine it runs on."""

    os_name: str                 # linux | darwin | windows
    arch: str                    # amd64 | arm64 | ... (Go's names, as Ollama's downloads use)
    machine: str                 # raw `uname -m`
    distro_id: str               # debian, ubuntu, fedora, ... ("" off Linux)
    distro_version: str
    distro_name: str
    init_system: str             # systemd | launchd | windows | none
    wsl: int                     # 0 = not WSL, 1 = WSL1, 2 = WSL2
    container: str               # "" | docker | podman | kubernetes | lxc | systemd-nspawn | other
    is_root: bool
    selinux: str                 # "" (absent) | enforcing | permissive | disabled
    apple_silicon: bool = False

    @property
    def has_systemd(self) -> bool:
        return self.init_system == "systemd"

    @property
    def service_has_own_account(self) -> bool:
        """By default the service runs as a system account of its own (Linux: ``ollama``,
        as Ollama's install.sh makes it), not as the login user (a macOS LaunchAgent, a
        Windows logon task)."""
        return self.os_name == LINUX

    def user_home(self) -> PurePath:
        """The login user's home in this OS's path syntax (Windows: ``%USERPROFILE%``, where
        Ollama keeps ``.ollama``)."""
        if self.os_name == WINDOWS:
            return PureWindowsPath(os.environ.get("USERPROFILE", str(home_dir())))
        return home_dir()

    def describe(self) -> str:
        parts = [self.distro_name or self.os_name, self.arch, f"init={self.init_system}"]
        if self.wsl:
            parts.append(f"WSL{self.wsl}")
        if self.container:
            parts.append(f"container={self.container}")
        return ", ".join(parts)


def current_os() -> str:
    """linux, darwin or windows; anything else is treated as linux-like POSIX."""
    if sys.platform.startswith("win"):
        return WINDOWS
    if sys.platform == "darwin":
        return DARWIN
    return LINUX


def detect(root: Path = Path("/")) -> HostFacts:
    """Read the facts of this machine (or of the tree at ``root``, for tests)."""
    return _detect_cached(str(root))


@functools.lru_cache(maxsize=8)
def _detect_cached(root_str: str) -> HostFacts:
    root = Path(root_str)
    os_name = current_os()
    machine = platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    if os_name == LINUX:
        distro_id, distro_version, distro_name = read_os_release(root)
        proc_version = _read(root / "proc/version")
        return HostFacts(
            os_name=os_name, arch=arch, machine=machine, distro_id=distro_id,
            distro_version=distro_version, distro_name=distro_name,
            init_system=detect_init_system(root), wsl=detect_wsl(proc_version),
            container=detect_container(root), is_root=_is_root(),
            selinux=detect_selinux(root),
        )
    if os_name == DARWIN:
        return HostFacts(
            os_name=os_name, arch=arch, machine=machine, distro_id="macos",
            distro_version=platform.mac_ver()[0], distro_name=f"macOS {platform.mac_ver()[0]}",
            init_system="launchd", wsl=0, container="", is_root=_is_root(), selinux="",
            apple_silicon=arch == "arm64",
        )
    return HostFacts(
        os_name=os_name, arch=arch, machine=machine, distro_id="windows",
        distro_version=platform.version(), distro_name=f"Windows {platform.release()}",
        init_system="windows", wsl=0, container="", is_root=_is_root(), selinux="",
    )


def read_os_release(root: Path) -> tuple[str, str, str]:
    """(id, version_id, pretty name) from os-release, via the `distro` library."""
    import distro  # local import: only Linux needs it and it reads files at import in old versions

    for candidate in (root / "etc/os-release", root / "usr/lib/os-release"):
        if candidate.is_file():
            info = distro.LinuxDistribution(
                include_lsb=False, include_uname=False, include_oslevel=False,
                os_release_file=str(candidate), distro_release_file=str(root / "etc/nonexistent"),
            )
            return info.id(), info.version(best=False), info.name(pretty=True)
    return "", "", "Linux"


def detect_init_system(root: Path) -> str:
    """``systemd`` when systemd is PID 1 (sd_booted(3): /run/systemd/system exists), else none."""
    if (root / "run/systemd/system").is_dir():
        return "systemd"
    return "none"


def detect_wsl(proc_version: str) -> int:
    """WSL generation from /proc/version: WSL2 kernels say ``microsoft-standard-WSL2``; WSL1
    reports a kernel string ending in ``Microsoft``."""
    text = proc_version.lower()
    if "microsoft" not in text:
        return 0
    if "wsl2" in text or "microsoft-standard" in text:
        return 2
    return 1


def detect_container(root: Path) -> str:
    """Which container runtime (if any) we are inside, from its marker files."""
    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "run/.containerenv").exists():
        return "podman"
    env_marker = _read(root / "run/systemd/container").strip()
    if env_marker:
        return env_marker
    cgroup = _read(root / "proc/1/cgroup")
    for needle, name in (("kubepods", "kubernetes"), ("docker", "docker"), ("lxc", "lxc"),
                         ("libpod", "podman")):
        if needle in cgroup:
            return name
    return ""


def detect_selinux(root: Path) -> str:
    """SELinux mode from selinuxfs: ``enforcing``, ``permissive``, or "" when absent."""
    enforce = _read(root / "sys/fs/selinux/enforce").strip()
    if enforce == "1":
        return "enforcing"
    if enforce == "0":
        return "permissive"
    return ""


def home_dir() -> Path:
    return Path.home()


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None:
        return bool(geteuid() == 0)
    try:
        import ctypes

        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""

"""Host facts from faked kernel and distro files (pyfakefs): distro, WSL, containers, SELinux."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from ollamactl import host

DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
"""
UBUNTU = """NAME="Ubuntu"
VERSION_ID="22.04"
PRETTY_NAME="Ubuntu 22.04.4 LTS"
ID=ubuntu
ID_LIKE=debian
"""
WSL2 = ("Linux version 5.15.153.1-microsoft-standard-WSL2 (root@941d701f84f1) "
        "(gcc (GCC) 12.2.0) #1 SMP Fri Mar 29 23:14:13 UTC 2024\n")
WSL1 = "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0) #1\n"
NATIVE = "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian\n"


def test_debian_with_systemd(fs: FakeFilesystem) -> None:
    fs.create_file("/etc/os-release", contents=DEBIAN)
    fs.create_file("/proc/version", contents=NATIVE)
    fs.create_dir("/run/systemd/system")
    facts = host.detect()
    assert (facts.distro_id, facts.distro_version) == ("debian", "12")
    assert facts.distro_name == "Debian GNU/Linux 12 (bookworm)"
    assert facts.init_system == "systemd" and facts.has_systemd
    assert facts.wsl == 0 and facts.container == "" and facts.selinux == ""
    assert facts.os_name == "linux"


def test_wsl2_without_systemd(fs: FakeFilesystem) -> None:
    fs.create_file("/etc/os-release", contents=UBUNTU)
    fs.create_file("/proc/version", contents=WSL2)
    facts = host.detect()
    assert facts.wsl == 2
    assert facts.init_system == "none"
    assert (facts.distro_id, facts.distro_version) == ("ubuntu", "22.04")
    assert "WSL2" in facts.describe()


def test_wsl1(fs: FakeFilesystem) -> None:
    fs.create_file("/proc/version", contents=WSL1)
    assert host.detect().wsl == 1


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"/.dockerenv": ""}, "docker"),
        ({"/run/.containerenv": ""}, "podman"),
        ({"/run/systemd/container": "systemd-nspawn\n"}, "systemd-nspawn"),
        ({"/proc/1/cgroup": "0::/kubepods/besteffort/pod1234/abc\n"}, "kubernetes"),
        ({"/proc/1/cgroup": "0::/init.scope\n"}, ""),
    ],
)
def test_container_markers(fs: FakeFilesystem, files: dict[str, str], expected: str) -> None:
    for path, content in files.items():
        fs.create_file(path, contents=content)
    assert host.detect().container == expected


@pytest.mark.parametrize(("enforce", "mode"), [("1\n", "enforcing"), ("0\n", "permissive"),
                                                (None, "")])
def test_selinux_mode(fs: FakeFilesystem, enforce: str | None, mode: str) -> None:
    if enforce is not None:
        fs.create_file("/sys/fs/selinux/enforce", contents=enforce)
    assert host.detect().selinux == mode


def test_no_os_release_still_answers(fs: FakeFilesystem) -> None:
    facts = host.detect()
    assert facts.distro_id == "" and facts.distro_name == "Linux"


def test_staging_root_is_read_instead_of_slash(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text(UBUNTU)
    (tmp_path / ".dockerenv").write_text("")
    facts = host.detect(tmp_path)
    assert facts.distro_id == "ubuntu" and facts.container == "docker"


def test_only_host_reads_sys_platform() -> None:
    package = Path(host.__file__).parent
    readers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if "sys.platform" in p.read_text())
    assert readers == ["host.py"]

"""Shared fixtures: staging roots, the recording runner, free loopback ports, cache resets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamactl import host as hostmod
from ollamactl.context import Context
from ollamactl.host import HostFacts
from ollamactl.system import RecordingRunner
from tests.integration import server_process


@pytest.fixture(autouse=True)
def _reset_caches() -> Iterator[None]:
    hostmod._detect_cached.cache_clear()
    yield
    hostmod._detect_cached.cache_clear()


@pytest.fixture
def linux_host() -> HostFacts:
    """A plain Debian 12 host with systemd, as root."""
    return HostFacts(os_name="linux", arch="amd64", machine="x86_64", distro_id="debian",
                     distro_version="12", distro_name="Debian GNU/Linux 12 (bookworm)",
                     init_system="systemd", wsl=0, container="", is_root=True, selinux="")


@pytest.fixture
def recorder() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def staging_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def ctx(linux_host: HostFacts, recorder: RecordingRunner, staging_root: Path) -> Context:
    return Context(host=linux_host, runner=recorder, root=staging_root)


@pytest.fixture
def free_port() -> int:
    return server_process.free_port()

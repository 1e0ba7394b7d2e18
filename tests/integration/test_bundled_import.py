"""Import both real bundled models from their installed packages into a temporary store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ollamactl.runtime.prompting.prompt import render_chat
from ollamactl.runtime.store import bundled
from ollamactl.runtime.store.manifests import Store

pytestmark = pytest.mark.integration


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


@pytest.mark.parametrize(("name", "family", "quantization", "parameters"), [
    ("smollm2:135m", "llama", "Q4_1", "134.52M"),
    ("gemma3:270m", "gemma3", "Q4_K_M", "268.10M"),
])
def test_import_bundled(tmp_path: Path, name: str, family: str, quantization: str,
                        parameters: str) -> None:
    store = Store(tmp_path)
    statuses: list[str] = []
    layer_frames: list[tuple[str | None, int | None, int | None]] = []

    def progress(status: str, done: int | None, total: int | None, *,
                 digest: str | None = None) -> None:
        statuses.append(status)
        if status.startswith("pulling ") and status != "pulling manifest":
            layer_frames.append((digest, done, total))

    model = bundled.import_bundled(store, name, progress=progress)
    expected = bundled.expected_digest(bundled.BUNDLED[name])
    # Ollama's pull frames: every byte count names its layer's digest
    assert layer_frames and all(d == expected for d, _, _ in layer_frames)
    assert layer_frames[-1][1] == layer_frames[-1][2] == model.model_path.stat().st_size
    assert model.model_digest == expected
    assert _sha256(model.model_path) == expected
    assert model.name.display == name
    assert (model.details.family, model.details.quantization_level,
            model.details.parameter_size) == (family, quantization, parameters)
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert f"pulling {expected[7:19]}" in statuses and "verifying sha256 digest" in statuses
    assert [m.name.display for m in store.list()] == [name]
    turn = render_chat(model, [{"role": "user", "content": "Hello"}]).text
    assert turn.endswith("<|im_start|>assistant\n" if family == "llama"
                         else "<start_of_turn>model\n")

    again = bundled.import_bundled(store, name)
    assert again.manifest_digest == model.manifest_digest
    assert len(list((tmp_path / "blobs").iterdir())) == len(model.layers) + 1

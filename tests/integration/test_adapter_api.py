"""A LoRA adapter end to end: a Modelfile's ADAPTER line through `ollamactl create`, the
adapter layer, and the runner applying it when the model is asked (a zero adapter answers as
the base model does, a strong one differently)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.gguf_builder import tiny_lora
from tests.integration.server_process import SMOLLM2, Server, smollm2_gguf

GREEDY = {"temperature": 0, "num_predict": 12, "seed": 1}


def create(server: Server, name: str, modelfile: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": server.url, "NO_PROXY": "*"}
    return subprocess.run([sys.executable, "-m", "ollamactl", "create", name, "-f",
                           str(modelfile)], env=env, text=True, capture_output=True,
                          timeout=300, check=False)


def answer(server: Server, model: str) -> str:
    reply = server.post("/api/generate", {"model": model, "prompt": "Name three colours.",
                                          "options": GREEDY, "stream": False})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["response"])


def test_an_adapter_from_a_modelfile_is_applied_when_the_model_runs(server: Server,
                                                                     tmp_path: Path) -> None:
    base = answer(server, SMOLLM2)
    for name, strength in (("zero-lora", 0.0), ("strong-lora", 10.0)):
        tiny_lora(tmp_path / f"{name}.gguf", strength=strength)
        modelfile = tmp_path / f"{name}.Modelfile"
        modelfile.write_text(f"FROM {smollm2_gguf()}\nADAPTER ./{name}.gguf\n")
        done = create(server, name, modelfile)
        assert done.returncode == 0, done.stderr
    manifest = json.loads((server.models / "manifests/registry.ollama.ai/library/strong-lora"
                           / "latest").read_text())
    assert "application/vnd.ollama.image.adapter" in [m["mediaType"] for m in manifest["layers"]]
    assert answer(server, "zero-lora") == base
    assert answer(server, "strong-lora") != base

"""/api/create with quantize and adapters, and /api/delete, on the real server: progress
streamed as the work goes, Ollama's 400s before the stream, a failure after it started as the
stream's last line, the CLI's one line; deleting one of two loaded models unloads only it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from ollamactl.runtime.store import bundled, gguf
from ollamactl.runtime.store.manifests import Store
from tests.gguf_builder import tiny_llama, tiny_lora, tiny_model
from tests.integration.server_process import GEMMA3, SMOLLM2, Server, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "3"}
ONLY_FLOAT = {"error": "quantization is only supported for F16 and F32 models"}


def SERVER_STOCK(store: Store) -> None:
    bundled.import_bundled(store, GEMMA3)


def upload(server: Server, path: Path) -> str:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    requests.post(f"{server.url}/api/blobs/{digest}", data=data, timeout=30).raise_for_status()
    return digest


def names(server: Server) -> list[str]:
    return [m["name"] for m in requests.get(f"{server.url}/api/tags", timeout=10)
            .json()["models"]]


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": server.url, "NO_PROXY": "*"}
    return subprocess.run([sys.executable, "-m", "ollamactl", *args], env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def test_create_quantize_streams_its_progress_live(server: Server, tmp_path: Path) -> None:
    digest = upload(server, tiny_llama(tmp_path / "f16.gguf", n_embd=512))
    frames: list[dict[str, Any]] = []
    with requests.post(f"{server.url}/api/create", json={
            "model": "tiny-q", "files": {"tiny.gguf": digest}, "quantize": "q4_K_M"},
            stream=True, timeout=120) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            frames.append(json.loads(line))
            if len(frames) == 2:   # quantizing has begun: nothing is written yet
                assert frames[1]["status"] == "quantizing F16 model to Q4_K_M"
                assert "tiny-q:latest" not in names(server)
    statuses = [frame["status"] for frame in frames]
    working = [frame for frame in frames if frame["status"] == statuses[1]]
    assert statuses[0] == "parsing GGUF"
    assert all(frame["digest"] == "0000000000000000000" for frame in working)
    done = [frame.get("completed", 0) for frame in working]
    assert done == sorted(done) and done[-1] == working[0]["total"] and len(done) > 2
    rest = statuses[len(working) + 1:]
    assert rest[0] == "verifying conversion" and rest[1].startswith("creating new layer sha256:")
    assert rest[-2:] == ["writing manifest", "success"]

    shown = server.post("/api/show", {"model": "tiny-q"}).json()
    assert shown["details"]["quantization_level"] == "Q4_K_M"
    weights = rest[1].removeprefix("creating new layer ").replace(":", "-")
    info = gguf.read_metadata(server.models / "blobs" / weights)
    assert info.quantization == "Q4_K_M" and "Q4_K" in {t.type_name for t in info.tensors}


def test_quantize_refusals_are_400_before_the_stream(server: Server, tmp_path: Path) -> None:
    for body, error in [
        ({"model": "q", "from": SMOLLM2, "quantize": "q4_K_M"}, ONLY_FLOAT),
        ({"model": "q", "from": SMOLLM2, "quantize": "q2_K"},
         {"error": "unsupported quantization type Q2_K - supported types are F32, F16, "
                   "Q4_K_S, Q4_K_M, Q8_0"}),
    ]:
        reply = server.post("/api/create", body)
        assert (reply.status_code, reply.json()) == (400, error)
    assert "q:latest" not in names(server)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {SMOLLM2}\n")
    refused = cli(server, "create", "q", "-f", str(modelfile), "-q", "q4_K_M")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[0].endswith(ONLY_FLOAT["error"])
    assert "Traceback" not in refused.stderr


def test_a_failure_after_the_stream_started_is_its_last_line(server: Server,
                                                              tmp_path: Path) -> None:
    digest = upload(server, tiny_model(tmp_path / "thin.gguf"))   # no llama.block_count
    body = {"model": "thin", "files": {"thin.gguf": digest}, "quantize": "q8_0"}
    reply = server.post("/api/create", body)
    assert reply.status_code == 200
    frames = [json.loads(line) for line in reply.text.splitlines()]
    assert [f["status"] for f in frames[:2]] == ["parsing GGUF",
                                                 "quantizing F32 model to Q8_0"]
    failure = "quantizing to Q8_0 failed: key not found in model: llama.block_count"
    assert frames[-1] == {"error": failure}
    whole = server.post("/api/create", {**body, "stream": False})
    assert (whole.status_code, whole.json()) == (500, {"error": failure})
    assert "thin:latest" not in names(server)
    assert not [p for p in (server.models / "blobs").iterdir() if p.name.startswith(".tmp")]

    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tmp_path / 'thin.gguf'}\n")
    failed = cli(server, "create", "thin", "-f", str(modelfile), "-q", "q8_0")
    assert failed.returncode == 1 and failure in failed.stderr
    assert "Traceback" not in failed.stderr
    modelfile.write_text(f"FROM {tiny_llama(tmp_path / 'f16.gguf')}\n")
    made = cli(server, "create", "tiny-q8", "-f", str(modelfile), "-q", "q8_0")
    assert made.returncode == 0, made.stderr
    assert "quantizing F16 model to Q8_0" in made.stderr and "success" in made.stderr


def test_create_with_a_lora_adapter(server: Server, tmp_path: Path) -> None:
    lora = upload(server, tiny_lora(tmp_path / "lora.gguf"))    # SmolLM2's attn_q shapes
    reply = server.post("/api/create", {"model": "smol-lora", "from": SMOLLM2,
                                        "adapters": {"lora.gguf": lora}})
    assert reply.status_code == 200, reply.text
    assert json.loads(reply.text.splitlines()[-1]) == {"status": "success"}
    manifest = json.loads((server.models / "manifests" / "registry.ollama.ai" / "library" /
                           "smol-lora" / "latest").read_text())
    assert {"mediaType": "application/vnd.ollama.image.adapter", "digest": lora,
            "size": (tmp_path / "lora.gguf").stat().st_size} in manifest["layers"]

    model = upload(server, tiny_model(tmp_path / "model.gguf"))
    gemma_lora = upload(server, tiny_lora(tmp_path / "g.gguf", architecture="gemma3"))
    for adapters, status, needle in [
        ({"a.gguf": model}, 400, "is not a LoRA adapter"),
        ({"a.gguf": gemma_lora}, 400, "the adapter is for gemma3, the model is llama"),
        ({"a.gguf": "sha256:" + "1" * 64}, 400, "not found"),
        ({"a.gguf": "sha256:nope"}, 400, "invalid digest format"),
        ({"../a.gguf": lora}, 400, "file path must be relative"),
    ]:
        refused = server.post("/api/create", {"model": "bad-lora", "from": SMOLLM2,
                                              "adapters": adapters})
        assert refused.status_code == status and needle in refused.json()["error"], adapters
    assert "bad-lora:latest" not in names(server)


def test_delete_unloads_only_the_deleted_model(server: Server) -> None:
    server.unload_all()
    assert server.post("/api/copy", {"source": SMOLLM2, "destination": "smol-copy"}).ok
    for model in (SMOLLM2, GEMMA3):
        assert server.post("/api/generate", {"model": model, "keep_alive": -1}).ok
    assert sorted(m["name"] for m in server.ps()) == sorted([SMOLLM2, GEMMA3])
    runners = {p.pid for p in server.runners()}

    # Another name for SmolLM2's weights: its runner serves smollm2:135m and stays.
    assert requests.delete(f"{server.url}/api/delete", json={"model": "smol-copy"},
                           timeout=10).status_code == 200
    assert sorted(m["name"] for m in server.ps()) == sorted([SMOLLM2, GEMMA3])

    assert requests.delete(f"{server.url}/api/delete", json={"model": GEMMA3},
                           timeout=10).status_code == 200
    wait_for(lambda: [m["name"] for m in server.ps()] == [SMOLLM2] and
             len(server.runners()) == 1)
    assert {p.pid for p in server.runners()} < runners     # SmolLM2's runner, not a new one
    missing = requests.delete(f"{server.url}/api/delete", json={"model": GEMMA3}, timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"error": f"model '{GEMMA3}' not found"})
    server.unload_all()

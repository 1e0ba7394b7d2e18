"""Images end to end on the real server: SmolLM2 plus a generated projector (random weights,
fixed seed; no small vision model ships on PyPI), created through /api/create as Ollama takes
a model and its projector, then ``images`` on /api/generate and /api/chat and an ``image_url``
on /v1/chat/completions.

What this proves: the projector loads in the runner (llama.cpp's mtmd), an image becomes its
16 embeddings in the sequence's prompt (the prompt eval count grows by exactly that), and those
embeddings reach the model (at temperature 0 the answer depends on which image was sent, and
is the same for the same image). It does not prove that a real model sees anything: the
weights are noise.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.server_process import SMOLLM2, Server, smollm2_gguf
from tests.vision_builder import IMAGE_TOKENS, png, write_projector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_CONTEXT_LENGTH": "512"}
MODEL = "smolvision:test"
RED = base64.b64encode(png((200, 30, 30))).decode()
BLUE = base64.b64encode(png((20, 30, 220))).decode()
GREEDY = {"temperature": 0, "num_predict": 12}


@pytest.fixture(scope="module")
def vision_model(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny vision model, created from the two GGUFs as Ollama's ``files`` map."""
    projector = write_projector(tmp_path_factory.mktemp("projector") / "mmproj.gguf").read_bytes()
    projector_digest = "sha256:" + hashlib.sha256(projector).hexdigest()
    requests.post(f"{server.url}/api/blobs/{projector_digest}", data=projector,
                  timeout=30).raise_for_status()
    model_digest = "sha256:" + hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()
    reply = server.post("/api/create", {"model": MODEL, "stream": False, "files": {
        "SmolLM2.gguf": model_digest, "mmproj.gguf": projector_digest}})
    assert reply.json() == {"status": "success"}
    return MODEL


def generate(server: Server, **body: Any) -> dict[str, Any]:
    reply = server.post("/api/generate", {"model": MODEL, "prompt": "What is in the picture?",
                                          "stream": False, "options": GREEDY, **body},
                        timeout=300)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_create_makes_a_projector_layer_and_vision(server: Server, vision_model: str) -> None:
    show = server.post("/api/show", {"model": vision_model}).json()
    assert "vision" in show["capabilities"]
    manifest = server.models / "manifests/registry.ollama.ai/library/smolvision/test"
    assert '"application/vnd.ollama.image.projector"' in manifest.read_text()


def test_an_image_reaches_the_model(server: Server, vision_model: str) -> None:
    plain = generate(server)
    red = generate(server, images=[RED])
    assert red["prompt_eval_count"] == plain["prompt_eval_count"] + IMAGE_TOKENS
    assert generate(server, images=[RED])["response"] == red["response"]
    blue = generate(server, images=[BLUE])
    assert blue["prompt_eval_count"] == red["prompt_eval_count"]
    assert len({plain["response"], red["response"], blue["response"]}) == 3


def test_chat_and_openai_send_the_image_the_same_way(server: Server, vision_model: str) -> None:
    native = server.post("/api/chat", {"model": MODEL, "stream": False, "options": GREEDY,
                                       "messages": [{"role": "user", "content": "Describe it.",
                                                     "images": [BLUE]}]}, timeout=300).json()
    reply = server.post("/v1/chat/completions", {
        "model": MODEL, "temperature": 0, "max_tokens": 12, "messages": [{
            "role": "user", "content": [
                {"type": "text", "text": "Describe it."},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{BLUE}"}}]}]},
        timeout=300)
    assert reply.status_code == 200, reply.text
    openai = reply.json()
    assert openai["choices"][0]["message"]["content"] == native["message"]["content"]
    assert openai["usage"]["prompt_tokens"] == native["prompt_eval_count"]
    assert native["prompt_eval_count"] > IMAGE_TOKENS


def test_the_cli_creates_from_a_modelfile_with_two_froms(server: Server,
                                                         tmp_path: Path) -> None:
    write_projector(tmp_path / "mmproj.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {smollm2_gguf()}\nFROM ./mmproj.gguf\n")
    done = subprocess.run(
        [sys.executable, "-m", "ollamactl", "create", "smolvision:cli", "-f",
         str(tmp_path / "Modelfile")], env={**os.environ, "OLLAMA_HOST": server.url,
                                             "NO_PROXY": "*"},
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    show = server.post("/api/show", {"model": "smolvision:cli"}).json()
    assert "vision" in show["capabilities"]
    assert show["modelfile"].count("\nFROM ") == 2


def test_a_projector_for_another_model_fails_the_load_with_the_reason(server: Server,
                                                                       tmp_path: Path) -> None:
    projector = write_projector(tmp_path / "narrow.gguf", text_embd=64).read_bytes()
    digest = "sha256:" + hashlib.sha256(projector).hexdigest()
    requests.post(f"{server.url}/api/blobs/{digest}", data=projector,
                  timeout=30).raise_for_status()
    model_digest = "sha256:" + hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()
    assert server.post("/api/create", {"model": "narrow", "stream": False, "files": {
        "m.gguf": model_digest, "p.gguf": digest}}).json() == {"status": "success"}
    reply = server.post("/api/generate", {"model": "narrow", "prompt": "x", "stream": False})
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert "unable to load the projector" in error
    assert error.endswith(": mismatch between text model (n_embd = 576) and mmproj (n_embd = 64)")


def test_a_model_without_a_projector_refuses_images(server: Server) -> None:
    reply = server.post("/api/generate", {"model": SMOLLM2, "prompt": "x", "images": [RED]})
    assert reply.status_code == 400
    assert reply.json() == {"error": f"registry.ollama.ai/library/{SMOLLM2} does not support "
                                     "vision"}


def test_the_official_client_sends_images_and_gets_the_400_for_a_model_without_vision(
        server: Server, vision_model: str) -> None:
    import ollama

    with ollama.Client(host=server.url) as client:
        seen = client.generate(model=vision_model, prompt="What is in the picture?",
                               images=[png((200, 30, 30))], options=GREEDY)
        assert seen.response == generate(server, images=[RED])["response"]
        chat = client.chat(model=vision_model, options=GREEDY, messages=[
            {"role": "user", "content": "What is in the picture?",
             "images": [png((20, 30, 220))]}])
        assert chat.message.content
        with pytest.raises(ollama.ResponseError) as refused:
            client.generate(model=SMOLLM2, prompt="What is in the picture?",
                            images=[png((200, 30, 30))])
    assert refused.value.status_code == 400
    assert refused.value.error.endswith("does not support vision")


def test_the_openai_client_sends_an_image_url(server: Server, vision_model: str) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    content: Any = [{"type": "text", "text": "What is in the picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{RED}"}}]
    reply = client.chat.completions.create(model=vision_model, temperature=0, max_tokens=12,
                                           messages=[{"role": "user", "content": content}])
    native = server.post("/api/chat", {"model": vision_model, "stream": False,
                                       "options": GREEDY, "messages": [
                                           {"role": "user", "content": "What is in the picture?",
                                            "images": [RED]}]}).json()
    assert reply.choices[0].message.content == native["message"]["content"]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == native["prompt_eval_count"]


def test_an_image_the_projector_cannot_read_is_the_requests_fault(server: Server,
                                                                  vision_model: str) -> None:
    not_a_picture = base64.b64encode(b"just some text, valid base64").decode()
    reply = server.post("/api/generate", {"model": vision_model, "prompt": "What is this?",
                                          "stream": False, "images": [not_a_picture]})
    assert reply.status_code == 400
    assert "unable to read an image" in reply.json()["error"]
    assert generate(server, images=[RED])["response"]      # the runner serves on

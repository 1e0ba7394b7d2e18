"""Images without a model: the generated projector read back, create's projector layer and the
``vision`` capability, Ollama's ``[img-N]`` tags, and the 400s (bad base64, no vision)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from starlette.testclient import TestClient

from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.http.images import BadImage, check_base64, tag_content, tag_messages
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.modelfile import format_modelfile, parse_modelfile
from ollamactl.runtime.store.models import MEDIA_MODEL, MEDIA_PROJECTOR
from ollamactl.runtime.store.projector import is_projector, projector_digests, projector_path
from ollamactl.settings import load_server_config
from tests.gguf_builder import tiny_model
from tests.vision_builder import IMAGE_SIZE, png, write_projector

RED = base64.b64encode(png((200, 30, 30))).decode()


def test_the_generated_projector_reads_back_as_a_clip_projector(tmp_path: Path) -> None:
    info = gguf.read_metadata(write_projector(tmp_path / "p.gguf", text_embd=64))
    assert info.architecture == "clip"
    assert info.kv["clip.projector_type"] == "mlp"
    assert info.kv["clip.vision.projection_dim"] == 64
    shapes = {t.name: list(t.shape) for t in info.tensors}
    assert shapes["mm.2.weight"] == [64, 64]      # ggml order: in, out (the text width)
    assert shapes["v.patch_embd.weight"][:2] == [8, 8]
    assert is_projector(info)
    assert not is_projector(gguf.read_metadata(tiny_model(tmp_path / "m.gguf")))


def test_the_projector_is_deterministic(tmp_path: Path) -> None:
    one = write_projector(tmp_path / "a.gguf").read_bytes()
    assert one == write_projector(tmp_path / "b.gguf").read_bytes()
    assert one != write_projector(tmp_path / "c.gguf", seed=18).read_bytes()


def test_png_writes_a_decodable_image() -> None:
    data = png((1, 2, 3))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(data[16:20], "big") == IMAGE_SIZE
    assert png((1, 2, 3)) != png((3, 2, 1))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


def test_create_takes_a_projector_blob_as_ollamas_projector_layer(store: Store,
                                                                   tmp_path: Path) -> None:
    weights = store.import_file(tiny_model(tmp_path / "m.gguf"))
    projector = store.import_file(write_projector(tmp_path / "p.gguf"))
    assert projector_digests(store, [weights, projector]) == [projector]
    model = create_model(store, "seeing", model_digest=weights, projectors=[projector])
    assert [layer.media_type for layer in model.layers][:2] == [MEDIA_MODEL, MEDIA_PROJECTOR]
    assert "vision" in model.capabilities
    assert projector_path(store, model) == str(store.blob_path(projector))
    # a model made from it keeps the projector
    child = create_model(store, "child", from_model="seeing", system="be brief")
    assert "vision" in child.capabilities
    assert projector_path(store, child) == projector_path(store, model)
    plain = create_model(store, "plain", model_digest=weights)
    assert "vision" not in plain.capabilities
    assert projector_path(store, plain) == ""


def test_a_modelfile_takes_a_second_from_file_as_ollama_does(store: Store,
                                                              tmp_path: Path) -> None:
    tiny_model(tmp_path / "m.gguf")
    write_projector(tmp_path / "mmproj.gguf")
    spec = parse_modelfile("FROM ./m.gguf\nFROM ./mmproj.gguf\nSYSTEM hi\n", tmp_path)
    assert (spec.from_path, spec.more_files) == (tmp_path / "m.gguf",
                                                 (tmp_path / "mmproj.gguf",))
    # and show writes the projector back as one
    model = create_model(store, "seeing", model_digest=store.import_file(tmp_path / "m.gguf"),
                         projectors=[store.import_file(tmp_path / "mmproj.gguf")])
    lines = format_modelfile(model).splitlines()
    assert lines[4:6] == [f"FROM {model.model_path}", f"FROM {projector_path(store, model)}"]


def test_tags_follow_ollamas_chat_prompt() -> None:
    assert tag_content("what is this?", 0, 2) == "[img-0][img-1]what is this?"
    assert tag_content("compare [img] with [img]", 3, 2) == "compare [img-3] with [img-4]"
    messages: list[dict[str, Any]] = [{"role": "user", "content": "a", "images": ["x"]},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c [img] d", "images": ["y", "z"]}]
    assert tag_messages(messages) == ["x", "y", "z"]
    assert messages == [{"role": "user", "content": "[img-0]a"},
                        {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "[img-2]c [img-1] d"}]


@pytest.mark.parametrize(("text", "offset"), [
    ("not base64!", 3), ("abc", 0), ("abcde", 4), ("aGVsbG8", 4), ("a\u00e9==", 1)])
def test_bad_base64_gets_gos_message(text: str, offset: int) -> None:
    with pytest.raises(BadImage, match=f"^illegal base64 data at input byte {offset}$"):
        check_base64([RED, text])
    check_base64([RED, "aGVs\nbG8=", ""])


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    weights = store.import_file(tiny_model(tmp_path / "m.gguf"))
    create_model(store, "plain", model_digest=weights)
    create_model(store, "seeing", model_digest=weights,
                 projectors=[store.import_file(write_projector(tmp_path / "p.gguf"))])
    config = load_server_config({"OLLAMA_MODELS": str(store.root), "OLLAMA_HOST": "127.0.0.1:9",
                                 "OLLAMA_CONTEXT_LENGTH": "256"}, detect())
    with TestClient(create_app(config), base_url="http://127.0.0.1:9") as running:
        yield running


def test_api_refuses_bad_base64_and_images_for_a_model_without_vision(
        client: TestClient) -> None:
    def body(path: str, images: list[str]) -> dict[str, Any]:
        if path == "/api/generate":
            return {"prompt": "x", "images": images}
        return {"messages": [{"role": "user", "content": "x", "images": images}]}

    for path in ("/api/generate", "/api/chat"):
        # bad base64 is refused before the model is even looked at, as Ollama's JSON binding
        reply = client.post(path, json={"model": "seeing", **body(path, ["not base64!"])})
        assert (reply.status_code, reply.json()) == \
            (400, {"error": "illegal base64 data at input byte 3"})
        reply = client.post(path, json={"model": "plain", **body(path, [RED])})
        assert (reply.status_code, reply.json()) == \
            (400, {"error": "registry.ollama.ai/library/plain:latest does not support vision"})
    show = client.post("/api/show", json={"model": "seeing"}).json()
    assert "vision" in show["capabilities"]
    assert show["projector_info"]["clip.projector_type"] == "mlp"
    assert "projector_info" not in client.post("/api/show", json={"model": "plain"}).json()


def test_openai_refuses_an_image_url_that_is_not_base64(client: TestClient) -> None:
    for url in ("data:image/png;base64,not base64!", "https://example.com/cat.png"):
        reply = client.post("/v1/chat/completions", json={"model": "seeing", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]})
        assert reply.status_code == 400
        assert reply.json()["error"]["message"] == "invalid image input"


def test_prefix_reuse_never_splits_an_image_and_context_drops_placeholders() -> None:
    from ollamactl.runtime.runner.batch_loop import _text_tokens
    from ollamactl.runtime.runner.vision import PromptMedia, _Image, placeholder

    media = PromptMedia(cast(Any, None), images=[_Image(3, 19, None), _Image(20, 36, None)])
    assert [media.reusable(keep) for keep in (2, 3, 4, 18, 19, 20, 30, 36, 40)] == \
        [2, 3, 3, 3, 19, 20, 20, 36, 40]
    red, blue = placeholder(png((200, 30, 30))), placeholder(png((20, 30, 220)))
    assert red < 0 and blue < 0 and red != blue
    assert red == placeholder(png((200, 30, 30)))
    assert _text_tokens([1, red, red, 2, blue]) == [1, 2]
    assert _text_tokens(None) is None


def test_a_different_projector_is_a_different_runner_config() -> None:
    from ollamactl.runtime.runner.config import RunnerConfig

    with_projector = RunnerConfig("m.gguf", 512, projector="p.gguf")
    assert RunnerConfig.from_json(with_projector.to_json()) == with_projector
    assert with_projector != RunnerConfig("m.gguf", 512)
    assert with_projector != RunnerConfig("m.gguf", 512, projector="q.gguf")

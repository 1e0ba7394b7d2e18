"""Model store: digest gate, atomic blobs, create/resolve/list/copy/delete/prune on real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamactl.errors import ModelError
from ollamactl.runtime.store.blobs import (
    BlobNotFound,
    DigestMismatch,
    InvalidDigest,
    validate_digest,
)
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.gguf import InvalidGGUF
from ollamactl.runtime.store.manifests import ModelNotFound, Store
from ollamactl.runtime.store.models import MEDIA_MODEL, MEDIA_PARAMS, MEDIA_SYSTEM, MEDIA_TEMPLATE
from ollamactl.runtime.store.names import InvalidModelName
from ollamactl.runtime.store.prune import prune
from tests.gguf_builder import tiny_model

HEX = "ab" * 32


@pytest.mark.parametrize("text", [f"sha256:{HEX}", f"sha256-{HEX}", f"sha256:{HEX.upper()}"])
def test_validate_digest_accepts_and_canonicalises(text: str) -> None:
    assert validate_digest(text) == f"sha256:{HEX}"


@pytest.mark.parametrize("text", [
    "", "sha256:", f"sha256:{HEX}0", f"sha256:{HEX[:-1]}", f"sha512:{HEX}", f"SHA256:{HEX}",
    f"sha256:{HEX}\n", f"sha256:{HEX[:-2]}/.", "sha256:../../../../etc/passwd",
    f"sha256-{HEX[:-3]}/..", f"../sha256-{HEX}", f"sha256:{HEX[:-1]}g", f"sha256_{HEX}",
    f" sha256:{HEX}", f"sha256:{HEX}\x00", "sha256:" + "\u0661" * 64,
])
def test_validate_digest_rejects(text: str) -> None:
    with pytest.raises(InvalidDigest, match=r"^invalid digest format$"):
        validate_digest(text)


def test_blob_paths_never_leave_blobs_dir(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.blob_path(f"sha256:{HEX}") == tmp_path / "blobs" / f"sha256-{HEX}"
    for evil in ("sha256:../../etc/passwd", "/etc/passwd", f"sha256-{HEX}/../../x"):
        with pytest.raises(InvalidDigest):
            store.has_blob(evil)
    assert not (tmp_path / "blobs").exists()


def test_write_blob_verifies_before_publishing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    data = b"hello blob"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.write_blob([data[:5], data[5:]], digest) == digest
    assert store.blob_path(digest).read_bytes() == data
    with pytest.raises(DigestMismatch, match=r'^digest mismatch, expected "sha256:'):
        store.write_blob([b"other"], f"sha256:{HEX}")
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [digest.replace(":", "-")]


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 1000
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write_blob(chunks())
    assert list((tmp_path / "blobs").iterdir()) == []


def test_existing_blob_is_not_read_again(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.write_blob([b"abc"])

    def must_not_read() -> Iterator[bytes]:
        raise AssertionError("read")
        yield b""

    assert store.write_blob(must_not_read(), digest) == digest


@pytest.fixture
def store_with_model(tmp_path: Path) -> tuple[Store, str]:
    store = Store(tmp_path / "models")
    digest = store.import_file(tiny_model(tmp_path / "tiny.gguf", chat_template="{{ 'x' }}"))
    create_model(store, "tiny:1", model_digest=digest, template="{{ .Prompt }}",
                 system="be brief", params={"temperature": 0.5, "stop": ["</s>"]},
                 messages=[{"role": "user", "content": "hi"}], license=["MIT"])
    return store, digest


def test_create_writes_an_ollama_layout(store_with_model: tuple[Store, str]) -> None:
    store, digest = store_with_model
    manifest_path = store.root / "manifests/registry.ollama.ai/library/tiny/1"
    manifest = json.loads(manifest_path.read_bytes())
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    media = [layer["mediaType"] for layer in manifest["layers"]]
    assert media[0] == MEDIA_MODEL and manifest["layers"][0]["digest"] == digest
    assert {MEDIA_TEMPLATE, MEDIA_SYSTEM, MEDIA_PARAMS} <= set(media)
    config = json.loads(store.blob_path(manifest["config"]["digest"]).read_bytes())
    assert config["model_format"] == "gguf" and config["model_family"] == "llama"
    assert config["file_type"] == "F32" and config["model_type"] == "8"
    for layer in [manifest["config"], *manifest["layers"]]:
        blob = store.blob_path(layer["digest"]).read_bytes()
        assert len(blob) == layer["size"]
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]


def test_resolve_reads_everything_back(store_with_model: tuple[Store, str]) -> None:
    store, _ = store_with_model
    model = store.resolve("TINY:1")
    manifest_bytes = (store.root / "manifests/registry.ollama.ai/library/tiny/1").read_bytes()
    assert model.name.display == "tiny:1"
    assert model.manifest_digest == hashlib.sha256(manifest_bytes).hexdigest()
    assert model.template == "{{ .Prompt }}" and model.system == "be brief"
    assert model.params == {"temperature": 0.5, "stop": ["</s>"]}
    assert model.messages == [{"role": "user", "content": "hi"}]
    assert model.license == ["MIT"]
    assert model.details.family == "llama" and model.details.context_length == 256
    assert model.chat_template == "{{ 'x' }}"
    assert model.capabilities == ["completion"]
    manifest = json.loads(manifest_bytes)
    assert model.size == manifest["config"]["size"] + sum(
        layer["size"] for layer in manifest["layers"])
    assert model.modified_at.tzinfo is not None


def test_resolve_reuses_a_parsed_model_until_its_manifest_or_weights_change(
        store_with_model: tuple[Store, str]) -> None:
    store, digest = store_with_model
    first = store.resolve("tiny:1")
    assert store.resolve("TINY:1") is first           # unchanged manifest: parsed once
    create_model(store, "tiny:1", from_model="tiny:1", system="changed")
    again = store.resolve("tiny:1")
    assert again is not first and again.system == "changed"
    store.blob_path(digest).unlink()
    with pytest.raises(ModelError, match="weights of 'tiny:1' are missing"):
        store.resolve("tiny:1")


def test_resolve_errors(store_with_model: tuple[Store, str]) -> None:
    store, _ = store_with_model
    with pytest.raises(ModelNotFound) as info:
        store.resolve("nope:1")
    assert info.value.name == "nope:1" and str(info.value) == "model 'nope:1' not found"
    with pytest.raises(InvalidModelName):
        store.resolve("../../etc/passwd")


def test_create_from_existing_model_inherits_and_overrides(
        store_with_model: tuple[Store, str]) -> None:
    store, digest = store_with_model
    child = create_model(store, "me/child", from_model="tiny:1", system="new system",
                         params={"top_k": 3})
    assert child.name.display == "me/child:latest"
    assert child.model_digest == digest
    assert child.system == "new system" and child.template == "{{ .Prompt }}"
    assert child.params == {"temperature": 0.5, "stop": ["</s>"], "top_k": 3}
    assert child.details.parent_model == "tiny:1"


def test_create_refuses_missing_blob_and_bad_gguf(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(BlobNotFound):
        create_model(store, "x", model_digest=f"sha256:{HEX}")
    bad = store.write_blob([b"GGUF\x03\x00\x00\x00 not really"])
    with pytest.raises(InvalidGGUF):
        create_model(store, "x", model_digest=bad)
    assert not (tmp_path / "manifests").exists()


def test_interrupted_create_leaves_no_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.import_file(tiny_model(tmp_path / "t.gguf"))

    def stop_at_manifest(status: str, completed: int | None, total: int | None) -> None:
        if status == "writing manifest":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_model(store, "half", model_digest=digest, system="s", progress=stop_at_manifest)
    assert store.list() == []
    with pytest.raises(ModelNotFound):
        store.resolve("half")


def test_list_is_newest_first_and_skips_damage(store_with_model: tuple[Store, str]) -> None:
    store, _ = store_with_model
    store.copy("tiny:1", "tiny:2")
    old = time.time() - 100
    os.utime(store.root / "manifests/registry.ollama.ai/library/tiny/1", (old, old))
    broken = store.root / "manifests/registry.ollama.ai/library/broken/latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    (store.root / "manifests/registry.ollama.ai/library/tiny/.latest.tmp").write_text("x")
    assert [m.name.display for m in store.list()] == ["tiny:2", "tiny:1"]


def test_copy_and_delete_keep_shared_blobs(store_with_model: tuple[Store, str]) -> None:
    store, digest = store_with_model
    copy = store.copy("tiny:1", "other/name:tag")
    assert copy.manifest_digest == store.resolve("tiny:1").manifest_digest
    store.delete("tiny:1")
    assert store.has_blob(digest)
    assert not (store.root / "manifests/registry.ollama.ai/library").exists()
    store.delete("other/name:tag")
    assert list((store.root / "blobs").iterdir()) == []
    assert list((store.root / "manifests").iterdir()) == []
    with pytest.raises(ModelNotFound):
        store.delete("other/name:tag")
    with pytest.raises(ModelNotFound):
        store.copy("gone", "x")


def test_prune_removes_old_orphans_and_temp_files(store_with_model: tuple[Store, str]) -> None:
    store, _ = store_with_model
    orphan_old = store.write_blob([b"old orphan"])
    orphan_new = store.write_blob([b"new orphan"])
    old = time.time() - 7200
    os.utime(store.blob_path(orphan_old), (old, old))
    stray = store.root / "blobs" / ".tmp-deadbeef"
    stray.write_bytes(b"partial")
    (store.root / "manifests/empty/dir").mkdir(parents=True)
    assert prune(store, noprune=True) == []
    removed = prune(store, noprune=False)
    assert set(removed) == {store.blob_path(orphan_old), stray}
    assert store.has_blob(orphan_new)
    assert not (store.root / "manifests/empty").exists()
    assert store.resolve("tiny:1").size > 0


def test_prune_honours_ollama_noprune(store_with_model: tuple[Store, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = store_with_model
    stray = store.root / "blobs" / ".tmp-1"
    stray.write_bytes(b"x")
    monkeypatch.setenv("OLLAMA_NOPRUNE", "1")
    assert prune(store) == []
    monkeypatch.setenv("OLLAMA_NOPRUNE", "false")
    assert prune(store) == [stray]


def test_reads_a_store_written_by_ollama(tmp_path: Path) -> None:
    """A manifest as Ollama writes it (legacy prompt layer, extra fields) resolves."""
    store = Store(tmp_path)
    weights = store.import_file(tiny_model(tmp_path / "t.gguf"))
    template = store.write_blob([b"{{ .Prompt }}"])
    config = store.write_blob([b'{"model_format":"gguf","model_family":"llama",'
                               b'"model_families":["llama"],"model_type":"8",'
                               b'"file_type":"F32","rootfs":{"type":"layers"}}'])
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution."
                "manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": config, "size": 10},
                "layers": [{"mediaType": MEDIA_MODEL, "digest": weights, "size": 1,
                            "from": "/root/.ollama/models/blobs/x"},
                           {"mediaType": "application/vnd.ollama.image.prompt",
                            "digest": template, "size": 13}]}
    path = tmp_path / "manifests/registry.ollama.ai/library/m/latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))
    model = store.resolve("m")
    assert model.template == "{{ .Prompt }}"
    assert model.details.parameter_size == "8"


def test_manifest_with_traversal_digest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifests/registry.ollama.ai/library/evil/latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": {"mediaType": "x", "digest": "sha256:../../etc",
                                           "size": 1}, "layers": []}))
    with pytest.raises(InvalidDigest):
        Store(tmp_path).resolve("evil")


def test_summaries_name_the_digests_and_sizes_of_every_manifest(
        store_with_model: tuple[Store, str]) -> None:
    store, _ = store_with_model
    path = store.root / "manifests/registry.ollama.ai/library/tiny/1"
    manifest = json.loads(path.read_bytes())
    (summary,) = store.summaries()
    assert summary.name == "registry.ollama.ai/library/tiny:1" and summary.path == path
    assert summary.digests == tuple(layer["digest"]
                                    for layer in [manifest["config"], *manifest["layers"]])
    assert summary.size_bytes == store.resolve("tiny:1").size


def test_summaries_are_lenient_where_the_server_is_strict(tmp_path: Path) -> None:
    """Doctor counts the blobs of a manifest the server would refuse (no config, a bad digest,
    a layer without a size) and leaves out what is not a manifest at all."""
    manifests = tmp_path / "manifests/registry.ollama.ai/library"
    (manifests / "odd").mkdir(parents=True)
    (manifests / "odd/latest").write_text(json.dumps({"layers": [
        {"mediaType": MEDIA_MODEL, "digest": f"sha256:{HEX}", "size": 100},
        {"mediaType": MEDIA_SYSTEM, "digest": "sha256:short"}, "not a layer", {"size": 5}]}))
    (manifests / "broken").mkdir()
    (manifests / "broken/latest").write_text("{not json")
    (manifests / "nolayers").mkdir()
    (manifests / "nolayers/latest").write_text(json.dumps({"config": {"digest": "x"}}))
    (manifests / "odd/.latest.tmp").write_text("{}")
    store = Store(tmp_path)
    (odd,) = store.summaries()
    assert odd.name == "registry.ollama.ai/library/odd:latest"
    assert odd.digests == (f"sha256:{HEX}", "sha256:short") and odd.size_bytes == 100
    with pytest.raises(ModelError, match="refusing to delete blobs"):
        store.referenced_digests()


def test_summaries_only_read(tmp_path: Path, store_with_model: tuple[Store, str]) -> None:
    """Doctor may look at a staged root or another user's store: nothing is created."""
    missing = tmp_path / "no-store"
    assert Store(missing).summaries() == []
    assert not missing.exists()
    store, _ = store_with_model
    shutil.rmtree(store.root / "blobs")
    before = sorted(store.root.rglob("*"))
    for directory in [store.root, *(p for p in before if p.is_dir())]:
        directory.chmod(0o555)
    try:
        assert [s.name for s in Store(store.root).summaries()] == \
            ["registry.ollama.ai/library/tiny:1"]
    finally:
        for directory in [store.root, *(p for p in before if p.is_dir())]:
            directory.chmod(0o755)
    assert sorted(store.root.rglob("*")) == before

"""Malformed GGUF corpus through the real server: create, show and load fail with one clear
error, the server process never dies and its memory stays bounded.

The files are built here byte by byte (tests/gguf_builder.py), each one shaped after a published
parser flaw (CVE-2024-39720, the Talos 2024 heap overflows, CVE-2025-0317, CVE-2026-7482,
Llama Drama CVE-2024-34359).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import psutil
import pytest
import requests

from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import MEDIA_MODEL, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST
from tests import gguf_builder as gb
from tests.adversarial.conftest import Reliability, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE_KVS = [gb.kv_string("general.architecture", "llama"), gb.kv_u32("llama.context_length", 256),
            gb.kv_u32("llama.embedding_length", 8)]


def _corpus() -> dict[str, bytes]:
    valid = gb.build()
    return {
        "bad magic": b"GGUX" + valid[4:],
        "four bytes GGUF": b"GGUF",
        "truncated header": valid[:20],
        "version 0": gb.build(version=0),
        "string length 2^63": (b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
                               + struct.pack("<Q", 2**63) + b"general.architecture"),
        "array length 2^62": gb.build([*BASE_KVS, gb.gstr("huge") + struct.pack("<IIQ", 9, 4,
                                                                                  2**62)]),
        "n_kv 0xFFFFFFFF": b"GGUF" + struct.pack("<IQQ", 3, 0, 0xFFFFFFFF) + b"\0" * 64,
        "n_tensors 0xFFFFFFFF": b"GGUF" + struct.pack("<IQQ", 3, 0xFFFFFFFF, 0) + b"\0" * 64,
        "5 dims": gb.build(tensors=[gb.tensor_info("w", (1, 1, 1, 2, 4))]),
        "0 dims": gb.build(tensors=[gb.tensor_info("w", ())]),
        "alignment 0": gb.build([*BASE_KVS, gb.kv_u32("general.alignment", 0)]),
        "alignment 7": gb.build([*BASE_KVS, gb.kv_u32("general.alignment", 7)]),
        "tensor beyond EOF": gb.build(tensors=[gb.tensor_info("w", (8,), offset=1 << 40)]),
        "tensor size wraps": gb.build(tensors=[gb.tensor_info("w", (2**62, 2**62))]),
        "unknown tensor type": gb.build(tensors=[gb.tensor_info("w", (8,), type_id=250)]),
        "unknown value type": gb.build([*BASE_KVS, gb.gstr("k") + struct.pack("<I", 99)]),
        "nested arrays": gb.build([*BASE_KVS, gb.gstr("k") + struct.pack("<IIQ", 9, 9, 1)
                                   + struct.pack("<IQ", 9, 1)]),
        "zip wrapper": b"PK\x03\x04" + b"\0" * 60,
    }


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "{{ self._TemplateReference__context.joiner.__init__.__globals__.os"
    ".system('touch {marker}') }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload(server: Server, data: bytes) -> str:
    digest = _digest(data)
    response = requests.post(f"{server.url}/api/blobs/{digest}", data=data, timeout=30)
    assert response.status_code in (200, 201), response.text
    return digest


def _tree_rss(pid: int) -> int:
    process = psutil.Process(pid)
    return int(process.memory_info().rss)


def _plant(store_root: Path, name: str, model_blob: bytes) -> None:
    """Write a manifest pointing at ``model_blob`` as a damaged store would hold it (create
    would refuse it, so this stands for on-disk damage or a hostile registry)."""
    store = Store(store_root)
    model_digest = store.write_blob([model_blob])
    config = json.dumps({"model_format": "gguf"}).encode()
    config_digest = store.write_blob([config])
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
                "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest,
                           "size": len(config)},
                "layers": [{"mediaType": MEDIA_MODEL, "digest": model_digest,
                            "size": len(model_blob)}]}
    path = store_root / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))


def test_create_refuses_every_malformed_file(adv_server: Server,
                                             reliability: Reliability) -> None:
    rss_before = _tree_rss(adv_server.pid)
    for label, data in _corpus().items():
        digest = _upload(adv_server, data)
        response = adv_server.post("/api/create", {"model": "corpus", "stream": False,
                                                   "files": {"model.gguf": digest}})
        reliability.tried()
        assert response.status_code == 400, (label, response.text)
        error = response.json()["error"]
        assert error.startswith("invalid model file: "), (label, error)
        assert "\n" not in error and str(adv_server.models) not in error, (label, error)
        assert adv_server.is_alive(), label
    assert not (adv_server.models / "manifests" / "registry.ollama.ai" / "library"
                / "corpus").exists()
    assert _tree_rss(adv_server.pid) - rss_before < 64 << 20


def test_show_and_load_of_damaged_models_fail_cleanly(adv_server: Server,
                                                      reliability: Reliability) -> None:
    for number, (label, data) in enumerate(_corpus().items()):
        name = f"damaged{number}"
        _plant(adv_server.models, name, data)
        show = adv_server.post("/api/show", {"model": name})
        generate = adv_server.post("/api/generate", {"model": name, "prompt": "hi",
                                                     "stream": False})
        reliability.tried(2)
        for response in (show, generate):
            assert response.status_code == 500, (label, response.text)
            error = response.json()["error"]
            assert error.startswith(f"model '{name}' is damaged: "), (label, error)
            assert str(adv_server.models) not in error
        tags = requests.get(adv_server.url + "/api/tags", timeout=30)
        assert tags.ok and name not in tags.text
        assert requests.delete(adv_server.url + "/api/delete", json={"model": name},
                               timeout=30).status_code in (200, 500)
    assert adv_server.is_alive()


def test_loader_failure_stays_in_the_runner(adv_server: Server, reliability: Reliability) -> None:
    """A header our parser accepts but llama.cpp cannot load (tensors missing): the runner
    fails, the request gets one clear error, the server and the other models carry on."""
    digest = _upload(adv_server, gb.build(
        [*BASE_KVS, gb.kv_string_array("tokenizer.ggml.tokens", ["a", "b"])]))
    assert adv_server.post("/api/create", {"model": "hollow", "stream": False,
                                           "files": {"model.gguf": digest}}).ok
    response = adv_server.post("/api/generate", {"model": "hollow", "prompt": "hi",
                                                 "stream": False})
    reliability.tried()
    reliability.fault("llama.cpp load failure in the runner")
    assert response.status_code == 500, response.text
    assert response.json()["error"] and "Traceback" not in response.text
    assert adv_server.is_alive()
    ok = adv_server.post("/api/generate", {"model": "smollm2:135m", "prompt": "Hi",
                                           "options": {"num_predict": 2}, "stream": False})
    assert ok.status_code == 200, ok.text
    assert requests.delete(adv_server.url + "/api/delete", json={"model": "hollow"},
                           timeout=30).ok


@pytest.mark.parametrize("template", ESCAPES)
def test_chat_template_cannot_leave_the_sandbox(adv_server: Server, tmp_path: Path,
                                                template: str, reliability: Reliability) -> None:
    marker = tmp_path / "pwned"
    source = gb.tiny_model(tmp_path / "t.gguf",
                           chat_template=template.replace("{marker}", str(marker)))
    digest = _upload(adv_server, source.read_bytes())
    created = adv_server.post("/api/create", {"model": "escape", "stream": False,
                                              "files": {"model.gguf": digest}})
    assert created.status_code == 200, created.text
    response = adv_server.post("/api/chat", {
        "model": "escape", "stream": False,
        "messages": [{"role": "user", "content": "hi"}]})
    reliability.tried()
    assert response.status_code == 400, response.text
    assert "sandbox" in response.json()["error"] or "unsafe" in response.json()["error"]
    assert not marker.exists()
    assert adv_server.is_alive()

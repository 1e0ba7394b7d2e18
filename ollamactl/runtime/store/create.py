"""Creating a model: weights already in the blob store and/or a base model, plus the Modelfile
layers (template, system, parameters, messages, license), written as a new manifest.

Every layer is written before the manifest, and the manifest last and atomically, so an
interrupted create leaves no half model (see :mod:`manifests`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ollamactl.errors import ModelError
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.blobs import BlobNotFound, ProgressCallback, validate_digest
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import (
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    Layer,
    LocalModel,
    config_for,
)
from ollamactl.runtime.store.names import ModelName

MESSAGE_ROLES = ("system", "user", "assistant", "tool")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def create_model(
    store: Store,
    name: str,
    *,
    model_digest: str | None = None,
    from_model: str | None = None,
    template: str | None = None,
    system: str | None = None,
    params: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
    license: list[str] | None = None,
    progress: ProgressCallback | None = None,
) -> LocalModel:
    """Write a model into ``store`` from GGUF weights already in blobs/ (``model_digest``) and/or
    an existing model (``from_model``), plus the Modelfile layers. The manifest is written last.

    Parameters given here are merged over the base model's; template, system, messages and
    license replace the base's when given. ``params`` must already be validated
    (``options.validate_options(..., strict=True)``).

    Raises:
        InvalidModelName, ModelNotFound (from_model), BlobNotFound, InvalidGGUF, ModelError.
    """
    target = ModelName.parse(name)

    def report(status: str) -> None:
        if progress is not None:
            progress(status, None, None)

    if model_digest is None and from_model is None:
        raise ModelError("neither 'from' or 'files' was specified")
    base: LocalModel | None = store.resolve(from_model) if from_model is not None else None

    layers: list[Layer] = []
    if model_digest is not None:
        digest = validate_digest(model_digest)
        if not store.has_blob(digest):
            raise BlobNotFound(digest)
        report("parsing GGUF")
        info = gguf.read_metadata(store.blob_path(digest))
        layers.append(Layer(MEDIA_MODEL, digest, store.blob_path(digest).stat().st_size))
        config = config_for(info)
    else:
        assert base is not None
        info = gguf.read_metadata(base.model_path)
        config = dict(base.config) or config_for(info)
    if base is not None:
        for layer in base.layers:
            if layer.media_type == MEDIA_MODEL and model_digest is not None:
                continue
            if layer.media_type in (MEDIA_MODEL, MEDIA_ADAPTER, MEDIA_PROJECTOR):
                layers.append(Layer(layer.media_type, layer.digest, layer.size,
                                    layer.from_model or base.name.display))
                report(f"using existing layer {layer.digest}")

    merged_params = dict(base.params) if base is not None else {}
    merged_params.update(params or {})
    text_layers: list[tuple[str, bytes]] = []
    base_template = base.template if base is not None else None
    effective_template = template if template is not None else base_template
    if effective_template:
        text_layers.append((MEDIA_TEMPLATE, effective_template.encode()))
    effective_system = system if system is not None else (base.system if base else None)
    if effective_system:
        text_layers.append((MEDIA_SYSTEM, effective_system.encode()))
    if merged_params:
        text_layers.append((MEDIA_PARAMS, _dumps(merged_params)))
    effective_messages = messages if messages is not None else (base.messages if base else [])
    if effective_messages:
        for message in effective_messages:
            if (not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES
                    or not isinstance(message.get("content"), str)):
                raise ModelError("each message needs a role (system, user, assistant, "
                                 "tool) and a text content")
        text_layers.append((MEDIA_MESSAGES, _dumps(
            [{"role": m["role"], "content": m["content"]} for m in effective_messages])))
    for text in (license if license is not None else (base.license if base else [])):
        text_layers.append((MEDIA_LICENSE, text.encode()))

    for media_type, data in text_layers:
        existed = store.has_blob("sha256:" + hashlib.sha256(data).hexdigest())
        digest = store.write_bytes_blob(data)
        report(f"{'using existing' if existed else 'creating new'} layer {digest}")
        layers.append(Layer(media_type, digest, len(data)))

    config["rootfs"] = {"type": "layers",
                        "diff_ids": [layer.digest for layer in layers]}
    config_bytes = _dumps(config)
    config_layer = Layer(MEDIA_TYPE_CONFIG, store.write_bytes_blob(config_bytes),
                         len(config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_layer.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    report("writing manifest")
    path = store.find_manifest(target) or store.manifest_path(target)
    store.write_manifest(path, _dumps(manifest))
    report("success")
    return store.resolve(target.display)

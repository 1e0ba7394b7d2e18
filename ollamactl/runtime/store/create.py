"""Creating a model: weights already in the blob store and/or a base model, optionally
quantized (llama.cpp's quantizer, :mod:`quantize`), with a LoRA adapter and a vision projector
(:mod:`projector`), plus the Modelfile layers (template, system, parameters, messages,
license), written as a new manifest.

Two steps, so that /api/create can refuse bad input with a 400 before it streams:
:func:`prepare_create` checks everything that can be checked cheaply (names, blobs, GGUF
headers, the quantize type and the source's file type, the adapter), :func:`write_model` does
the work (quantizing, layers, manifest) and reports as it goes. Every layer is written before
the manifest, and the manifest last and atomically, so an interrupted create leaves no half
model (see :mod:`manifests`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ollamactl.errors import ModelError
from ollamactl.runtime.store import gguf, quantize
from ollamactl.runtime.store.blobs import (
    BlobNotFound,
    LayerProgress,
    ProgressCallback,
    validate_digest,
)
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
from ollamactl.runtime.store.projector import projector_layer

MESSAGE_ROLES = ("system", "user", "assistant", "tool")
# What Ollama's quantize progress frames carry as the digest of the layer being made.
QUANTIZE_DIGEST = "0000000000000000000"


class BadAdapter(ModelError):
    """An adapter blob that is not a LoRA GGUF for the model's architecture (a 400)."""


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class CreatePlan:
    """A checked create: what :func:`write_model` builds the model from."""

    target: ModelName
    base: LocalModel | None
    weights: Layer            # the model layer as it is now (quantizing replaces it)
    info: gguf.GGUFInfo       # its GGUF header
    quantize_to: str | None   # Ollama's type name, when the weights must be quantized
    adapters: tuple[Layer, ...]
    projectors: tuple[Layer, ...] = ()


def _adapter_layer(store: Store, digest: str, architecture: str) -> Layer:
    """The layer of a LoRA adapter blob, after llama.cpp's own checks on its header.

    Raises:
        BlobNotFound, InvalidGGUF, BadAdapter.
    """
    canonical = validate_digest(digest)
    if not store.has_blob(canonical):
        raise BlobNotFound(canonical)
    info = gguf.read_metadata(store.blob_path(canonical))
    kind, adapter_type = info.kv.get("general.type"), info.kv.get("adapter.type")
    if kind != "adapter" or adapter_type != "lora":
        raise BadAdapter(f"{canonical} is not a LoRA adapter (general.type is "
                         f"{kind or 'missing'}, adapter.type is {adapter_type or 'missing'})")
    if info.architecture != architecture:
        raise BadAdapter(f"the adapter is for {info.architecture}, the model is "
                         f"{architecture}")
    return Layer(MEDIA_ADAPTER, canonical, store.blob_path(canonical).stat().st_size)


def prepare_create(store: Store, name: str, *, model_digest: str | None = None,
                   from_model: str | None = None, quantize_to: str | None = None,
                   adapters: list[str] | None = None,
                   projectors: list[str] | None = None) -> CreatePlan:
    """Check a create before any work: the name, the weights (a blob's GGUF header or the base
    model's), the quantize type (Ollama's, from F16 or F32 weights only) and the adapter
    blobs (one, a LoRA GGUF of the model's architecture, as Ollama allows) and the projector
    blobs (taken for projectors by :func:`projector.projector_digests`).

    Raises:
        InvalidModelName, ModelNotFound (from_model), BlobNotFound, InvalidGGUF, BadAdapter,
        ModelError (nothing to create from; a quantize Ollama refuses, with its message).
    """
    target = ModelName.parse(name)
    if model_digest is None and from_model is None:
        raise ModelError("neither 'from' or 'files' was specified")
    base = store.resolve(from_model) if from_model is not None else None
    if model_digest is not None:
        digest = validate_digest(model_digest)
        if not store.has_blob(digest):
            raise BlobNotFound(digest)
        weights = Layer(MEDIA_MODEL, digest, store.blob_path(digest).stat().st_size)
    else:
        assert base is not None
        weights = next(layer for layer in base.layers if layer.media_type == MEDIA_MODEL)
        weights = Layer(weights.media_type, weights.digest, weights.size,
                        weights.from_model or base.name.display)
    info = gguf.read_metadata(store.blob_path(weights.digest))
    wanted = None
    if quantize_to:
        wanted = quantize.parse_type(quantize_to)
        if info.quantization not in quantize.SOURCE_TYPES:
            raise ModelError(quantize.ONLY_FROM_FLOAT)
        if wanted == info.quantization:
            wanted = None
    if adapters and len(adapters) > 1:
        raise BadAdapter("only one adapter is currently supported")
    for digest in projectors or ():
        if not store.has_blob(validate_digest(digest)):
            raise BlobNotFound(validate_digest(digest))
    return CreatePlan(target, base, weights, info, wanted,
                      tuple(_adapter_layer(store, digest, info.architecture)
                            for digest in adapters or ()),
                      tuple(projector_layer(store, digest) for digest in projectors or ()))


def _quantized(store: Store, plan: CreatePlan,
               report: LayerProgress) -> tuple[Layer, gguf.GGUFInfo]:
    """The plan's weights quantized into a new blob, and its GGUF header."""
    assert plan.quantize_to is not None
    status = f"quantizing {plan.info.quantization} model to {plan.quantize_to}"
    size = plan.weights.size
    report(status, 0, size, digest=QUANTIZE_DIGEST)
    temp = store.temp_path("quantize")
    try:
        quantize.quantize(store.blob_path(plan.weights.digest), temp, plan.quantize_to,
                          lambda done, of: report(status, size * done // max(of, 1), size,
                                                  digest=QUANTIZE_DIGEST))
        report("verifying conversion", None, None)
        gguf.read_metadata(temp)
        digest = store.adopt_file(temp)
    finally:
        temp.unlink(missing_ok=True)
    info = gguf.read_metadata(store.blob_path(digest))
    layer = Layer(MEDIA_MODEL, digest, store.blob_path(digest).stat().st_size)
    report(f"creating new layer {digest}", None, None)
    return layer, info


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
    quantize_to: str | None = None,
    adapters: list[str] | None = None,
    projectors: list[str] | None = None,
    progress: ProgressCallback | None = None,
) -> LocalModel:
    """:func:`prepare_create` then :func:`write_model`, for callers with nothing to stream."""
    plan = prepare_create(store, name, model_digest=model_digest, from_model=from_model,
                          quantize_to=quantize_to, adapters=adapters, projectors=projectors)

    def forward(status: str, completed: int | None, total: int | None, *,
                digest: str | None = None) -> None:
        if progress is not None:
            progress(status, completed, total)

    return write_model(store, plan, template=template, system=system, params=params,
                       messages=messages, license=license, progress=forward)


def write_model(
    store: Store,
    plan: CreatePlan,
    *,
    template: str | None = None,
    system: str | None = None,
    params: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
    license: list[str] | None = None,
    progress: LayerProgress | None = None,
) -> LocalModel:
    """Write the model ``plan`` describes, plus the Modelfile layers; the manifest is written
    last. Statuses as Ollama's: ``parsing GGUF``, ``quantizing F16 model to Q4_K_M`` (bytes),
    ``verifying conversion``, ``using existing layer``/``creating new layer <digest>``,
    ``writing manifest``, ``success``.

    Parameters given here are merged over the base model's; template, system, messages and
    license replace the base's when given. ``params`` must already be validated
    (``options.validate_options(..., strict=True)``).

    Raises:
        QuantizeError (the quantizer failed), ModelError (a message is malformed, the disk
        refused a write).
    """
    base = plan.base

    def report(status: str, completed: int | None = None, total: int | None = None, *,
               digest: str | None = None) -> None:
        if progress is not None:
            progress(status, completed, total, digest=digest)

    def existing(layer: Layer) -> Layer:
        report(f"using existing layer {layer.digest}")
        return layer

    weights, info = plan.weights, plan.info
    from_base = weights.from_model is not None
    if not from_base:
        report("parsing GGUF")
    if plan.quantize_to is not None:
        weights, info = _quantized(store, plan, report)
    else:
        existing(weights)
    config = dict(base.config) if base is not None and from_base and \
        plan.quantize_to is None else {}
    config = config or config_for(info)
    layers: list[Layer] = [weights]
    if base is not None:
        for layer in base.layers:
            if layer.media_type in (MEDIA_ADAPTER, MEDIA_PROJECTOR):
                layers.append(existing(Layer(layer.media_type, layer.digest, layer.size,
                                             layer.from_model or base.name.display)))
    for adapter in plan.adapters:
        report("parsing GGUF")
        layers.append(existing(adapter))
    for projector in plan.projectors:
        if projector.digest not in {layer.digest for layer in layers}:
            report("parsing GGUF")
            layers.append(existing(projector))

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
    path = store.find_manifest(plan.target) or store.manifest_path(plan.target)
    store.write_manifest(path, _dumps(manifest))
    report("success")
    return store.resolve(plan.target.display)

"""Model types of the store: manifest layers, the models they make, media types, metadata maps.

A manifest (docker v2 schema) lists a config blob and layers, each a :class:`Layer` with an
``application/vnd.ollama.image.*`` media type; :class:`LocalModel` is a stored model as the API
lists, shows and runs it. The maps of /api/show (``model_info``, ``details``, capabilities)
and the config blob Ollama writes are derived here from a GGUF header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ollamactl.runtime.prompting.capabilities import template_features
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.names import ModelName

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_PREFIX = "application/vnd.ollama.image."
MEDIA_MODEL = MEDIA_PREFIX + "model"
MEDIA_ADAPTER = MEDIA_PREFIX + "adapter"
MEDIA_PROJECTOR = MEDIA_PREFIX + "projector"
MEDIA_TEMPLATE = MEDIA_PREFIX + "template"
MEDIA_PROMPT = MEDIA_PREFIX + "prompt"  # legacy alias of template
MEDIA_SYSTEM = MEDIA_PREFIX + "system"
MEDIA_PARAMS = MEDIA_PREFIX + "params"
MEDIA_MESSAGES = MEDIA_PREFIX + "messages"
MEDIA_LICENSE = MEDIA_PREFIX + "license"


@dataclass(frozen=True)
class ModelDetails:
    """The ``details`` object of /api/tags, /api/show and /api/ps."""

    format: str = "gguf"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
    context_length: int | None = None
    embedding_length: int | None = None
    parent_model: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON shape as Ollama sends it (the optional lengths only when known)."""
        data: dict[str, Any] = {
            "parent_model": self.parent_model,
            "format": self.format,
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }
        if self.context_length:
            data["context_length"] = self.context_length
        if self.embedding_length:
            data["embedding_length"] = self.embedding_length
        return data


@dataclass(frozen=True)
class Layer:
    """One manifest layer (or the config): media type, canonical digest, size in bytes."""

    media_type: str
    digest: str
    size: int
    from_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                                "size": self.size}
        if self.from_model:
            data["from"] = self.from_model
        return data


@dataclass(frozen=True)
class LocalModel:
    """A model in the store, with everything the API needs to list, show and run it."""

    name: ModelName
    manifest_digest: str  # hex sha256 of the manifest file bytes, unprefixed
    size: int  # in bytes: layers + config
    modified_at: datetime  # manifest mtime, local time zone
    model_path: Path  # the GGUF blob
    template: str | None
    system: str | None
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    license: list[str]
    details: ModelDetails
    chat_template: str | None
    capabilities: list[str]
    model_info: dict[str, Any]
    tensors: list[dict[str, Any]] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    manifest_path: Path | None = None
    bos_token: str | None = None  # vocabulary text of the BOS token ("<bos>")
    eos_token: str | None = None
    add_bos: bool = False  # llama.cpp prepends BOS itself when tokenizing with add_special

    @property
    def model_digest(self) -> str:
        """``sha256:<hex>`` of the GGUF weights layer."""
        return next(layer.digest for layer in self.layers if layer.media_type == MEDIA_MODEL)

    @property
    def adapter_digests(self) -> tuple[str, ...]:
        """The LoRA adapter layers' digests, applied in this order at load."""
        return tuple(layer.digest for layer in self.layers if layer.media_type == MEDIA_ADAPTER)

    @property
    def short_id(self) -> str:
        """The 12-hex ID column of ``ollama list`` / ``ollama ps``."""
        return self.manifest_digest[:12]


def capabilities_of(info: gguf.GGUFInfo, template: str | None, *,
                    projector: bool = False) -> list[str]:
    """Ollama's capability list, from what the model is rather than what its name suggests:
    ``embedding`` when the GGUF sets a pooling type (else ``completion``), ``vision`` from the
    GGUF's vision metadata or a projector layer, and ``tools``, ``insert`` and ``thinking``
    from what the template can express (see :mod:`~ollamactl.runtime.prompting.capabilities`);
    ``insert`` also when the GGUF names fill-in-the-middle tokens, as llama.cpp's infill
    writes its prompt with them.
    """
    arch = info.architecture
    caps = ["embedding" if f"{arch}.pooling_type" in info.kv else "completion"]
    if projector or f"{arch}.vision.block_count" in info.kv:
        caps.append("vision")
    features = template_features(template, info.chat_template)
    if features.tools:
        caps.append("tools")
    if features.insert or info.fim_tokens is not None:
        caps.append("insert")
    if features.thinking_tags is not None:
        caps.append("thinking")
    return caps


def model_info_of(info: gguf.GGUFInfo, *, verbose: bool = False) -> dict[str, Any]:
    """The ``model_info`` map of /api/show: GGUF KV minus name and chat template.

    Arrays longer than 5 items are emptied unless ``verbose`` (pass a GGUFInfo read with
    ``keep_arrays=True`` to get them whole); the parameter count is added as Ollama does.
    """
    result: dict[str, Any] = {}
    for key, value in info.kv.items():
        if key in ("general.name", "tokenizer.chat_template"):
            continue
        too_long = isinstance(value, list) and len(value) > 5 and not verbose
        if isinstance(value, gguf.SkippedArray) or too_long:
            value = []
        result[key] = value
    result["general.parameter_count"] = info.parameter_count
    return result


def config_for(info: gguf.GGUFInfo) -> dict[str, Any]:
    """The config blob Ollama writes for a GGUF model."""
    return {
        "model_format": "gguf",
        "model_family": info.architecture,
        "model_families": [info.architecture],
        "model_type": gguf.human_parameter_count(info.parameter_count),
        "file_type": info.quantization,
        "architecture": info.architecture,
        "os": "linux",
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "rootfs": {"type": "layers", "diff_ids": []},
    }

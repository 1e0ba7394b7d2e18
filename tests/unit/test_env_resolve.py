"""Settings precedence: process environment > the service's persisted settings > default."""

from __future__ import annotations

from ollamactl.host import HostFacts
from ollamactl.service.env import EnvStore, resolve, resolve_all


class DictEnvStore(EnvStore):
    """An in-memory stand-in for a persisted backend (drop-in, plist, registry)."""

    location = "/etc/systemd/system/ollama.service.d/override.conf"

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def read(self) -> dict[str, str]:
        return dict(self.values)

    def set(self, name: str, value: str) -> bool:
        changed = self.values.get(name) != value
        self.values[name] = value
        return changed

    def unset(self, name: str) -> bool:
        return self.values.pop(name, None) is not None


def test_precedence(linux_host: HostFacts) -> None:
    store = DictEnvStore({"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "1h"})
    env = {"OLLAMA_KEEP_ALIVE": "10m"}
    host = resolve("OLLAMA_HOST", environ=env, store=store, host=linux_host)
    assert (host.value, host.source) == ("0.0.0.0:11434", store.location)
    keep = resolve("OLLAMA_KEEP_ALIVE", environ=env, store=store, host=linux_host)
    assert (keep.value, keep.source, keep.persisted) == ("10m", "environment", "1h")
    queue = resolve("OLLAMA_MAX_QUEUE", environ=env, store=store, host=linux_host)
    assert (queue.value, queue.source) == ("512", "default")
    origins = resolve("OLLAMA_ORIGINS", environ=env, store=store, host=linux_host)
    assert (origins.value, origins.source) == ("", "unset")


def test_service_default_models_dir(linux_host: HostFacts) -> None:
    with_service = resolve("OLLAMA_MODELS", environ={}, store=DictEnvStore({}), host=linux_host)
    assert with_service.value == "/usr/share/ollama/.ollama/models"
    rows = {r.name: r for r in resolve_all(environ={}, store=None, host=linux_host)}
    assert rows["OLLAMA_MODELS"].value.endswith("/.ollama/models")
    assert rows["OLLAMA_MODELS"].as_dict()["restart_required"] is True

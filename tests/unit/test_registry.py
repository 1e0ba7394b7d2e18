"""Registry client rules that need no network: scheme, realm host check, challenge parsing.
(Transfers against a real loopback registry are in tests/integration/test_pull_registry.py.)"""

from __future__ import annotations

import pytest

from ollamactl.runtime.store.names import ModelName
from ollamactl.runtime.store.registry import RegistryClient, RegistryError


def _client(name: str, *, insecure: bool = False) -> RegistryClient:
    return RegistryClient(ModelName.parse(name), insecure=insecure)


def test_https_unless_insecure() -> None:
    assert _client("reg.example:5000/team/tiny").base == "https://reg.example:5000"
    assert _client("reg.example:5000/team/tiny", insecure=True).base == "http://reg.example:5000"
    client = _client("tiny")
    assert client.base == "https://registry.ollama.ai"
    assert client.url("manifests", "latest") == \
        "https://registry.ollama.ai/v2/library/tiny/manifests/latest"


@pytest.mark.parametrize(("realm", "ok"), [
    ("https://reg.example:5000/token", True),
    ("https://REG.example:5000/v2/token?x=1", True),
    ("https://evil.example/token", False),
    ("https://reg.example:5001/token", False),
    ("https://reg.example.evil.example:5000/token", False),
    ("", False),
])
def test_token_realm_must_be_on_the_registry_host(realm: str, ok: bool) -> None:
    client = _client("reg.example:5000/team/tiny")
    if ok:
        assert client._same_host(realm, "token realm") == realm
    else:
        with pytest.raises(RegistryError, match="another host"):
            client._same_host(realm, "token realm")


def test_foreign_realm_is_refused_before_any_request() -> None:
    client = _client("reg.example:5000/team/tiny")
    with pytest.raises(RegistryError, match="another host"):
        client._fetch_token('Bearer realm="https://evil.example/token",service="x"')
    with pytest.raises(RegistryError, match="requires authentication"):
        client._fetch_token('Basic realm="reg.example"')
    client.close()

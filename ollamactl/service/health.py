"""Asking a running server how it is: ``GET /``, ``/api/version``, ``/api/ps`` (loopback probes).

Used by install/update (wait until it answers, confirm the version) and ``ollamactl status``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ollamactl import __version__, settings
from ollamactl.errors import ServerUnreachable


def client_url(env: Mapping[str, str]) -> str:
    """Where clients reach a server started with ``env`` (0.0.0.0 means loopback)."""
    return settings.host_from(env).client_url


def bind_address(env: Mapping[str, str]) -> str:
    """The ``host:port`` a server started with ``env`` binds."""
    address = settings.host_from(env)
    return settings.HostAddress(address.scheme, address.bind_host, address.port).hostport


def is_up(url: str, *, timeout_s: float = 1.0) -> bool:
    """True when ``GET url/`` answers 200."""
    import requests

    try:
        return requests.get(url + "/", timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


def wait_until_up(url: str, *, timeout_s: float = 60.0, poll_s: float = 0.2) -> float:
    """Poll ``GET /`` until it answers; return the seconds it took.

    Raises:
        ServerUnreachable: nothing answered within ``timeout_s``.
    """
    start = time.monotonic()
    while True:
        if is_up(url):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise ServerUnreachable(url, f"no answer within {timeout_s:g} s")
        time.sleep(poll_s)


def get_json(url: str, path: str, *, timeout_s: float = 2.0) -> Any:
    """``GET url+path`` as JSON.

    Raises:
        ServerUnreachable: no answer, or not JSON.
    """
    import requests

    try:
        response = requests.get(url + path, timeout=timeout_s)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ServerUnreachable(url, type(exc).__name__) from exc


@dataclass(frozen=True)
class ServerVersion:
    """What ``/api/version`` says: the Ollama API level, and ollamactl's own version when the
    server is an ollamactl (Ollama itself sends no ``ollamactl`` field)."""

    api: str
    ollamactl: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ServerVersion | None:
        if not isinstance(data, dict) or "version" not in data:
            return None
        own = data.get("ollamactl")
        return cls(str(data["version"]), own if isinstance(own, str) else None)

    @property
    def is_this_ollamactl(self) -> bool:
        return self.ollamactl == __version__

    def __str__(self) -> str:
        if self.ollamactl is None:
            return f"Ollama {self.api}"
        return f"ollamactl {self.ollamactl}, Ollama API {self.api}"


def server_version(url: str) -> ServerVersion | None:
    """What the server at ``url`` says of its version; None when it does not answer."""
    try:
        return ServerVersion.from_json(get_json(url, "/api/version"))
    except ServerUnreachable:
        return None


def loaded_models(url: str) -> list[str] | None:
    """Names of the models ``/api/ps`` lists, or None when the server does not answer."""
    try:
        return [str(m.get("name")) for m in get_json(url, "/api/ps").get("models", [])]
    except (ServerUnreachable, AttributeError):
        return None

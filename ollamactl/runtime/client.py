"""The CLI's HTTP client for a running server (requests): where to connect and what failed.

The address comes from OLLAMA_HOST as a client reads it (0.0.0.0 and :: mean loopback). A
connection failure becomes :class:`ServerUnreachable` naming the URL tried; an ``{"error"}``
answer becomes :class:`ApiRequestFailed` with the server's text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import requests

from ollamactl.errors import ModelError, OllamactlError, ServerUnreachable
from ollamactl.settings import HostAddress, host_from


class ApiRequestFailed(OllamactlError):
    """The server answered with an error status; keeps the status and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class ModelMissing(ModelError):
    """The server does not have the model (404)."""


def server_address(environ: Mapping[str, str] | None = None) -> HostAddress:
    return host_from(os.environ if environ is None else environ)


class Client:
    """Thin wrapper over the native API; every call raises one of this module's errors."""

    def __init__(self, base_url: str | None = None, *, timeout_s: float = 600.0) -> None:
        self.base_url = (base_url or server_address().client_url).rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.trust_env = False  # a proxy must never see loopback traffic

    def _request(self, method: str, path: str, body: Any = None, *,
                 stream: bool = False, data: Any = None) -> requests.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, json=body, data=data, stream=stream,
                                            timeout=(5.0, self.timeout_s))
        except requests.ConnectionError as exc:
            raise ServerUnreachable(self.base_url, _reason(exc)) from exc
        except requests.Timeout as exc:
            raise ServerUnreachable(self.base_url, "timed out") from exc
        if response.status_code >= 400:
            message = _error_text(response)
            if response.status_code == 404 and "not found" in message:
                raise ModelMissing(message, hint="`ollamactl list` shows the local models; "
                                                 "`ollamactl pull NAME` fetches one")
            raise ApiRequestFailed(response.status_code, message)
        return response

    def get(self, path: str) -> Any:
        return self._request("GET", path).json()

    def post(self, path: str, body: Any) -> Any:
        response = self._request("POST", path, body)
        return response.json() if response.content else None

    def delete(self, path: str, body: Any) -> None:
        self._request("DELETE", path, body)

    def head_ok(self, path: str) -> bool:
        try:
            self._request("HEAD", path)
        except ModelMissing:
            return False
        except ApiRequestFailed as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def upload(self, path: str, data: Any) -> None:
        self._request("POST", path, data=data)

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """NDJSON objects of a streaming endpoint; an ``{"error"}`` line raises."""
        response = self._request("POST", path, body, stream=True)
        with response:
            for raw in response.iter_lines():
                if not raw:
                    continue
                item = json.loads(raw)
                if isinstance(item, dict) and "error" in item:
                    raise ApiRequestFailed(500, str(item["error"]))
                yield item


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "resolve" in text:
        return "host name not found"
    return "no answer"


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return f"HTTP {response.status_code}"

"""The one client for the Ollama HTTP API: the CLI, ``status``, install's wait for the server,
doctor's probes, ``fleet status`` and ``top`` all ask a server through :class:`Client`.

Where it connects: a base URL, or OLLAMA_HOST as a client reads it (:func:`client_url`: 0.0.0.0
and :: mean loopback). The session ignores HTTP_PROXY and friends (``trust_env = False``): a
proxy never sees loopback traffic, and fleet hosts are reached directly.

Failures are translated here, and only here:

- no answer (connection refused, unknown host, timeout, connection cut mid-answer)
  -> :class:`ServerUnreachable` naming the URL and the reason;
- 401 -> :class:`Unauthorized`; 404 ``... not found`` on a call about a model ->
  :class:`ModelMissing`; any other status >= 400, an ``{"error"}`` line in a stream or an
  answer that is not what the API sends -> :class:`ApiRequestFailed` with the server's text;
- :meth:`Client.get` raises none of these: it returns an :class:`HttpAnswer` (status, body or
  the reason there is none) for callers that judge status codes and bodies themselves (doctor).

requests is imported on first use, so importing this module (for :class:`ServerVersion` or
:func:`client_url`) keeps ``--help`` and ``env`` fast. This module is a leaf of the admin side:
it imports nothing from service/, install/, doctor/, runtime/ or cli/.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal, overload

from ollamactl import __version__, settings
from ollamactl.errors import ApiRequestFailed, ModelMissing, ServerUnreachable, Unauthorized

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

Timeout = tuple[float, float]
"""(connect, read) in seconds, as requests takes them."""

CONNECT_TIMEOUT_S = 5.0      # in seconds; the CLI's default: loopback accepts at once or never
READ_TIMEOUT_S = 600.0       # in seconds; the CLI's default: a model load or an answer takes long
POLL_TIMEOUT_S = 1.0         # in seconds; each GET / while waiting for a server to come up
BODY_LIMIT_CHARS = 65_536    # what Client.get keeps of a body, in characters
MODEL_MISSING_HINT = ("`ollamactl list` shows the local models; `ollamactl pull NAME` "
                      "fetches one")

Json = dict[str, Any]


def client_url(environ: Mapping[str, str]) -> str:
    """Where clients reach a server started with ``environ`` (0.0.0.0 means loopback)."""
    return settings.host_from(environ).client_url.rstrip("/")


def bind_address(environ: Mapping[str, str]) -> str:
    """The ``host:port`` a server started with ``environ`` binds (``0.0.0.0:11434``)."""
    address = settings.host_from(environ)
    return settings.HostAddress(address.scheme, address.bind_host, address.port).hostport


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


@dataclass(frozen=True)
class HttpAnswer:
    """One GET to the server: its status and body, or (status None) why there is none."""

    url: str
    status: int | None
    body: str = ""
    error: str = ""

    def json(self) -> Any:
        """The body as JSON; None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Client:
    """The Ollama API of one server; every call but :meth:`get` raises this module's errors.

    ``base_url`` wins; without it, OLLAMA_HOST from ``environ`` (default: this process's
    environment). Timeouts are per client, and :meth:`get` and :meth:`heartbeat` also take one
    per call. ``token`` is sent as ``Authorization: Bearer`` (a front such as nginx wants it).
    Use it as a context manager, or :meth:`close` it, to release its connections.
    """

    def __init__(self, base_url: str | None = None, *,
                 environ: Mapping[str, str] | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S, token: str | None = None) -> None:
        url = base_url if base_url is not None else client_url(
            os.environ if environ is None else environ)
        self.base_url = url.rstrip("/")
        self.timeout: Timeout = (connect_timeout_s, read_timeout_s)
        self.token = token
        self._session: requests.Session | None = None

    # -- plumbing -----------------------------------------------------------------------------
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            session = requests.Session()
            session.trust_env = False  # a proxy must never see loopback traffic
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            self._session = session
        return self._session

    def _send(self, method: str, path: str, *, body: Any = None, data: Any = None,
              stream: bool = False, timeout: Timeout | None = None) -> requests.Response:
        """One request; no answer at all becomes :class:`ServerUnreachable`."""
        import requests

        limits = timeout or self.timeout
        log.debug("%s %s%s", method, self.base_url, path)
        try:
            return self.session.request(method, self.base_url + path, json=body, data=data,
                                        stream=stream, timeout=limits)
        except requests.RequestException as exc:
            raise ServerUnreachable(self.base_url, _reason(exc, limits)) from exc

    def _request(self, method: str, path: str, *, body: Any = None, data: Any = None,
                 stream: bool = False, about_model: bool = False) -> requests.Response:
        response = self._send(method, path, body=body, data=data, stream=stream)
        if response.status_code >= 400:
            with response:
                self._raise_for(response, about_model=about_model)
        return response

    def _raise_for(self, response: requests.Response, *, about_model: bool) -> None:
        message = _error_text(response)
        if response.status_code == 401:
            raise Unauthorized(self.base_url, message)
        if about_model and response.status_code == 404 and "not found" in message:
            raise ModelMissing(message, hint=MODEL_MISSING_HINT)
        raise ApiRequestFailed(response.status_code, message)

    def _json(self, method: str, path: str, body: Any = None, *,
              about_model: bool = False) -> Json:
        """A call whose answer is one JSON object (an empty body reads as ``{}``)."""
        response = self._request(method, path, body=body, about_model=about_model)
        if not response.content:
            return {}
        return _object(response.text, method, path, response.status_code)

    def _stream(self, path: str, body: Any) -> Iterator[Json]:
        """The NDJSON objects of a streaming endpoint; an ``{"error"}`` line raises."""
        import requests

        response = self._request("POST", path, body=body, stream=True, about_model=True)
        with response:
            try:
                for raw in response.iter_lines():
                    if not raw:
                        continue
                    item = _object(raw, "POST", path, response.status_code)
                    if "error" in item:
                        raise ApiRequestFailed(500, str(item["error"]))
                    yield item
            except requests.RequestException as exc:  # cut, or silent, mid-answer
                raise ServerUnreachable(self.base_url, _reason(exc, self.timeout)) from exc

    # -- health -------------------------------------------------------------------------------
    def get(self, path: str, *, timeout: Timeout | None = None) -> HttpAnswer:
        """``GET path``: its status and body (the first :data:`BODY_LIMIT_CHARS`), or why
        nothing answered. Never raises: the caller judges status codes and bodies."""
        try:
            response = self._send("GET", path, timeout=timeout)
        except ServerUnreachable as exc:
            return HttpAnswer(self.base_url + path, None, error=exc.reason)
        with response:
            return HttpAnswer(self.base_url + path, response.status_code,
                              response.text[:BODY_LIMIT_CHARS])

    def heartbeat(self, *, timeout: Timeout | None = None) -> None:
        """``GET /`` answers 200 (``curl http://127.0.0.1:11434/``).

        Raises:
            ServerUnreachable: nothing answered.
            Unauthorized: 401, a front wants a token.
            ApiRequestFailed: any other status than 200 ("GET / answered HTTP 502").
        """
        response = self._send("GET", "/", timeout=timeout)
        with response:
            if response.status_code == 401:
                raise Unauthorized(self.base_url, _error_text(response))
            if response.status_code != 200:
                raise ApiRequestFailed(response.status_code,
                                       f"GET / answered HTTP {response.status_code}")

    def wait_until_up(self, timeout_s: float = 60.0, *, poll_s: float = 0.2) -> float:
        """Poll ``GET /`` (each try :data:`POLL_TIMEOUT_S`) until it answers 200; return the
        seconds it took.

        Raises:
            ServerUnreachable: no 200 within ``timeout_s``.
        """
        start = time.monotonic()
        while True:
            try:
                self.heartbeat(timeout=(POLL_TIMEOUT_S, POLL_TIMEOUT_S))
                return time.monotonic() - start
            except (ServerUnreachable, ApiRequestFailed) as exc:
                log.debug("not up yet: %s", exc)
            if time.monotonic() - start > timeout_s:
                raise ServerUnreachable(self.base_url, f"no answer within {timeout_s:g} s")
            time.sleep(poll_s)

    def version(self) -> ServerVersion:
        """``GET /api/version``.

        Raises:
            ApiRequestFailed: an error status, or an answer without a version.
        """
        answer = ServerVersion.from_json(self._json("GET", "/api/version"))
        if answer is None:
            raise ApiRequestFailed(200, "GET /api/version: the answer names no version")
        return answer

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition, whole (``curl host:11434/metrics``).

        Raises:
            ServerUnreachable: nothing answered.
            Unauthorized: 401, a front wants a token.
            ApiRequestFailed: any other error status; 404 is a server without metrics (a real
                Ollama, or ollamactl with ``OLLAMA_METRICS=0``).
        """
        response = self._request("GET", "/metrics")
        with response:
            return response.text

    # -- models -------------------------------------------------------------------------------
    def ps(self) -> Json:
        """``GET /api/ps``: ``{"models": [...]}`` (ollamactl adds ``"queue"``)."""
        return self._json("GET", "/api/ps")

    def tags(self) -> Json:
        """``GET /api/tags``: the local models, ``{"models": [...]}``."""
        return self._json("GET", "/api/tags")

    def show(self, model: str, *, verbose: bool = False, system: str = "",
             options: Mapping[str, Any] | None = None) -> Json:
        """``POST /api/show``: details, Modelfile, parameters, template of ``model``;
        ``verbose`` adds every metadata array and the tensors; ``system`` and ``options`` are
        shown as if they were the model's (a chat session's changes)."""
        body: Json = {"model": model}
        if verbose:
            body["verbose"] = True
        if system:
            body["system"] = system
        if options:
            body["options"] = dict(options)
        return self._json("POST", "/api/show", body, about_model=True)

    def pull(self, model: str, *, insecure: bool = False) -> Iterator[Json]:
        """``POST /api/pull``: progress objects (``status``, ``total``, ``completed``)."""
        return self._stream("/api/pull", {"model": model, "insecure": insecure})

    def push(self, model: str, *, insecure: bool = False) -> Iterator[Json]:
        """``POST /api/push``: progress objects, as :meth:`pull`."""
        return self._stream("/api/push", {"model": model, "insecure": insecure})

    def create(self, model: str, *, files: Mapping[str, str] | None = None,
               from_model: str | None = None, **fields: Any) -> Iterator[Json]:
        """``POST /api/create`` from uploaded blobs (``files``: name -> digest) or another
        model, with the Modelfile's other ``fields``; progress objects."""
        body: Json = {"model": model, **fields}
        if files is not None:
            body["files"] = dict(files)
        if from_model is not None:
            body["from"] = from_model
        return self._stream("/api/create", body)

    def delete(self, model: str) -> None:
        """``DELETE /api/delete``."""
        self._request("DELETE", "/api/delete", body={"model": model}, about_model=True).close()

    def copy(self, source: str, destination: str) -> None:
        """``POST /api/copy``."""
        self._request("POST", "/api/copy", body={"source": source, "destination": destination},
                      about_model=True).close()

    def has_blob(self, digest: str) -> bool:
        """``HEAD /api/blobs/DIGEST``: whether the server holds the blob."""
        response = self._send("HEAD", f"/api/blobs/{digest}")
        with response:
            if response.status_code == 404:
                return False
            if response.status_code >= 400:
                self._raise_for(response, about_model=False)
        return True

    def create_blob(self, digest: str, data: IO[bytes]) -> None:
        """``POST /api/blobs/DIGEST`` with the bytes of ``data`` (the server checks them)."""
        self._request("POST", f"/api/blobs/{digest}", data=data).close()

    # -- inference ----------------------------------------------------------------------------
    def load(self, model: str) -> Json:
        """Load ``model`` and keep it (``POST /api/generate`` with only the model)."""
        return self._json("POST", "/api/generate", {"model": model}, about_model=True)

    def unload(self, model: str) -> Json:
        """Unload ``model`` now (``keep_alive: 0`` without a prompt)."""
        return self._json("POST", "/api/generate", {"model": model, "keep_alive": 0},
                          about_model=True)

    @overload
    def generate(self, model: str, prompt: str, *, stream: Literal[False] = ...,
                 options: Mapping[str, Any] | None = ..., format: Any = ...,
                 **fields: Any) -> Json: ...

    @overload
    def generate(self, model: str, prompt: str, *, stream: Literal[True],
                 options: Mapping[str, Any] | None = ..., format: Any = ...,
                 **fields: Any) -> Iterator[Json]: ...

    def generate(self, model: str, prompt: str, *, stream: bool = False,
                 options: Mapping[str, Any] | None = None, format: Any = None,
                 **fields: Any) -> Json | Iterator[Json]:
        """``POST /api/generate``: one answer, or (``stream=True``) its pieces."""
        body = _body(model, {"prompt": prompt}, stream, options, format, fields)
        if stream:
            return self._stream("/api/generate", body)
        return self._json("POST", "/api/generate", body, about_model=True)

    @overload
    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], *,
             stream: Literal[False] = ..., options: Mapping[str, Any] | None = ...,
             format: Any = ..., **fields: Any) -> Json: ...

    @overload
    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], *,
             stream: Literal[True], options: Mapping[str, Any] | None = ...,
             format: Any = ..., **fields: Any) -> Iterator[Json]: ...

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], *, stream: bool = False,
             options: Mapping[str, Any] | None = None, format: Any = None,
             **fields: Any) -> Json | Iterator[Json]:
        """``POST /api/chat``: one message, or (``stream=True``) its pieces."""
        body = _body(model, {"messages": [dict(m) for m in messages]}, stream, options,
                     format, fields)
        if stream:
            return self._stream("/api/chat", body)
        return self._json("POST", "/api/chat", body, about_model=True)


def _body(model: str, main: Json, stream: bool, options: Mapping[str, Any] | None,
          format: Any, fields: Mapping[str, Any]) -> Json:
    body: Json = {"model": model, **main, **fields, "stream": stream}
    if format:
        body["format"] = format
    if options:
        body["options"] = dict(options)
    return body


def _reason(exc: requests.RequestException, timeout: Timeout) -> str:
    """Why nothing answered, in a few words: ``connection refused``, ``no answer within 2 s``."""
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return f"no answer within {timeout[0]:g} s"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout[1]:g} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service" in text or "resolve" in text or "nodename" in text:
            return "host name not found"
        if "timed out" in text:  # a read timeout while streaming comes as a ConnectionError
            return f"no answer within {timeout[1]:g} s"
        return "no answer"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke mid-answer"
    return type(exc).__name__


def _error_text(response: requests.Response) -> str:
    """The server's words: ``{"error": "..."}``, else the body, else ``HTTP 502``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return f"HTTP {response.status_code}"


def _object(text: str | bytes, method: str, path: str, status: int) -> Json:
    try:
        item = json.loads(text)
    except ValueError:
        raise ApiRequestFailed(status, f"{method} {path}: the answer is not JSON") from None
    if not isinstance(item, dict):
        raise ApiRequestFailed(status, f"{method} {path}: the answer is not a JSON object")
    return item

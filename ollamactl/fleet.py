"""`fleet status`: several servers at a glance, through their HTTP API only.

For each host, in parallel and each with a timeout: ``GET /`` (health), ``GET /api/version``,
``GET /api/ps`` (loaded models; the queue when the server reports one as ``"queue"``). A host
that does not answer is shown as unreachable; it never hides the others.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ollamactl import settings
from ollamactl.client import Client
from ollamactl.errors import ApiRequestFailed, ServerUnreachable, Unauthorized, UsageError

UP, UNREACHABLE, UNAUTHORIZED, ERROR = "up", "unreachable", "unauthorized", "error"


@dataclass(frozen=True)
class LoadedModel:
    name: str
    size_bytes: int       # in bytes
    size_vram_bytes: int  # in bytes
    expires_at: str
    context_length: int | None


@dataclass
class HostStatus:
    """One host's answers; ``status`` is up, unreachable, unauthorized or error."""

    host: str
    url: str
    status: str
    latency_ms: float | None = None
    version: str | None = None           # the Ollama API version the host reports
    ollamactl: str | None = None         # set when the host is an ollamactl server
    models: list[LoadedModel] = field(default_factory=list)
    queue: dict[str, Any] | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_hosts(values: Sequence[str]) -> list[settings.HostAddress]:
    """``host``, ``host:port`` or ``http(s)://host:port``, default port 11434.

    Raises:
        UsageError: no host, or one that is not an address.
    """
    if not values:
        raise UsageError("give at least one host, e.g. `ollamactl fleet status gpu1 gpu2:11434`")
    addresses = []
    for value in values:
        try:
            addresses.append(settings.parse_host(value))
        except settings.Invalid as exc:
            raise UsageError(f"invalid host {value!r}: {exc}") from None
    return addresses


def probe_host(address: settings.HostAddress, *, timeout_s: float,
               token: str | None = None) -> HostStatus:
    """Ask one host for its health, version and loaded models (directly: the client never
    goes through HTTP_PROXY)."""
    with Client(address.client_url.rstrip("/"), connect_timeout_s=timeout_s,
                read_timeout_s=timeout_s, token=token) as client:
        return probe(client, address.hostport)


def probe(client: Client, host: str) -> HostStatus:
    """:func:`probe_host` through a client the caller keeps (``ollamactl top`` asks every
    second and reuses its connections); ``host`` is the name shown for it."""
    status = HostStatus(host=host, url=client.base_url, status=UNREACHABLE)
    started = time.perf_counter()
    try:
        client.heartbeat()
    except ServerUnreachable as exc:
        status.error = exc.reason
        return status
    except ApiRequestFailed as exc:
        status.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return _refused(status, exc, f"GET / answered HTTP {exc.status}")
    status.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    try:
        version, ps = client.version(), client.ps()
    except ServerUnreachable as exc:
        status.error = exc.reason
        return status
    except ApiRequestFailed as exc:
        return _refused(status, exc, f"unexpected answer ({exc})")
    status.status = UP
    status.version, status.ollamactl = version.api, version.ollamactl
    status.models = [_loaded(m) for m in ps.get("models") or [] if isinstance(m, dict)]
    queue = ps.get("queue")
    status.queue = queue if isinstance(queue, dict) else None
    return status


def _refused(status: HostStatus, exc: ApiRequestFailed, error: str) -> HostStatus:
    """The host answered, but not with what was asked: unauthorized (401), else error."""
    if isinstance(exc, Unauthorized):
        status.status, status.error = UNAUTHORIZED, "the front wants a token (--token)"
    else:
        status.status, status.error = ERROR, error
    return status


def _loaded(model: dict[str, Any]) -> LoadedModel:
    context = model.get("context_length")
    return LoadedModel(name=str(model.get("name", "?")), size_bytes=int(model.get("size") or 0),
                       size_vram_bytes=int(model.get("size_vram") or 0),
                       expires_at=str(model.get("expires_at", "")),
                       context_length=int(context) if isinstance(context, int) else None)


def fleet_status(addresses: Sequence[settings.HostAddress], *, timeout_s: float = 3.0,
                 token: str | None = None) -> list[HostStatus]:
    """Every host's status, asked in parallel, in the order given."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        return list(pool.map(lambda a: probe_host(a, timeout_s=timeout_s, token=token),
                             addresses))


def queue_text(queue: dict[str, Any] | None) -> str:
    """``2/512`` (waiting / limit) when the server reports its queue, else ``-``."""
    if not queue:
        return "-"
    waiting, limit = queue.get("pending"), queue.get("max")
    return f"{waiting}/{limit}" if limit is not None else str(waiting)


def table_rows(statuses: Sequence[HostStatus]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for s in statuses:
        models = ", ".join(m.name for m in s.models) or "-"
        rows.append((s.host, s.status if not s.error else f"{s.status} ({s.error})",
                     _version_text(s), f"{s.latency_ms:g} ms" if s.latency_ms is not None
                     else "-", models if s.status == UP else "-",
                     queue_text(s.queue) if s.status == UP else "-"))
    return rows


def _version_text(s: HostStatus) -> str:
    if s.version is None:
        return "-"
    return f"{s.version} (ollamactl {s.ollamactl})" if s.ollamactl else s.version


HEADERS = ("HOST", "STATUS", "VERSION", "LATENCY", "LOADED", "QUEUE")

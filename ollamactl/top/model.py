"""What `ollamactl top` shows, computed from two scrapes of each host; no terminal code.

Each refresh asks every host in parallel, through one :class:`~ollamactl.client.Client` per host
kept for the whole run: ``GET /``, ``/api/version`` and ``/api/ps`` (as ``fleet status`` does,
:func:`ollamactl.fleet.probe`), then ``GET /metrics``. Rates come from the difference between
this scrape and the previous one of the same host:

- tokens/s: ``ollama_generated_tokens_total{model}`` delta over the seconds between the scrapes,
  per model and summed per host; requests/s likewise from ``ollama_requests_total``, less
  the routes monitors poll (:data:`POLLED_ROUTES`: `top` itself would count 4 a refresh);
- TTFT: the mean time to first token of the requests that started in between
  (``ollama_time_to_first_token_seconds`` ``_sum``/``_count`` deltas); an interval without a
  new request keeps the last mean shown; the first scrape shows the mean since the server
  started;
- a counter that went down (the server restarted) counts from zero.

A server without ``/metrics`` (404: a real Ollama, or ``OLLAMA_METRICS=0``) still shows what
``/api/ps`` says, with None (drawn as ``-``) for what only metrics tell; a host that does not
answer is shown as such and never hides the others.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ollamactl import fleet, settings
from ollamactl.client import Client
from ollamactl.errors import ApiRequestFailed, ServerUnreachable
from ollamactl.humanize import processor_text, until_text
from ollamactl.top import metrics as metricsmod
from ollamactl.top.metrics import Metrics

GENERATED = "ollama_generated_tokens_total"
REQUESTS = "ollama_requests_total"
TTFT_SUM = "ollama_time_to_first_token_seconds_sum"
TTFT_COUNT = "ollama_time_to_first_token_seconds_count"
QUEUE_DEPTH = "ollama_queue_depth"
QUEUE_LIMIT = "ollama_queue_limit"
CRASHES = "ollama_runner_crashes_total"
RUNTIME_INFO = "ollama_runtime_info"
POLLED_ROUTES = frozenset({"/", "/api/version", "/api/ps", "/metrics"})
"""What `top` (and a monitor like it) asks every second: left out of requests/s."""


@dataclass(frozen=True)
class Scrape:
    """One host at one moment: what ``fleet`` asks, and the metrics (None: see ``note``)."""

    status: fleet.HostStatus
    metrics: Metrics | None
    note: str           # why there are no metrics: "no /metrics (HTTP 404)"; "" otherwise
    taken_at_s: float   # monotonic clock, in seconds


@dataclass(frozen=True)
class ModelRow:
    """One loaded model; None where the host does not say (no metrics, or no delta yet)."""

    name: str
    processor: str                 # as `ollamactl ps`: 100% CPU, 48%/52% CPU/GPU
    memory_bytes: int              # in bytes (/api/ps size)
    tokens_per_s: float | None     # generated tokens per second, in the last interval
    ttft_s: float | None           # mean time to first token, in seconds
    until: str                     # as `ollamactl ps`: 4 minutes from now, Forever


@dataclass(frozen=True)
class HostView:
    host: str
    status: str                    # fleet.UP, UNREACHABLE, UNAUTHORIZED or ERROR
    error: str
    version: str                   # "ollamactl 0.1.0 (API 0.12.3)", "Ollama 0.12.3", "-"
    variant: str                   # the CPU library serving (ollama_runtime_info), or ""
    queue_depth: int | None
    queue_limit: int | None
    memory_bytes: int              # in bytes, all loaded models
    tokens_per_s: float | None     # all models, in the last interval
    requests_per_s: float | None
    crashes: int | None            # runner crashes since the server started
    note: str                      # why metrics are missing, "" when they are there
    models: tuple[ModelRow, ...]

    @property
    def is_up(self) -> bool:
        return self.status == fleet.UP


@dataclass(frozen=True)
class View:
    """One refresh: every host in the order given."""

    taken_at: float                # Unix time of the refresh
    interval_s: float              # seconds the rates cover; 0.0 on the first (no rates)
    hosts: tuple[HostView, ...]

    @property
    def all_up(self) -> bool:
        return all(h.is_up for h in self.hosts)


def scrape(client: Client, host: str, *, clock: Callable[[], float] = time.monotonic) -> Scrape:
    """Ask one host once (never raises for what the host does)."""
    status = fleet.probe(client, host)
    taken_at = clock()
    if status.status != fleet.UP:
        return Scrape(status, None, "", taken_at)
    try:
        text = client.metrics()
    except ApiRequestFailed as exc:
        note = "no /metrics" + (f" (HTTP {exc.status})" if exc.status == 404 else f": {exc}")
        return Scrape(status, None, note, taken_at)
    except ServerUnreachable as exc:
        return Scrape(status, None, f"/metrics: {exc.reason}", taken_at)
    try:
        return Scrape(status, metricsmod.parse(text), "", taken_at)
    except ValueError as exc:
        return Scrape(status, None, f"/metrics unreadable: {exc}", taken_at)


def counter_delta(now: float, before: float | None) -> float:
    """How much a counter grew; one that went down was reset (a restart) and counts from 0."""
    if before is None or now < before:
        return now
    return now - before


class Top:
    """The hosts `ollamactl top` watches, and what it remembers between refreshes.

    ``clock`` (monotonic seconds) times the rates; ``wall`` (Unix seconds) stamps each view
    and reads ``until``. Close it (or use it as a context manager) to drop the connections.
    """

    def __init__(self, addresses: Sequence[settings.HostAddress], *, timeout_s: float,
                 token: str | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.hosts = [a.hostport for a in addresses]
        self.clients = [Client(a.client_url.rstrip("/"), connect_timeout_s=timeout_s,
                               read_timeout_s=timeout_s, token=token) for a in addresses]
        self._clock, self._wall = clock, wall
        self._previous: dict[int, Scrape] = {}
        self._ttft_s: dict[tuple[int, str], float] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(16, max(1, len(addresses))), thread_name_prefix="top")

    def __enter__(self) -> Top:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients:
            client.close()

    def refresh(self) -> View:
        """Scrape every host (in parallel) and compute the view against the last scrape."""
        scrapes = list(self._pool.map(
            lambda i: scrape(self.clients[i], self.hosts[i], clock=self._clock),
            range(len(self.clients))))
        intervals = [s.taken_at_s - self._previous[i].taken_at_s
                     for i, s in enumerate(scrapes) if i in self._previous]
        views = tuple(self._host_view(i, s) for i, s in enumerate(scrapes))
        self._previous = dict(enumerate(scrapes))
        return View(taken_at=self._wall(), interval_s=max(intervals, default=0.0), hosts=views)

    def _host_view(self, index: int, now: Scrape) -> HostView:
        status, current = now.status, now.metrics
        before = self._previous.get(index)
        previous = before.metrics if before is not None else None
        seconds = now.taken_at_s - before.taken_at_s if before is not None else 0.0
        has_rates = current is not None and previous is not None and seconds > 0

        def rate_by_model(name: str) -> dict[str, float]:
            if not has_rates or current is None or previous is None:
                return {}
            old = previous.by_label(name, "model")
            return {model: counter_delta(value, old.get(model)) / seconds
                    for model, value in current.by_label(name, "model").items()}

        tokens = rate_by_model(GENERATED)
        rows = tuple(self._model_row(index, m, current, previous, tokens, has_rates=has_rates)
                     for m in status.models)
        depth, limit = _queue(status, current)
        return HostView(
            host=status.host, status=status.status, error=status.error,
            version=_version_text(status), variant=_variant(current),
            queue_depth=depth, queue_limit=limit,
            memory_bytes=sum(m.size_bytes for m in status.models),
            tokens_per_s=sum(tokens.values()) if has_rates else None,
            requests_per_s=_requests_per_s(current, previous, seconds),
            crashes=_int(current.total(CRASHES)) if current is not None else None,
            note=now.note, models=rows)

    def _model_row(self, index: int, model: fleet.LoadedModel, current: Metrics | None,
                   previous: Metrics | None, tokens: dict[str, float], *,
                   has_rates: bool) -> ModelRow:
        tokens_per_s = tokens.get(model.name, 0.0) if has_rates else None
        return ModelRow(name=model.name,
                        processor=processor_text(model.size_bytes, model.size_vram_bytes),
                        memory_bytes=model.size_bytes, tokens_per_s=tokens_per_s,
                        ttft_s=self._ttft(index, model.name, current, previous),
                        until=self._until(model.expires_at))

    def _ttft(self, index: int, model: str, current: Metrics | None,
              previous: Metrics | None) -> float | None:
        """The mean TTFT of the requests since the last scrape; the last mean shown when none
        came; the mean since the server started on the first scrape."""
        if current is None:
            return None
        total_s = current.by_label(TTFT_SUM, "model").get(model)
        count = current.by_label(TTFT_COUNT, "model").get(model)
        if total_s is None or count is None:
            return None
        key = (index, model)
        if previous is None:
            if count > 0:
                self._ttft_s[key] = total_s / count
        else:
            new_count = counter_delta(count, previous.by_label(TTFT_COUNT, "model").get(model))
            if new_count > 0:
                new_total = counter_delta(total_s,
                                          previous.by_label(TTFT_SUM, "model").get(model))
                self._ttft_s[key] = new_total / new_count
        return self._ttft_s.get(key)

    def _until(self, expires_at: str) -> str:
        try:
            return until_text(expires_at, self._wall())
        except ValueError:
            return "-"


def _requests_per_s(current: Metrics | None, previous: Metrics | None,
                    seconds: float) -> float | None:
    if current is None or previous is None or seconds <= 0 or not current.has(REQUESTS):
        return None
    before = _served(previous) if previous.has(REQUESTS) else None
    return counter_delta(_served(current), before) / seconds


def _served(metrics: Metrics) -> float:
    """Requests summed over every route but the polled ones."""
    return sum(value for route, value in metrics.by_label(REQUESTS, "route").items()
               if route not in POLLED_ROUTES)


def _queue(status: fleet.HostStatus, current: Metrics | None) -> tuple[int | None, int | None]:
    """Waiting requests and the limit: from the metrics, else from ``/api/ps``'s ``queue``."""
    if current is not None and current.has(QUEUE_DEPTH):
        return _int(current.total(QUEUE_DEPTH)), _int(current.total(QUEUE_LIMIT))
    queue = status.queue or {}
    depth, limit = queue.get("pending"), queue.get("max")
    return (depth if isinstance(depth, int) else None, limit if isinstance(limit, int) else None)


def _variant(current: Metrics | None) -> str:
    """The llama.cpp CPU library serving, as ``ollama_runtime_info`` names it (``cpu_avx2``)."""
    facts = current.labels(RUNTIME_INFO) if current is not None else []
    variant = facts[0].get("variant", "") if facts else ""
    return "" if variant in ("unknown", "none") else variant


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _version_text(status: fleet.HostStatus) -> str:
    if status.version is None:
        return "-"
    if status.ollamactl:
        return f"ollamactl {status.ollamactl} (API {status.version})"
    return f"Ollama {status.version}"

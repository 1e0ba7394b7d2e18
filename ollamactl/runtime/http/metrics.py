"""``GET /metrics``: the server's Prometheus metrics, counted per app.

Imported only when OLLAMA_METRICS is on. The families:

- requests: ``ollama_requests_total{route,method,status}`` and
  ``ollama_request_duration_seconds{route}``, counted by :class:`RequestMetrics` when a response
  ends (``route`` is the route's path template; ``other`` for a path no route matches and
  for a request the guards refuse before routing; ``method`` outside the usual seven is
  ``other`` too);
- tokens: ``ollama_prompt_tokens_total{model}``, ``ollama_generated_tokens_total{model}``,
  ``ollama_time_to_first_token_seconds{model}`` and ``ollama_time_per_output_token_seconds
  {model}``, observed once per finished sequence; generated tokens are counted as they
  stream (one dict update each), the rest of a sequence's counts when it ends; embedding
  inputs count as prompt tokens;
- runners: ``ollama_runner_loads_total{model}``, ``ollama_runner_unloads_total{model,reason}``,
  ``ollama_runner_crashes_total{model,signal}``, reported by the scheduler
  (:class:`~ollamactl.runtime.scheduling.scheduler.SchedulerEvents`);
- read from the scheduler at scrape time: ``ollama_queue_depth``, ``ollama_queue_limit``,
  ``ollama_loaded_models``, ``ollama_model_memory_bytes{model,kind}`` (kind ``ram`` | ``vram``,
  /api/ps's ``size`` and ``size_vram``) and ``ollama_runtime_info`` (version, llama.cpp build,
  CPU variant serving, llama-cpp-python version).

Every update is a dict operation on the event loop (all of them run there: no lock, and the
token path makes none); ``prometheus_client`` is imported at the first scrape, which builds
the families from these counts (~14 ms the server's start does not pay).
"""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from ollamactl import __version__
from ollamactl.runtime.http.asgi import ASGIApp, Receive, Scope, Send, watch_response
from ollamactl.runtime.http.requests import CLIENT_GONE
from ollamactl.runtime.scheduling.scheduler import Scheduler, SchedulerEvents

if TYPE_CHECKING:
    from prometheus_client.core import Metric

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
OTHER = "other"  # the route or method label of anything outside the known set

REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     120.0, 300.0)
FIRST_TOKEN_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PER_TOKEN_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

Labels = tuple[str, ...]


class _Counter:
    """A counter family's totals by label values."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.totals: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.totals[labels] = self.totals.get(labels, 0.0) + amount

    def family(self) -> Metric:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, total in self.totals.items():
            family.add_metric(list(labels), total)
        return family


class _Histogram:
    """A histogram family's bucket counts (each bucket its own, ``le`` inclusive, the last
    one +Inf) and sums by label values."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.bounds = tuple(buckets)
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.bounds) + 1)
        counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def family(self) -> Metric:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]   # le="0.005"
        for labels, counts in self.counts.items():
            running, buckets = 0, []
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                buckets.append((bound, float(running)))
            family.add_metric(list(labels), buckets, self.sums[labels])
        return family


class ServerMetrics(SchedulerEvents):
    """Every metric of one app (several apps never share a count)."""

    def __init__(self, scheduler: Callable[[], Scheduler | None]) -> None:
        self.scheduler = scheduler
        self.requests = _Counter("ollama_requests", "HTTP requests by route, method and status.",
                                 ["route", "method", "status"])
        self.request_duration = _Histogram(
            "ollama_request_duration_seconds", "Time from request to the response's last byte.",
            ["route"], REQUEST_BUCKETS_S)
        self.prompt_tokens = _Counter("ollama_prompt_tokens", "Prompt tokens evaluated.",
                                      ["model"])
        self.generated_tokens = _Counter("ollama_generated_tokens", "Tokens generated.",
                                         ["model"])
        self.first_token = _Histogram(
            "ollama_time_to_first_token_seconds",
            "Time from request to the first generated token (queueing and loading included).",
            ["model"], FIRST_TOKEN_BUCKETS_S)
        self.per_token = _Histogram(
            "ollama_time_per_output_token_seconds",
            "Per request: (last token - first token) / (generated tokens - 1).",
            ["model"], PER_TOKEN_BUCKETS_S)
        self.loads = _Counter("ollama_runner_loads", "Runners loaded.", ["model"])
        self.unloads = _Counter(
            "ollama_runner_unloads",
            "Runners unloaded, by reason (keep_alive, evicted, requested, shutdown, crashed).",
            ["model", "reason"])
        self.crashes = _Counter("ollama_runner_crashes",
                                "Runners that died unasked, by signal (none: a plain exit).",
                                ["model", "signal"])

    # -- SchedulerEvents ----------------------------------------------------------------------

    def runner_loaded(self, model: str) -> None:
        self.loads.inc((model,))

    def runner_unloaded(self, model: str, reason: str) -> None:
        self.unloads.inc((model, reason))

    def runner_crashed(self, model: str, signal: str) -> None:
        self.crashes.inc((model, signal))

    # -- requests and sequences ---------------------------------------------------------------

    def request_done(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.requests.inc((route, method if method in METHODS else OTHER, str(status)))
        self.request_duration.observe((route,), duration_s)

    def prompt_evaluated(self, model: str, tokens: int) -> None:
        """Prompt tokens with no generation after them (embedding inputs)."""
        self.prompt_tokens.inc((model,), tokens)

    def token_generated(self, model: str) -> None:
        """One token as it streams from the runner: the generated-token count (and a live
        view's tokens/s) moves while a long generation runs, not only when it ends."""
        self.generated_tokens.inc((model,))

    def sequence_done(self, model: str, *, prompt_tokens: int, generated_tokens: int,
                      started_ns: int, first_token_ns: int | None, ended_ns: int,
                      streamed: int = 0) -> None:
        """One finished generation: token counts (``streamed`` of the generated ones were
        counted as they came); time to first token (from ``started_ns``, the request's
        arrival) and, with two tokens or more, the mean time per later token."""
        self.prompt_tokens.inc((model,), prompt_tokens)
        self.generated_tokens.inc((model,), max(0, generated_tokens - streamed))
        if first_token_ns is None or generated_tokens < 1:
            return
        self.first_token.observe((model,), (first_token_ns - started_ns) / 1e9)
        if generated_tokens > 1:
            self.per_token.observe((model,), (ended_ns - first_token_ns) / 1e9
                                   / (generated_tokens - 1))

    def collect(self) -> Iterator[Metric]:
        """Every family, the scheduler's gauges read now (a prometheus_client collector)."""
        for counts in (self.requests, self.request_duration, self.prompt_tokens,
                       self.generated_tokens, self.first_token, self.per_token, self.loads,
                       self.unloads, self.crashes):
            yield counts.family()
        yield from _scheduler_families(self.scheduler())

    def exposition(self) -> bytes:
        """Every family in Prometheus' text format."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _scheduler_families(scheduler: Scheduler | None) -> Iterator[Metric]:
    """Gauges read from the scheduler when scraped (the scheduler keeps no counts itself)."""
    from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

    depth = GaugeMetricFamily("ollama_queue_depth",
                              "Requests waiting for a model or a slot (OLLAMA_MAX_QUEUE).")
    limit = GaugeMetricFamily("ollama_queue_limit",
                              "OLLAMA_MAX_QUEUE: waiting requests beyond it get 503.")
    loaded = GaugeMetricFamily("ollama_loaded_models", "Models loaded (as /api/ps lists).")
    memory = GaugeMetricFamily("ollama_model_memory_bytes",
                               "Memory of each loaded model (/api/ps size, size_vram).",
                               labels=["model", "kind"])
    info = InfoMetricFamily("ollama_runtime", "The server and the llama.cpp runtime serving.",
                            value=runtime_info())
    if scheduler is not None:
        running = scheduler.running()
        depth.add_metric([], scheduler.pending)
        limit.add_metric([], scheduler.config.max_queue)
        loaded.add_metric([], len(running))
        sizes: dict[tuple[str, str], int] = {}
        for item in running:
            for kind, size in (("ram", item.size_bytes), ("vram", item.size_vram_bytes)):
                sizes[item.ref.name, kind] = sizes.get((item.ref.name, kind), 0) + size
        for (model, kind), size in sizes.items():
            memory.add_metric([model, kind], size)
    yield from (depth, limit, loaded, memory, info)


def runtime_info() -> dict[str, str]:
    """Labels of ``ollama_runtime_info``; the variant is asked each time (a SIGILL demotes it)."""
    variant = "unknown"
    try:
        from ollamactl.runtime.builds.serving import server_libraries
        from ollamactl.runtime.builds.variants import VariantError

        try:
            variant = server_libraries().choose().name
        except VariantError:
            variant = "none"
    except (OSError, ValueError):
        pass
    return {"version": __version__, **_build_info(), "variant": variant}


@functools.lru_cache(maxsize=1)
def _build_info() -> dict[str, str]:
    import importlib.metadata  # at the first scrape: ~8 ms the server's start need not pay

    from ollamactl.runtime.builds.recipe import installed_record

    try:
        record = installed_record() or {}
    except (OSError, ValueError):
        record = {}
    try:
        llama_cpp_python = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        llama_cpp_python = str(record.get("llama_cpp_python") or "none")
    return {"build": str(record.get("key") or "unknown"), "llama_cpp_python": llama_cpp_python}


class RequestMetrics:
    """ASGI middleware: counts each HTTP request and times it when its response ends (a
    client that left first counts as 499, a handler that raised as 500)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        def count(code: int) -> None:
            route = getattr(scope.get("route"), "path", None) or OTHER
            self.metrics.request_done(route, str(scope["method"]), code,
                                      time.perf_counter() - started)

        await watch_response(self.app, scope, receive, send, count, gone_status=CLIENT_GONE,
                             fallback_status=500)


async def scrape(request: Request) -> Response:
    """``GET /metrics``: the app's metrics in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST

    metrics: ServerMetrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

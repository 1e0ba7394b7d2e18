"""``GET /metrics``: the server's Prometheus metrics, in a registry owned by one app.

Imported only when OLLAMA_METRICS is on (``prometheus_client`` stays out of a server that does
not serve metrics). The families:

- requests: ``ollama_requests_total{route,method,status}`` and
  ``ollama_request_duration_seconds{route}``, counted by :class:`RequestMetrics` when a response
  ends (``route`` is the route's path template; ``other`` for a path no route matches and
  for a request the guards refuse before routing; ``method`` outside the usual seven is
  ``other`` too);
- tokens: ``ollama_prompt_tokens_total{model}``, ``ollama_generated_tokens_total{model}``,
  ``ollama_time_to_first_token_seconds{model}`` and ``ollama_time_per_output_token_seconds
  {model}``, observed once per finished sequence (never per token); embedding inputs count
  as prompt tokens;
- runners: ``ollama_runner_loads_total{model}``, ``ollama_runner_unloads_total{model,reason}``,
  ``ollama_runner_crashes_total{model,signal}``, reported by the scheduler
  (:class:`~ollamactl.runtime.scheduling.scheduler.SchedulerEvents`);
- read from the scheduler at scrape time: ``ollama_queue_depth``, ``ollama_queue_limit``,
  ``ollama_loaded_models``, ``ollama_model_memory_bytes{model,kind}`` (kind ``ram`` | ``vram``,
  /api/ps's ``size`` and ``size_vram``) and ``ollama_runtime_info`` (version, llama.cpp build,
  CPU variant serving, llama-cpp-python version).

Counter and histogram updates take prometheus_client's per-metric lock once per request or
runner event; the token path takes none.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from ollamactl import __version__
from ollamactl.runtime.http.asgi import ASGIApp, Receive, Scope, Send, watch_response
from ollamactl.runtime.http.requests import CLIENT_GONE
from ollamactl.runtime.scheduling.scheduler import Scheduler, SchedulerEvents

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
OTHER = "other"  # the route or method label of anything outside the known set

REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     120.0, 300.0)
FIRST_TOKEN_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PER_TOKEN_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ServerMetrics(SchedulerEvents):
    """Every metric of one app, in the app's own registry (several apps never collide)."""

    def __init__(self, scheduler: Callable[[], Scheduler | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("ollama_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=registry)
        self.request_duration = Histogram(
            "ollama_request_duration_seconds", "Time from request to the response's last byte.",
            ["route"], buckets=REQUEST_BUCKETS_S, registry=registry)
        self.prompt_tokens = Counter("ollama_prompt_tokens", "Prompt tokens evaluated.",
                                     ["model"], registry=registry)
        self.generated_tokens = Counter("ollama_generated_tokens", "Tokens generated.",
                                        ["model"], registry=registry)
        self.first_token = Histogram(
            "ollama_time_to_first_token_seconds",
            "Time from request to the first generated token (queueing and loading included).",
            ["model"], buckets=FIRST_TOKEN_BUCKETS_S, registry=registry)
        self.per_token = Histogram(
            "ollama_time_per_output_token_seconds",
            "Per request: (last token - first token) / (generated tokens - 1).",
            ["model"], buckets=PER_TOKEN_BUCKETS_S, registry=registry)
        self.loads = Counter("ollama_runner_loads", "Runners loaded.", ["model"],
                             registry=registry)
        self.unloads = Counter(
            "ollama_runner_unloads",
            "Runners unloaded, by reason (keep_alive, evicted, requested, shutdown, crashed).",
            ["model", "reason"], registry=registry)
        self.crashes = Counter("ollama_runner_crashes",
                               "Runners that died unasked, by signal (none: a plain exit).",
                               ["model", "signal"], registry=registry)
        registry.register(SchedulerCollector(scheduler))

    # -- SchedulerEvents ----------------------------------------------------------------------

    def runner_loaded(self, model: str) -> None:
        self.loads.labels(model).inc()

    def runner_unloaded(self, model: str, reason: str) -> None:
        self.unloads.labels(model, reason).inc()

    def runner_crashed(self, model: str, signal: str) -> None:
        self.crashes.labels(model, signal).inc()

    # -- requests and sequences ---------------------------------------------------------------

    def request_done(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.requests.labels(route, method if method in METHODS else OTHER, str(status)).inc()
        self.request_duration.labels(route).observe(duration_s)

    def sequence_done(self, model: str, *, prompt_tokens: int, generated_tokens: int,
                      started_ns: int, first_token_ns: int | None, ended_ns: int) -> None:
        """One finished generation: token counts; time to first token (from ``started_ns``,
        the request's arrival) and, with two tokens or more, the mean time per later token."""
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generated_tokens.labels(model).inc(generated_tokens)
        if first_token_ns is None or generated_tokens < 1:
            return
        self.first_token.labels(model).observe((first_token_ns - started_ns) / 1e9)
        if generated_tokens > 1:
            self.per_token.labels(model).observe(
                (ended_ns - first_token_ns) / 1e9 / (generated_tokens - 1))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class SchedulerCollector(Collector):
    """Gauges read from the scheduler when scraped (the scheduler keeps no counts itself)."""

    def __init__(self, scheduler: Callable[[], Scheduler | None]) -> None:
        self.scheduler = scheduler

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.scheduler())

    def _families(self, scheduler: Scheduler | None) -> Iterator[Metric]:
        depth = GaugeMetricFamily("ollama_queue_depth",
                                  "Requests waiting for a model or a slot (OLLAMA_MAX_QUEUE).")
        limit = GaugeMetricFamily("ollama_queue_limit",
                                  "OLLAMA_MAX_QUEUE: waiting requests beyond it get 503.")
        loaded = GaugeMetricFamily("ollama_loaded_models", "Models loaded (as /api/ps lists).")
        memory = GaugeMetricFamily("ollama_model_memory_bytes",
                                   "Memory of each loaded model (/api/ps size, size_vram).",
                                   labels=["model", "kind"])
        info = InfoMetricFamily("ollama_runtime", "The server and the llama.cpp runtime serving.",
                                value=runtime_info() if scheduler is not None else None)
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
    """``GET /metrics``: the app's registry in Prometheus' text format."""
    metrics: ServerMetrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

"""The Starlette application: lifespan (store + scheduler), request ids, logging, error bodies.

``create_app(config)`` assembles the app from explicit parts: the route table of
:mod:`routes`, one ASGI middleware that gives every request an id and logs one line when it
ends (plus the body limits of :mod:`limits` and the guards of :mod:`security`), and handlers
that turn expected errors into Ollama's ``{"error": "..."}`` bodies and unknown paths into Go's
plain ``404 page not found``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ollamactl.errors import ModelError
from ollamactl.humanize import go_duration
from ollamactl.logrecords import REQUEST_LOGGER, RecordFormatter, keep_stream_private, request_field
from ollamactl.runtime.http.asgi import ASGIApp, Receive, Scope, Send, watch_response
from ollamactl.runtime.http.limits import BodyLimit
from ollamactl.runtime.http.requests import CLIENT_GONE, ApiError
from ollamactl.runtime.http.routes import routes
from ollamactl.runtime.http.security import RequestGuard
from ollamactl.runtime.scheduling.gpus import Gpus
from ollamactl.runtime.scheduling.runner_client import RunnerProcess, SpareRunner
from ollamactl.runtime.scheduling.scheduler import Scheduler, SchedulerConfig
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.prune import prune
from ollamactl.settings import ServerConfig

log = logging.getLogger("ollamactl.server")
request_log = logging.getLogger(REQUEST_LOGGER)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_ids = itertools.count(1)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def setup_server_logging(debug: int) -> None:
    """One line per record on stderr: time, level, request id, logger, message (see
    :mod:`ollamactl.logrecords`); a log file behind stderr is made 0640."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(RecordFormatter())
    keep_stream_private(sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RequestLog:
    """ASGI middleware: a request id per HTTP request, one log line when the response ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = f"{next(_ids):06d}"
        token = request_id.set(rid)
        started = time.perf_counter()

        def log_line(code: int) -> None:
            request_log.info("%s %s status=%d duration=%.3fs client=%s",
                             request_field(scope["method"]), request_field(scope["path"]),
                             code, time.perf_counter() - started,
                             request_field(str((scope.get("client") or ("-",))[0])))

        try:  # a stream cut short by its client is logged as cancelled: 499
            await watch_response(self.app, scope, receive, send, log_line,
                                 gone_status=CLIENT_GONE,
                                 headers=((b"x-request-id", rid.encode()),))
        finally:
            request_id.reset(token)


def scheduler_config(config: ServerConfig) -> SchedulerConfig:
    return SchedulerConfig(max_loaded_models=config.max_loaded_models,
                           num_parallel=config.num_parallel, max_queue=config.max_queue,
                           load_timeout_s=config.load_timeout_s,
                           default_keep_alive_s=config.keep_alive_s,
                           gpu_overhead_bytes=config.gpu_overhead_bytes,
                           sched_spread=config.sched_spread)


def create_app(config: ServerConfig, *, scheduler: Scheduler | None = None,
               store: Store | None = None,
               spare: subprocess.Popen[bytes] | None = None) -> Starlette:
    """The server app; the lifespan owns the scheduler and stops every runner at shutdown.
    ``spare``: a runner started before the app (:func:`spare.start_spare`), for the
    first load."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.config = config
        app.state.store = store or Store(config.models)
        spare_runner = await SpareRunner.adopt(spare) if spare is not None else None
        app.state.scheduler = scheduler or Scheduler(
            scheduler_config(config),
            spawn=functools.partial(RunnerProcess, spare=spare_runner),
            gpus=Gpus(requested=config.environment.get("OLLAMA_LLM_LIBRARY", "")))
        if app.state.metrics is not None:
            app.state.scheduler.events = app.state.metrics
        sched = app.state.scheduler.config
        log.info("server config host=%s models=%s keep_alive=%s num_parallel=%d "
                 "max_loaded_models=%s max_queue=%d context_length=%s env=%s",
                 config.host, config.models, go_duration(config.keep_alive_s),
                 sched.num_parallel, sched.max_loaded_models or "auto (3 per GPU)",
                 sched.max_queue,
                 config.context_length or "auto (VRAM tier)", dict(config.environment))
        try:
            prune(app.state.store, noprune=config.noprune)
        except ModelError as exc:
            log.warning("blob pruning skipped: %s", exc)
        # the GPU discovery ready for the first request, run beside serving (without a
        # device node it lists nothing and returns at once); a template worker starts with
        # the first request that renders (inference._warm_renderer)
        gpus = app.state.scheduler.gpus
        discovery = None if gpus is None else \
            asyncio.get_running_loop().run_in_executor(None, gpus.backend)
        try:
            yield
        finally:
            if discovery is not None:
                await discovery
            await app.state.scheduler.close()
            if spare_runner is not None:
                await spare_runner.close()

    app = Starlette(routes=routes(metrics=config.metrics), lifespan=lifespan)
    app.state.metrics = None
    if config.metrics:  # prometheus_client is imported only when metrics are served
        from ollamactl.runtime.http.metrics import RequestMetrics, ServerMetrics

        app.state.metrics = ServerMetrics(lambda: getattr(app.state, "scheduler", None))
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestGuard, bind_host=config.host.bind_host, origins=config.origins)
    if app.state.metrics is not None:
        app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.add_middleware(RequestLog)
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        request_log.error("%s %s: %s", request_field(request.method),
                          request_field(request.url.path), exc.message)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return PlainTextResponse("404 page not found", status_code=404)
    if exc.status_code == 405:
        return PlainTextResponse("405 method not allowed", status_code=405)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

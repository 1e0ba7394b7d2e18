"""``ollamactl serve``: the app under uvicorn, bound where OLLAMA_HOST says.

SIGINT/SIGTERM stop accepting, end in-flight responses and the lifespan stops every runner,
so no runner outlives the server.

:func:`main` is ``python -m ollamactl serve``, the command line every service manager starts:
it runs the server without the CLI (typer and every command group are not imported), and
reports an expected error as the CLI does (one line, a hint, the exit code). Before the socket
listens the server imports uvicorn, the app and its routes; what only some requests need
(jsonschema for a ``format`` schema, the CPU builds at the first load, the registry, Modelfile
tools) is imported on first use. bench/bench_start.py measures the start phase by phase.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ollamactl.errors import EXIT_INTERRUPTED, OllamactlError, report
from ollamactl.runtime.scheduling.spare import end_spare, start_spare

if TYPE_CHECKING:
    from ollamactl.settings import ServerConfig

log = logging.getLogger("ollamactl.server")


def _check_bindable(config: ServerConfig) -> None:
    """Fail with one line when the address is taken, before uvicorn logs a traceback."""
    host = config.host.bind_host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, config.host.port))
        except OSError as exc:
            raise OllamactlError(
                f"cannot listen on {config.host.hostport}: {(exc.strerror or str(exc)).lower()}",
                hint="another server may be running there (`ollamactl ps`), or set OLLAMA_HOST "
                     "to a free address") from exc


def serve(environ: Mapping[str, str] | None = None) -> None:
    """Run the server in the foreground until interrupted. A spare runner starts first, so
    that it imports llama.cpp while the server imports its own modules (the settings too)."""
    spare = start_spare()
    try:
        with _no_collection():
            import uvicorn

            from ollamactl import host as hostmod
            from ollamactl.runtime.http.app import create_app, setup_server_logging
            from ollamactl.settings import load_server_config

        env = os.environ if environ is None else environ
        config = load_server_config(env, hostmod.detect(), service=False)
        setup_server_logging(config.debug)
        _check_bindable(config)
        log.info("Listening on %s (version %s)", config.host.hostport, _version())
        uvicorn.run(create_app(config, spare=spare), host=config.host.bind_host,
                    port=config.host.port, log_config=None, access_log=False,
                    timeout_graceful_shutdown=5, lifespan="on")
    finally:
        if spare is not None:      # the lifespan ends it; here when the server never served
            end_spare(spare)


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while the server's modules load: importing them makes
    some 50,000 tracked objects, and the collection passes they set off free next to none.
    Afterwards they are frozen (``gc.freeze``: never scanned again), or the first collections
    after the imports would walk them all on the first request's path (7-22 ms, then ~6 ms,
    and ~10 ms for each full collection later)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main() -> None:
    """``python -m ollamactl serve``: :func:`serve`, with the CLI's handling of its errors."""
    try:
        serve()
    except OllamactlError as exc:
        sys.exit(report(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        logging.shutdown()


def _version() -> str:
    from ollamactl import __version__

    return __version__

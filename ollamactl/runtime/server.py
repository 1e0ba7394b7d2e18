"""``ollamactl serve``: the app under uvicorn, bound where OLLAMA_HOST says.

SIGINT/SIGTERM stop accepting, end in-flight responses and the lifespan stops every runner,
so no runner outlives the server.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from ollamactl import host as hostmod
from ollamactl.errors import OllamactlError
from ollamactl.settings import ServerConfig, load_server_config

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
    """Run the server in the foreground until interrupted."""
    import uvicorn

    from ollamactl.runtime.http.app import create_app, setup_server_logging

    env = os.environ if environ is None else environ
    config = load_server_config(env, hostmod.detect(), service=False)
    setup_server_logging(config.debug)
    _check_bindable(config)
    log.info("Listening on %s (version %s)", config.host.hostport, _version())
    uvicorn.run(create_app(config), host=config.host.bind_host, port=config.host.port,
                log_config=None, access_log=False, timeout_graceful_shutdown=5,
                lifespan="on")


def _version() -> str:
    from ollamactl import __version__

    return __version__

"""Service backends (systemd, launchd, Windows, ollamactl's watchdog) and settings stores."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.service.env import EnvStore


def get_env_store(ctx: Context) -> EnvStore | None:
    """The persisted settings store of the installed service, or None when none is installed.

    Backends (systemd drop-in, launchd plist, Windows user environment, watchdog env file)
    register here as they land; until then only the process environment and defaults apply.
    """
    return None

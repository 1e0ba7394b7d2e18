"""The one jinja2 Environment for service files, loaded the same way from a checkout or a wheel.

Templates live in the repository's top-level ``templates/`` folder; the wheel ships them as
``ollamactl/templates`` (hatch force-include). :func:`template_root` finds whichever exists.
"""

from __future__ import annotations

import functools
import shlex
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

MANAGED_HEADER = "Managed by ollamactl; change settings with `ollamactl env set`."


def template_root() -> Traversable:
    """``ollamactl/templates`` inside an installed wheel, else the checkout's ``templates/``."""
    packaged = resources.files("ollamactl").joinpath("templates")
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("ollamactl's templates folder is missing from this installation")


def systemd_quote(value: str) -> str:
    """Quote one word for a systemd unit's ExecStart= / Environment= line (``%`` is always
    quoted and doubled: systemd expands specifiers there)."""
    if value and all(c.isalnum() or c in "-_./:=@+," for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    root = template_root()

    def load(name: str) -> str:
        node = root
        for part in name.split("/"):
            node = node.joinpath(part)
        return node.read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("plist", "xml", "plist.j2", "xml.j2"),
            default_for_string=False, default=False),
    )
    env.filters["systemd_quote"] = systemd_quote
    env.filters["shell_quote"] = shlex.quote
    env.globals["managed_header"] = MANAGED_HEADER
    return env


def render(name: str, **values: Any) -> str:
    """Render ``templates/<name>`` with ``values``; undefined variables are errors."""
    return str(_environment().get_template(name).render(**values))

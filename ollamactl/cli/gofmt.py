"""Values as Go's ``fmt`` prints them (``%v``, ``%g``, ``%q``): Ollama's CLI shows parameters and
model metadata through these verbs, so a user comparing the two sees the same text
(``1e+06``, ``[a b]``, ``true``)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

SHORTEST_EXPONENT_LIMIT = 6  # Go's %v/%g without a precision switch to 1e+06 from here


def go_float(value: float) -> str:
    """``%v`` of a float: the shortest digits, ``e+NN`` from 1e6 on or below 1e-4
    (``0.7``, ``5``, ``1e+06``, ``1.34515008e+08``, ``1e-05``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    shortest = Decimal(repr(value)).normalize()  # repr: the shortest digits that round-trip
    if -4 <= shortest.adjusted() < SHORTEST_EXPONENT_LIMIT:
        return format(shortest, "f")
    return f"{value:.{len(shortest.as_tuple().digits) - 1}e}"


def go_value(value: Any) -> str:
    """``%v`` of a JSON value: ``true``, ``5``, ``0.7``, ``[a b]``, ``map[k:v]``, text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(go_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    return "<nil>" if value is None else str(value)


def go_json_value(value: Any) -> str:
    """``%v`` of a value Go decoded from JSON into ``any``: every number is a float64
    (``576``, ``1.34515008e+08``), arrays print as ``[a b]``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return go_float(float(value))
    if isinstance(value, list):
        return "[" + " ".join(go_json_value(item) for item in value) + "]"
    return go_value(value)


def go_quote(text: str) -> str:
    """``%q`` of a string (a double-quoted Go literal)."""
    return json.dumps(text, ensure_ascii=False)

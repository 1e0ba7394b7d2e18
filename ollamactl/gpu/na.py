"""The "not available" sentinel: a value a GPU library could not give, distinct from 0 and None.

Borrowed from nvitop's ``NA``: a failed per-device query (NotSupported on a unified-memory board,
an old driver missing a function) becomes :data:`NA` instead of an exception, and signatures say
so (``int | NaType``). It is falsy, prints as ``N/A`` and becomes ``null`` in JSON.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

T = TypeVar("T")


class NaType:
    """The type of :data:`NA`; there is only one instance."""

    _instance: NaType | None = None

    def __new__(cls) -> NaType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "N/A"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False


NA: Final = NaType()


def is_na(value: object) -> bool:
    return value is NA


def na_to_none(value: T | NaType) -> T | None:
    """For JSON: NA becomes None (``null``)."""
    return None if isinstance(value, NaType) else value


def jsonable(value: Any) -> Any:
    """Recursively turn NA into None inside dicts, lists and tuples."""
    if isinstance(value, NaType):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value

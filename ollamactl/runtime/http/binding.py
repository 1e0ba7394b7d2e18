"""A decoded JSON body bound to a request dataclass the way Go's ``encoding/json`` binds it to
Ollama's structs, with its error texts.

Ollama answers a body whose field has the wrong type with a 400 carrying Go's own message
(``json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool``);
``null`` leaves a field at its default, keys match case-insensitively when no key matches
exactly, and unknown keys are ignored. Nothing is coerced: ``"true"`` is no bool, ``1.0`` no
int. The field types are the few the request schemas use (str, bool, int, lists, string-keyed
maps, nested request dataclasses, ``Any``); binding one is a walk over the value, with no
library to import before the server listens (pydantic cost the start ~65 ms).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_INT64 = range(-(2 ** 63), 2 ** 63)


class UnmarshalError(ValueError):
    """A value of the wrong JSON type for its field; the message is Go's."""


@dataclasses.dataclass(frozen=True)
class _Field:
    attr: str
    kind: Any


@functools.cache
def _fields(cls: type) -> dict[str, _Field]:
    """A dataclass's JSON keys (``metadata["json"]`` or the attribute's name) and types."""
    hints = typing.get_type_hints(cls)
    return {f.metadata.get("json", f.name): _Field(f.name, hints[f.name])
            for f in dataclasses.fields(cls)}


@functools.cache
def _folded_keys(cls: type) -> dict[str, str]:
    """The JSON keys by their case-folded form (the first declared wins a tie), as Go
    matches a key that matches no field exactly."""
    return {key.casefold(): key for key in reversed(_fields(cls))}


def bind(kind: type[T] | Any, data: Any) -> T:
    """``data`` (from ``json.loads``) as ``kind``: a request dataclass, or a field type such
    as ``list[str]`` for a value Ollama unmarshals again (a create's ``license``).

    Raises:
        UnmarshalError: with Go's text, for the first value of a wrong type.
    """
    return typing.cast(T, _value(kind, data, None, ()))


def _struct(cls: type, data: dict[str, Any], path: tuple[str, ...]) -> Any:
    fields, folded = _fields(cls), _folded_keys(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in fields else folded.get(key.casefold())
        if name is None or value is None:
            continue
        field = fields[name]
        values[field.attr] = _value(field.kind, value, cls, (*path, name))
    return cls(**values)


def _value(kind: Any, value: Any, owner: type | None, path: tuple[str, ...]) -> Any:
    """``value`` checked against ``kind``; ``owner`` (the struct being bound, None at the top)
    and ``path`` name it in an error."""
    kind = _optional_of(kind)
    if kind is Any:
        return value
    if value is None:           # null: the zero value (a list element, a map value)
        return _zero(kind)
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise _mismatch(value, kind, owner, path)
        (item,) = typing.get_args(kind)
        return [_value(item, element, owner, path) for element in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise _mismatch(value, kind, owner, path)
        item = typing.get_args(kind)[1]
        return {key: _value(item, element, owner, path) for key, element in value.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise _mismatch(value, kind, owner, path)
        return _struct(typing.cast(type, kind), value, path)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value in _INT64
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise _mismatch(value, kind, owner, path)
    return value


def _optional_of(kind: Any) -> Any:
    """``X | None`` as ``X`` (a Go pointer binds as what it points to)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
        raise TypeError(f"unsupported field type {kind}")
    return kind


def _zero(kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is list or origin is dict:
        return None
    return kind()


def _mismatch(value: Any, kind: Any, owner: type | None,
              path: tuple[str, ...]) -> UnmarshalError:
    where = "Go value" if owner is None else \
        f"Go struct field {owner.__name__}.{'.'.join(path)}"
    return UnmarshalError(f"json: cannot unmarshal {_json_kind(value, kind)} into {where} of "
                          f"type {go_type(kind)}")


def _json_kind(value: Any, kind: Any = None) -> str:
    """How Go names the JSON value in its error: a number that is no int shows its text."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}" if kind is int else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def go_type(kind: Any) -> str:
    """The Go type Ollama declares for a field of this type, as its errors name it."""
    kind = _optional_of(kind)
    origin = typing.get_origin(kind)
    if kind is Any:
        return "interface {}"
    if origin is list:
        return "[]" + go_type(typing.get_args(kind)[0])
    if origin is dict:
        return "map[string]" + go_type(typing.get_args(kind)[1])
    if dataclasses.is_dataclass(kind):
        return f"api.{typing.cast(type, kind).__name__}"
    return {str: "string", bool: "bool", int: "int"}[kind]


def json_schema(kind: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema of ``kind`` (for the OpenAPI document); nested dataclasses are added to
    ``definitions`` and referred to."""
    kind = _optional_of(kind)
    origin = typing.get_origin(kind)
    if kind is Any:
        return {}
    if origin is list:
        return {"type": "array", "items": json_schema(typing.get_args(kind)[0], definitions)}
    if origin is dict:
        return {"type": "object",
                "additionalProperties": json_schema(typing.get_args(kind)[1], definitions)}
    if dataclasses.is_dataclass(kind):
        name = typing.cast(type, kind).__name__
        if name not in definitions:
            definitions[name] = {}
            definitions[name] = {"type": "object", "properties": {
                key: json_schema(field.kind, definitions)
                for key, field in _fields(typing.cast(type, kind)).items()}}
        return {"$ref": f"#/components/schemas/{name}"}
    return {"type": {str: "string", bool: "boolean", int: "integer"}[kind]}

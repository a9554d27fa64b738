"""Typed stage configs: a stage's parameters are one frozen dataclass, its values come from a
profile (``deeprecipe.profiles``) and the command line changes single fields.

- :func:`option` declares a field with its help text (shown by ``deeprecipe params`` and
  ``--help``); every field of a stage config becomes one Luigi option ``--Task-field``.
- :func:`merge` applies overrides field by field: a nested config (``SFTConfig`` inside
  ``ColdStartSftConfig``) takes a dict merged into it the same way, so
  ``--Grpo-grpo '{"lr": 3e-6}'`` changes one field and keeps the profile's others. An unknown
  field is an error that names the valid ones.
- :func:`plain` is the config as JSON-able values: what the version key and the manifest hold.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration no stage can use (unknown field, wrong type)."""


def option(help: str, default: Any = dataclasses.MISSING, *, display_empty: str | None = None):
    """A config field with its help text. ``display_empty`` names what an empty value (0, [],
    '') means where it is shown (e.g. 'auto', 'all')."""
    metadata = {"help": help}
    if display_empty:
        metadata["display_empty"] = display_empty
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.lru_cache(maxsize=None)
def field_types(config_cls: type) -> dict[str, Any]:
    """Each field's resolved type annotation (strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(config_cls)


def strip_optional(tp: Any) -> Any:
    """``X | None`` -> X; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (from a profile, JSON or Luigi) as a field of type ``tp``: Luigi's frozen
    dicts and tuples become dicts and lists, ints become floats where a float is declared.
    A value of the wrong kind is a ConfigError naming the field."""
    if value is None:
        return None
    tp = strip_optional(tp)
    origin = typing.get_origin(tp) or tp
    if is_config(tp):
        if dataclasses.is_dataclass(value):
            return value
        if isinstance(value, Mapping):
            return merge(tp(), value, where) if _all_defaults(tp) else build(tp, value, where)
        raise ConfigError(f"{where}: expected a dict of {tp.__name__} fields, got {value!r}")
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin is int and isinstance(value, float) and value == int(value):
        return int(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return origin(plain(v) for v in value)
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if origin in (int, float, str, bool) and not isinstance(value, origin):
        raise ConfigError(f"{where}: expected {origin.__name__}, got {value!r}")
    return value


def _all_defaults(config_cls: type) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(config_cls))


def _check_names(config_cls: type, names, where: str) -> None:
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} of {config_cls.__name__}; "
                          f"valid: {valid}")


def build(config_cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """A ``config_cls`` from a dict of every field without a default (nested dicts allowed)."""
    where = where or config_cls.__name__
    _check_names(config_cls, values, where)
    hints = field_types(config_cls)
    try:
        return config_cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})
    except TypeError as e:  # a required field missing
        raise ConfigError(f"{where}: {e}") from None


def merge(config: Any, overrides: Mapping[str, Any], where: str = "") -> Any:
    """A copy of dataclass ``config`` with ``overrides`` applied field by field; a nested
    dataclass field takes a dict merged into it the same way."""
    where = where or type(config).__name__
    _check_names(type(config), overrides, where)
    hints = field_types(type(config))
    changes = {}
    for name, value in overrides.items():
        current = getattr(config, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[name] = merge(current, value, f"{where}.{name}")
        else:
            changes[name] = _coerce(value, hints[name], f"{where}.{name}")
    return dataclasses.replace(config, **changes)


def plain(value: Any) -> Any:
    """A config (or any value in one) as JSON-able dicts, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def display_empty(config_cls: type) -> dict[str, str]:
    """Fields whose empty value means something ('auto', 'all'), for display."""
    return {f.name: f.metadata["display_empty"] for f in dataclasses.fields(config_cls)
            if "display_empty" in f.metadata}

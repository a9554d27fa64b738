"""Luigi options generated from a stage's typed config: one ``--Task-field`` per field,
default None (= the profile's value). ``VersionedTask`` attaches them to a task class that sets
``config_cls``, so a parameter is declared once, as a dataclass field."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping

import luigi

from . import config as cfg


def config_option(config_cls: type, name: str) -> luigi.Parameter:
    """The Luigi option of one config field: default None (= the profile's value); a nested
    config or a dict takes JSON and is merged field by field into the profile's."""
    f = {f.name: f for f in dataclasses.fields(config_cls)}[name]
    tp = cfg.strip_optional(cfg.field_types(config_cls)[name])
    origin = typing.get_origin(tp) or tp
    help_text = f.metadata.get("help", "")
    if cfg.is_config(tp):
        kind = luigi.OptionalDictParameter
        help_text += " (JSON: the fields given replace the profile's, the rest stay)"
    elif origin in (dict, Mapping):
        kind = luigi.OptionalDictParameter
    elif origin in (list, tuple):
        kind = luigi.OptionalListParameter
    elif origin is bool:  # --Task-field true|false: a profile's True can be turned off
        return luigi.OptionalBoolParameter(default=None, description=help_text,
                                           parsing=luigi.BoolParameter.EXPLICIT_PARSING)
    elif origin is int:
        kind = luigi.OptionalIntParameter
    elif origin is float:
        kind = luigi.OptionalFloatParameter
    else:
        kind = luigi.OptionalParameter
    return kind(default=None, description=help_text)

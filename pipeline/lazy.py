"""Modules imported on first use, so that reading the DAG (``deeprecipe status``, ``params``,
``graph``) does not import torch: workflow modules name their torch-using stage modules
through :func:`lazy_module`, and :func:`pipeline.manifest.source_digest` hashes such a module's
file without importing it."""
from __future__ import annotations

import importlib
import importlib.util


class LazyModule:
    """Stands for a module; the first attribute access imports it (``sys.modules`` caches)."""

    def __init__(self, name: str):
        self.__dict__["lazy_module_name"] = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self.__dict__["lazy_module_name"]), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['lazy_module_name']!r}>"

    def source_file(self) -> str:
        """The module's source file, found without importing the module itself."""
        spec = importlib.util.find_spec(self.__dict__["lazy_module_name"])
        if spec is None or not spec.origin:
            raise ImportError(f"no source file for module {self.__dict__['lazy_module_name']!r}")
        return spec.origin


def lazy_module(name: str) -> LazyModule:
    return LazyModule(name)

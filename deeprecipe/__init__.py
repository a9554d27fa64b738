"""deeprecipe: the DeepSeek training recipe as one reproducible Luigi DAG.

The import namespace is ``deeprecipe``; its subpackages are the folders at the repository's
root: ``deeprecipe.pipeline`` is ``pipeline/``, ``deeprecipe.stages`` is ``stages/``,
``deeprecipe.kernels`` is ``kernels/``, ``deeprecipe.workflows`` is ``workflows/``. Bare
top-level names such as ``kernels`` (installed by transformers >= 5) or ``pipeline`` belong
to other packages; ours are only reachable under ``deeprecipe.``. Where the checkout's root is
on ``sys.path`` (a shell in the checkout, pytest, ``PYTHONPATH=.``), ``import kernels`` would
find our folder first: each folder's ``__init__`` then hands the bare name over to the other
distribution's package (``hand_over_bare_name``). The one exception is the alias
``workflows``, kept for ``luigi --module workflows`` (see ``workflows/__init__.py``).

Installed as a wheel, setuptools copies the folders under ``deeprecipe/``. Run from a source
checkout (editable install, or ``PYTHONPATH`` at the checkout), this package's path is
extended to the checkout's root, so the same names resolve to the folders there.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _source_checkout() -> Path | None:
    """The repository root when running from a source checkout, else None (a wheel)."""
    root = _HERE.parent
    if (root / "pyproject.toml").is_file() and (root / "pipeline" / "task.py").is_file() \
            and (root / "workflows" / "roots.py").is_file():
        return root
    return None


CHECKOUT: Path | None = _source_checkout()
# Where pipeline/, stages/, kernels/, workflows/ live: the checkout's root, or this folder.
PACKAGE_ROOT: Path = CHECKOUT or _HERE
if CHECKOUT is not None and str(CHECKOUT) not in __path__:
    __path__.append(str(CHECKOUT))

__version__ = "0.1.0"


def hand_over_bare_name(name: str) -> None:
    """Our folder ``name`` (pipeline, stages, kernels) was imported as top-level ``name``
    because the checkout's root is on sys.path. That name is not ours: load the package of that
    name from the rest of sys.path in its place (e.g. the ``kernels`` that transformers >= 5
    imports), or fail saying where ours is."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    def is_our_root(entry: str) -> bool:
        return CHECKOUT is not None and Path(entry or os.getcwd()).resolve() == CHECKOUT

    spec = importlib.machinery.PathFinder.find_spec(
        name, [p for p in sys.path if isinstance(p, str) and not is_our_root(p)])
    if spec is None or spec.loader is None:
        del sys.modules[name]
        raise ModuleNotFoundError(
            f"No module named {name!r}: deeprecipe's {name}/ folder is imported as "
            f"deeprecipe.{name} (e.g. `from deeprecipe.{name} import ...`)", name=name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise

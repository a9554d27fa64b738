"""deeprecipe: the DeepSeek training recipe as one reproducible Luigi DAG.

The import namespace is ``deeprecipe``; its subpackages are the folders at the repository's
root: ``deeprecipe.pipeline`` is ``pipeline/``, ``deeprecipe.stages`` is ``stages/``,
``deeprecipe.kernels`` is ``kernels/``, ``deeprecipe.workflows`` is ``workflows/``. Bare
top-level names such as ``kernels`` (installed by transformers >= 5) or ``pipeline`` belong
to other packages; ours are only reachable under ``deeprecipe.``. The one exception is the
alias ``workflows`` kept for ``luigi --module workflows`` (see ``workflows/__init__.py``).

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

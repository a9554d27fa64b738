"""Luigi settings deeprecipe relies on, in force from any working directory.

Luigi reads ``luigi.cfg`` from the current directory only (plus ``/etc/luigi`` and
``$LUIGI_CONFIG_PATH``). ``luigi_defaults.cfg`` beside this file holds what a run must have
wherever it starts — non-zero exit codes for failed tasks, retries, ``keep_alive``, the GPU
resource — and is read *before* those files, so a user's own ``luigi.cfg`` still overrides
any of it.
"""
from __future__ import annotations

from pathlib import Path

DEFAULTS = Path(__file__).resolve().with_name("luigi_defaults.cfg")


def install_defaults() -> None:
    """Put our defaults first in Luigi's config search path and re-read it (idempotent)."""
    from luigi.configuration import LuigiConfigParser
    paths = LuigiConfigParser._config_paths
    if str(DEFAULTS) not in paths:
        paths.insert(0, str(DEFAULTS))
        LuigiConfigParser.reload()


def configured_store() -> str:
    """``[deeprecipe] store`` from the user's Luigi config files ('' when unset)."""
    from luigi.configuration import get_config
    return (get_config().get("deeprecipe", "store", "") or "").strip()

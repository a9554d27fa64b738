"""The `deeprecipe` CLI's read-only commands as a user runs them on tiny: what they import,
what they print."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, base_env


def test_status_imports_no_torch(store):
    """`deeprecipe status` reads the DAG only: the workflow modules import their torch-using
    stage modules lazily, and the stage source hashes are read from the files."""
    code = ("import sys; from pipeline.cli import main; "
            f"rc = main(['--store', {store!r}, 'status', 'RunR1Pipeline']); "
            "print('TORCH', 'torch' in sys.modules, rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=base_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[-1] == "TORCH False 0"
    assert "evaluate" in r.stdout and "grpo_zero" in r.stdout
    assert lines[-2].endswith("stages would run, 0 fresh")

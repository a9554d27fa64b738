"""bench/r1_small.py's #5 table, read from the manifests of a real `small` run (run 8, ninth
session, BENCHMARKS.md): the acceptance lines it printed on the GPU machine."""
import json
import shutil
from pathlib import Path

import pytest

from bench import r1_small
from deeprecipe.pipeline.store import ArtifactStore
from deeprecipe.stages.r1.evaluate import pass_at_k_ladder

RUN8 = Path(__file__).parent / "data" / "r1_small_run8"  # six manifests, as committed


def test_r1_table_of_run_8_gives_its_acceptance_lines():
    n = r1_small.r1_numbers(ArtifactStore(str(RUN8)))
    assert n["teacher"] == "grpo" and n["ratio"] == pytest.approx(0.728 / 0.815, abs=2e-3)
    assert n["distill_steps"] == n["rl"]["student_rl"]["steps"] == 104
    lines = r1_small.r1_table(n)
    verdicts = [line.split(" | ")[0].lstrip("| ") for line in lines
                if line.startswith(("| PASS", "| FAIL"))]
    # GRPO +15, GRPO format, grpo_zero format, distill >= 80 %, distill beats RL alone
    assert verdicts == ["FAIL", "PASS", "FAIL", "PASS", "PASS"]
    assert any("0.728 / 0.815 = 0.89" in line for line in lines)
    # the update spike before grpo_zero's format collapsed: grad norm 7.26 at step 12
    # (its format peaked at 0.49, step 5: it never reached 0.5), and grpo's format from step 0
    zero = next(line for line in lines if line.startswith("| grpo_zero | 30 |"))
    assert zero.endswith("| never | 0.094 -> 0.087 | 7.26 (12) |"), zero
    grpo = next(line for line in lines if line.startswith("| grpo | 30 |"))
    assert "| 0 | 0.781 -> 0.730 |" in grpo, grpo
    # this evaluate version predates pass@k: the column reads nan instead of failing
    assert any("the cold start's pass@4: nan" in line for line in lines)


def test_r1_table_shows_the_cold_starts_pass_at_k(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(RUN8, store)
    path = next((store / "evaluate").glob("*/_MANIFEST.json"))
    man = json.loads(path.read_text())
    for model in man["outputs"]["metrics"]["models"].values():
        model["pass@k"] = pass_at_k_ladder(model["correct_per_problem"], 4)
    path.write_text(json.dumps(man))
    lines = r1_small.r1_table(r1_small.r1_numbers(ArtifactStore(str(store))))
    # run 8's cold start: 193 problems right in 4 of 4 samples, 31 in some, 32 in none
    assert any("the cold start's pass@4: 0.875" in line for line in lines)
    cold = next(line for line in lines if line.startswith("| cold_start |"))
    assert "| 0.818 | 0.875 |" in cold

"""bench/grpo_paired.py: paired gains over the control from ablation rows, and #24's checks."""
import json

import pytest

from bench import grpo_paired


def row(name, correct, k=4, steps=10):
    n = len(correct)
    return {"variant": name, "steps": steps, "k": k, "correct_per_problem": correct,
            "pass@1": sum(correct) / (k * n), "pass_at_max_k": sum(c > 0 for c in correct) / n}


def write(tmp_path, rows, name="ablation.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_paired_gain_and_acceptance(tmp_path):
    control = [2] * 50 + [1] * 10 + [0] * 40      # pass@1 0.275, solved at all 0.6
    better = [4] * 50 + [2] * 10 + [1] * 40       # +37.5 points
    null = [2] * 50 + [1] * 10 + [0] * 39 + [1]   # +0.25 points
    worse_tail = [4] * 55 + [0] * 45              # +27.5 points, but solved at all 0.55
    files = [write(tmp_path, [row("cold_start", control, steps=0), row("seed0", better)]),
             write(tmp_path, [row("permuted0", null), row("seed1", worse_tail)], "b.jsonl")]
    table = {r["variant"]: r for r in grpo_paired.paired_table(grpo_paired.read_rows(files),
                                                               "cold_start")}
    assert table["seed0"]["gain_points"] == pytest.approx(37.5)
    assert table["seed1"]["gain_points"] == pytest.approx(27.5)
    assert table["permuted0"]["gain_points"] == pytest.approx(0.25)
    assert table["seed0"]["z"] > 3
    checks = grpo_paired.acceptance(list(table.values()), ["seed0", "seed1"], ["permuted0"],
                                    5.0, 3.0, 1.0)
    assert [ok for ok, _ in checks] == [True, True, False]   # seed1 lost pass@max k
    assert not grpo_paired.acceptance(list(table.values()), ["seed9"], [], 5, 3, 1)[0][0]


def test_unpaired_rows_are_refused(tmp_path):
    path = write(tmp_path, [row("cold_start", [1, 2], k=16), row("seed0", [1, 2], k=4)])
    with pytest.raises(ValueError, match="not paired"):
        grpo_paired.paired_table(grpo_paired.read_rows([path]), "cold_start")

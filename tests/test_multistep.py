"""Level-4 reasoning problems (`stages.generators.multistep`): deterministic, exactly graded,
solvable by their own solutions, split by id hash like every other level; tiny stays at level 1."""
import json
import re

import pytest

from deeprecipe import profiles
from deeprecipe.stages.generators import multistep as ms
from deeprecipe.stages.generators import reasoning_data as rd
from deeprecipe.stages.r1.rewards import (accuracy_reward, evaluate_countdown_expression,
                                          format_reward)

TASKS = ["arithmetic", "word_problem", "counting"]


@pytest.fixture(scope="module")
def level4():
    return rd.generate_problems(60, seed=5, tasks=TASKS, levels=[4], held_out_frac=0.2)


def test_level4_is_deterministic_seeded_and_leaves_other_levels_alone(level4):
    assert rd.generate_problems(60, seed=5, tasks=TASKS, levels=[4], held_out_frac=0.2) == level4
    other = rd.generate_problems(60, seed=6, tasks=TASKS, levels=[4], held_out_frac=0.2)
    assert {r["id"] for r in other} != {r["id"] for r in level4}
    assert {(r["task"], r["level"]) for r in level4} == {(t, 4) for t in TASKS}
    assert len({r["id"] for r in level4}) == len(level4)
    # adding level 4 changes no problem of levels 1-3 (each (task, level) has its own RNG)
    low = rd.generate_problems(20, seed=5, tasks=TASKS, levels=[1, 2, 3], held_out_frac=0.2)
    every = rd.generate_problems(20, seed=5, tasks=TASKS, held_out_frac=0.2)
    assert [r for r in every if r["level"] != 4] == low


def test_reference_solutions_score_full_reward_and_fit_the_response_budget(level4):
    for r in level4:
        assert format_reward(r["solution"]) == 1.0 and accuracy_reward(r["solution"], r) == 1.0
        assert len(r["solution"]) <= 1000, r["prompt"]   # <= 490 tokens of a 32k BPE (bench/reasoning_lengths.py)


def test_arithmetic_answers_match_the_expression_evaluated_independently(level4):
    rows = [r for r in level4 if r["task"] == "arithmetic"]
    for r in rows:
        expr = re.fullmatch(r"Compute (.*)\.", r["prompt"]).group(1)
        value, used = evaluate_countdown_expression(expr.replace(" x ", " * "))
        assert str(value) == r["answer"] and len(used) == 3
    assert any(int(r["answer"]) < 0 for r in rows) and any(int(r["answer"]) > 0 for r in rows)


def test_counting_counts_capital_and_small_letters(level4):
    rows = [r for r in level4 if r["task"] == "counting"]
    for r in rows:
        m = re.fullmatch(r"How many times does the letter '(.)' appear in \"(.*)\"\? .*", r["prompt"])
        letter, text = m.groups()
        assert int(r["answer"]) == text.lower().count(letter) >= 1
        assert 6 <= len(text.split()) <= 8
    assert any(r["answer"] != str(re.search(r'"(.*)"', r["prompt"]).group(1).count(
        re.search(r"letter '(.)'", r["prompt"]).group(1))) for r in rows), \
        "no problem where capitals change the count"


def test_word_problems_carry_one_distractor_that_does_not_change_the_answer(level4):
    for r in [r for r in level4 if r["task"] == "word_problem"]:
        assert r["prompt"].count(" of his own.") + r["prompt"].count(" of her own.") == 1
        steps = [ln for ln in r["solution"].splitlines() if ln.startswith("Step ")]
        assert len(steps) == 5
        # the distractor's line names the other person and leaves the count as it was
        assert sum("do not change" in ln for ln in r["solution"].splitlines()) == 1
        # the last step's result is the answer
        assert re.findall(r"-?\d+", steps[-1].split("=")[-1])[0] == r["answer"]


NEAR_MISSES = [lambda a: a + 1, lambda a: a - 1, lambda a: -a, lambda a: a * 10,
               lambda a: int(str(abs(a))[::-1]) * (1 if a >= 0 else -1)]


def test_verifier_accepts_the_reference_and_rejects_near_misses(level4):
    """Integer answers are graded exactly: no tolerance; only the way it is written may vary."""
    for r in level4:
        a = int(r["answer"])
        respond = lambda ans: f"<think>\nworked: {r['prompt']}\n</think>\n<answer>{ans}</answer>"
        assert accuracy_reward(respond(f"{a:,}"), r) == 1.0
        assert accuracy_reward(respond(f"{a}.0"), r) == 1.0
        for miss in NEAR_MISSES:
            if miss(a) != a:
                assert accuracy_reward(respond(miss(a)), r) == 0.0, (r["answer"], miss(a))


def test_level4_splits_are_disjoint_stable_and_follow_the_hash(level4):
    rows = rd.with_rl_split(level4, 0.2, 0.5)
    by_split = {s: {r["id"] for r in rows if r["split"] == s} for s in rd.SPLITS}
    assert all(by_split.values())
    assert not (by_split[rd.TRAIN] & by_split[rd.RL] or by_split[rd.TRAIN] & by_split[rd.HELD_OUT]
                or by_split[rd.RL] & by_split[rd.HELD_OUT])
    assert all(r["split"] == rd.split_of(r["id"], 0.2, 0.5) for r in rows)
    # a problem drawn again by another seed lands in the same split
    other = rd.with_rl_split(rd.generate_problems(400, seed=9, tasks=["counting"], levels=[4],
                                                  held_out_frac=0.2), 0.2, 0.5)
    again = rd.with_rl_split(rd.generate_problems(400, seed=9, tasks=["counting"], levels=[4],
                                                  held_out_frac=0.2), 0.2, 0.5)
    assert other == again
    # level-4 ids never collide with a lower level's (their hashed keys start with 'L4|')
    low = rd.generate_problems(60, seed=5, tasks=TASKS, levels=[1, 2, 3], held_out_frac=0.2)
    assert not {r["id"] for r in low} & {r["id"] for r in level4}


@pytest.mark.parametrize("x,op,y", [(15, "+", 27), (40, "-", 13), (13, "-", 40),
                                    (-25, "+", 60), (-60, "+", 25), (-25, "-", 60), (0, "-", 0)])
def test_signed_steps_work_every_sign_case(x, op, y):
    lines, result = ms.signed_steps(x, op, y)
    assert result == (x + y if op == "+" else x - y)
    assert lines[-1].endswith(f"= {result}.")


def test_countdown_and_sorting_have_level4_shapes():
    rows = rd.generate_problems(10, seed=0, tasks=["countdown", "sorting"], levels=[4])
    for r in rows:
        assert format_reward(r["solution"]) == 1.0 and accuracy_reward(r["solution"], r) == 1.0
    assert all(len(json.loads(r["meta"])["numbers"]) == 6 for r in rows if r["task"] == "countdown")


def test_tiny_keeps_its_cheap_level_and_small_its_levels():
    """CI's RunR1Pipeline budget: tiny generates level 1 only; small's suite is unchanged until
    the GPU plan (BENCHMARKS.md) measures level 4's headroom."""
    assert profiles.tiny().reasoning_data.levels == [1]
    assert profiles.small().reasoning_data.levels == [1, 2, 3]

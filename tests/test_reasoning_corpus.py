"""Reasoning text for pretraining: only train-split problems, documents that show the worked
solution, tag style by hash share."""
import pytest

from deeprecipe.stages.generators import reasoning_corpus as rc
from deeprecipe.stages.generators import reasoning_data as rd

TASKS, LEVELS = ["arithmetic", "word_problem", "counting"], [1, 2]


@pytest.fixture(scope="module")
def problems():
    return rd.generate_problems(30, seed=3, tasks=TASKS, levels=LEVELS, held_out_frac=0.3)


def test_extra_problems_are_train_split_new_and_deterministic(problems):
    held = {r["id"] for r in problems if r["split"] == rd.HELD_OUT}
    known = {r["id"] for r in problems}
    extra, stats = rc.extra_train_problems(50, 0, TASKS, LEVELS, 0.3, exclude_ids=known)
    assert len(extra) == 50 * len(TASKS) * len(LEVELS) and stats["short_of_target"] == 0
    assert all(r["split"] == rd.TRAIN for r in extra)
    assert not {r["id"] for r in extra} & known and not {r["id"] for r in extra} & held
    assert len({r["id"] for r in extra}) == len(extra)
    assert stats["non_train_draws_skipped"] > 0          # ~30 % of draws hash into held-out
    again, _ = rc.extra_train_problems(50, 0, TASKS, LEVELS, 0.3, exclude_ids=known)
    assert again == extra
    # a small space gives fewer, counted, and no error
    few, few_stats = rc.extra_train_problems(100_000, 0, ["arithmetic"], [1], 0.3, exclude_ids=set(),
                                             max_misses_in_a_row=20)
    assert few_stats["short_of_target"] == 100_000 - len(few) > 0


def test_extra_problems_skip_the_rl_share():
    known: set[str] = set()
    extra, stats = rc.extra_train_problems(40, 0, TASKS, LEVELS, 0.3, exclude_ids=known,
                                           rl_frac=0.4)
    assert extra and all(rd.split_of(r["id"], 0.3, 0.4) == rd.TRAIN for r in extra)
    plain, plain_stats = rc.extra_train_problems(40, 0, TASKS, LEVELS, 0.3, exclude_ids=known)
    assert stats["non_train_draws_skipped"] > 2 * plain_stats["non_train_draws_skipped"]


def test_corpus_documents_exclude_held_out_and_show_the_solution(problems):
    held_out = [r for r in problems if r["split"] == rd.HELD_OUT]
    train = [r for r in problems if r["split"] == rd.TRAIN]
    # a train row worded exactly like a held-out prompt (case/spacing aside) must not leak
    twin = {**train[0], "id": "twin", "prompt": "  " + held_out[0]["prompt"].upper()}
    table, stats = rc.corpus_documents(problems + [twin, train[1]], [r["prompt"] for r in held_out],
                                       tagged_frac=0.0, seed=0)
    docs = table.to_pylist()
    assert stats["non_train_rows_skipped"] == len(held_out)
    assert stats["excluded_prompt_matches_skipped"] == 1 and stats["repeats_skipped"] == 1
    assert {d["id"] for d in docs} == {r["id"] for r in train}
    text = "\n".join(d["text"] for d in docs)
    assert not any(r["prompt"] in text for r in held_out)
    by_id = {r["id"]: r for r in train}
    for d in docs:
        row = by_id[d["id"]]
        steps, answer = rc.solution_steps(row["solution"])
        assert d["style"] == "solution" and "<think>" not in d["text"]
        assert d["text"] == (f"Problem: {row['prompt']}\nSolution:\n" + "\n".join(steps)
                             + f"\nAnswer: {answer}")


def test_tagged_share_follows_the_hash_and_keeps_the_response_form(problems):
    train = [r for r in problems if r["split"] == rd.TRAIN]
    for frac, lo, hi in ((0.0, 0, 0), (1.0, 1, 1), (0.3, 0.15, 0.45)):
        table, stats = rc.corpus_documents(train, [], tagged_frac=frac, seed=1)
        share = stats.get("docs_tagged", 0) / stats["docs"]
        assert lo <= share <= hi, (frac, share)
    table, _ = rc.corpus_documents(train, [], tagged_frac=0.3, seed=1)
    again, _ = rc.corpus_documents(list(reversed(train)), [], tagged_frac=0.3, seed=1)
    style = {d["id"]: d["style"] for d in table.to_pylist()}
    assert style == {d["id"]: d["style"] for d in again.to_pylist()}   # order-free
    by_id = {r["id"]: r for r in train}
    tagged = [d for d in table.to_pylist() if d["style"] == "tagged"]
    assert tagged and all(d["text"] == f"Q: {by_id[d['id']]['prompt']}\nA: {by_id[d['id']]['solution']}"
                          for d in tagged)
    with pytest.raises(ValueError):
        rc.document_style("abc", 1.5, 0)


def test_rows_without_reasoning_lines_are_skipped():
    row = rd.make_row("gsm8k", 0, "q", "What is 2 + 2?", "4", rd.render_response([], "4"), 0.0)
    table, stats = rc.corpus_documents([row], [], tagged_frac=0.0, seed=0)
    assert table.num_rows == 0 and stats["no_reasoning_skipped"] == 1
    assert rc.solution_steps("no tags here") is None

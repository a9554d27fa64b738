"""Generated reasoning problems: determinism, hash splits, self-consistency; loaders; chat data."""
import json

import pytest

from deeprecipe.stages.generators import non_reasoning as nr
from deeprecipe.stages.generators import reasoning_data as rd
from deeprecipe.stages.r1.rewards import accuracy_reward, format_reward


@pytest.fixture(scope="module")
def problems():
    return rd.generate_problems(40, seed=7, held_out_frac=0.2)


def test_generation_is_deterministic_and_seeded(problems):
    again = rd.generate_problems(40, seed=7, held_out_frac=0.2)
    assert again == problems
    other = rd.generate_problems(40, seed=8, held_out_frac=0.2)
    assert {r["id"] for r in other} != {r["id"] for r in problems}
    # a task's problems do not depend on which other tasks are generated
    only_sorting = rd.generate_problems(40, seed=7, tasks=["sorting"], held_out_frac=0.2)
    assert only_sorting == [r for r in problems if r["task"] == "sorting"]


def test_every_task_and_level_present_with_distinct_ids(problems):
    assert len(problems) == 40 * len(rd.GENERATORS) * len(rd.LEVELS)
    assert {(r["task"], r["level"]) for r in problems} == \
        {(t, l) for t in rd.GENERATORS for l in rd.LEVELS}
    assert len({r["id"] for r in problems}) == len(problems)
    assert set(problems[0]) == set(rd.ROW_FIELDS)


def test_splits_are_disjoint_and_follow_the_hash(problems):
    train = {r["id"] for r in problems if r["split"] == rd.TRAIN}
    held = {r["id"] for r in problems if r["split"] == rd.HELD_OUT}
    assert train and held and not train & held
    assert 0.1 < len(held) / len(problems) < 0.3
    # the split is a function of the problem alone: another seed that draws the same problem
    # puts it in the same split
    by_id = {r["id"]: r["split"] for r in problems}
    other = rd.generate_problems(40, seed=8, held_out_frac=0.2)
    shared = [r for r in other if r["id"] in by_id]
    assert shared, "seeds 7 and 8 share no problem; pick seeds that overlap"
    assert all(by_id[r["id"]] == r["split"] for r in shared)
    # and so is the split of a re-worded problem (the id ignores names and items)
    assert rd.split_of(rd.problem_id("countdown", "1,2,3->6"), 0.5) == \
        rd.split_of(rd.problem_id("countdown", "1,2,3->6"), 0.5)


def test_rl_split_takes_from_train_only_and_grows_monotonically(problems):
    """rl_frac carves the RL prompts out of train by the same hash: held-out never changes, and a
    larger rl_frac only moves more train problems into rl."""
    before = {r["id"]: r["split"] for r in problems}
    small = {r["id"]: r["split"] for r in rd.with_rl_split(problems, 0.2, 0.3)}
    large = {r["id"]: r["split"] for r in rd.with_rl_split(problems, 0.2, 0.5)}
    assert {i for i, s in small.items() if s == rd.HELD_OUT} == \
        {i for i, s in before.items() if s == rd.HELD_OUT}
    rl_small = {i for i, s in small.items() if s == rd.RL}
    rl_large = {i for i, s in large.items() if s == rd.RL}
    assert rl_small and rl_small < rl_large
    assert all(before[i] == rd.TRAIN for i in rl_large)
    assert 0.2 < len(rl_small) / len(problems) < 0.4 and 0.4 < len(rl_large) / len(problems) < 0.6
    assert rd.with_rl_split(problems, 0.2, 0.0) == problems
    with pytest.raises(ValueError, match="rl_frac"):
        rd.with_rl_split(problems, 0.2, 0.9)


def test_reference_solutions_score_full_reward(problems):
    for r in problems:
        assert format_reward(r["solution"]) == 1.0, r
        assert accuracy_reward(r["solution"], r) == 1.0, r


def test_solutions_are_step_by_step_and_harder_levels_are_longer(problems):
    for task in rd.GENERATORS:
        mean_lines = []
        for level in rd.LEVELS:
            sols = [r["solution"] for r in problems if r["task"] == task and r["level"] == level]
            mean_lines.append(sum(s.count("\n") for s in sols) / len(sols))
        assert mean_lines[0] >= 4, task
        assert mean_lines[0] < mean_lines[-1], (task, mean_lines)


def test_a_wrong_answer_scores_zero(problems):
    for r in problems:
        if r["task"] == "countdown":
            target = json.loads(r["meta"])["target"]
            assert accuracy_reward(f"<answer>{target}</answer>", r) == 0.0  # not a given number
            wrong = f"({r['answer']}) * 2"                                  # 2 x target
        elif r["task"] == "sorting":
            wrong = ", ".join(reversed(r["answer"].split(", ")))
            if wrong == r["answer"]:
                continue
        else:
            wrong = str(int(r["answer"]) + 1)
        assert accuracy_reward(f"<think>x</think><answer>{wrong}</answer>", r) == 0.0, r


def test_countdown_meta_and_table_roundtrip(problems):
    cd = [r for r in problems if r["task"] == "countdown"]
    for r in cd:
        meta = json.loads(r["meta"])
        assert meta["target"] not in meta["numbers"] and 10 <= meta["target"] <= 1000
    table = rd.rows_to_table(problems)
    assert table.schema == rd.ROW_SCHEMA and table.num_rows == len(problems)
    assert rd.table_to_rows(table) == problems


def test_gsm8k_loader_parses_final_answers(tmp_path):
    path = tmp_path / "gsm.jsonl"
    lines = [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
         "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\n"
                   "Altogether 48+24 = <<48+24=72>>72 clips.\n#### 72"},
        {"question": "A big number?", "answer": "It is 1,000 + 250.\n#### 1,250"},
        {"question": "No final answer", "answer": "just text"},
        {"question": "Missing answer"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n\n", encoding="utf-8")
    rows, skipped = rd.load_gsm8k_jsonl(path, held_out_frac=0.5)
    assert [r["answer"] for r in rows] == ["72", "1250"]
    assert "<<" not in rows[0]["solution"] and "48/2 = 24" in rows[0]["solution"]
    for r in rows:
        assert r["task"] == "gsm8k" and r["split"] in (rd.TRAIN, rd.HELD_OUT)
        assert format_reward(r["solution"]) == 1.0 and accuracy_reward(r["solution"], r) == 1.0
    assert accuracy_reward("<think>x</think><answer>1,250.0</answer>", rows[1]) == 1.0
    assert len(skipped) == 3
    assert any(":3:" in s and "####" in s for s in skipped)
    assert any(":5:" in s and "not JSON" in s for s in skipped)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no hashes"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl"):
        rd.load_gsm8k_jsonl(bad)


def test_sft_loader_prompt_response_and_messages(tmp_path):
    path = tmp_path / "sft.jsonl"
    lines = [
        {"prompt": "Say hi", "response": "hi"},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": "no reply"}]},
        {"prompt": "Say hi", "response": "hi"},   # duplicate
        {"text": "wrong shape"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    rows, skipped = rd.load_sft_jsonl(path)
    assert [(r["prompt"], r["solution"]) for r in rows] == [
        ("Say hi", "hi"), ("System: Be brief.\n\nUser: 2+2?\n\nAssistant:", "4")]
    assert len(skipped) == 2 and all(str(path) in s for s in skipped)


def test_factual_qa_greetings_and_safety():
    sentences = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius.",
                 "a an to", "The Nile flows through Egypt and Sudan."]
    qa = nr.factual_qa_from_sentences(sentences, seed=0)
    assert len(qa) == 3
    for r in qa:
        assert "____" in r["prompt"] and r["answer"] not in r["prompt"]
        assert r["answer"] in " ".join(sentences)
        assert accuracy_reward(r["solution"], r) == 1.0
        # non-reasoning replies carry an empty CoT: the structure holds, there is no reasoning
        assert format_reward(r["solution"], require_reasoning=False) == 1.0
        assert format_reward(r["solution"]) == 0.0
        assert r["solution"].startswith("<think>\n\n</think>")   # no CoT for trivial prompts
    assert nr.factual_qa_from_sentences(sentences, seed=0) == qa

    greetings = nr.greeting_rows()
    assert greetings and all(format_reward(r["solution"], require_reasoning=False) == 1.0
                         for r in greetings)

    pairs = nr.safety_preference_pairs(held_out_frac=0.3)
    table = nr.preference_pairs_to_table(pairs)
    assert table.schema == nr.PREFERENCE_SCHEMA
    assert len({p["id"] for p in pairs}) == len(pairs)
    refusals = [p for p in pairs if "can't help" in p["chosen"]]
    over_refusals = [p for p in pairs if "can't help" in p["rejected"]]
    assert refusals and over_refusals and len(refusals) + len(over_refusals) == len(pairs)
    assert all(p["chosen"] != p["rejected"] for p in pairs)


def test_r1_zero_prompt_template():
    text = rd.r1_zero_prompt("Compute 2 + 2.")
    assert text.endswith("User: Compute 2 + 2. Assistant:")
    assert "<think> </think>" in text and "<answer> </answer>" in text


def test_qa_sentences_keep_order_length_and_stop_reading_at_n():
    texts = ["Short one. This sentence has exactly seven words here. Does this question count at all?",
             "Another sentence of the right length ends with a period. Tail"]
    read = []

    def lazy():
        for t in texts + ["never read: this text would add one more sentence of words."]:
            read.append(t)
            yield t
    assert nr.qa_sentences(texts, 5, 30) == ["This sentence has exactly seven words here.",
                                             "Another sentence of the right length ends with a period."]
    assert nr.qa_sentences(texts, 5, 6) == []  # both are longer than 6 words
    assert nr.qa_sentences(lazy(), 2, 30)[-1].startswith("Another") and len(read) == 2


def test_empty_tasks_and_levels_mean_all():
    """The config's documented meaning: empty lists generate every task and level."""
    everything = rd.generate_problems(1, seed=3, tasks=[], levels=[])
    assert {(r["task"], r["level"]) for r in everything} == {
        (t, lv) for t in rd.GENERATORS for lv in rd.LEVELS}

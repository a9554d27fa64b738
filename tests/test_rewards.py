"""Rule rewards: format, accuracy (numbers, lists, countdown via ast), language consistency."""
import json

import pytest

from deeprecipe.stages.r1.rewards import (R1_REASONING_WEIGHTS, accuracy_reward, combined_reward,
                            countdown_correct, evaluate_countdown_expression, extract_answer,
                            format_reward, language_consistency_reward, parse_number)

OK = "<think>\n12 + 30 = 42\n</think>\n<answer>42</answer>"

FORMAT_CASES = [
    ("well formed", OK, 1.0),
    ("no whitespace between blocks", "<think>12 + 30 = 42</think><answer>42</answer>", 1.0),
    ("surrounding whitespace", "  \n<think>12 + 30 = 42</think>\n<answer>42</answer>\n  ", 1.0),
    ("empty think", "<think>\n\n</think>\n<answer>Hello!</answer>", 0.0),
    ("missing think", "<answer>42</answer>", 0.0),
    ("missing answer", "<think>12 + 30 = 42</think>", 0.0),
    ("plain text", "the answer is 42", 0.0),
    ("unclosed think", "<think>12 + 30 = 42<answer>42</answer>", 0.0),
    ("unclosed answer", "<think>12 + 30 = 42</think><answer>42", 0.0),
    ("duplicated think", "<think>12 + 30 = 42</think><think>b</think><answer>42</answer>", 0.0),
    ("duplicated answer", "<think>12 + 30 = 42</think><answer>41</answer><answer>42</answer>", 0.0),
    ("trailing text", OK + " I hope this helps", 0.0),
    ("text before think", "Sure. " + OK, 0.0),
    ("text between blocks", "<think>12 + 30 = 42</think> so <answer>42</answer>", 0.0),
    ("answer before think", "<answer>42</answer><think>12 + 30 = 42</think>", 0.0),
    ("empty answer", "<think>12 + 30 = 42</think><answer>  </answer>", 0.0),
    ("nested tag in think", "<think>12 + 30 <answer>1</answer></think><answer>42</answer>", 0.0),
]


@pytest.mark.parametrize("name,text,want", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_format_reward(name, text, want):
    assert format_reward(text) == want


def wrap(answer: str) -> str:
    return f"<think>work through the problem</think>\n<answer>{answer}</answer>"


NUM = {"id": "p", "task": "arithmetic", "answer": "1000"}
NEG = {"id": "n", "task": "word_problem", "answer": "-37"}
FRAC = {"id": "f", "task": "gsm8k", "answer": "0.75"}
SORT = {"id": "s", "task": "sorting", "answer": "-3, 1, 1, 9"}
QA = {"id": "q", "task": "factual_qa", "answer": "Paris"}
CD = {"id": "c", "task": "countdown", "answer": "(3 + 5) * 2",
      "meta": json.dumps({"numbers": [3, 5, 2, 7], "target": 16})}
CD_DUP = {"id": "d", "task": "countdown", "answer": "4 * 4", "meta": {"numbers": [4, 4, 1],
                                                                       "target": 16}}

ACCURACY_CASES = [
    ("exact number", wrap("1000"), NUM, 1.0),
    ("thousands separator", wrap("1,000"), NUM, 1.0),
    ("trailing .0", wrap("1000.0"), NUM, 1.0),
    ("dollar and period", wrap("$1,000."), NUM, 1.0),
    ("boxed", wrap("\\boxed{1000}"), NUM, 1.0),
    ("wrong number", wrap("999"), NUM, 0.0),
    ("off by one on a large integer", wrap("123456790"), {"task": "arithmetic",
                                                          "answer": "123456789"}, 0.0),
    ("many decimals of a fraction", wrap("0.3333333333333"), {"task": "gsm8k",
                                                              "answer": "1/3"}, 1.0),
    ("misplaced comma is not a number", wrap("10,00"), NUM, 0.0),
    ("number inside words", wrap("about 1000 or so"), NUM, 0.0),
    ("two numbers", wrap("1000 1001"), NUM, 0.0),
    ("no answer tag", "<think>1000</think> 1000", NUM, 0.0),
    ("two answer tags (hedging)", "<think>12 + 30 = 42</think><answer>999</answer><answer>1000</answer>",
     NUM, 0.0),
    ("negative", wrap("-37"), NEG, 1.0),
    ("negative, unicode minus", wrap("\u221237"), NEG, 1.0),
    ("sign flipped", wrap("37"), NEG, 0.0),
    ("fraction equals decimal", wrap("3/4"), FRAC, 1.0),
    ("sorted list", wrap("-3, 1, 1, 9"), SORT, 1.0),
    ("sorted list with brackets", wrap("[-3, 1, 1, 9]"), SORT, 1.0),
    ("sorted list, spaces", wrap("-3 1 1 9"), SORT, 1.0),
    ("list in wrong order", wrap("1, -3, 1, 9"), SORT, 0.0),
    ("list missing a duplicate", wrap("-3, 1, 9"), SORT, 0.0),
    ("list with a word", wrap("-3, 1, one, 9"), SORT, 0.0),
    ("text answer, case and period", wrap("paris."), QA, 1.0),
    ("text answer wrong", wrap("London"), QA, 0.0),
    ("countdown reference", wrap("(3 + 5) * 2"), CD, 1.0),
    ("countdown reaches target but reuses 2", wrap("2 * 5 + 3 * 2"), CD, 0.0),
    ("countdown another valid solution", wrap("7 * 2 + 5 - 3"), CD, 1.0),
    ("countdown with '= target'", wrap("(3 + 5) * 2 = 16"), CD, 1.0),
    ("countdown with wrong '= target'", wrap("(3 + 5) * 2 = 17"), CD, 0.0),
    ("countdown wrong value", wrap("3 + 5 + 2"), CD, 0.0),
    ("countdown unknown number", wrap("8 * 2"), CD, 0.0),
    ("countdown reused number", wrap("(5 + 3) * 2 + 3 - 3"), CD, 0.0),
    ("countdown unicode ops", wrap("(3 + 5) \u00d7 2"), CD, 1.0),
    ("countdown division exact", wrap("(7 * 5 - 3) / 2"), CD, 1.0),
    ("countdown power not allowed", wrap("2 ** 3 * 2"), CD, 0.0),
    ("countdown unary minus not allowed", wrap("-3 + 7 * 2 + 5"), CD, 0.0),
    ("countdown float literal", wrap("16.0"), CD, 0.0),
    ("countdown eval injection", wrap("__import__('os').system('echo pwned') or 16"), CD, 0.0),
    ("countdown attribute access", wrap("(16).real"), CD, 0.0),
    ("countdown lambda", wrap("(lambda: 16)()"), CD, 0.0),
    ("countdown division by zero", wrap("16 / (5 - 5)"), CD, 0.0),
    ("countdown garbage", wrap("three plus five"), CD, 0.0),
    ("countdown duplicate given twice", wrap("4 * 4"), CD_DUP, 1.0),
    ("countdown duplicate used thrice", wrap("4 * 4 * 4 / 4"), CD_DUP, 0.0),
]


@pytest.mark.parametrize("name,text,problem,want", ACCURACY_CASES,
                         ids=[c[0] for c in ACCURACY_CASES])
def test_accuracy_reward(name, text, problem, want):
    assert accuracy_reward(text, problem) == want


def test_eval_injection_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    assert evaluate_countdown_expression(payload) is None
    assert accuracy_reward(wrap(payload), CD) == 0.0
    assert not marker.exists()


def test_countdown_expression_is_exact_and_reports_numbers():
    value, used = evaluate_countdown_expression("(7 - 1) / 4 * 2")
    assert value == 3 and used == [7, 1, 4, 2]
    assert evaluate_countdown_expression("1 / 3 * 3")[0] == 1  # exact, not 0.999…
    assert countdown_correct("10 / 4 * 2 - 1", [10, 4, 2, 1], 4)
    assert not countdown_correct("10 / 4", [10, 4], 2)          # 2.5, not 2


def test_parse_number_forms():
    assert parse_number("1,234,567.50") == parse_number("1234567.5")
    assert parse_number("45%") == 45
    assert parse_number("1e3") == 1000
    assert parse_number("1/0") is None
    assert parse_number("") is None


def test_problem_without_reference_is_an_error():
    with pytest.raises(ValueError, match="no reference answer"):
        accuracy_reward(wrap("hi"), {"id": "g", "task": "greeting", "answer": ""})
    with pytest.raises(ValueError, match="meta"):
        accuracy_reward(wrap("1 + 2"), {"id": "c", "task": "countdown", "answer": "1 + 2"})


LANGUAGE_CASES = [
    ("all english", "<think>First add the ones, then carry.</think><answer>3</answer>", "en", 1.0),
    ("numbers and symbols ignored", "<think>so 12 + 30 = 42 ok</think><answer>42</answer>",
     "en", 1.0),
    # 4 Latin words + 4 Han characters (one word each)
    ("mixed english/chinese", "<think>we add them 所以答案 now</think><answer>3</answer>", "en",
     4 / 8),
    ("all chinese for zh", "<think>所以答案是</think><answer>3</answer>", "zh", 1.0),
    ("english CoT for zh", "<think>so the answer</think><answer>3</answer>", "zh", 0.0),
    ("only the think block counts", "<think>add</think><answer>答案</answer>", "en", 1.0),
    ("cyrillic word", "<think>add плюс more</think><answer>3</answer>", "en", 2 / 3),
    ("no words in CoT", "<think>1 + 2 = 3</think><answer>3</answer>", "en", 0.0),
    ("no think tags: whole text", "just english words", "en", 1.0),
]


@pytest.mark.parametrize("name,text,lang,want", LANGUAGE_CASES, ids=[c[0] for c in LANGUAGE_CASES])
def test_language_consistency_reward(name, text, lang, want):
    assert language_consistency_reward(text, lang) == pytest.approx(want)


def test_language_unknown_target_is_an_error():
    with pytest.raises(ValueError, match="target_lang"):
        language_consistency_reward(OK, "xx")


def test_combined_reward_weights():
    text = "<think>we add them 所以答案 now</think><answer>1,000</answer>"
    parts = combined_reward(text, NUM)
    assert parts["accuracy"] == 1.0 and parts["format"] == 1.0
    assert parts["language"] == pytest.approx(0.5)
    assert parts["total"] == pytest.approx(2.0)  # R1-Zero default: language weight 0
    parts = combined_reward(text, NUM, weights=R1_REASONING_WEIGHTS)
    assert parts["total"] == pytest.approx(2.5)
    parts = combined_reward(text + " trailing", NUM, weights={"accuracy": 2.0, "format": 0.5})
    assert parts["format"] == 0.0 and parts["total"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown weight"):
        combined_reward(text, NUM, weights={"acc": 1.0})


def test_extract_answer_strips():
    assert extract_answer("<think>12 + 30 = 42</think><answer>\n 7 \n</answer>") == "7"
    assert extract_answer("<answer>1</answer><answer>2</answer>") is None


# ----------------------------------------------------------------------------- the think shortcut

WP = {"id": "w", "task": "word_problem", "answer": "50"}
SHORTCUTS = [
    ("empty think, no whitespace", "<think></think><answer>50</answer>"),
    ("blank think", "<think>\n\n</think>\n<answer>50</answer>"),
    ("r1-zero spacing, blank think", " <think> </think> <answer> 50 </answer>"),
    ("answer repeated", "<think>50</think>\n<answer>50</answer>"),
    ("answer announced", "<think>\nThe answer is 50.\n</think>\n<answer>50</answer>"),
    ("announced with the unit", "<think>So the final answer is 50 apples.</think><answer>50</answer>"),
    ("punctuation only", "<think>\n...\n=\n</think>\n<answer>50</answer>"),
    ("the r1-zero template's placeholder copied",
     " <think> reasoning process here </think> <answer> 50 </answer>"),
    ("run 9: no opening tag", "\nSolution: 20 + 30 = 50 </think>\n<answer>50</answer>"),
]


@pytest.mark.parametrize("name,text", SHORTCUTS, ids=[c[0] for c in SHORTCUTS])
def test_think_shortcut_scores_no_format_but_keeps_accuracy(name, text):
    parts = combined_reward(text, WP)
    assert parts["accuracy"] == 1.0 and parts["format"] == 0.0 and parts["total"] == 1.0


def test_a_real_reasoning_step_restores_the_format():
    assert format_reward("<think>20 + 30 = 50</think><answer>50</answer>") == 1.0
    assert format_reward(" <think> Ana has 20 apples and gets 30 more. </think> "
                         "<answer> 50 </answer>") == 1.0
    # the structure-only check (replies meant to carry an empty CoT) still accepts the shortcut
    assert format_reward("<think>\n\n</think>\n<answer>Hello!</answer>",
                         require_reasoning=False) == 1.0
    assert format_reward("<think></think>", require_reasoning=False) == 0.0


def test_reasoning_steps_drop_the_answer_and_announcements():
    from deeprecipe.stages.r1.rewards import reasoning_steps
    think = "\nThe answer is 50.\n20 + 30 = 50\n50\nSo Ana has 50 apples.\n"
    assert reasoning_steps(think, "50") == ["20 + 30 = 50", "So Ana has 50 apples."]
    assert reasoning_steps(think, "") == ["20 + 30 = 50", "So Ana has 50 apples."]
    assert reasoning_steps("Ana has apples.", "ana") == []  # 2 tokens left


def test_generated_solutions_keep_the_format_and_their_shortcuts_lose_it():
    """Every task and level's reference solution, as the chat template's decode gives it, as an
    R1-Zero base writes it (one line, spaces around the tags) and cut to its last line (tiny's
    cold start), scores format 1; the same answer behind an empty or answer-only think scores
    format 0 and keeps its accuracy."""
    from deeprecipe.stages.generators import reasoning_data as rd
    from deeprecipe.stages.r1.chat import shorten_solution
    rows = rd.generate_problems(8, seed=1, held_out_frac=0.2)
    assert {r["level"] for r in rows} == set(rd.LEVELS)
    for r in rows:
        one_line = " " + " ".join(r["solution"].split("\n")).replace("<answer>", " <answer> ")
        for genuine in (r["solution"], one_line, shorten_solution(r["solution"], 1)):
            assert format_reward(genuine) == 1.0 and accuracy_reward(genuine, r) == 1.0, genuine
        a = r["answer"]
        for shortcut in (f"<think></think><answer>{a}</answer>",
                         f"<think>\n{a}\n</think>\n<answer>{a}</answer>",
                         f" <think> The answer is {a}. </think> <answer> {a} </answer>"):
            assert format_reward(shortcut) == 0.0 and accuracy_reward(shortcut, r) == 1.0, shortcut

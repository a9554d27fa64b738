"""stages.r1 (post-training) on tiny models (CPU, seconds): SFT learns the response tokens only,
a GRPO run with a rigged reward moves probability towards the rewarded outputs, the BT reward
model ranks chosen over rejected, and evaluate / rejection_sample count and filter correctly."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn as nn

from deeprecipe.stages.moe_model import MoEConfig, MoETransformer
from deeprecipe.stages.pretrain import checkpoint_dirs
from deeprecipe.stages.r1.chat import (ChatTokenizer, PROMPT_STOPS, chat_prompt, prompt_text,
                                       sft_pair, shorten_solution)
from deeprecipe.stages.r1.config import GRPOConfig, RewardModelConfig, SFTConfig, SPIKE_HISTORY
from deeprecipe.stages.r1.evaluate import (evaluate, paired_pass_difference, pass_at_1, pass_at_k,
                                           pass_at_k_ladder, pass_rate_stderr)
from deeprecipe.stages.r1.grpo import (grad_spike_threshold, grpo_step, grpo_train, length_chunks,
                                       rollout_batch, rollout_logprobs)
from deeprecipe.stages.r1.grpo_loss import make_reference_model
from deeprecipe.stages.r1.model_io import adamw, dense_overrides, inference_model, logits_of
from deeprecipe.stages.r1.rejection import readable, rejection_sample
from deeprecipe.stages.r1.reward_model import RewardModel, preference_accuracy, train_reward_model
from deeprecipe.stages.r1.rollout import sample_responses, subset
from deeprecipe.stages.r1.sft import pad_sft_examples, response_loss, sft
from deeprecipe.stages.generators.non_reasoning import safety_preference_pairs
from deeprecipe.stages.generators.reasoning_data import generate_problems
from deeprecipe.stages.tokenizer_train import train_tokenizer
from deeprecipe.stages.training_io import checkpoint_dirs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def problems():
    return generate_problems(4, seed=0, tasks=["counting", "arithmetic"], levels=[1])


@pytest.fixture(scope="module")
def tok(problems):
    texts = [p["prompt"] + " " + p["solution"] for p in problems]
    texts += [p["prompt"] + " " + p["chosen"] + " " + p["rejected"]
              for p in safety_preference_pairs()]
    return ChatTokenizer(train_tokenizer(texts * 3, vocab_size=600, min_frequency=2))


def tiny_model(vocab: int, seed: int = 0) -> MoETransformer:
    torch.manual_seed(seed)
    return MoETransformer(MoEConfig(vocab_size=vocab, d_model=48, n_layers=2, n_heads=2,
                                    head_dim=24, n_dense_layers=1, d_ff_dense=96,
                                    n_routed_experts=4, top_k=2, d_ff_expert=32, max_seq_len=320))


def test_chat_format_round_trip(tok, problems):
    prompt_ids, response_ids = sft_pair(tok, problems[0]["prompt"], problems[0]["solution"])
    assert tok.tok.decode(prompt_ids, skip_special_tokens=False) == \
        f"<|user|>{problems[0]['prompt']}<|assistant|>"
    assert response_ids[-1] == tok.eos_id
    assert tok.decode_response(response_ids + [5, 6]) == problems[0]["solution"]


def test_shorten_solution_keeps_last_think_lines_and_answer(problems):
    sol = problems[0]["solution"]
    short = shorten_solution(sol, 1)
    from deeprecipe.stages.r1.rewards import extract_answer, format_reward
    assert format_reward(short) == 1.0 and extract_answer(short) == extract_answer(sol)
    think = short.split("<think>\n")[1].split("\n</think>")[0]
    assert think.count("\n") == 0 and think == sol.split("\n</think>")[0].split("\n")[-1]
    assert shorten_solution(sol, 0) == sol and shorten_solution(sol, 99) == sol


def test_sft_rows_start_at_position_zero_and_end_with_eos(tok, problems):
    """One example per row (no packing: the model has no segment mask), the loss mask covers
    the response and its EOS, never the prompt or padding."""
    pairs = [sft_pair(tok, p["prompt"], p["solution"]) for p in problems[:3]]
    batch = pad_sft_examples(pairs, 320, tok.pad_id)
    assert batch.inputs_BT.shape[0] == 3
    for b, (prompt, response) in enumerate(pairs):
        n = len(prompt) + len(response)
        assert batch.inputs_BT[b, :len(prompt)].tolist() == prompt
        mask = batch.loss_mask_BT[b]
        assert mask.sum().item() == len(response)
        assert batch.targets_BT[b, mask.nonzero().max()].item() == tok.eos_id
        assert mask[:len(prompt) - 1].sum().item() == 0 and mask[n - 1:].sum().item() == 0


def test_sft_loss_falls_on_response_tokens_only(tok, problems):
    examples = [sft_pair(tok, p["prompt"], p["solution"]) for p in problems]
    model = tiny_model(tok.vocab_size)
    before = response_loss(model, examples, tok, seq_len=320)
    rows = sft(model, examples, tok, SFTConfig(epochs=40, batch_rows=4, seq_len=320,
                                                    lr=1e-2, min_lr=1e-3))
    after = response_loss(model, examples, tok, seq_len=320)
    assert after < 0.6 * before, (before, after)
    # every response token (EOS included) is a target exactly once per epoch; no prompt token is
    per_epoch = sum(r["tokens"] for r in rows if r["epoch"] == 0)
    assert per_epoch == sum(len(resp) for _, resp in examples)
    assert rows[-1]["lr"] < rows[0]["lr"]


def test_sft_micro_batches_accumulate_to_the_whole_batch_step(tok, problems):
    """Gradient accumulation over 1-row micro-batches (each cut to its own length) takes the
    same optimiser steps as whole batches: the same losses and the same weights after."""
    examples = [sft_pair(tok, p["prompt"], p["solution"]) for p in problems]
    cfg = SFTConfig(epochs=2, batch_rows=3, seq_len=320, lr=1e-2, min_lr=1e-3)
    whole, chunked = tiny_model(tok.vocab_size), tiny_model(tok.vocab_size)
    rows_whole = sft(whole, examples, tok, cfg)
    rows_chunked = sft(chunked, examples, tok, dataclasses.replace(cfg, micro_batch_rows=1))
    assert [r["tokens"] for r in rows_whole] == [r["tokens"] for r in rows_chunked]
    assert [r["loss"] for r in rows_whole] == pytest.approx([r["loss"] for r in rows_chunked],
                                                             rel=1e-5)
    moved = 0.0
    for (name, a), b, start in zip(whole.named_parameters(), chunked.parameters(),
                                   tiny_model(tok.vocab_size).parameters()):
        assert torch.allclose(a, b, atol=2e-5), name
        moved = max(moved, (a - start).abs().max().item())
    assert moved > 1e-3  # the steps did move the weights


def first_token_mass(model, tok, prompts, wanted_ids) -> float:
    """Mean probability of a response starting with one of wanted_ids."""
    with torch.no_grad():
        total = 0.0
        for p in prompts:
            ids = torch.tensor([tok.encode(chat_prompt(p))])
            probs = torch.softmax(logits_of(model, ids)[0, -1], -1)
            total += probs[wanted_ids].sum().item()
    return total / len(prompts)


def test_grpo_moves_probability_towards_rewarded_outputs(tok, problems):
    model = tiny_model(tok.vocab_size, seed=1)
    vocab = [tok.tok.decode([i]) for i in range(tok.vocab_size)]
    rewarded = [i for i, s in enumerate(vocab) if s[:1] == " "]   # responses starting with a space
    prompts = [p["prompt"] for p in problems[:4]]
    before = first_token_mass(model, tok, prompts, rewarded)

    def space_first(text, problem, step):
        hit = float(text[:1] == " ")
        return {"space": hit, "total": hit}

    cfg = GRPOConfig(steps=10, prompts_per_step=4, group_size=8, max_new_tokens=3, lr=2e-2,
                     beta=0.01, clip_eps=0.2, updates_per_batch=2, ref_reset_every=5)
    rows = grpo_train(model, problems[:4], tok, cfg, space_first)
    after = first_token_mass(model, tok, prompts, rewarded)
    assert after > before + 0.2, (before, after)
    assert rows[-1]["reward"] > rows[0]["reward"]
    assert {"reward_space", "kl", "clip_fraction", "response_len", "accuracy"} <= set(rows[0])
    assert any(r["clip_fraction"] > 0 for r in rows) and any(r["kl"] > 0 for r in rows)
    assert [r["step"] for r in rows if r["ref_reset"]] == [5]


def test_reward_model_ranks_chosen_over_rejected(tok):
    pairs = safety_preference_pairs()
    rm = RewardModel(tiny_model(tok.vocab_size, seed=2))
    assert preference_accuracy(rm, pairs, tok) == 0.0  # zero head: all scores equal
    rows = train_reward_model(rm, pairs, tok, RewardModelConfig(epochs=6, batch_pairs=8, lr=3e-3))
    assert preference_accuracy(rm, pairs, tok) == 1.0
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_reward_model_save_load_round_trip(tok, tmp_path):
    pairs = safety_preference_pairs()[:4]
    rm = RewardModel(tiny_model(tok.vocab_size, seed=3))
    with torch.no_grad():
        rm.score.weight.normal_()
    tok_json = tmp_path / "tokenizer.json"
    tok.tok.save(str(tok_json))
    rm.save(tok_json, tmp_path / "rm")
    again = RewardModel.load(tmp_path / "rm")
    args = (tok, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    assert again.score_texts(*args) == pytest.approx(rm.score_texts(*args), abs=1e-5)


class ScriptedModel(nn.Module):
    """Answers every chat prompt with the same scripted response: the token after the last
    <|assistant|> (or the `mark` token) is script[0], then script[1], … (a stub for evaluate's
    counting only)."""

    def __init__(self, tok: ChatTokenizer, response: str, mark: int | None = None):
        super().__init__()
        self.script = tok.encode(response) + [tok.eos_id]
        self.assistant_id = tok.tok.token_to_id("<|assistant|>") if mark is None else mark
        self.vocab = tok.vocab_size
        self.anchor = nn.Parameter(torch.zeros(1))
        self.history = None

    def forward(self, idx_BT, kv_cache=None, start_pos=0):
        self.history = idx_BT if start_pos == 0 else torch.cat([self.history, idx_BT], 1)
        B, T = idx_BT.shape
        logits = torch.zeros(B, T, self.vocab)
        for b in range(B):
            row = self.history[b].tolist()
            marks = [i for i, t in enumerate(row) if t == self.assistant_id]
            if not marks:  # still inside this row's prompt: the sampler ignores this output
                continue
            since = len(row) - 1 - marks[-1]
            logits[b, -1, self.script[min(since, len(self.script) - 1)]] = 50.0
        return logits


def test_evaluate_counts_pass_at_1_and_format(tok):
    model = ScriptedModel(tok, "<think>\nadd\n</think>\n<answer>4</answer>")
    problems = [{"id": "a", "task": "arithmetic", "prompt": "Compute 2 + 2.", "answer": "4"},
                {"id": "b", "task": "arithmetic", "prompt": "Compute 1 + 3.", "answer": "4"},
                {"id": "c", "task": "counting", "prompt": "Count to five.", "answer": "5"}]
    res = evaluate(model, problems[:2], tok, k=3, max_new_tokens=40)
    assert res["pass@1"] == 1.0 and res["format_rate"] == 1.0 and res["finished_rate"] == 1.0
    res = evaluate(model, problems, tok, k=3, max_new_tokens=40)
    assert res["pass@1"] == pytest.approx(2 / 3)
    assert res["per_task"] == {"arithmetic": 1.0, "counting": 0.0}
    assert res["mean_response_tokens"] == len(model.script)
    assert res["correct_per_problem"] == [3, 3, 0]
    # rates 1, 1, 0: sample std sqrt(1/3), over sqrt(3) problems -> 1/3
    assert res["pass@1_stderr"] == pytest.approx(1 / 3)
    assert pass_at_1([[True, False, False, False], [True, True, True, True]]) == 0.625
    assert res["pass@k"] == pytest.approx({"1": 2 / 3, "2": 2 / 3, "3": 2 / 3})


def test_a_prompt_styles_stop_tokens_end_its_responses(tok, monkeypatch):
    """A base model runs on past its answer; with `PROMPT_STOPS['r1_zero']` = ('</answer>',)
    R1-Zero samples end there (kept), with none (the default) only at <|eos|>."""
    problem = {"id": "a", "task": "arithmetic", "prompt": "Compute 2 + 2.", "answer": "4"}
    answer, tail = "<think>\nadd\n</think>\n<answer>4</answer>", " and then 3 + 3 is 6"
    mark = tok.encode(prompt_text(problem["prompt"], "r1_zero"))[-1]
    assert mark not in tok.encode(answer + tail)  # the script starts once, after the prompt
    model = ScriptedModel(tok, answer + tail, mark=mark)
    assert PROMPT_STOPS["r1_zero"] == ()
    for stops, text, fmt in ((("</answer>",), answer, 1.0), ((), answer + tail, 0.0)):
        monkeypatch.setitem(PROMPT_STOPS, "r1_zero", stops)
        s = sample_responses(model, tok, [problem["prompt"]], 2, 40, style="r1_zero",
                             generator=torch.Generator().manual_seed(0))
        assert s.texts[0] == [text, text] and s.finished[0] == [True, True]
        last = tok.tok.token_to_id("</answer>") if stops else tok.eos_id
        assert s.response_ids[0][0][-1] == last
        res = evaluate(model, [problem], tok, k=2, max_new_tokens=40, style="r1_zero")
        assert res["format_rate"] == fmt and res["pass@1"] == 1.0
    assert tok.stop_ids("chat") == []
    with pytest.raises(ValueError, match="prompt style"):
        tok.stop_ids("plain")


def test_pass_at_k_is_the_unbiased_estimator():
    # n = 4 samples: one right -> pass@2 = 1 - C(3,2)/C(4,2) = 1/2; two right -> 1 - 1/6
    assert pass_at_k([1], n=4, k=2) == pytest.approx(0.5)
    assert pass_at_k([2], n=4, k=2) == pytest.approx(5 / 6)
    assert pass_at_k([0, 1, 2, 4], n=4, k=1) == pytest.approx((0 + 0.25 + 0.5 + 1) / 4)
    assert pass_at_k([0, 1, 2, 4], n=4, k=4) == pytest.approx(0.75)  # any sample right
    ladder = pass_at_k_ladder([0, 1, 2, 4], 4)
    assert list(ladder) == ["1", "2", "4"]
    assert ladder["1"] <= ladder["2"] <= ladder["4"]
    assert list(pass_at_k_ladder([3], 6)) == ["1", "2", "4", "6"]
    with pytest.raises(ValueError):
        pass_at_k([1], n=4, k=5)


def test_paired_difference_is_tighter_than_unpaired_when_problems_share_difficulty():
    # b solves what a solves plus one sample more on every 4th problem (k = 4)
    a = [4, 0, 2, 4, 1, 3, 0, 4] * 4
    b = [c + (i % 4 == 0 and c < 4) for i, c in enumerate(a)]
    d, se = paired_pass_difference(b, a, k=4)
    assert d == pytest.approx(sum(x - y for x, y in zip(b, a)) / (4 * len(a)))
    assert d > 0 and se > 0
    unpaired = (pass_rate_stderr(a, 4) ** 2 + pass_rate_stderr(b, 4) ** 2) ** 0.5
    assert se < unpaired / 4
    assert paired_pass_difference(a, a, k=4) == (0.0, 0.0)
    assert math.isnan(pass_rate_stderr([3], 4))
    with pytest.raises(ValueError):
        paired_pass_difference(a, a[:-1], k=4)


def test_rejection_sample_keeps_correct_readable_unique(tok):
    model = ScriptedModel(tok, "<think>\nadd\n</think>\n<answer>4</answer>")
    problems = [{"id": "a", "task": "arithmetic", "prompt": "Compute 2 + 2.", "answer": "4"},
                {"id": "c", "task": "counting", "prompt": "Count to five.", "answer": "5"}]
    kept, stats = rejection_sample(model, problems, tok, n=3, max_new_tokens=40)
    assert [k["problem_id"] for k in kept] == ["a"]          # wrong one dropped
    assert stats == {"sampled": 6, "correct": 3, "readable": 6, "kept": 1, "duplicates": 2,
                     "problems_with_kept": 1}


def test_readable_filter():
    ok = "<think>\nadd the ones\n</think>\n<answer>4</answer>"
    assert readable(ok, 100)
    assert not readable("<think>\nadd 的 ones\n</think>\n<answer>4</answer>", 100)
    assert not readable("<think>\n" + "word " * 50 + "\n</think>\n<answer>4</answer>", 100)
    assert not readable("<think>\n```x```\n</think>\n<answer>4</answer>", 100)
    assert not readable("add the ones <answer>4</answer>", 100)


def test_dense_student_has_no_moe_layer():
    """The student config as pretrain_student builds it: the base config + dense_overrides."""
    teacher = tiny_model(100).cfg
    fields = dense_overrides(teacher, d_model=32, n_layers=2, n_heads=2, head_dim=16)
    student = MoETransformer(dataclasses.replace(teacher, **fields))
    assert student.cfg.n_dense_layers == student.cfg.n_layers == 2
    assert student.cfg.vocab_size == 100
    assert student.num_params() == student.num_params(active_only=True)
    assert dense_overrides(teacher, n_layers=3) == {"n_layers": 3, "n_dense_layers": 3}
    assert dense_overrides(teacher) == {"n_dense_layers": teacher.n_layers}


def test_grpo_step_micro_batches_accumulate_to_the_whole_batch_update(tok, problems):
    """Chunks of rows (sorted by length, cut to their longest row) give the update and the
    stats of one pass over the whole batch; with one update per batch the ratio is exactly 1."""
    pairs = [sft_pair(tok, p["prompt"], p["solution"]) for p in problems[:6]]
    tokens_BT, mask_BT = rollout_batch([p for p, _ in pairs], [r[:5 + 3 * i] for i, (_, r)
                                                               in enumerate(pairs)], tok.pad_id)
    adv_B = torch.tensor([1.0, -0.5, 0.3, -1.2, 0.8, -0.4])
    results = []
    for rows, mu in ((6, 2), (2, 2), (4, 1)):
        model = tiny_model(tok.vocab_size, seed=4)
        ref = tiny_model(tok.vocab_size, seed=5)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        cfg = GRPOConfig(micro_batch_rows=rows, updates_per_batch=mu, beta=0.1, clip_eps=0.2)
        stats = grpo_step(model, ref, opt, tokens_BT, mask_BT, adv_B, cfg)
        results.append((stats, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (whole, w_whole), (chunked, w_chunked), (single, _) = results
    assert torch.allclose(w_whole, w_chunked, atol=1e-6)
    for key in ("loss", "kl", "kl_max", "ratio", "clip_fraction", "policy_objective",
                "grad_norm"):
        assert chunked[key] == pytest.approx(whole[key], abs=1e-5), key
    assert whole["grad_norm"] > 0
    assert single["ratio"] == pytest.approx(1.0) and single["clip_fraction"] == 0.0


def test_grpo_step_skips_an_update_above_max_grad_norm(tok, problems):
    """An update whose gradient norm (before clipping) exceeds max_grad_norm leaves the weights
    and the optimiser state as they were; one under it is applied."""
    pairs = [sft_pair(tok, p["prompt"], p["solution"]) for p in problems[:4]]
    tokens_BT, mask_BT = rollout_batch([p for p, _ in pairs], [r[:8] for _, r in pairs],
                                       tok.pad_id)
    adv_B = torch.tensor([1.0, -1.0, 0.5, -0.5])
    cfg = GRPOConfig(micro_batch_rows=4, updates_per_batch=1, beta=0.04)
    for limit, moved in ((1e-9, False), (1e9, True)):
        model = tiny_model(tok.vocab_size, seed=4)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        opt = adamw(model, 1e-3)
        stats = grpo_step(model, make_reference_model(model), opt, tokens_BT, mask_BT,
                          adv_B, cfg, max_grad_norm=limit)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert stats["grad_norm"] > 0 and stats["skipped"] == (0 if moved else 1)
        assert (not torch.equal(before, after)) == moved
        assert bool(opt.state) == moved


def test_grad_spike_threshold_is_a_multiple_of_the_recent_median():
    assert grad_spike_threshold([0.3, 0.4], 4.0) is None  # too little history
    assert grad_spike_threshold([0.3, 0.4, 0.5], 0.0) is None  # off
    assert grad_spike_threshold([0.3, 0.4, 0.5], 4.0) == pytest.approx(1.6)
    # only the last SPIKE_HISTORY norms count
    norms = [100.0] * 5 + [0.2] * SPIKE_HISTORY
    assert grad_spike_threshold(norms, 5.0) == pytest.approx(1.0)
    # first updates without signal (norm 0): the floor, not 0, so later updates still apply
    assert grad_spike_threshold([0.0, 0.0, 0.0], 4.0, floor=1.0) == 1.0
    with pytest.raises(ValueError):
        GRPOConfig(skip_grad_spike=-1.0)


def sampled_rollouts(sampler, tok, prompts, n: int, new_tokens: int, seed: int):
    """n samples per prompt from `sampler` -> (tokens_BT, mask_BT, sampler_logp_BT) in
    grpo_step's layout (rows grouped by prompt)."""
    s = sample_responses(sampler, tok, prompts, n, new_tokens, temperature=1.0,
                         generator=torch.Generator().manual_seed(seed))
    flat_prompts = [ids for ids in s.prompt_ids for _ in range(n)]
    flat_resp = [r for g in s.response_ids for r in g]
    flat_lp = [lp for g in s.logprobs for lp in g]
    assert [len(lp) for lp in flat_lp] == [len(r) for r in flat_resp]
    tokens_BT, mask_BT = rollout_batch(flat_prompts, flat_resp, tok.pad_id)
    return tokens_BT, mask_BT, rollout_logprobs(flat_prompts, flat_lp, tokens_BT.shape[1])


def step_on_samples(policy, sampler, tok, prompts, n: int, new_tokens: int, seed: int,
                    cfg: GRPOConfig, adv_seed: int | None = None) -> dict:
    """grpo_step's stats (no parameter change: SGD at lr 0) on n samples per prompt drawn from
    `sampler`; advantages 0, or standard normal from adv_seed."""
    tokens_BT, mask_BT, sampler_BT = sampled_rollouts(sampler, tok, prompts, n, new_tokens, seed)
    assert torch.equal(sampler_BT != 0, mask_BT.bool() & (sampler_BT != 0))  # same layout
    adv_B = (torch.zeros(len(tokens_BT)) if adv_seed is None else
             torch.randn(len(tokens_BT), generator=torch.Generator().manual_seed(adv_seed)))
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    return grpo_step(policy, make_reference_model(policy), opt, tokens_BT, mask_BT,
                     adv_B, cfg, sampler_BT)


def test_sampler_gap_is_zero_for_the_policy_itself_and_positive_for_another_model(tok, problems):
    """grpo_step's train/sampler mismatch: samples drawn (KV cache) from the policy itself give
    log-probs equal to the policy's full forward pass; drawn from another model they do not, and
    the k1 estimate of KL(sampler || policy) is positive."""
    policy, other = tiny_model(tok.vocab_size, seed=6), tiny_model(tok.vocab_size, seed=7)
    cfg = GRPOConfig(micro_batch_rows=8, beta=0.0, clip_eps=0.2)
    prompts = [p["prompt"] for p in problems[:4]]
    gaps = [step_on_samples(policy, sampler, tok, prompts, 8, 12, 0, cfg)
            for sampler in (policy, other)]
    assert gaps[0]["sampler_abs_gap"] < 1e-4 and abs(gaps[0]["sampler_kl"]) < 1e-4
    assert gaps[1]["sampler_abs_gap"] > 0.05 and gaps[1]["sampler_kl"] > 0.0


def test_length_chunks_group_rows_by_length():
    mask_BT = torch.zeros(5, 10)
    for b, last in enumerate([8, 2, 5, 3, 9]):
        mask_BT[b, 1:last + 1] = 1.0
    chunks = length_chunks(mask_BT, 2)
    assert [idx.tolist() for idx, _ in chunks] == [[1, 3], [2, 0], [4]]
    assert [T for _, T in chunks] == [5, 10, 11]


def test_subset_is_seeded_ordered_and_spans_the_rows():
    rows = list(range(100))
    a, b = subset(rows, 10, seed=0), subset(rows, 10, seed=0)
    assert a == b == sorted(a) and len(set(a)) == 10 and max(a) > 50
    assert subset(rows, 0, seed=0) == rows and subset(rows, 500, seed=1) == rows


def test_cpu_runs_fp32_whatever_dtype_says(tok):
    model = tiny_model(tok.vocab_size)
    assert inference_model(model, "bf16", copy_weights=True) is model
    assert next(model.parameters()).dtype == torch.float32


def test_grpo_importance_weights_are_one_on_policy_and_cut_at_the_cap(tok, problems):
    """With sampler_is_cap the update reports the truncated IS weights: 1 when the policy
    sampled its own rollouts, != 1 (and some at the cap) when another model did."""
    policy, other = tiny_model(tok.vocab_size, seed=6), tiny_model(tok.vocab_size, seed=7)
    cfg = GRPOConfig(micro_batch_rows=8, beta=0.0, sampler_is_cap=1.5)
    prompts = [p["prompt"] for p in problems[:4]]
    out = [step_on_samples(policy, sampler, tok, prompts, 4, 10, 1, cfg, adv_seed=0)
           for sampler in (policy, other)]
    tokens_BT, mask_BT, _ = sampled_rollouts(other, tok, prompts, 4, 10, seed=1)
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="sampler's log-probs"):
        grpo_step(policy, policy, opt, tokens_BT, mask_BT, torch.ones(len(tokens_BT)), cfg)
    assert out[0]["is_weight"] == pytest.approx(1.0, abs=1e-4) and out[0]["is_truncated"] == 0
    assert abs(out[1]["is_weight"] - 1.0) > 1e-3 and 0 < out[1]["is_truncated"] < 1


def test_grpo_freeze_router_keeps_the_routers_and_trains_the_rest(tok, problems):
    model = tiny_model(tok.vocab_size, seed=8)
    routers = {n: p.detach().clone() for n, p in model.named_parameters() if "router" in n}
    others = {n: p.detach().clone() for n, p in model.named_parameters() if "router" not in n}
    assert routers

    def length_reward(text, problem, step):
        r = float(len(text) % 3 == 0)
        return {"len": r, "total": r}

    cfg = GRPOConfig(steps=3, prompts_per_step=2, group_size=4, max_new_tokens=4, lr=1e-2,
                     freeze_router=True)
    rows = grpo_train(model, problems[:4], tok, cfg, length_reward)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], w) for n, w in routers.items())
    assert any(not torch.equal(params[n], w) for n, w in others.items())
    experts = {n: p.detach().clone() for n, p in model.named_parameters() if "_E" in n}
    assert experts and any(not torch.equal(params[n], others[n]) for n in experts)
    grpo_train(model, problems[:4], tok, dataclasses.replace(cfg, freeze_router=False,
                                                                 freeze_routed_experts=True),
                  length_reward)
    assert all(torch.equal(params[n], w) for n, w in experts.items())
    assert all(p.requires_grad for p in model.parameters())  # restored after training
    assert {"is_weight", "is_truncated"} <= set(rows[0])
    with pytest.raises(ValueError, match="sampler"):
        GRPOConfig(sampler="fp8")
    with pytest.raises(ValueError, match="sampler_is_cap"):
        GRPOConfig(sampler_is_cap=-1.0)
    with pytest.raises(ValueError, match="loss_norm"):
        GRPOConfig(loss_norm="token")
    rows = grpo_train(model, problems[:4], tok, dataclasses.replace(
        cfg, loss_norm="constant", scale_advantages=False), length_reward)
    assert len(rows) == cfg.steps and all(math.isfinite(r["loss"]) for r in rows)


def test_grpo_skip_equal_groups_updates_only_on_groups_with_unequal_rewards(tok, problems):
    """Half the prompts get a constant reward (their groups carry no advantage): with
    skip_equal_groups the update holds only the other groups' rows; with every group equal
    the step leaves the model as it was."""
    constant = {p["id"] for p in problems[:4:2]}

    def half_constant(text, problem, step):
        r = 1.0 if problem["id"] in constant else float(len(text) % 3 == 0)
        return {"len": r, "total": r}

    cfg = GRPOConfig(steps=4, prompts_per_step=4, group_size=4, max_new_tokens=4, lr=1e-2,
                     updates_per_batch=1, skip_equal_groups=True)
    rows = grpo_train(tiny_model(tok.vocab_size, seed=9), problems[:4], tok, cfg,
                      half_constant)
    for r in rows:
        assert r["update_rows"] == round(r["informative_groups"] * 4) * 4 <= 8, r
    assert any(r["update_rows"] > 0 for r in rows)
    full = grpo_train(tiny_model(tok.vocab_size, seed=9), problems[:4], tok,
                      dataclasses.replace(cfg, skip_equal_groups=False), half_constant)
    assert all(r["update_rows"] == 16 for r in full)

    model = tiny_model(tok.vocab_size, seed=9)
    before = [p.detach().clone() for p in model.parameters()]
    rows = grpo_train(model, problems[:4], tok, dataclasses.replace(cfg, steps=2),
                      lambda text, problem, step: {"total": 1.0})
    assert [r["update_rows"] for r in rows] == [0, 0] and rows[0]["grad_norm"] == 0.0
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_evaluate_reports_levels_and_wrong_examples(tok):
    model = ScriptedModel(tok, "<think>\nadd\n</think>\n<answer>4</answer>")
    problems = [{"id": "a", "task": "arithmetic", "level": 1, "prompt": "Compute 2 + 2.", "answer": "4"},
                {"id": "b", "task": "arithmetic", "level": 2, "prompt": "Compute 3 + 3.", "answer": "6"},
                {"id": "c", "task": "counting", "level": 1, "prompt": "Count to five.", "answer": "5"}]
    res = evaluate(model, problems, tok, k=2, max_new_tokens=40)
    assert res["per_level"] == {"arithmetic/1": 1.0, "arithmetic/2": 0.0, "counting/1": 0.0}
    assert [w["answer"] for w in res["wrong_examples"]] == ["6", "5"]
    assert res["wrong_examples"][0]["response"].endswith("<answer>4</answer>")


def test_mix_in_repeats_a_few_rows_up_to_their_share_of_the_pool():
    from deeprecipe.stages.r1.grpo import mix_in
    pool = [{"id": f"p{i}"} for i in range(3584)]
    extra = [{"id": f"x{i}"} for i in range(27)]
    mixed = mix_in(pool, extra, 0.25)
    n_extra = sum(r["id"].startswith("x") for r in mixed)
    assert n_extra / len(mixed) == pytest.approx(0.25, abs=0.01)
    assert mixed[:len(pool)] == pool
    assert {r["id"] for r in mixed[len(pool):]} == {r["id"] for r in extra}
    assert mix_in(pool, extra, None) == pool + extra
    assert mix_in(pool[:2], extra, 0.01) == pool[:2] + extra  # at least once each
    with pytest.raises(ValueError):
        mix_in(pool, extra, 1.0)


def test_grpo_resumed_from_a_saved_state_equals_the_uninterrupted_run(tok, problems, tmp_path):
    """A run killed after its state was saved (step 3 of 5) and resumed by a new call on a fresh
    model gives the same rows and the same weights as one run of 5 steps: policy, reference
    (reset at step 2), AdamW moments, sampling generator, problem order and spike history all
    come back from safetensors + JSON."""
    cfg = GRPOConfig(steps=5, prompts_per_step=4, group_size=4, max_new_tokens=6, lr=1e-2,
                     beta=0.04, updates_per_batch=1, ref_reset_every=2, skip_grad_spike=4.0)
    assert len(problems) == 8  # 4 prompts a step: the order is reshuffled after the resume too

    def reward(text, problem, step):  # rewards that differ within groups: real updates
        hit = float(text[:1] == " ")
        return {"space": hit, "total": hit + 0.1 * len(text.split())}
    timing = ("sample_s", "update_s")

    def comparable(rows):
        return [{k: v for k, v in r.items() if k not in timing} for r in rows]

    whole = tiny_model(tok.vocab_size, seed=2)
    expected = grpo_train(whole, problems, tok, cfg, reward)

    class Killed(Exception):
        pass

    def kill_after_step_3(row):
        if row["step"] == 3:
            raise Killed

    state = tmp_path / "grpo_state"
    first = tiny_model(tok.vocab_size, seed=2)
    with pytest.raises(Killed):  # saves after every step (save_every_s tiny), dies in step 4
        grpo_train(first, problems, tok, cfg, reward, on_step=kill_after_step_3,
                   state_dir=state, save_every_s=1e-9)
    kept = checkpoint_dirs(state, "state.json")  # only the newest save is kept
    assert [p.name for p in kept] == ["checkpoint-00000003"]
    saved = json.loads((kept[0] / "state.json").read_text())
    assert saved["steps_done"] == 3 and len(saved["rows"]) == 3
    assert sorted(p.name for p in state.iterdir()) == ["checkpoint-00000003"]  # no temp folder

    fresh = tiny_model(tok.vocab_size, seed=7)  # other init: the state must overwrite it
    resumed = grpo_train(fresh, problems, tok, cfg, reward, state_dir=state)
    assert comparable(resumed) == comparable(expected)
    for (name, a), b in zip(whole.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(p.suffix == ".pkl" for p in state.rglob("*"))

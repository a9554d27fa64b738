"""GRPO (DeepSeekMath §4.1, R1): the training loop over rollouts, its rewards (R1's rule
rewards; the reward model's score on preference prompts) and the prompt pool's mixing. The
losses are `stages.r1.grpo_loss`; the sampler `stages.r1.sampler`; resumable state
`stages.r1.rl_state`.

Shape suffixes: B rows, G samples per prompt, T positions, V vocab."""
from __future__ import annotations

import contextlib
import random
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from deeprecipe.stages.moe_model import MoE, Router

from .chat import ChatTokenizer
from .config import SPIKE_HISTORY, GRPOConfig
from .grpo_loss import (group_advantages, grpo_loss, informative_group_fraction, informative_groups,
                        make_reference_model, maybe_reset_reference, token_logprobs,
                        truncated_is_weights)
from .model_io import adamw, autocast, inference_model, logits_of, sampling_generator
from .rewards import (VERIFIER_OF_TASK, combined_reward, extract_answer, format_reward,
                      language_consistency_reward)
from .rl_state import RunSaver, load_rl_state
from .rollout import mean, sample_responses

if TYPE_CHECKING:
    from .reward_model import RewardModel

RewardFn = Callable[[str, Mapping, int], Mapping[str, float]]
"""reward_fn(response text, problem row, step) -> {'total': r, part: value, …}"""

GRPO_PLOT = ("reward", "reward_accuracy", "reward_format", "kl", "clip_fraction", "response_len",
             "sampler_abs_gap", "grad_norm", "informative_groups")
"""metrics.png's panels of a GRPO stage (`stages.report.plot_series`)."""


def grad_spike_threshold(norms: Sequence[float], factor: float,
                         floor: float = 0.0) -> float | None:
    """max(factor x the median of the last SPIKE_HISTORY gradient norms, floor): the norm above
    which an update counts as a spike; None (no limit) when factor is 0 or fewer than 3 norms are
    known. The floor (grpo_step passes the clipping norm) keeps a run whose first updates had
    next to no signal (norms ~0: no group in format yet) from skipping every later update.
    A single outlier update can undo what RL built (a collapse seen in R1-Zero runs:
    BENCHMARKS.md, ninth session); skipping it costs one step's data."""
    recent = list(norms)[-SPIKE_HISTORY:]
    if factor <= 0 or len(recent) < 3:
        return None
    return max(factor * statistics.median(recent), floor)


def rollout_batch(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                  pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompt+response rows -> (tokens_BT, mask_BT') with T' = T - 1: mask is 1 at
    position t when tokens[t + 1] is a response token (next-token log-prob layout)."""
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    T = max(lengths)
    tokens_BT = torch.full((len(lengths), T), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((len(lengths), T - 1))
    for b, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        tokens_BT[b, :len(p) + len(r)] = torch.tensor(list(p) + list(r), dtype=torch.long)
        mask_BT[b, len(p) - 1:len(p) - 1 + len(r)] = 1.0
    return tokens_BT, mask_BT


def rollout_logprobs(prompt_ids: Sequence[Sequence[int]], response_logprobs: Sequence[Sequence[float]],
                     T: int) -> torch.Tensor:
    """Per-token log-probs of the responses in `rollout_batch`'s (B, T - 1) layout: the value
    for response token j of row b sits at position len(prompt_b) - 1 + j; 0 elsewhere."""
    out_BT = torch.zeros((len(prompt_ids), T - 1))
    for b, (p, lp) in enumerate(zip(prompt_ids, response_logprobs)):
        out_BT[b, len(p) - 1:len(p) - 1 + len(lp)] = torch.tensor(list(lp), dtype=torch.float32)
    return out_BT


def sequence_logprobs(model: nn.Module, tokens_BT: torch.Tensor) -> torch.Tensor:
    """logp_BT'[b, t] = log pi(tokens[b, t + 1] | tokens[b, :t + 1]), T' = T - 1."""
    return token_logprobs(logits_of(model, tokens_BT[:, :-1]), tokens_BT[:, 1:])


def length_chunks(mask_BT: torch.Tensor, rows: int) -> list[tuple[torch.Tensor, int]]:
    """Rollout rows in chunks of at most `rows`, shortest rows first, each chunk with its
    longest row's token count (last response position + 2): a chunk cut to that length carries
    little padding."""
    T1 = mask_BT.shape[1]
    last_B = (T1 - 1 - mask_BT.flip(1).argmax(1)).tolist()
    order = sorted(range(len(last_B)), key=lambda b: last_B[b])
    out = []
    for i in range(0, len(order), rows):
        idx = order[i:i + rows]
        out.append((torch.tensor(idx), max(last_B[b] for b in idx) + 2))
    return out


def grpo_step(policy: nn.Module, ref: nn.Module, opt: torch.optim.Optimizer,
              tokens_BT: torch.Tensor, mask_BT: torch.Tensor, advantages_B: torch.Tensor,
              cfg: GRPOConfig, sampler_logp_BT: torch.Tensor | None = None,
              max_grad_norm: float | None = None) -> dict[str, float]:
    """cfg.updates_per_batch policy updates on one batch of rollouts (host tensors; moved to
    the policy's device chunk by chunk). Each update accumulates gradients over chunks of
    cfg.micro_batch_rows rows (`length_chunks`), weighted so the loss is the whole batch's mean
    over sequences. pi_old's log-probs are taken before the first update (with one update they
    are the update's own, detached: the ratio is 1 and only its gradient acts). Returns the last
    update's loss stats (sequence-level ones averaged over rows, token-level ones over response
    tokens) with 'clip_fraction' and 'grad_norm' (before clipping) averaged over the updates.
    With `sampler_logp_BT` (the sampling model's log-probs of the same tokens,
    `rollout_logprobs`) also the train/sampler mismatch of the first update, per response
    token: 'sampler_kl' = mean(logp_sampler - logp_policy) (a k1 estimate of KL(sampler ||
    policy): the tokens came from the sampler) and 'sampler_abs_gap' = mean |logp_sampler -
    logp_policy|. Both are ~0 when the sampler is the policy itself; a bf16 copy of an MoE can
    route tokens differently. With cfg.sampler_is_cap > 0 (needs `sampler_logp_BT`) each
    token's policy term is weighted by min(pi_old / pi_sampler, cap); 'is_weight' is the
    weights' mean and 'is_truncated' the share at the cap, over response tokens. An update
    whose gradient norm before clipping exceeds max_grad_norm is not applied ('skipped': the
    number of such updates; `grad_spike_threshold`). 'kl_max' is the largest token KL seen."""
    if cfg.sampler_is_cap > 0 and sampler_logp_BT is None:
        raise ValueError("grpo_step: sampler_is_cap > 0 needs the sampler's log-probs")
    device = next(policy.parameters()).device
    B = tokens_BT.shape[0]
    chunks, sampler_chunks = [], []
    for idx, T in length_chunks(mask_BT, cfg.micro_batch_rows):
        chunks.append((tokens_BT[idx, :T].to(device), mask_BT[idx, :T - 1].to(device),
                       advantages_B[idx].to(device)))
        if sampler_logp_BT is not None:
            sampler_chunks.append(sampler_logp_BT[idx, :T - 1].to(device))
    # sums over response tokens of (sampler - policy), |sampler - policy|, IS weight, truncated
    gap_sum = torch.zeros(4, device=device)
    with torch.no_grad(), autocast(device, cfg.dtype):
        policy.eval()
        logp_ref = [sequence_logprobs(ref, tok) for tok, _, _ in chunks]
        logp_old = ([sequence_logprobs(policy, tok) for tok, _, _ in chunks]
                    if cfg.updates_per_batch > 1 else None)
    policy.train()
    clip_fracs, grad_norms, stats, loss, skipped, kl_max = [], [], {}, 0.0, 0, 0.0
    for update in range(cfg.updates_per_batch):
        opt.zero_grad(set_to_none=True)
        loss, sums, tokens = 0.0, {}, 0.0
        for c, (tok, mask, adv) in enumerate(chunks):
            with autocast(device, cfg.dtype):
                logp_new = sequence_logprobs(policy, tok)
            old = logp_old[c] if logp_old is not None else logp_new.detach()
            w = (truncated_is_weights(old, sampler_chunks[c], cfg.sampler_is_cap)
                 if cfg.sampler_is_cap > 0 else None)
            if sampler_chunks and update == 0:
                diff = (sampler_chunks[c] - logp_new.detach().float()) * mask
                gaps = [diff.sum(), diff.abs().sum()]
                if w is not None:
                    gaps += [(w * mask).sum(), ((w >= cfg.sampler_is_cap) * mask).sum()]
                gap_sum[:len(gaps)] += torch.stack(gaps)
            part, st = grpo_loss(logp_new, old, logp_ref[c], adv, mask,
                                   clip_eps=cfg.clip_eps, beta=cfg.beta, is_weight_BT=w,
                                   norm_tokens=(float(cfg.max_new_tokens)
                                                if cfg.loss_norm == "constant" else None),
                                   kl_clamp=cfg.kl_clamp)
            kl_max = max(kl_max, st.pop("kl_max"))
            share = tok.shape[0] / B
            (part * share).backward()
            loss += part.item() * share
            n_tok = mask.sum().item()
            tokens += n_tok
            for k, v in st.items():  # clip_fraction, ratio: per token; kl, objective: per row
                w = n_tok if k in ("clip_fraction", "ratio") else share
                sums[k] = sums.get(k, 0.0) + v * w
        grad_norms.append(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip))
        if max_grad_norm is not None and grad_norms[-1].item() > max_grad_norm:
            skipped += 1  # a spike: this update is dropped, the optimiser state untouched
        else:
            opt.step()
        stats = {k: v / max(tokens, 1.0) if k in ("clip_fraction", "ratio") else v
                 for k, v in sums.items()}
        clip_fracs.append(stats["clip_fraction"])
    policy.eval()
    if sampler_chunks:
        kl_sum, abs_sum, w_sum, trunc_sum = gap_sum.tolist()  # one host sync for the batch
        n_resp = max(float(mask_BT.sum()), 1.0)
        stats.update({"sampler_kl": kl_sum / n_resp, "sampler_abs_gap": abs_sum / n_resp,
                      "is_weight": w_sum / n_resp if cfg.sampler_is_cap > 0 else 1.0,
                      "is_truncated": trunc_sum / n_resp})
    return {**stats, "loss": loss, "clip_fraction": sum(clip_fracs) / len(clip_fracs),
            "grad_norm": torch.stack(grad_norms).float().mean().item(), "kl_max": kl_max,
            "skipped": skipped}


NO_UPDATE_STATS = {"kl": 0.0, "kl_max": 0.0, "clip_fraction": 0.0, "ratio": 1.0, "loss": 0.0,
                   "grad_norm": 0.0, "sampler_kl": 0.0, "sampler_abs_gap": 0.0, "is_weight": 1.0,
                   "is_truncated": 0.0, "skipped": 0}
"""`grpo_step`'s stats for a step that made no update (cfg.skip_equal_groups, all groups equal)."""


def grpo_train(policy: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer,
               cfg: GRPOConfig, reward_fn: RewardFn,
               on_step: Callable[[dict], None] | None = None,
               state_dir: str | Path | None = None, save_every_s: float = 0.0) -> list[dict]:
    """GRPO (DeepSeekMath §4.1, R1): each step draws cfg.prompts_per_step problems, samples G
    responses each from the policy, scores them with reward_fn, turns the rewards into group
    advantages and updates the policy with the clipped-ratio loss with beta * k3 KL to a frozen
    reference inside the loss; the reference is reset to the policy every cfg.ref_reset_every
    steps. On CUDA with dtype 'bf16' the samples come from a bf16 copy of the policy, refreshed
    before every step (cfg.sampler 'copy'), or from the policy itself under the same autocast
    as its updates ('policy': slower, numerically closest to the trained model).
    cfg.freeze_router keeps every MoE router's weight out of the optimiser,
    cfg.freeze_routed_experts the routed experts' weights. Returns one row per
    step: reward (mean total), reward_<part> for every part, reward_std, accuracy, kl,
    clip_fraction, ratio, loss, grad_norm, sampler_kl, sampler_abs_gap, is_weight, is_truncated,
    kl_max, skipped (`grpo_step`; cfg.skip_grad_spike), response_len, finished, update_rows
    (rollouts in the update: all, or with cfg.skip_equal_groups those of groups with unequal
    rewards), ref_reset, sample_s and update_s (wall seconds of sampling and of the update).

    Resume (`stages.r1.rl_state`): with `state_dir`, a state saved there by an earlier call with the
    same policy architecture, problems and cfg is loaded first (policy, reference, AdamW moments,
    sampling generator, problem order, spike history, rows so far) and the run continues from
    the step after it: with deterministic kernels (CPU) the resumed run's rows and weights equal
    an uninterrupted run's. The state is saved after a step once `save_every_s` seconds have
    passed since the last save (0: never), and not after the last step (the caller saves the
    result)."""
    if not problems:
        raise ValueError("grpo_train: no problems")
    rng = random.Random(cfg.seed)
    device = next(policy.parameters()).device
    gen = sampling_generator(policy, cfg.seed)
    frozen = [m.weight for m in policy.modules() if isinstance(m, Router)] if cfg.freeze_router else []
    if cfg.freeze_routed_experts:
        frozen += [w for m in policy.modules() if isinstance(m, MoE)
                   for w in (m.w_gate_EDF, m.w_up_EDF, m.w_down_EFD)]
    for w in frozen:
        w.requires_grad_(False)
    ref = make_reference_model(policy)
    if cfg.sampler == "policy":
        sampler_model = policy
        sampling_precision = lambda: autocast(device, cfg.dtype, cache_enabled=False)  # noqa: E731
    else:
        sampler_model = inference_model(policy, cfg.dtype, copy_weights=True)
        sampling_precision = contextlib.nullcontext
    opt = adamw(policy, cfg.lr)
    resume = (load_rl_state(state_dir, policy=policy, ref=ref, opt=opt, gen=gen, rng=rng)
              if state_dir else None)
    saver = None
    if state_dir and save_every_s > 0:
        saver = RunSaver(state_dir, save_every_s, policy=policy, ref=ref, opt=opt, gen=gen,
                         rng=rng)
    try:
        return _grpo_loop(policy, ref, opt, sampler_model, sampling_precision, problems,
                          tokenizer, cfg, reward_fn, rng, gen, on_step, resume, saver)
    finally:
        for w in frozen:
            w.requires_grad_(True)


def _grpo_loop(policy, ref, opt, sampler_model, sampling_precision, problems, tokenizer,
               cfg: GRPOConfig, reward_fn: RewardFn, rng: random.Random, gen,
               on_step, resume: dict | None = None, saver: RunSaver | None = None) -> list[dict]:
    """`grpo_train`'s steps, from the step after `resume`'s (a loaded state) if given."""
    resume = resume or {"steps_done": 0, "order": [], "applied_norms": [], "rows": []}
    order: list[int] = list(resume["order"])
    rows = list(resume["rows"])
    # gradient norms of the updates applied (spike history)
    applied_norms: list[float] = list(resume["applied_norms"])
    for step in range(resume["steps_done"], cfg.steps):
        reset = maybe_reset_reference(policy, ref, step, cfg.ref_reset_every)
        if sampler_model is not policy and step > 0:
            sampler_model.load_state_dict(policy.state_dict())
        batch = []
        for _ in range(cfg.prompts_per_step):
            if not order:
                order = list(range(len(problems)))
                rng.shuffle(order)
            batch.append(problems[order.pop()])
        t0 = time.perf_counter()
        with sampling_precision():
            s = sample_responses(sampler_model, tokenizer, [p["prompt"] for p in batch],
                                 cfg.group_size, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                 cfg.prompt_style, gen, cfg.sample_batch_rows)
        t1 = time.perf_counter()
        parts = [[dict(reward_fn(t, p, step)) for t in texts] for texts, p in zip(s.texts, batch)]
        rewards_BG = torch.tensor([[r["total"] for r in group] for group in parts])
        adv_B = group_advantages(rewards_BG, scale=cfg.scale_advantages).reshape(-1)
        flat_prompts = [ids for ids in s.prompt_ids for _ in range(cfg.group_size)]
        flat_resp = [r if r else [tokenizer.eos_id] for group in s.response_ids for r in group]
        flat_lp = [lp if r else [0.0] for gr, gl in zip(s.response_ids, s.logprobs)
                   for r, lp in zip(gr, gl)]
        rows_kept = list(range(len(flat_resp)))
        if cfg.skip_equal_groups:
            informative_B = informative_groups(rewards_BG).repeat_interleave(cfg.group_size)
            rows_kept = informative_B.nonzero().flatten().tolist()
        if rows_kept:
            pick = lambda xs: [xs[i] for i in rows_kept]  # noqa: E731
            tokens_BT, mask_BT = rollout_batch(pick(flat_prompts), pick(flat_resp),
                                               tokenizer.pad_id)
            sampler_logp_BT = rollout_logprobs(pick(flat_prompts), pick(flat_lp),
                                               tokens_BT.shape[1])
            stats = grpo_step(policy, ref, opt, tokens_BT, mask_BT, adv_B[rows_kept], cfg,
                              sampler_logp_BT,
                              grad_spike_threshold(applied_norms, cfg.skip_grad_spike,
                                                   cfg.grad_clip))
            if not stats["skipped"]:
                applied_norms.append(stats["grad_norm"])
        else:  # every group's rewards equal: nothing to learn from this batch
            stats = dict(NO_UPDATE_STATS)
        flat_parts = [r for group in parts for r in group]
        row = {"step": step, "reward": rewards_BG.mean().item(),
               "reward_std": rewards_BG.std().item(),
               "informative_groups": informative_group_fraction(rewards_BG),
               **{f"reward_{k}": mean([r[k] for r in flat_parts])
                  for k in flat_parts[0] if k != "total"},
               "accuracy": mean([r.get("accuracy", 0.0) for r in flat_parts]),
               "kl": stats["kl"], "kl_max": stats["kl_max"], "skipped": stats["skipped"],
               "clip_fraction": stats["clip_fraction"],
               "sampler_kl": stats["sampler_kl"], "sampler_abs_gap": stats["sampler_abs_gap"],
               "is_weight": stats["is_weight"], "is_truncated": stats["is_truncated"],
               "ratio": stats["ratio"], "loss": stats["loss"], "grad_norm": stats["grad_norm"],
               "response_len": mean([len(r) for g in s.response_ids for r in g]),
               "finished": mean([float(f) for g in s.finished for f in g]),
               "update_rows": len(rows_kept), "ref_reset": reset, "sample_s": t1 - t0,
               "update_s": time.perf_counter() - t1}
        rows.append(row)
        if on_step:
            on_step(row)
        if saver is not None and step + 1 < cfg.steps:
            saver.after_step(step + 1, order, applied_norms, rows)
    return rows


def rule_reward(weights: Mapping[str, float], target_lang: str = "en") -> RewardFn:
    """R1's rule rewards: weights over accuracy / format / language (`stages.r1.rewards`)."""
    def reward(text: str, problem: Mapping, step: int) -> dict[str, float]:
        return combined_reward(text, problem, weights, target_lang)
    return reward


def preference_reward(rm: RewardModel, tok, weights: dict, start_step: int) -> RewardFn:
    """Rule rewards for verifiable problems; format + sigmoid(RM score of the answer) for
    preference prompts from start_step on. Every reward has the same parts."""
    rule = rule_reward(weights)

    def reward(text: str, problem, step: int) -> dict:
        if problem["task"] in VERIFIER_OF_TASK:
            return {**rule(text, problem, step), "preference": 0.0}
        fmt = format_reward(text, require_reasoning=False)  # replies with an empty CoT
        pref = 0.0
        if step >= start_step:
            answer = extract_answer(text) or text
            pref = float(torch.sigmoid(torch.tensor(
                rm.score_texts(tok, [problem["prompt"]], [answer])[0])))
        return {"accuracy": 0.0, "format": fmt, "language": language_consistency_reward(text),
                "preference": pref, "total": weights.get("format", 1.0) * fmt + pref}
    return reward


def preference_problems(pairs: Sequence[Mapping]) -> list[dict]:
    """Preference pairs' prompts as GRPO problems (no answer: `preference_reward` scores them
    with the reward model)."""
    return [{"id": r["id"], "task": r["task"], "prompt": r["prompt"], "answer": "", "meta": "{}"}
            for r in pairs]


def mix_in(pool: list[dict], extra: list[dict], share: float | None) -> list[dict]:
    """pool + extra, the extra rows repeated (each as often) so they make up about `share` of
    the result, at least once each; share None: once each. A draw of n rows from the result
    then holds ~share * n extra rows, however few they are next to the pool."""
    if share is None or not extra or not pool:
        return pool + extra
    if not 0.0 < share < 1.0:
        raise ValueError(f"mix_in: share must be in (0, 1), got {share}")
    repeats = max(1, round(share / (1.0 - share) * len(pool) / len(extra)))
    return pool + extra * repeats


def grpo_step_message(r: dict) -> str:
    """One GRPO step for the progress line: reward, accuracy, KL, gradient norm, length, time."""
    secs = r.get("sample_s", 0.0) + r.get("update_s", 0.0)
    return (f"reward {r['reward']:.3f} acc {r.get('accuracy', 0.0):.2f} kl {r.get('kl', 0.0):.3g} "
            f"gnorm {r.get('grad_norm', 0.0):.3g} len {r.get('response_len', 0.0):.0f} "
            f"informative {r.get('informative_groups', 0.0):.2f} {secs:.1f}s/step")

"""The losses of post-training: GRPO (DeepSeekMath §4.1 / R1), SFT with packing, Bradley-Terry.

Shape suffixes: B sequences (for GRPO: prompts x G outputs, flattened), G outputs per prompt,
T tokens, V vocab. Log-probs are per token, fp32. Masks are 1 on the tokens a loss covers.

GRPO, per output i of a group and token t of it:
    rho_t  = exp(logp_new - logp_old)
    KL_t   = exp(logp_ref - logp_new) - (logp_ref - logp_new) - 1          (k3 estimator, >= 0)
    L      = -mean_i (1/|o_i|) sum_t [ min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i) - beta KL_t ]
with A_i = (r_i - mean_group r) / (std_group r + eps).
"""
from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- GRPO


def group_advantages(rewards_BG: torch.Tensor, eps: float = 1e-6,
                     unbiased: bool = True, scale: bool = True) -> torch.Tensor:
    """A_BG = (r - mean_G r) / (std_G r + eps) within each group of G outputs of one prompt.

    `unbiased` uses the sample std (Bessel, as TRL and verl do); a group whose rewards are all
    equal gets advantage 0 everywhere (it carries no learning signal). scale=False leaves out
    the std (Dr. GRPO, Liu et al. 2025: the division up-weights nearly-solved and nearly-failed
    prompts, e.g. a lone wrong answer among 16 gets -3.75 instead of -0.94).
    """
    if rewards_BG.dim() != 2 or rewards_BG.shape[1] < 2:
        raise ValueError(f"group_advantages: rewards must be (B, G) with G >= 2, "
                         f"got {tuple(rewards_BG.shape)}")
    r = rewards_BG.float()
    mean_B1 = r.mean(dim=1, keepdim=True)
    if not scale:
        return r - mean_B1
    std_B1 = r.std(dim=1, keepdim=True, unbiased=unbiased)
    return (r - mean_B1) / (std_B1 + eps)


def informative_groups(rewards_BG: torch.Tensor) -> torch.Tensor:
    """informative_B: True for the groups whose G rewards are not all equal, the only ones
    that get a non-zero advantage."""
    r = rewards_BG.float()
    return r.amax(dim=1) > r.amin(dim=1)


def informative_group_fraction(rewards_BG: torch.Tensor) -> float:
    """Share of the B groups whose G rewards are not all equal (`informative_groups`). 0 means
    the step cannot move the policy (e.g. a base that never produces the answer format, so
    every sample scores 0)."""
    return float(informative_groups(rewards_BG).float().mean())


def k3_kl(logp_new: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi_new || pi_ref): exp(d) - d - 1 with d = ref - new (>= 0)."""
    d = logp_ref - logp_new
    return torch.exp(d) - d - 1.0


def token_logprobs(logits_BTV: torch.Tensor, tokens_BT: torch.Tensor) -> torch.Tensor:
    """logp_BT[b, t] = log softmax(logits_BTV[b, t])[tokens_BT[b, t]] in fp32.

    No shift here: pass logits[:, :-1] with tokens[:, 1:] for next-token log-probs.
    """
    logits = logits_BTV.float()
    picked_BT = logits.gather(-1, tokens_BT.long().unsqueeze(-1)).squeeze(-1)
    return picked_BT - torch.logsumexp(logits, dim=-1)


def _masked_sequence_mean(x_BT: torch.Tensor, mask_BT: torch.Tensor,
                          norm_tokens: float | None = None) -> torch.Tensor:
    """mean over sequences of (1/|o_i|) sum_t x * mask (norm_tokens given: 1/norm_tokens, the
    same constant for every sequence); sequences with an empty mask count 0."""
    m = mask_BT.to(x_BT.dtype)
    denom = m.sum(-1).clamp(min=1.0) if norm_tokens is None else norm_tokens
    per_seq_B = (x_BT * m).sum(-1) / denom
    return per_seq_B.mean()


def grpo_loss(logp_new_BT: torch.Tensor, logp_old_BT: torch.Tensor, logp_ref_BT: torch.Tensor,
              advantages_B: torch.Tensor, mask_BT: torch.Tensor, clip_eps: float = 0.2,
              beta: float = 0.04, is_weight_BT: torch.Tensor | None = None,
              norm_tokens: float | None = None,
              kl_clamp: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO loss (module docstring) -> (scalar loss, stats).

    logp_new_BT carries the gradient; logp_old_BT (the sampling policy) and logp_ref_BT are
    treated as constants. Token averaging is per sequence (1/|o_i|), then a mean over sequences.
    is_weight_BT (constant, optional) multiplies each token's clipped policy term, not the KL:
    the truncated importance weight of samples drawn from another model than pi_old
    (`truncated_is_weights`). norm_tokens (e.g. max new tokens) divides every sequence's token
    sum by that constant instead of by its own length (Dr. GRPO): tokens that a group's correct
    and wrong answers share then get exactly opposite pushes that cancel when the advantages sum
    to 0, where 1/|o_i| leaves them a push set by the length difference.
    kl_clamp > 0 caps each token's k3 value at kl_clamp (verl's `low_var_kl` caps it at 10): k3's
    gradient, 1 - exp(ref - new) per token, grows exponentially on a sampled token the
    reference finds far likelier than the policy does; past the cap such a token's KL term
    gives no gradient at all, so no single token can dominate an update.
    stats: 'clip_fraction' (share of masked tokens where the clipped term is the one taken, i.e.
    rho > 1+eps with A > 0 or rho < 1-eps with A < 0), 'kl' (mean k3 KL, averaged like the
    loss, before the cap), 'kl_max' (the largest token k3 under the mask, before the cap),
    'ratio' (mean rho over masked tokens), 'policy_objective' (the clipped term alone).
    """
    logp_old_BT, logp_ref_BT = logp_old_BT.detach(), logp_ref_BT.detach()
    A_B1 = advantages_B.detach().float().reshape(-1, 1)
    ratio_BT = torch.exp(logp_new_BT - logp_old_BT)
    unclipped_BT = ratio_BT * A_B1
    clipped_BT = torch.clamp(ratio_BT, 1.0 - clip_eps, 1.0 + clip_eps) * A_B1
    objective_BT = torch.minimum(unclipped_BT, clipped_BT)
    if is_weight_BT is not None:
        objective_BT = objective_BT * is_weight_BT.detach()
    kl_BT = k3_kl(logp_new_BT, logp_ref_BT)
    policy_objective = _masked_sequence_mean(objective_BT, mask_BT, norm_tokens)
    kl = _masked_sequence_mean(kl_BT, mask_BT, norm_tokens)
    kl_in_loss = (kl if kl_clamp <= 0 else
                  _masked_sequence_mean(kl_BT.clamp(max=kl_clamp), mask_BT, norm_tokens))
    loss = -(policy_objective - beta * kl_in_loss)
    with torch.no_grad():  # one host sync for all the stats
        m = mask_BT.bool()
        n = m.sum().clamp(min=1)
        is_clipped = clipped_BT < unclipped_BT
        values = torch.stack([((is_clipped & m).sum() / n).float(), kl.float(),
                              torch.where(m, kl_BT.detach(), 0.0).max().float()
                              if m.numel() else kl * 0,
                              (ratio_BT * m).sum().div(n).float(),
                              policy_objective.detach().float()]).tolist()
        stats = dict(zip(("clip_fraction", "kl", "kl_max", "ratio", "policy_objective"), values))
    return loss, stats


def truncated_is_weights(logp_old_BT: torch.Tensor, logp_sampler_BT: torch.Tensor,
                         cap: float) -> torch.Tensor:
    """Truncated importance sampling (TIS; Yao et al. 2025, "Your efficient RL framework
    secretly brings you off-policy RL training"): w_BT = min(pi_old / pi_sampler, cap) per
    token, a constant. When the rollouts come from a different numerical copy of the policy
    (a bf16 sampler, a KV-cache decode path, an MoE routing some tokens differently) the GRPO
    gradient is off-policy; w reweights it back to pi_old's samples, truncated at `cap` to bound
    the variance."""
    if cap <= 0:
        raise ValueError(f"truncated_is_weights: cap must be > 0, got {cap}")
    return torch.exp(logp_old_BT.detach().float() - logp_sampler_BT.float()).clamp(max=cap)


def make_reference_model(policy: nn.Module, ref: nn.Module | None = None) -> nn.Module:
    """A frozen, eval-mode copy of `policy` (into `ref` when given, else a deep copy)."""
    if ref is None:
        ref = copy.deepcopy(policy)
    else:
        ref.load_state_dict(policy.state_dict())
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def maybe_reset_reference(policy: nn.Module, ref: nn.Module, step: int, every: int) -> bool:
    """R1: reset the reference model to the policy every `every` steps (400 in R1).

    Copies the policy's state dict into `ref` when step > 0 and step % every == 0 (every <= 0
    never resets). Returns whether it reset.
    """
    if every <= 0 or step <= 0 or step % every:
        return False
    with torch.no_grad():
        ref.load_state_dict(policy.state_dict())
    return True


# ----------------------------------------------------------------------------- SFT


def sft_loss(logits_BTV: torch.Tensor, targets_BT: torch.Tensor,
             loss_mask_BT: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens where loss_mask_BT is 1 (response tokens).

    logits_BTV[b, t] predicts targets_BT[b, t] (already shifted, as PackedSFT gives them).
    """
    V = logits_BTV.shape[-1]
    ce_N = F.cross_entropy(logits_BTV.float().reshape(-1, V), targets_BT.reshape(-1).long(),
                           reduction="none")
    m_N = loss_mask_BT.reshape(-1).to(ce_N.dtype)
    return (ce_N * m_N).sum() / m_N.sum().clamp(min=1.0)


@dataclass
class PackedSFT:
    """Rows of packed prompt+response samples, T = seq_len.

    inputs_BT / targets_BT: the row and the row shifted by one (targets_BT[b, t] is the token
    after inputs_BT[b, t]); loss_mask_BT: 1 where targets_BT is a response token of the same
    sample as inputs_BT (never a prompt token, never across a sample boundary, never padding);
    position_ids_BT restart at 0 for each sample; segment_ids_BT number the samples of a row from
    1 (0 = padding). Packed samples can attend to each other when the model has no document
    mask (stages.moe_model has none); position/segment ids are for models that take them.
    """
    inputs_BT: torch.Tensor
    targets_BT: torch.Tensor
    loss_mask_BT: torch.Tensor
    position_ids_BT: torch.Tensor
    segment_ids_BT: torch.Tensor
    n_truncated: int = 0
    n_dropped: int = 0


def pack_sft_examples(examples: Sequence[tuple[Sequence[int], Sequence[int]]], seq_len: int,
                      pad_id: int) -> PackedSFT:
    """Pack (prompt_ids, response_ids) pairs into rows of seq_len (+1 for the shift) tokens.

    Best-fit decreasing (deterministic): longest samples first, each into the fullest row with
    room. A sample longer than seq_len + 1 keeps its prompt and a truncated response
    (n_truncated); one whose prompt alone leaves no response token is dropped (n_dropped).
    Put EOS at the end of each response yourself.
    """
    cap = seq_len + 1
    samples: list[tuple[list[int], int]] = []  # (tokens, prompt length)
    n_truncated = n_dropped = 0
    for prompt, response in examples:
        prompt, response = list(prompt), list(response)
        if not response or len(prompt) >= cap:
            n_dropped += 1
            continue
        if len(prompt) + len(response) > cap:
            response = response[:cap - len(prompt)]
            n_truncated += 1
        samples.append((prompt + response, len(prompt)))

    order = sorted(range(len(samples)), key=lambda i: (-len(samples[i][0]), i))
    rows: list[list[int]] = []                 # sample indices per row
    free: list[tuple[int, int]] = []           # sorted (room left, row index)
    for i in order:
        need = len(samples[i][0])
        j = bisect.bisect_left(free, (need, -1))
        if j < len(free):
            room, r = free.pop(j)
        else:
            room, r = cap, len(rows)
            rows.append([])
        rows[r].append(i)
        if room - need > 0:
            bisect.insort(free, (room - need, r))

    B = len(rows)
    row_BC = torch.full((B, cap), pad_id, dtype=torch.long)
    resp_BC = torch.zeros((B, cap), dtype=torch.bool)
    pos_BC = torch.zeros((B, cap), dtype=torch.long)
    seg_BC = torch.zeros((B, cap), dtype=torch.long)
    for b, members in enumerate(rows):
        at = 0
        for s, i in enumerate(members, start=1):
            toks, n_prompt = samples[i]
            n = len(toks)
            row_BC[b, at:at + n] = torch.tensor(toks, dtype=torch.long)
            resp_BC[b, at + n_prompt:at + n] = True
            pos_BC[b, at:at + n] = torch.arange(n)
            seg_BC[b, at:at + n] = s
            at += n
    same_sample_BT = (seg_BC[:, 1:] == seg_BC[:, :-1]) & (seg_BC[:, :-1] > 0)
    return PackedSFT(inputs_BT=row_BC[:, :-1], targets_BT=row_BC[:, 1:],
                     loss_mask_BT=(resp_BC[:, 1:] & same_sample_BT).float(),
                     position_ids_BT=pos_BC[:, :-1], segment_ids_BT=seg_BC[:, :-1],
                     n_truncated=n_truncated, n_dropped=n_dropped)


# ----------------------------------------------------------------------------- reward model


def bradley_terry_loss(r_chosen_B: torch.Tensor, r_rejected_B: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected) over the pairs (pairwise reward model)."""
    return -F.logsigmoid(r_chosen_B.float() - r_rejected_B.float()).mean()

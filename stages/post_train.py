"""Post-training loops of DeepSeek-R1 on plain torch (one process, CPU or one GPU): SFT, GRPO,
a Bradley-Terry reward model, rejection sampling and pass@1 evaluation.

Chat format (one turn; every tag is a single special token of `stages.tokenizer_train`):

    <|user|>{prompt}<|assistant|><think>\\n{reasoning}\\n</think>\\n<answer>{answer}</answer><|eos|>

The prompt part is `<|user|>{prompt}<|assistant|>` (`chat_prompt`); the response is the
`solution` text of a `stages.generators.reasoning_data` row followed by `<|eos|>`. R1-Zero skips the chat
tokens and uses the plain-text template `reasoning_data.r1_zero_prompt` (`prompt_style='r1_zero'`)
on the base model. A response ends at `<|eos|>` or a token of `PROMPT_STOPS[style]` (none by
default: R1-Zero rollouts are not cut at `</answer>` as vLLM-based setups often do, see the
constant). Generated responses are decoded with special tokens kept (the tags are what
`stages.rewards.format_reward` checks) and cut at `<|eos|>`.

Precision (the configs' `dtype`): on CUDA with 'bf16', forward passes run under bf16 autocast
over fp32 weights and AdamW (fused) updates the fp32 weights; sampling runs on a bf16 copy of
the model (`inference_model`), which the sampler's CUDA graphs need. On CPU everything is fp32,
whatever `dtype` says.

Shape suffixes: B rows, G samples per prompt, T positions, V vocab, D model width.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from . import grpo as G
from .moe_model import MoE, MoEConfig, MoETransformer, Router
from .pretrain import export_hf_folder
from .generators.reasoning_data import r1_zero_prompt
from .rewards import (extract_answer, extract_think, format_reward, language_consistency_reward,
                      verify_answer)
from .r1.config import LOSS_NORMS, SAMPLERS, SPIKE_HISTORY, GRPOConfig, RewardModelConfig, SFTConfig  # noqa: F401
from .rl_state import RunSaver, load_rl_state
from .sampler import generate
from .train_config import warmup_cosine

USER, ASSISTANT, EOS, PAD = "<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"
PROMPT_STYLES = ("chat", "r1_zero")
PROMPT_STOPS: dict[str, tuple[str, ...]] = {"chat": (), "r1_zero": ()}
"""Special tokens besides <|eos|> that end a sampled response, per prompt style. R1-Zero setups
on vLLM often stop at `</answer>` (`stop=["</answer>"], include_stop_str_in_output=True`); here
that did not help the format emerge from the `small` base (BENCHMARKS.md, eleventh session: one
full run's grpo_zero learned `</think>\n<answer>..</answer>` without the opening `<think>`,
collecting the accuracy reward without the format), so no style stops early by default;
`bench/grpo_ablation.py`'s `answer_stop` variants set ("</answer>",) for r1_zero."""

# ----------------------------------------------------------------------------- text <-> ids


SYSTEM = "<|system|>"


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """A conversation in our chat format: system -> `<|system|>{content}`, user ->
    `<|user|>{content}`, assistant -> `<|assistant|>{content}<|eos|>`; add_generation_prompt
    appends `<|assistant|>`. One user turn with the generation prompt is `chat_prompt`; a user
    and an assistant turn are an SFT example (prompt ids + response ids + EOS). Our models are
    trained on single user turns only: a system turn (the `<|system|>` special token, never in
    the training data) is defined so transformers' chat template has one; `CHAT_TEMPLATE` is
    this function in Jinja."""
    tags = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
    parts = []
    for m in messages:
        if m["role"] not in tags:
            raise ValueError(f"chat role {m['role']!r}; use one of {sorted(tags)}")
        parts.append(tags[m["role"]] + m["content"] + (EOS if m["role"] == "assistant" else ""))
    return "".join(parts) + (ASSISTANT if add_generation_prompt else "")


CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}" + SYSTEM + "{{ m['content'] }}"
    "{%- elif m['role'] == 'user' -%}" + USER + "{{ m['content'] }}"
    "{%- elif m['role'] == 'assistant' -%}" + ASSISTANT + "{{ m['content'] }}" + EOS +
    "{%- else -%}{{ raise_exception('chat role ' + m['role'] + '; use system, user or assistant') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}")
"""`render_chat` as a transformers chat template (tokenizer_config.json of an HF export)."""


def chat_prompt(prompt: str) -> str:
    """`<|user|>{prompt}<|assistant|>`: the part the model is conditioned on."""
    return f"{USER}{prompt}{ASSISTANT}"


def prompt_text(prompt: str, style: str) -> str:
    """The prompt as the model sees it: 'chat' (`chat_prompt`) or 'r1_zero' (plain template)."""
    if style == "chat":
        return chat_prompt(prompt)
    if style == "r1_zero":
        return r1_zero_prompt(prompt)
    raise ValueError(f"prompt style {style!r}; use one of {PROMPT_STYLES}")


class ChatTokenizer:
    """A `tokenizers.Tokenizer` with the chat format's special ids."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.eos_id = self._id(EOS)
        self.pad_id = self._id(PAD)

    def _id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise ValueError(f"tokenizer lacks the special token {token!r}; train it with "
                             f"stages.tokenizer_train.SPECIAL_TOKENS")
        return i

    @classmethod
    def from_file(cls, path: str | Path) -> "ChatTokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def stop_ids(self, style: str) -> list[int]:
        """Ids of `PROMPT_STOPS[style]`: where a response in that prompt style ends."""
        if style not in PROMPT_STOPS:
            raise ValueError(f"prompt style {style!r}; use one of {PROMPT_STYLES}")
        return [self._id(t) for t in PROMPT_STOPS[style]]

    def decode_response(self, ids: Sequence[int]) -> str:
        """Generated ids -> text up to (not including) the first EOS; tags kept."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        ids = [i for i in ids if i != self.pad_id]
        return self.tok.decode(ids, skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()


def shorten_solution(solution: str, max_think_lines: int | None) -> str:
    """Keep only the last `max_think_lines` lines of the `<think>` block (the answer block is
    untouched); 0/None keeps everything. A tiny-profile knob: a 2M-parameter model pretrained
    on 128-token rows learns the tag format from short renderings, not from 150-token ones."""
    if not max_think_lines:
        return solution
    m = re.match(r"<think>\n(.*)\n</think>\n(<answer>.*</answer>)\Z", solution, re.S)
    if not m:
        return solution
    lines = [ln for ln in m.group(1).split("\n") if ln.strip()][-int(max_think_lines):]
    return "<think>\n" + "\n".join(lines) + "\n</think>\n" + m.group(2)


def sft_pair(tok: ChatTokenizer, prompt: str, response: str,
             style: str = "chat") -> tuple[list[int], list[int]]:
    """(prompt ids, response ids + EOS) of one training example."""
    return tok.encode(prompt_text(prompt, style)), tok.encode(response) + [tok.eos_id]


# ----------------------------------------------------------------------------- models on disk


def load_policy(folder: str | Path, max_seq_len: int | None = None) -> MoETransformer:
    """MoETransformer from an HF-style folder (config.json + model.safetensors). `max_seq_len`
    widens the RoPE tables (buffers, not weights) so post-training can run longer sequences
    than pretraining did."""
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    names = {f.name for f in dataclasses.fields(MoEConfig)}
    cfg = MoEConfig(**{k: v for k, v in raw.items() if k in names})
    if max_seq_len:
        cfg = dataclasses.replace(cfg, max_seq_len=max(cfg.max_seq_len, int(max_seq_len)))
    model = MoETransformer(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return model


def save_policy(model: MoETransformer, tokenizer_json: str | Path, folder: str | Path) -> Path:
    """HF-style folder: config.json, model.safetensors, tokenizer.json (never pickles)."""
    return export_hf_folder(model, model.cfg, str(tokenizer_json), str(folder))


def dense_overrides(base: MoEConfig, **overrides) -> dict:
    """MoEConfig overrides that make `base` + `overrides` a dense model: every layer a dense
    FFN (n_dense_layers = n_layers), so no router or expert is ever built."""
    return {**overrides, "n_dense_layers": overrides.get("n_layers", base.n_layers)}


def autocast(device: torch.device, dtype: str, cache_enabled: bool = True):
    """bf16 autocast on CUDA when dtype == 'bf16'; a no-op elsewhere (CPU runs fp32).
    cache_enabled=False re-casts the weights at every op (what CUDA-graph capture needs)."""
    if device.type == "cuda" and dtype == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


def adamw(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW over the model's parameters; the fused kernel on CUDA."""
    cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                             fused=True if cuda else None)


def inference_model(model: nn.Module, dtype: str, copy_weights: bool = False) -> nn.Module:
    """The model to sample from: on CUDA with dtype 'bf16', the model cast to bf16 (a frozen
    copy when copy_weights, else the model itself, cast in place); otherwise the model."""
    if next(model.parameters()).device.type != "cuda" or dtype != "bf16":
        return model
    out = copy.deepcopy(model) if copy_weights else model
    out = out.to(torch.bfloat16).eval()
    if copy_weights:
        out.requires_grad_(False)
    return out


def sampling_generator(model: nn.Module, seed: int) -> torch.Generator:
    """A seeded generator on the model's device (torch.multinomial needs one on the device of
    the probabilities it samples)."""
    return torch.Generator(device=next(model.parameters()).device).manual_seed(seed)


def subset(rows: Sequence, n: int | None, seed: int) -> list:
    """n rows drawn without replacement by a seeded draw, in their original order (all rows when
    n is None/0 or >= len(rows)): a held-out subset that covers every task and level."""
    if not n or n >= len(rows):
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


def logits_of(model: nn.Module, idx_BT: torch.Tensor) -> torch.Tensor:
    """logits_BTV (fp32) of a model that returns logits or (logits, losses)."""
    out = model(idx_BT)
    return out[0] if isinstance(out, (tuple, list)) else out


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


# ----------------------------------------------------------------------------- SFT


@dataclass
class SFTBatch:
    """One example per row, right-padded: inputs_BT, targets_BT (shifted by one), loss_mask_BT
    (1 where the target is a response token, EOS included)."""
    inputs_BT: torch.Tensor
    targets_BT: torch.Tensor
    loss_mask_BT: torch.Tensor


def pad_sft_examples(examples: Sequence[tuple[Sequence[int], Sequence[int]]], seq_len: int,
                     pad_id: int) -> SFTBatch:
    """(prompt ids, response ids) -> one right-padded row per example, each starting at
    position 0 as at sampling time (the model has no position ids or segment masks, so packed
    rows would let examples attend to each other and shift their positions). Examples longer
    than seq_len + 1 keep the prompt and a cut response; those with no response token left are
    dropped."""
    cap = seq_len + 1
    seqs = []
    for prompt, response in examples:
        prompt, response = list(prompt), list(response)
        if not response or len(prompt) >= cap:
            continue
        toks = (prompt + response)[:cap]
        seqs.append((toks, len(prompt)))
    if not seqs:
        z = torch.zeros((0, 1), dtype=torch.long)
        return SFTBatch(z, z, z.float())
    T = max(len(t) for t, _ in seqs)
    row_BC = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    resp_BC = torch.zeros((len(seqs), T), dtype=torch.bool)
    for b, (toks, n_prompt) in enumerate(seqs):
        row_BC[b, :len(toks)] = torch.tensor(toks, dtype=torch.long)
        resp_BC[b, n_prompt:len(toks)] = True
    return SFTBatch(row_BC[:, :-1], row_BC[:, 1:], resp_BC[:, 1:].float())


def _trim(batch: SFTBatch, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows idx of a padded batch, cut to their longest real length."""
    mask = batch.loss_mask_BT[idx]
    nz = mask.sum(0).nonzero()
    T = int(nz.max()) + 1 if len(nz) else 1
    return batch.inputs_BT[idx][:, :T], batch.targets_BT[idx][:, :T], mask[:, :T]





def sft(model: nn.Module, examples: Sequence[tuple[Sequence[int], Sequence[int]]],
        tokenizer: ChatTokenizer, cfg: SFTConfig,
        on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Supervised fine-tuning on (prompt ids, response ids) pairs; loss on response tokens only.

    One example per row (`pad_sft_examples`: positions start at 0 as when sampling); each epoch
    visits the rows in a fresh order in batches of cfg.batch_rows; AdamW with a cosine lr over all
    steps. Returns one metrics row per step: step, epoch, loss, lr, tokens (response tokens).
    """
    packed = pad_sft_examples(examples, cfg.seq_len, tokenizer.pad_id)
    n_rows = packed.inputs_BT.shape[0]
    if n_rows == 0:
        raise ValueError("sft: no example left (empty responses or prompts "
                         f"longer than seq_len={cfg.seq_len})")
    device = next(model.parameters()).device
    batches_per_epoch = math.ceil(n_rows / cfg.batch_rows)
    total = cfg.epochs * batches_per_epoch
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    rows, step = [], 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(n_rows, generator=gen)
        for i in range(batches_per_epoch):
            idx = order[i * cfg.batch_rows:(i + 1) * cfg.batch_rows]
            lr = warmup_cosine(step, total, cfg.lr, cfg.min_lr, cfg.warmup_steps)
            _set_lr(opt, lr)
            opt.zero_grad(set_to_none=True)
            loss, n_tokens = sft_accumulate(model, packed, idx, cfg, device)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            row = {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "tokens": n_tokens}
            rows.append(row)
            if on_step:
                on_step(row)
            step += 1
    model.eval()
    return rows


def sft_accumulate(model: nn.Module, packed: SFTBatch, idx: torch.Tensor, cfg: SFTConfig,
                   device: torch.device) -> tuple[float, int]:
    """Backward of the mean response-token loss over the rows `idx`, in chunks of
    cfg.micro_batch_rows rows (0: one chunk); each chunk's token sum is divided by the whole
    batch's response-token count, so the accumulated gradient is the one-chunk gradient.
    Returns (that mean loss, response tokens)."""
    n_tokens = int(packed.loss_mask_BT[idx].sum())
    step_rows = cfg.micro_batch_rows if cfg.micro_batch_rows > 0 else len(idx)
    loss = torch.zeros((), device=device)
    for start in range(0, len(idx), step_rows):
        chunk = _trim(packed, idx[start:start + step_rows])
        share = float(chunk[2].sum()) / max(n_tokens, 1)  # host mask: no device sync
        inputs, targets, mask = (t.to(device) for t in chunk)
        with autocast(device, cfg.dtype):
            part = G.sft_loss(logits_of(model, inputs), targets, mask)
        (part * share).backward()
        loss += part.detach().float() * share
    return loss.item(), n_tokens


@torch.no_grad()
def response_loss(model: nn.Module, examples: Sequence[tuple[Sequence[int], Sequence[int]]],
                  tokenizer: ChatTokenizer, seq_len: int, batch_rows: int = 16,
                  dtype: str = "bf16") -> float:
    """Mean cross-entropy on the response tokens of `examples` (held-out SFT loss)."""
    packed = pad_sft_examples(examples, seq_len, tokenizer.pad_id)
    device = next(model.parameters()).device
    total = count = 0.0
    model.eval()
    for i in range(0, packed.inputs_BT.shape[0], batch_rows):
        inputs, targets, mask = (t.to(device) for t in
                                 _trim(packed, torch.arange(i, min(i + batch_rows,
                                                                   packed.inputs_BT.shape[0]))))
        with autocast(device, dtype):
            loss = G.sft_loss(logits_of(model, inputs), targets, mask)
        total += loss.item() * mask.sum().item()
        count += mask.sum().item()
    return total / max(count, 1.0)


# ----------------------------------------------------------------------------- sampling


@dataclass
class Samples:
    """G samples for each of P prompts: texts[p][g], token ids (without prompt, EOS kept),
    whether each finished with EOS, and the sampling model's log-prob of each response token
    (temperature 1, no top-p: `stages.sampler.Generation.logprobs_BN`)."""
    prompt_ids: list[list[int]]
    response_ids: list[list[list[int]]]
    texts: list[list[str]]
    finished: list[list[bool]]
    logprobs: list[list[list[float]]]


@torch.no_grad()
def sample_responses(model: nn.Module, tokenizer: ChatTokenizer, prompts: Sequence[str],
                     n: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     style: str = "chat", generator: torch.Generator | None = None,
                     batch_rows: int = 64) -> Samples:
    """n samples for each prompt (rendered in `style`), in `generate` calls of at most
    batch_rows rows. Rows go to the calls in order of prompt length: a call's decode steps are
    its longest prompt minus its shortest plus max_new_tokens (see `stages.sampler`)."""
    prompt_ids = [tokenizer.encode(prompt_text(p, style)) for p in prompts]
    stops = tokenizer.stop_ids(style)
    flat = [ids for ids in prompt_ids for _ in range(n)]
    order = sorted(range(len(flat)), key=lambda i: len(flat[i]))
    resp: list[list[int]] = [[] for _ in flat]
    fin = [False] * len(flat)
    lps: list[list[float]] = [[] for _ in flat]
    for i in range(0, len(order), batch_rows):
        rows = order[i:i + batch_rows]
        out = generate(model, [flat[r] for r in rows], max_new_tokens, tokenizer.eos_id,
                       pad_id=tokenizer.pad_id, temperature=temperature, top_p=top_p,
                       generator=generator, stop_ids=stops)
        tokens_BN, lengths_B = out.tokens_BN.cpu(), out.lengths_B.tolist()
        finished_B, logprobs_BN = out.finished_B.tolist(), out.logprobs_BN.float().cpu()
        for b, r in enumerate(rows):
            resp[r] = tokens_BN[b, :lengths_B[b]].tolist()
            lps[r] = logprobs_BN[b, :lengths_B[b]].tolist()
            fin[r] = bool(finished_B[b])
    texts = [tokenizer.decode_response(r) for r in resp]
    group = lambda xs: [xs[p * n:(p + 1) * n] for p in range(len(prompts))]  # noqa: E731
    return Samples(prompt_ids, group(resp), group(texts), group(fin), group(lps))


# ----------------------------------------------------------------------------- GRPO

RewardFn = Callable[[str, Mapping, int], Mapping[str, float]]
"""reward_fn(response text, problem row, step) -> {'total': r, part: value, …}"""





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
    return G.token_logprobs(logits_of(model, tokens_BT[:, :-1]), tokens_BT[:, 1:])


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
            w = (G.truncated_is_weights(old, sampler_chunks[c], cfg.sampler_is_cap)
                 if cfg.sampler_is_cap > 0 else None)
            if sampler_chunks and update == 0:
                diff = (sampler_chunks[c] - logp_new.detach().float()) * mask
                gaps = [diff.sum(), diff.abs().sum()]
                if w is not None:
                    gaps += [(w * mask).sum(), ((w >= cfg.sampler_is_cap) * mask).sum()]
                gap_sum[:len(gaps)] += torch.stack(gaps)
            part, st = G.grpo_loss(logp_new, old, logp_ref[c], adv, mask,
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


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


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

    Resume (`stages.rl_state`): with `state_dir`, a state saved there by an earlier call with the
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
    ref = G.make_reference_model(policy)
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
        reset = G.maybe_reset_reference(policy, ref, step, cfg.ref_reset_every)
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
        adv_B = G.group_advantages(rewards_BG, scale=cfg.scale_advantages).reshape(-1)
        flat_prompts = [ids for ids in s.prompt_ids for _ in range(cfg.group_size)]
        flat_resp = [r if r else [tokenizer.eos_id] for group in s.response_ids for r in group]
        flat_lp = [lp if r else [0.0] for gr, gl in zip(s.response_ids, s.logprobs)
                   for r, lp in zip(gr, gl)]
        rows_kept = list(range(len(flat_resp)))
        if cfg.skip_equal_groups:
            informative_B = G.informative_groups(rewards_BG).repeat_interleave(cfg.group_size)
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
               "informative_groups": G.informative_group_fraction(rewards_BG),
               **{f"reward_{k}": _mean([r[k] for r in flat_parts])
                  for k in flat_parts[0] if k != "total"},
               "accuracy": _mean([r.get("accuracy", 0.0) for r in flat_parts]),
               "kl": stats["kl"], "kl_max": stats["kl_max"], "skipped": stats["skipped"],
               "clip_fraction": stats["clip_fraction"],
               "sampler_kl": stats["sampler_kl"], "sampler_abs_gap": stats["sampler_abs_gap"],
               "is_weight": stats["is_weight"], "is_truncated": stats["is_truncated"],
               "ratio": stats["ratio"], "loss": stats["loss"], "grad_norm": stats["grad_norm"],
               "response_len": _mean([len(r) for g in s.response_ids for r in g]),
               "finished": _mean([float(f) for g in s.finished for f in g]),
               "update_rows": len(rows_kept), "ref_reset": reset, "sample_s": t1 - t0,
               "update_s": time.perf_counter() - t1}
        rows.append(row)
        if on_step:
            on_step(row)
        if saver is not None and step + 1 < cfg.steps:
            saver.after_step(step + 1, order, applied_norms, rows)
    return rows


def rule_reward(weights: Mapping[str, float], target_lang: str = "en") -> RewardFn:
    """R1's rule rewards: weights over accuracy / format / language (stages.rewards)."""
    from .rewards import combined_reward

    def reward(text: str, problem: Mapping, step: int) -> dict[str, float]:
        return combined_reward(text, problem, weights, target_lang)
    return reward


def preference_reward(rm: "RewardModel", tok, weights: dict, start_step: int) -> RewardFn:
    """Rule rewards for verifiable problems; format + sigmoid(RM score of the answer) for
    preference prompts from start_step on. Every reward has the same parts."""
    from .rewards import VERIFIER_OF_TASK
    rule = rule_reward(weights)

    def reward(text: str, problem, step: int) -> dict:
        if problem["task"] in VERIFIER_OF_TASK:
            return {**rule(text, problem, step), "preference": 0.0}
        fmt = format_reward(text)
        pref = 0.0
        if step >= start_step:
            answer = extract_answer(text) or text
            pref = float(torch.sigmoid(torch.tensor(
                rm.score_texts(tok, [problem["prompt"]], [answer])[0])))
        return {"accuracy": 0.0, "format": fmt, "language": language_consistency_reward(text),
                "preference": pref, "total": weights.get("format", 1.0) * fmt + pref}
    return reward


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


# ----------------------------------------------------------------------------- reward model


class RewardModel(nn.Module):
    """A scalar head on the base model's final-norm hidden state at each sequence's last token.

    forward(idx_BT, lengths_B) -> scores_B; the backbone is a MoETransformer (not modified: its
    blocks are run here up to the final norm, skipping the LM head)."""

    def __init__(self, backbone: MoETransformer):
        super().__init__()
        self.backbone = backbone
        self.score = nn.Linear(backbone.cfg.d_model, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def hidden_states(self, idx_BT: torch.Tensor) -> torch.Tensor:
        """h_BTD after the final RMSNorm."""
        m, T = self.backbone, idx_BT.shape[1]
        h_BTD = m.embed(idx_BT)
        cos_TR, sin_TR = m.rope_cos[:T], m.rope_sin[:T]
        for layer in m.layers:
            h_BTD, _ = layer(h_BTD, cos_TR, sin_TR, None)
        return m.norm(h_BTD)

    def forward(self, idx_BT: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
        """Scores of right-padded rows (moved to the model's device), scores_B fp32."""
        device = self.backbone.embed.weight.device
        idx_BT, lengths_B = idx_BT.to(device), lengths_B.to(device)
        h_BTD = self.hidden_states(idx_BT)
        last_BD = h_BTD[torch.arange(idx_BT.shape[0], device=device), lengths_B.long() - 1]
        return self.score(last_BD).squeeze(-1).float()

    @torch.no_grad()
    def score_texts(self, tokenizer: ChatTokenizer, prompts: Sequence[str],
                    responses: Sequence[str]) -> list[float]:
        """Scores of chat-format (prompt, response) pairs."""
        self.eval()
        pairs = [sft_pair(tokenizer, p, r) for p, r in zip(prompts, responses)]
        idx_BT, len_B = pad_right([p + r for p, r in pairs], tokenizer.pad_id,
                                  self.backbone.cfg.max_seq_len)
        return self(idx_BT, len_B).tolist()

    def save(self, tokenizer_json: str | Path, folder: str | Path) -> Path:
        """Backbone as an HF folder plus reward_head.safetensors."""
        out = save_policy(self.backbone, tokenizer_json, folder)
        save_file({"weight": self.score.weight.detach().contiguous(),
                   "bias": self.score.bias.detach().contiguous()},
                  str(Path(folder) / "reward_head.safetensors"))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "RewardModel":
        rm = cls(load_policy(folder))
        head = load_file(str(Path(folder) / "reward_head.safetensors"))
        rm.score.load_state_dict(head, strict=True)
        rm.eval()
        return rm


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int,
              max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences -> (idx_BT right-padded, lengths_B); each cut to its last max_len tokens."""
    if max_len:
        seqs = [list(s)[-max_len:] for s in seqs]
    T = max(len(s) for s in seqs)
    idx_BT = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        idx_BT[b, :len(s)] = torch.tensor(list(s), dtype=torch.long)
    return idx_BT, torch.tensor([len(s) for s in seqs])





def train_reward_model(rm: RewardModel, pairs: Sequence[Mapping], tokenizer: ChatTokenizer,
                       cfg: RewardModelConfig) -> list[dict]:
    """Bradley-Terry training on preference pairs {'prompt', 'chosen', 'rejected'}
    (chat format). Returns one row per step: step, epoch, loss, accuracy (chosen > rejected)."""
    if not pairs:
        raise ValueError("train_reward_model: no preference pairs")
    opt = adamw(rm, cfg.lr)
    rng = random.Random(cfg.seed)
    max_len = rm.backbone.cfg.max_seq_len
    rows, step = [], 0
    for epoch in range(cfg.epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for i in range(0, len(order), cfg.batch_pairs):
            batch = [pairs[j] for j in order[i:i + cfg.batch_pairs]]
            seqs = [sum(sft_pair(tokenizer, p["prompt"], p[side]), [])
                    for side in ("chosen", "rejected") for p in batch]
            idx_BT, len_B = pad_right(seqs, tokenizer.pad_id, max_len)
            rm.train()
            scores = rm(idx_BT, len_B)
            r_chosen, r_rejected = scores[:len(batch)], scores[len(batch):]
            loss = G.bradley_terry_loss(r_chosen, r_rejected)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rows.append({"step": step, "epoch": epoch, "loss": loss.item(),
                         "accuracy": (r_chosen > r_rejected).float().mean().item()})
            step += 1
    rm.eval()
    return rows


@torch.no_grad()
def preference_accuracy(rm: RewardModel, pairs: Sequence[Mapping],
                        tokenizer: ChatTokenizer) -> float:
    """Share of pairs whose chosen response scores above the rejected one."""
    if not pairs:
        return float("nan")
    chosen = rm.score_texts(tokenizer, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    rejected = rm.score_texts(tokenizer, [p["prompt"] for p in pairs],
                              [p["rejected"] for p in pairs])
    return _mean([float(c > r) for c, r in zip(chosen, rejected)])


# ----------------------------------------------------------------------------- rejection sampling

_CODE_BLOCK = "```"


def readable(text: str, max_paragraph_chars: int, target_lang: str = "en") -> bool:
    """R1's readability filter: format valid, a single language in the CoT (language
    consistency 1.0, or no words at all), no code block, no paragraph of the CoT longer than
    max_paragraph_chars."""
    if format_reward(text) != 1.0 or _CODE_BLOCK in text:
        return False
    think = extract_think(text) or ""
    if re.search(r"[^\W\d_]", think) and language_consistency_reward(text, target_lang) < 1.0:
        return False
    return all(len(par) <= max_paragraph_chars for par in re.split(r"\n\s*\n", think))


def is_correct(text: str, problem: Mapping) -> bool:
    """The single <answer> block verifies against the problem."""
    answer = extract_answer(text)
    return answer is not None and verify_answer(answer, problem)


def rejection_sample(model: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer,
                     n: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     max_paragraph_chars: int = 2000, seed: int = 0,
                     batch_rows: int = 64) -> tuple[list[dict], dict]:
    """n samples per problem (`generate` calls of at most batch_rows rows); keep the correct,
    readable (`readable`) ones, one per distinct response text per problem. Returns (kept rows
    {problem_id, task, prompt, response, sample_index, reward, response_tokens}, stats
    {sampled, correct, readable, kept, duplicates, problems_with_kept})."""
    gen = sampling_generator(model, seed)
    kept, stats = [], {"sampled": 0, "correct": 0, "readable": 0, "kept": 0, "duplicates": 0}
    covered = set()
    s = sample_responses(model, tokenizer, [p["prompt"] for p in problems], n, max_new_tokens,
                         temperature, top_p, "chat", gen, batch_rows)
    for p, texts, ids in zip(problems, s.texts, s.response_ids):
        seen = set()
        for g, text in enumerate(texts):
            stats["sampled"] += 1
            correct = is_correct(text, p)
            ok = readable(text, max_paragraph_chars)
            stats["correct"] += correct
            stats["readable"] += ok
            if not (correct and ok):
                continue
            key = " ".join(text.split())
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            covered.add(p["id"])
            kept.append({"problem_id": p["id"], "task": p["task"], "prompt": p["prompt"],
                         "response": text, "sample_index": g,
                         "reward": 1.0 + format_reward(text), "response_tokens": len(ids[g])})
    stats["kept"] = len(kept)
    stats["problems_with_kept"] = len(covered)
    return kept, stats


# ----------------------------------------------------------------------------- evaluation


def pass_at_1(correct_PK: Sequence[Sequence[bool]]) -> float:
    """pass@1 estimated from k samples per problem: mean over problems of (correct / k)."""
    if not correct_PK:
        return float("nan")
    return _mean([_mean([float(c) for c in row]) for row in correct_PK])


def pass_at_k(correct_P: Sequence[int], n: int, k: int) -> float:
    """Unbiased pass@k from n samples per problem (Chen et al. 2021, the Codex paper): the mean
    over problems of 1 - C(n - c, k) / C(n, k), c = correct samples of the problem: the chance
    that at least one of k samples drawn without replacement from the n is right. k <= n; nan
    without problems. A model's pass@k at large k is about as far as RL sharpens its pass@1
    without teaching it something new (Yue et al. 2025: RL-trained models rarely exceed their
    start's pass@k at large k)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if not correct_P:
        return float("nan")
    return _mean([1.0 - math.comb(n - c, k) / math.comb(n, k) for c in correct_P])


def pass_at_k_ladder(correct_P: Sequence[int], n: int) -> dict[str, float]:
    """{'1': pass@1, '2': pass@2, '4': ..., str(n): pass@n}: powers of two up to n, and n."""
    ks = sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})
    return {str(k): pass_at_k(correct_P, n, k) for k in ks}


def pass_rate_stderr(correct_P: Sequence[int], k: int) -> float:
    """Standard error of pass@1 over problems: sample std of the per-problem rates
    (correct_P[i] / k) / sqrt(P); nan with fewer than 2 problems. It covers the draw of problems
    and of the k samples, not retraining."""
    if len(correct_P) < 2:
        return float("nan")
    return statistics.stdev(c / k for c in correct_P) / math.sqrt(len(correct_P))


def paired_pass_difference(correct_a_P: Sequence[int], correct_b_P: Sequence[int],
                           k: int) -> tuple[float, float]:
    """pass@1(a) - pass@1(b) and its standard error, paired over the same problems: the std
    of the per-problem rate differences / sqrt(P) (tighter than combining two unpaired errors
    when both models find the same problems hard)."""
    if len(correct_a_P) != len(correct_b_P):
        raise ValueError(f"paired_pass_difference: {len(correct_a_P)} vs {len(correct_b_P)} "
                         f"problems")
    diffs = [a - b for a, b in zip(correct_a_P, correct_b_P)]
    return sum(diffs) / (k * max(len(diffs), 1)), pass_rate_stderr(diffs, k)


def evaluate(model: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer, k: int,
             temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 64,
             style: str = "chat", seed: int = 0, batch_rows: int = 64,
             n_wrong_examples: int = 4) -> dict:
    """R1's evaluation: k samples per problem at temperature/top_p (`generate` calls of at most
    batch_rows rows) -> {'pass@1', 'pass@1_stderr' (`pass_rate_stderr`), 'pass@k'
    ({k: unbiased pass@k} for k = 1, 2, 4, ..., k: `pass_at_k_ladder`), 'correct_per_problem'
    (correct samples of each problem, in order: for paired comparisons), 'format_rate',
    'mean_response_tokens', 'finished_rate',
    'per_task': {task: pass@1}, 'per_level': {'task/level': pass@1}, 'n_problems', 'k',
    'examples' (the first sample of the first 3 problems), 'wrong_examples' (up to
    n_wrong_examples {prompt, answer, response} whose first sample is wrong)}."""
    gen = sampling_generator(model, seed)
    s = sample_responses(model, tokenizer, [p["prompt"] for p in problems], k, max_new_tokens,
                         temperature, top_p, style, gen, batch_rows)
    correct = [[is_correct(t, p) for t in texts] for texts, p in zip(s.texts, problems)]
    by_task: dict[str, list] = {}
    by_level: dict[str, list] = {}
    wrong = []
    for p, texts, row in zip(problems, s.texts, correct):
        by_task.setdefault(p["task"], []).append(row)
        by_level.setdefault(f"{p['task']}/{p.get('level', 0)}", []).append(row)
        if not row[0] and len(wrong) < n_wrong_examples:
            wrong.append({"prompt": p["prompt"], "answer": p["answer"], "response": texts[0]})
    correct_P = [sum(row) for row in correct]
    return {"pass@1": pass_at_1(correct), "pass@1_stderr": pass_rate_stderr(correct_P, k),
            "pass@k": pass_at_k_ladder(correct_P, k), "correct_per_problem": correct_P,
            "format_rate": _mean([format_reward(t) for texts in s.texts for t in texts]),
            "mean_response_tokens": _mean([len(r) for g in s.response_ids for r in g]),
            "finished_rate": _mean([float(f) for g in s.finished for f in g]),
            "per_task": {t: pass_at_1(rows) for t, rows in sorted(by_task.items())},
            "per_level": {t: pass_at_1(rows) for t, rows in sorted(by_level.items())},
            "n_problems": len(problems), "k": k,
            "examples": [s.texts[i][0] for i in range(min(3, len(problems)))],
            "wrong_examples": wrong}


# ----------------------------------------------------------------------------- metrics files


def write_metrics(rows: Sequence[Mapping], path: str | Path) -> None:
    """One JSON object per line."""
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))

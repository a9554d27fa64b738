"""Post-training loops of DeepSeek-R1 on plain torch (one process, CPU or one GPU): SFT, GRPO,
a Bradley-Terry reward model, rejection sampling and pass@1 evaluation.

Chat format (one turn; every tag is a single special token of `stages.tokenizer_train`):

    <|user|>{prompt}<|assistant|><think>\\n{reasoning}\\n</think>\\n<answer>{answer}</answer><|eos|>

The prompt part is `<|user|>{prompt}<|assistant|>` (`chat_prompt`); the response is the
`solution` text of a `stages.reasoning_data` row followed by `<|eos|>`. R1-Zero skips the chat
tokens and uses the plain-text template `reasoning_data.r1_zero_prompt` (`prompt_style='r1_zero'`)
on the base model. Generated responses are decoded with special tokens kept (the tags are what
`stages.rewards.format_reward` checks) and cut at `<|eos|>`.

Shape suffixes: B rows, G samples per prompt, T positions, V vocab, D model width.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from . import grpo as G
from .moe_model import MoEConfig, MoETransformer
from .pretrain import export_hf_folder
from .reasoning_data import r1_zero_prompt
from .rewards import (extract_answer, extract_think, format_reward, language_consistency_reward,
                      verify_answer)
from .sampler import generate

USER, ASSISTANT, EOS, PAD = "<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"
PROMPT_STYLES = ("chat", "r1_zero")

# ----------------------------------------------------------------------------- text <-> ids


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


def dense_student(teacher_cfg: MoEConfig, **overrides) -> MoETransformer:
    """A dense (no MoE layer) student with the teacher's vocabulary and context length:
    n_dense_layers = n_layers; `overrides` set d_model, n_layers, … (fresh init)."""
    fields = {"vocab_size": teacher_cfg.vocab_size, "max_seq_len": teacher_cfg.max_seq_len,
              **overrides}
    fields["n_dense_layers"] = fields.get("n_layers", teacher_cfg.n_layers)
    return MoETransformer(dataclasses.replace(teacher_cfg, **fields))


def logits_of(model: nn.Module, idx_BT: torch.Tensor) -> torch.Tensor:
    """logits_BTV (fp32) of a model that returns logits or (logits, losses)."""
    out = model(idx_BT)
    return out[0] if isinstance(out, (tuple, list)) else out


def cosine_lr(step: int, total: int, lr: float, min_lr: float, warmup: int = 0) -> float:
    """Linear warmup over `warmup` steps, then cosine from lr to min_lr at `total`."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * frac))


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


@dataclass
class SFTConfig:
    epochs: int = 2
    batch_rows: int = 8          # packed rows per optimiser step
    seq_len: int = 256           # longest example (prompt + response) T
    lr: float = 1e-3
    min_lr: float = 1e-4         # cosine lr -> min_lr at the last step (R1: 5e-5 -> 5e-6)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0


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
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    rows, step = [], 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(n_rows, generator=gen)
        for i in range(batches_per_epoch):
            idx = order[i * cfg.batch_rows:(i + 1) * cfg.batch_rows]
            inputs, targets, mask = (t.to(device) for t in _trim(packed, idx))
            lr = cosine_lr(step, total, cfg.lr, cfg.min_lr, cfg.warmup_steps)
            _set_lr(opt, lr)
            loss = G.sft_loss(logits_of(model, inputs), targets, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            row = {"step": step, "epoch": epoch, "loss": loss.item(), "lr": lr,
                   "tokens": int(mask.sum().item())}
            rows.append(row)
            if on_step:
                on_step(row)
            step += 1
    model.eval()
    return rows


@torch.no_grad()
def response_loss(model: nn.Module, examples: Sequence[tuple[Sequence[int], Sequence[int]]],
                  tokenizer: ChatTokenizer, seq_len: int, batch_rows: int = 16) -> float:
    """Mean cross-entropy on the response tokens of `examples` (held-out SFT loss)."""
    packed = pad_sft_examples(examples, seq_len, tokenizer.pad_id)
    device = next(model.parameters()).device
    total = count = 0.0
    model.eval()
    for i in range(0, packed.inputs_BT.shape[0], batch_rows):
        inputs, targets, mask = (t.to(device) for t in
                                 _trim(packed, torch.arange(i, min(i + batch_rows,
                                                                   packed.inputs_BT.shape[0]))))
        loss = G.sft_loss(logits_of(model, inputs), targets, mask)
        total += loss.item() * mask.sum().item()
        count += mask.sum().item()
    return total / max(count, 1.0)


# ----------------------------------------------------------------------------- sampling


@dataclass
class Samples:
    """G samples for each of P prompts: texts[p][g], token ids (without prompt, EOS kept),
    whether each finished with EOS."""
    prompt_ids: list[list[int]]
    response_ids: list[list[list[int]]]
    texts: list[list[str]]
    finished: list[list[bool]]


@torch.no_grad()
def sample_responses(model: nn.Module, tokenizer: ChatTokenizer, prompts: Sequence[str],
                     n: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     style: str = "chat", generator: torch.Generator | None = None,
                     batch_rows: int = 64) -> Samples:
    """n samples for each prompt (rendered in `style`), in batches of at most batch_rows rows."""
    prompt_ids = [tokenizer.encode(prompt_text(p, style)) for p in prompts]
    flat = [ids for ids in prompt_ids for _ in range(n)]
    resp, fin = [], []
    for i in range(0, len(flat), batch_rows):
        out = generate(model, flat[i:i + batch_rows], max_new_tokens, tokenizer.eos_id,
                       pad_id=tokenizer.pad_id, temperature=temperature, top_p=top_p,
                       generator=generator)
        for b in range(out.tokens_BN.shape[0]):
            resp.append(out.tokens_BN[b, :int(out.lengths_B[b])].tolist())
            fin.append(bool(out.finished_B[b]))
    texts = [tokenizer.decode_response(r) for r in resp]
    group = lambda xs: [xs[p * n:(p + 1) * n] for p in range(len(prompts))]  # noqa: E731
    return Samples(prompt_ids, group(resp), group(texts), group(fin))


# ----------------------------------------------------------------------------- GRPO

RewardFn = Callable[[str, Mapping, int], Mapping[str, float]]
"""reward_fn(response text, problem row, step) -> {'total': r, part: value, …}"""


@dataclass
class GRPOConfig:
    steps: int = 20
    prompts_per_step: int = 4
    group_size: int = 4            # G
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 1e-4
    beta: float = 0.04             # KL weight (R1: 0.001)
    clip_eps: float = 0.2          # epsilon of the clipped ratio (R1: 10)
    updates_per_batch: int = 2     # mu: policy updates on one batch of rollouts
    ref_reset_every: int = 0       # reset the reference to the policy every N steps (R1: 400)
    grad_clip: float = 1.0
    prompt_style: str = "chat"
    seed: int = 0


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


def sequence_logprobs(model: nn.Module, tokens_BT: torch.Tensor) -> torch.Tensor:
    """logp_BT'[b, t] = log pi(tokens[b, t + 1] | tokens[b, :t + 1]), T' = T - 1."""
    return G.token_logprobs(logits_of(model, tokens_BT[:, :-1]), tokens_BT[:, 1:])


def grpo_step(policy: nn.Module, ref: nn.Module, opt: torch.optim.Optimizer,
              tokens_BT: torch.Tensor, mask_BT: torch.Tensor, advantages_B: torch.Tensor,
              cfg: GRPOConfig) -> dict[str, float]:
    """cfg.updates_per_batch policy updates on one batch of rollouts; the sampling policy's
    log-probs (pi_old) are taken before the first update. Returns the last update's loss stats
    with 'clip_fraction' averaged over the updates."""
    with torch.no_grad():
        policy.eval()
        logp_old = sequence_logprobs(policy, tokens_BT)
        logp_ref = sequence_logprobs(ref, tokens_BT)
    policy.train()
    clip_fracs, stats, loss = [], {}, None
    for _ in range(cfg.updates_per_batch):
        logp_new = sequence_logprobs(policy, tokens_BT)
        loss, stats = G.grpo_loss(logp_new, logp_old, logp_ref, advantages_B, mask_BT,
                                  clip_eps=cfg.clip_eps, beta=cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
        clip_fracs.append(stats["clip_fraction"])
    policy.eval()
    return {**stats, "loss": loss.item(), "clip_fraction": sum(clip_fracs) / len(clip_fracs)}


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


def grpo_train(policy: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer,
               cfg: GRPOConfig, reward_fn: RewardFn,
               on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """GRPO (DeepSeekMath §4.1, R1): each step draws cfg.prompts_per_step problems, samples G
    responses each from the policy, scores them with reward_fn, turns the rewards into group
    advantages and updates the policy with the clipped-ratio loss with beta * k3 KL to a frozen
    reference inside the loss; the reference is reset to the policy every cfg.ref_reset_every
    steps. Returns one row per step: reward (mean total), reward_<part> for every part,
    reward_std, accuracy, kl, clip_fraction, ratio, loss, response_len, finished, ref_reset."""
    if not problems:
        raise ValueError("grpo_train: no problems")
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ref = G.make_reference_model(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    order: list[int] = []
    rows = []
    for step in range(cfg.steps):
        reset = G.maybe_reset_reference(policy, ref, step, cfg.ref_reset_every)
        batch = []
        for _ in range(cfg.prompts_per_step):
            if not order:
                order = list(range(len(problems)))
                rng.shuffle(order)
            batch.append(problems[order.pop()])
        s = sample_responses(policy, tokenizer, [p["prompt"] for p in batch], cfg.group_size,
                             cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.prompt_style, gen)
        parts = [[dict(reward_fn(t, p, step)) for t in texts] for texts, p in zip(s.texts, batch)]
        rewards_BG = torch.tensor([[r["total"] for r in group] for group in parts])
        adv_B = G.group_advantages(rewards_BG).reshape(-1)
        flat_prompts = [ids for ids in s.prompt_ids for _ in range(cfg.group_size)]
        flat_resp = [r if r else [tokenizer.eos_id] for group in s.response_ids for r in group]
        tokens_BT, mask_BT = rollout_batch(flat_prompts, flat_resp, tokenizer.pad_id)
        stats = grpo_step(policy, ref, opt, tokens_BT, mask_BT, adv_B, cfg)
        flat_parts = [r for group in parts for r in group]
        row = {"step": step, "reward": rewards_BG.mean().item(),
               "reward_std": rewards_BG.std().item(),
               **{f"reward_{k}": _mean([r[k] for r in flat_parts])
                  for k in flat_parts[0] if k != "total"},
               "accuracy": _mean([r.get("accuracy", 0.0) for r in flat_parts]),
               "kl": stats["kl"], "clip_fraction": stats["clip_fraction"],
               "ratio": stats["ratio"], "loss": stats["loss"],
               "response_len": _mean([len(r) for g in s.response_ids for r in g]),
               "finished": _mean([float(f) for g in s.finished for f in g]),
               "ref_reset": reset}
        rows.append(row)
        if on_step:
            on_step(row)
    return rows


def rule_reward(weights: Mapping[str, float], target_lang: str = "en") -> RewardFn:
    """R1's rule rewards: weights over accuracy / format / language (stages.rewards)."""
    from .rewards import combined_reward

    def reward(text: str, problem: Mapping, step: int) -> dict[str, float]:
        return combined_reward(text, problem, weights, target_lang)
    return reward


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
        h_BTD = self.hidden_states(idx_BT)
        last_BD = h_BTD[torch.arange(idx_BT.shape[0]), lengths_B.long() - 1]
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


@dataclass
class RMConfig:
    epochs: int = 3
    batch_pairs: int = 8
    lr: float = 1e-4
    seed: int = 0


def train_reward_model(rm: RewardModel, pairs: Sequence[Mapping], tokenizer: ChatTokenizer,
                       cfg: RMConfig) -> list[dict]:
    """Bradley-Terry training on preference pairs {'prompt', 'chosen', 'rejected'}
    (chat format). Returns one row per step: step, epoch, loss, accuracy (chosen > rejected)."""
    if not pairs:
        raise ValueError("train_reward_model: no preference pairs")
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=0.0)
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
                     batch_prompts: int = 16) -> tuple[list[dict], dict]:
    """n samples per problem; keep the correct, readable (`readable`) ones, one per distinct
    response text per problem. Returns (kept rows {problem_id, task, prompt, response,
    sample_index, reward, response_tokens}, stats {sampled, correct, readable, kept,
    duplicates, problems_with_kept})."""
    gen = torch.Generator().manual_seed(seed)
    kept, stats = [], {"sampled": 0, "correct": 0, "readable": 0, "kept": 0, "duplicates": 0}
    covered = set()
    for i in range(0, len(problems), batch_prompts):
        batch = problems[i:i + batch_prompts]
        s = sample_responses(model, tokenizer, [p["prompt"] for p in batch], n, max_new_tokens,
                             temperature, top_p, "chat", gen)
        for p, texts, ids in zip(batch, s.texts, s.response_ids):
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
                             "reward": 1.0 + format_reward(text), "response_tokens": len(ids)})
    stats["kept"] = len(kept)
    stats["problems_with_kept"] = len(covered)
    return kept, stats


# ----------------------------------------------------------------------------- evaluation


def pass_at_1(correct_PK: Sequence[Sequence[bool]]) -> float:
    """pass@1 estimated from k samples per problem: mean over problems of (correct / k)."""
    if not correct_PK:
        return float("nan")
    return _mean([_mean([float(c) for c in row]) for row in correct_PK])


def evaluate(model: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer, k: int,
             temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 64,
             style: str = "chat", seed: int = 0) -> dict:
    """R1's evaluation: k samples per problem at temperature/top_p -> {'pass@1', 'format_rate',
    'mean_response_tokens', 'finished_rate', 'per_task': {task: pass@1}, 'n_problems', 'k'}."""
    gen = torch.Generator().manual_seed(seed)
    s = sample_responses(model, tokenizer, [p["prompt"] for p in problems], k, max_new_tokens,
                         temperature, top_p, style, gen)
    correct = [[is_correct(t, p) for t in texts] for texts, p in zip(s.texts, problems)]
    by_task: dict[str, list] = {}
    for p, row in zip(problems, correct):
        by_task.setdefault(p["task"], []).append(row)
    return {"pass@1": pass_at_1(correct),
            "format_rate": _mean([format_reward(t) for texts in s.texts for t in texts]),
            "mean_response_tokens": _mean([len(r) for g in s.response_ids for r in g]),
            "finished_rate": _mean([float(f) for g in s.finished for f in g]),
            "per_task": {t: pass_at_1(rows) for t, rows in sorted(by_task.items())},
            "n_problems": len(problems), "k": k,
            "examples": [s.texts[i][0] for i in range(min(3, len(problems)))]}


# ----------------------------------------------------------------------------- metrics files


def write_metrics(rows: Sequence[Mapping], path: str | Path) -> None:
    """One JSON object per line."""
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def plot_series(rows: Sequence[Mapping], keys: Sequence[str], png_path: str | Path,
                title: str = "") -> None:
    """One panel per key (x = 'step'); keys missing from the rows are skipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = [k for k in keys if rows and k in rows[0]]
    fig = Figure(figsize=(4 * max(1, len(keys)), 3.2), tight_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    steps = [r.get("step", i) for i, r in enumerate(rows)]
    for ax, key in zip(axes, keys):
        ax.plot(steps, [r[key] for r in rows])
        ax.set_title(f"{title} {key}".strip())
        ax.set_xlabel("step")
    fig.savefig(str(png_path), dpi=80)

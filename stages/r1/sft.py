"""Supervised fine-tuning on chat-format (prompt ids, response ids) pairs: loss on the response
tokens only, one example per row, AdamW with warmup + cosine lr (`train_config.warmup_cosine`),
gradients accumulated over micro-batches; the held-out response loss.

Shape suffixes: B rows, T positions."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from deeprecipe.stages.train_config import warmup_cosine

from .chat import ChatTokenizer
from .config import SFTConfig
from .grpo_loss import sft_loss
from .model_io import adamw, autocast, logits_of, set_lr


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
            set_lr(opt, lr)
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
            part = sft_loss(logits_of(model, inputs), targets, mask)
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
            loss = sft_loss(logits_of(model, inputs), targets, mask)
        total += loss.item() * mask.sum().item()
        count += mask.sum().item()
    return total / max(count, 1.0)


def sft_steps(cfg: SFTConfig, n_examples: int) -> int:
    """Optimiser steps of `sft` on n_examples rows: epochs x batches of cfg.batch_rows."""
    return cfg.epochs * -(-n_examples // cfg.batch_rows)


def sft_progress(bar) -> Callable[[dict], None]:
    """An on_step for `sft` that moves a progress bar (`update_to(n, message)`): step, epoch,
    loss, lr and response tokens per second."""
    t0 = [time.time()]

    def on_step(r: dict) -> None:
        now = time.time()
        tps = r["tokens"] / max(now - t0[0], 1e-9)
        t0[0] = now
        bar.update_to(r["step"] + 1, f"epoch {r['epoch']} loss {r['loss']:.4f} lr {r['lr']:.3g} "
                                     f"{tps:.0f} tok/s")
    return on_step

"""A Bradley-Terry reward model: a scalar head on the base model's last hidden state, trained
on (prompt, chosen, rejected) preference pairs in the chat format.

Shape suffixes: B rows, T positions, D model width."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from deeprecipe.stages.moe_model import MoETransformer
from deeprecipe.stages.training_io import export_hf_folder, load_model

from .chat import ChatTokenizer, sft_pair
from .config import RewardModelConfig
from .grpo_loss import bradley_terry_loss
from .model_io import adamw
from .rollout import mean


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
        out = export_hf_folder(self.backbone, self.backbone.cfg, tokenizer_json, folder)
        save_file({"weight": self.score.weight.detach().contiguous(),
                   "bias": self.score.bias.detach().contiguous()},
                  str(Path(folder) / "reward_head.safetensors"))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "RewardModel":
        rm = cls(load_model(folder))
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
            loss = bradley_terry_loss(r_chosen, r_rejected)
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
    return mean([float(c > r) for c, r in zip(chosen, rejected)])

"""Post-training models on disk and on device: loading a chat model from an HF-style folder
(`stages.training_io`), the torch set-up of a stage, dense student configs, precision and the
optimiser.

Precision (the configs' `dtype`): on CUDA with 'bf16', forward passes run under bf16 autocast
over fp32 weights and AdamW (fused) updates the fp32 weights; sampling runs on a bf16 copy of
the model (`inference_model`), which the sampler's CUDA graphs need. On CPU everything is fp32,
whatever `dtype` says.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from deeprecipe.stages.moe_model import MoEConfig, MoETransformer
from deeprecipe.stages.training_io import export_hf_folder, load_model, write_run_metrics

from .chat import ChatTokenizer


def setup_torch(threads: int | None, seed: int | None, device: str | None) -> torch.device:
    """Set torch's CPU threads (None: 1) and seed (None: 0); the device ('cpu', 'cuda'; None:
    cpu), checked to exist."""
    torch.set_num_threads(int(threads or 1))
    torch.manual_seed(int(seed or 0))
    device = device or "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no GPU; use --<Stage>-device cpu")
    if device == "cuda":  # fp32 matmuls outside autocast (reward model, samplers' fp32 ops)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(device)


def load_chat_model(folder: str | Path, max_seq_len: int | None,
                    device: torch.device) -> tuple[ChatTokenizer, MoETransformer]:
    """``(tokenizer, model on device)`` of a model folder (config.json, model.safetensors,
    tokenizer.json); `max_seq_len` as in `training_io.load_model`."""
    folder = Path(folder)
    tok = ChatTokenizer.from_file(folder / "tokenizer.json")
    return tok, load_model(folder, max_seq_len).to(device)


def save_chat_model(model: MoETransformer, tokenizer_json: str | Path, folder: str | Path,
                    rows: Sequence[Mapping], plot_keys: Sequence[str], title: str) -> Path:
    """The model (moved to CPU) as an HF-style folder (config.json, model.safetensors,
    tokenizer.json; `training_io.export_hf_folder`) with its training's metrics.jsonl and
    metrics.png (`training_io.write_run_metrics`)."""
    out = export_hf_folder(model.cpu(), model.cfg, tokenizer_json, folder)
    write_run_metrics(rows, out, plot_keys, title)
    return out


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


def logits_of(model: nn.Module, idx_BT: torch.Tensor) -> torch.Tensor:
    """logits_BTV (fp32) of a model that returns logits or (logits, losses)."""
    out = model(idx_BT)
    return out[0] if isinstance(out, (tuple, list)) else out


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for g in opt.param_groups:
        g["lr"] = lr

"""Pretraining's typed config and the one learning-rate schedule (linear warmup, cosine decay)
used by pretraining and post-training; no torch, so reading the DAG can build the config."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from deeprecipe.pipeline.config import option


@dataclass(frozen=True)
class TrainConfig:
    """Pretraining (`stages.pretrain.train`): optimiser, schedule, ZeRO, router bias,
    checkpoints."""
    steps: int = 1000                  # optimiser steps
    micro_batch: int = 8               # sequences per rank per micro-batch
    grad_accum: int = 1                # micro-batches per optimiser step
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 100
    weight_decay: float = 0.1          # only on >=2-D non-bias non-norm weights
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    zero_stage: int = 1                # 0, 1 or 2
    dtype: str = "bf16"                # 'fp32' | 'bf16' (bf16 only takes effect on CUDA)
    bias_update_speed: float | None = None  # gamma; None = model_cfg.bias_update_speed
    gamma_off_frac: float = 0.05       # gamma = 0 in the last fraction of steps
    # Short runs: start gamma at gamma_start and decay it geometrically to gamma over the first
    # gamma_decay_frac of the steps (None: constant gamma, V3's schedule).
    gamma_start: float | None = None
    gamma_decay_frac: float = 0.5
    checkpoint_every_steps: int | None = 500
    checkpoint_every_minutes: float | None = 10.0
    keep_checkpoints: int = 2
    # A collective (all-reduce, barrier) waiting longer than this fails its rank, so a hung peer
    # (dead host, SIGSTOP) ends the attempt and the launcher restarts the job (elastic restart).
    collective_timeout_s: float = 900.0
    log_every: int = 10                # log line (and nothing else) every N steps
    seed: int = 0
    compile: bool = False              # torch.compile the blocks and loss (compile_regions)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))  # frozen: normalise a list
        if self.zero_stage not in (0, 1, 2):
            raise ValueError(f"TrainConfig.zero_stage={self.zero_stage}: use 0, 1 or 2 (ZeRO-3 "
                             "checkpointing would need parameter gathering; not implemented)")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"TrainConfig.dtype={self.dtype!r}: use 'fp32' or 'bf16'")
        for name in ("steps", "micro_batch", "grad_accum", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 1")
        if self.collective_timeout_s <= 0:
            raise ValueError(f"TrainConfig.collective_timeout_s={self.collective_timeout_s} "
                             "must be > 0")
        if not 0 <= self.gamma_off_frac <= 1:
            raise ValueError(f"TrainConfig.gamma_off_frac={self.gamma_off_frac} not in [0, 1]")
        if not 0 < self.gamma_decay_frac <= 1:
            raise ValueError(f"TrainConfig.gamma_decay_frac={self.gamma_decay_frac} not in (0, 1]")
        if self.gamma_start is not None and self.gamma_start <= 0:
            raise ValueError(f"TrainConfig.gamma_start={self.gamma_start} must be > 0 (or None)")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig: need 0 <= min_lr ({self.min_lr}) <= lr ({self.lr})")


def warmup_cosine(step: int, total: int, peak: float, floor: float, warmup: int = 0) -> float:
    """The learning rate of optimiser step `step` (0-based): linear warmup to `peak` over
    `warmup` steps, then cosine from `peak` down to `floor` at step `total`. Pretraining uses it
    as a multiplier (peak 1, `lr_multiplier`), post-training as the lr itself."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def lr_multiplier(step: int, cfg: TrainConfig) -> float:
    """LR / cfg.lr used by optimiser step `step` (0-based): linear warmup over warmup_steps,
    then cosine from 1 down to min_lr/lr at step cfg.steps."""
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    return warmup_cosine(step, cfg.steps, 1.0, floor, cfg.warmup_steps)


@dataclass(frozen=True)
class PretrainConfig:
    """pretrain_moe's (and pretrain_student's) parameters."""
    model: str = option("MoE config name (stages/moe_model.MOE_CONFIGS)")
    model_overrides: dict = option("MoEConfig fields changed from the named config")
    gpus: int = option("0: CPU; N > 1: torchrun with N ranks (per host when hosts is set)")
    train: TrainConfig = option("TrainConfig fields")
    hosts: str = option("where the ranks run: '' = this machine; 'slurm' = every host of the "
                        "Slurm allocation the task runs in (SLURM_JOB_NODELIST); else a "
                        "hostfile path (one 'host [slots=N]' per line)", "")
    node_start: str = option("how each host's torchrun starts (stages.launch.NODE_STARTERS): "
                             "'ssh', 'srun', 'local' (this machine); '' = srun for "
                             "hosts='slurm', ssh for a hostfile", "")
    rdzv_port: int = option("c10d rendezvous port on the first host (0: a free port, one host "
                            "only)", 29400)
    max_restarts: int = option("times a failed or hung job restarts from its newest "
                               "checkpoint inside the task (torchrun --max-restarts; the "
                               "single-process run is re-run)", 3)

    def __post_init__(self):
        if self.max_restarts < 0:
            raise ValueError(f"PretrainConfig.max_restarts={self.max_restarts} must be >= 0")


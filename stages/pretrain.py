"""MoE pretraining on a real DeepSpeed engine: data, loop, metrics, safetensors checkpoints.

    tokens_NL (uint32, L = seq_len + 1) -> TokenSource (rank-sharded, resumable position)
      -> DeepSpeed engine (ZeRO 0/1/2, grad accumulation, clipping, AdamW, warmup+cosine)
      -> after every optimiser step: aux-loss-free router-bias update, loads summed over ranks
      -> metrics.jsonl + metrics.png, checkpoint-<step>/ (safetensors + JSON, never pickle)

Choices (see RECIPE.md, "MoE pretraining"):
- Process group: initialised here when no launcher did (gloo on CPU, nccl on CUDA, world size
  from RANK/WORLD_SIZE/LOCAL_RANK; MASTER_ADDR 127.0.0.1 and a free port when unset), then
  handed to DeepSpeed (`dist_init_required=False`).
- Optimiser: torch AdamW, two groups (weight decay on >=2-D weights that are neither biases nor
  norms; none elsewhere). LR: a torch LambdaLR given to `deepspeed.initialize`, stepped by
  `engine.step()` once per optimiser step: linear warmup to `lr`, cosine to `min_lr` at `steps`.
- Precision: bf16 (DeepSpeed's bf16 mode; it keeps fp32 buffers such as the router bias) on
  CUDA when `dtype='bf16'`; fp32 on CPU whatever `dtype` says.
- Grad norm: `engine.get_global_grad_norm()` (pre-clip; ZeRO and bf16 optimisers); for the plain
  fp32 ZeRO-0 path, where DeepSpeed does not keep it, the norm of the all-reduced grads before
  `engine.step()`.
- Checkpoint `checkpoint-<step:08d>/`: `model.safetensors` (module state, router biases are
  buffers in it), `config.json` (so `training_io.load_model` opens it), `trainer_state.json`
  (step, LR scheduler, data position, per-rank RNG states), and the optimiser as safetensors + a
  JSON index (`optimizer.json`: the state_dict's tree with tensors replaced by names, plus the
  param-group -> parameter-name mapping). Plain fp32 ZeRO-0 keeps one replicated torch AdamW:
  rank 0 writes `optimizer.safetensors`. ZeRO-1/2 and bf16 partition the optimiser: every rank
  writes its own `optimizer-rank{r}.safetensors` (its partition of Adam moments and fp32 master
  weights), so resuming needs the same world size and ZeRO stage (checked). Written into a
  temp folder, committed by rename, last `keep_checkpoints` kept. `out_dir` must be visible to
  all ranks (one host, or a shared file system).
- ZeRO-3 is refused (model and optimiser saving would need parameter gathering).
- `compile=True` applies `moe_model.compile_regions` before DeepSpeed wraps the model (GPU;
  H200, `small`, micro-batch 16 x 2048, ZeRO-1 bf16: ~149K tokens/s, MFU 21 % of 989 TFLOP/s).
- CLI: `python -m deeprecipe.stages.pretrain --model tiny --tokens shard.npy --out DIR --train '{json}'`,
  also as each rank of `deepspeed --num_gpus N --module deeprecipe.stages.pretrain ...` or `torchrun`.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.elastic.multiprocessing.errors import record

from deeprecipe.stages.launch import free_port
from deeprecipe.stages.moe_model import MoEConfig, MoETransformer, compile_regions, update_router_bias
from deeprecipe.stages.report import plot_pretrain_metrics
from deeprecipe.stages.train_config import TrainConfig, lr_multiplier
from deeprecipe.stages.training_io import (CHECKPOINT_PREFIX, TMP_PREFIX, checkpoint_dirs,
                                           commit_checkpoint, model_config_json, read_metrics,
                                           save_model_weights, tree_from_tensors, tree_to_tensors,
                                           write_json)

log = logging.getLogger(__name__)

PEAK_BF16_FLOPS_H100_H200 = 989e12   # dense BF16 datasheet peak per GPU (RECIPE.md)
FORMAT = "deeprecipe-pretrain-v1"
SUMMARY_FILE = "run-summary.json"   # rank 0's final metrics, written by `main` into --out
# Keys of DeepSpeed optimiser state_dicts that are Python objects, not data: the loss scaler
# (static 1.0 without fp16; on load DeepSpeed keeps its own) and the parameter slice map
# (rebuilt from the model on load). Everything else is tensors, numbers, strings and lists.
_DROPPED_OPTIMIZER_KEYS = ("loss_scaler", "param_slice_mappings")


# ----------------------------------------------------------------------------- router-bias schedule

def scheduled_gamma(step: int, steps: int, gamma: float, gamma_start: float | None = None,
                    decay_frac: float = 0.5, off_frac: float = 0.0) -> float:
    """Router-bias update speed after optimiser step `step` (1-based) of `steps`.

    V3: constant gamma, 0 in the last off_frac of the run. With gamma_start: geometric decay
    gamma_start -> gamma over the first decay_frac of the steps (a short run cannot wait for
    gamma = 1e-3 to move the biases; V3 had ~10^6 steps), then gamma."""
    if step > steps * (1 - off_frac):
        return 0.0
    if gamma_start is None or gamma <= 0:
        return gamma
    progress = min(1.0, step / max(1.0, steps * decay_frac))
    return gamma_start * (gamma / gamma_start) ** progress


def bias_gamma(step: int, model_cfg: MoEConfig, cfg: TrainConfig) -> float:
    """`scheduled_gamma` for a TrainConfig (gamma None = model_cfg.bias_update_speed)."""
    gamma = model_cfg.bias_update_speed if cfg.bias_update_speed is None else cfg.bias_update_speed
    return scheduled_gamma(step, cfg.steps, gamma, cfg.gamma_start, cfg.gamma_decay_frac,
                           cfg.gamma_off_frac)


# ----------------------------------------------------------------------------- data

class TokenSource:
    """Deterministic iteration over packed sequences `tokens_NL` (uint32, L = seq_len + 1).

    Epoch e visits the rows in a permutation seeded by (seed, e) (or in order without
    shuffle); rank r of W takes positions r, r+W, ... of it, N // W rows each (the tail is
    dropped so every rank takes the same count). `position` = (epoch, index), index = rows
    this rank has taken in the epoch; `state_dict`/`load_state_dict` save and restore it.
    """

    def __init__(self, tokens_NL: np.ndarray, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        if tokens_NL.ndim != 2 or tokens_NL.shape[1] < 2:
            raise ValueError(f"TokenSource wants (n_seqs, seq_len + 1) tokens, got shape "
                             f"{tokens_NL.shape}")
        if tokens_NL.shape[0] < world_size:
            raise ValueError(f"TokenSource: {tokens_NL.shape[0]} sequences < {world_size} ranks")
        if not 0 <= rank < world_size:
            raise ValueError(f"TokenSource: rank {rank} not in 0..{world_size - 1}")
        self.tokens_NL, self.seed, self.shuffle = tokens_NL, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.rows_per_rank = tokens_NL.shape[0] // world_size
        self.epoch, self.index = 0, 0
        self._rows = self._epoch_rows(0)

    @classmethod
    def from_npy(cls, paths: list[str], **kwargs) -> "TokenSource":
        """Token shards written by `tokenize_pack.write_npy_shard`, concatenated in order."""
        arrays = [np.load(p, mmap_mode="r") for p in paths]
        return cls(arrays[0] if len(arrays) == 1 else np.concatenate(arrays), **kwargs)

    @property
    def seq_len(self) -> int:
        return self.tokens_NL.shape[1] - 1

    def shard(self, rank: int, world_size: int) -> "TokenSource":
        """A fresh source over the same rows for `rank` of `world_size`, at position (0, 0)."""
        return TokenSource(self.tokens_NL, self.seed, self.shuffle, rank, world_size)

    def _epoch_rows(self, epoch: int) -> np.ndarray:
        n = self.tokens_NL.shape[0]
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        return order[self.rank::self.world_size][:self.rows_per_rank]

    def next_batch(self, batch_size: int) -> np.ndarray:
        """The next `batch_size` rows of this rank's shard as int64 (B, L); crosses epochs."""
        picked = []
        while len(picked) < batch_size:
            if self.index == self.rows_per_rank:
                self.epoch, self.index = self.epoch + 1, 0
                self._rows = self._epoch_rows(self.epoch)
            take = min(batch_size - len(picked), self.rows_per_rank - self.index)
            picked.extend(self._rows[self.index:self.index + take].tolist())
            self.index += take
        return np.asarray(self.tokens_NL[picked], dtype=np.int64)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed,
                "shuffle": self.shuffle, "n_seqs": int(self.tokens_NL.shape[0]),
                "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "shuffle", "n_seqs", "world_size"):
            if state[key] != mine[key]:
                raise ValueError(f"TokenSource: checkpoint has {key}={state[key]}, this run "
                                 f"{mine[key]}; resume with the same data and world size")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._rows = self._epoch_rows(self.epoch)


# ----------------------------------------------------------------------------- distributed

@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str


def init_distributed(timeout_s: float | None = None) -> DistContext:
    """Join (or create) the default process group: RANK/WORLD_SIZE/LOCAL_RANK from a launcher,
    else a world of one on 127.0.0.1 and a free port. nccl on CUDA, gloo on CPU. A collective
    that waits more than `timeout_s` seconds (None: torch's default) raises on that rank, so a
    hung peer ends the attempt. The group is left initialised: DeepSpeed caches sub-groups of
    it, so a later `train` in the same process must find the same group."""
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        for key, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"),
                             ("MASTER_ADDR", "127.0.0.1")):
            os.environ.setdefault(key, default)   # DeepSpeed reads these too
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if "MASTER_PORT" not in os.environ:
            if world > 1:
                raise RuntimeError("WORLD_SIZE > 1 but MASTER_PORT is not set; start the ranks "
                                   "with `deepspeed`/`torchrun` or set MASTER_ADDR/MASTER_PORT")
            os.environ["MASTER_PORT"] = str(free_port())
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                device_id=device if cuda else None,
                                timeout=timedelta(seconds=timeout_s) if timeout_s else None)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device,
                       dist.get_backend())


def set_collective_timeout(timeout_s: float) -> None:
    """Make every process group this rank belongs to wait at most `timeout_s` seconds in a
    collective: the default group, and those DeepSpeed creates with `new_group` (no timeout
    argument there, so they keep torch's 30-minute gloo default; its data-parallel all-reduce
    runs on one). Uses torch's `_set_pg_timeout` (torch >= 2.3; private API)."""
    from torch.distributed import distributed_c10d as c10d

    for group in list(c10d._world.pg_map):
        if not c10d._rank_not_in_group(group):
            c10d._set_pg_timeout(timedelta(seconds=timeout_s), group)


def _sum_over_ranks(t: torch.Tensor) -> None:
    """In-place SUM all-reduce (what `update_router_bias` expects), a no-op for one rank."""
    if dist.get_world_size() > 1:
        dist.all_reduce(t)


# ----------------------------------------------------------------------------- engine

def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on >=2-D weights that are not biases or norm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]  # e.g. "attn_norm"
        is_norm = "norm" in owner
        if p.dim() >= 2 and not name.endswith("bias") and not is_norm:
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def group_param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    """Parameter names of each optimiser group, in group order (the optimiser index map)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups]


def deepspeed_config(cfg: TrainConfig, world_size: int, bf16: bool) -> dict:
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": bf16},
        "steps_per_print": 1 << 62,
        "wall_clock_breakdown": False,
    }


def build_engine(model_cfg: MoEConfig, cfg: TrainConfig, ctx: DistContext):
    """(engine, lr scheduler, param names per optimiser group) for a freshly seeded model."""
    import deepspeed  # heavy import, only when training

    model = MoETransformer(model_cfg)
    if cfg.compile:
        compile_regions(model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  betas=cfg.betas, eps=cfg.eps)
    names = group_param_names(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, cfg))
    bf16 = cfg.dtype == "bf16" and ctx.device.type == "cuda"
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(cfg, ctx.world_size, bf16), dist_init_required=False)
    return engine, scheduler, names


def optimizer_is_replicated(engine) -> bool:
    """True for a plain torch optimiser (fp32 ZeRO-0: same state on every rank); False for
    DeepSpeed's partitioned ZeRO / bf16 optimisers."""
    return isinstance(engine.optimizer, torch.optim.Optimizer)


def grad_norm_before_step(engine) -> float | None:
    """2-norm of the (already all-reduced) grads; only for the replicated-optimiser path,
    where DeepSpeed does not record the norm. Call at the boundary, before engine.step()."""
    if not optimizer_is_replicated(engine):
        return None
    sq = [p.grad.float().pow(2).sum() for p in engine.module.parameters() if p.grad is not None]
    return torch.stack(sq).sum().sqrt().item() if sq else 0.0


# ----------------------------------------------------------------------------- RNG state

def _to_base64(byte_tensor: torch.Tensor) -> str:
    return base64.b64encode(byte_tensor.cpu().numpy().tobytes()).decode()


def _from_base64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_state() -> dict:
    """This process's python/numpy/torch(/cuda) RNG states as JSON (base64 for byte states)."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(py_state), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": _to_base64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_to_base64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_from_base64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_from_base64(s) for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- checkpoints

def optimizer_files(rank: int, replicated: bool) -> tuple[str, str]:
    stem = "optimizer" if replicated else f"optimizer-rank{rank}"
    return f"{stem}.safetensors", f"{stem}.json"


def save_optimizer(engine, names: list[list[str]], folder: Path, ctx: DistContext,
                   zero_stage: int) -> None:
    """The optimiser state_dict as safetensors + JSON index (one file from rank 0 when the
    state is replicated, else one per rank)."""
    replicated = optimizer_is_replicated(engine)
    if replicated and ctx.rank != 0:
        return
    state = {k: v for k, v in engine.optimizer.state_dict().items()
             if k not in _DROPPED_OPTIMIZER_KEYS}
    tensors: dict[str, torch.Tensor] = {}
    tree = tree_to_tensors(state, tensors)
    weights_name, index_name = optimizer_files(ctx.rank, replicated)
    save_file(tensors, str(folder / weights_name))
    write_json(folder / index_name, {
        "format": FORMAT, "kind": "torch" if replicated else type(engine.optimizer).__name__,
        "rank": ctx.rank, "world_size": ctx.world_size, "zero_stage": zero_stage,
        "param_groups": names, "tree": tree})


def load_optimizer(engine, names: list[list[str]], folder: Path, ctx: DistContext,
                   zero_stage: int) -> None:
    replicated = optimizer_is_replicated(engine)
    weights_name, index_name = optimizer_files(ctx.rank, replicated)
    if not (folder / index_name).exists():
        raise FileNotFoundError(f"{folder / index_name} missing: the checkpoint was written with "
                                "another ZeRO stage/dtype/world size; resume with the same ones")
    index = json.loads((folder / index_name).read_text())
    if (index["zero_stage"], index["param_groups"]) != (zero_stage, names) or (
            not replicated and index["world_size"] != ctx.world_size):
        raise ValueError(f"{folder / index_name}: saved with ZeRO-{index['zero_stage']}, world "
                         f"size {index['world_size']} and another parameter layout; resume with "
                         f"ZeRO-{zero_stage}, world size {ctx.world_size} needs the same ones")
    state = tree_from_tensors(index["tree"], load_file(str(folder / weights_name)))
    if replicated:
        engine.optimizer.load_state_dict(state)
    else:  # DeepSpeed reads only this rank's entry of the list (rigid, same world size)
        per_rank = [state if r == ctx.rank else None for r in range(ctx.world_size)]
        engine.optimizer.load_state_dict(per_rank, load_optimizer_states=True,
                                         load_from_fp32_weights=True)


def save_checkpoint(engine, scheduler, source: TokenSource, names, ctx: DistContext,
                    out_dir: Path, step: int, model_cfg: MoEConfig, cfg: TrainConfig,
                    extra: dict) -> Path:
    """Write checkpoint-<step>/ atomically (temp folder, then rename); keep the newest
    cfg.keep_checkpoints. Collective: every rank calls it."""
    final = out_dir / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = out_dir / f"{TMP_PREFIX}{final.name}"
    if ctx.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    save_optimizer(engine, names, tmp, ctx, cfg.zero_stage)
    rngs = [None] * ctx.world_size
    dist.all_gather_object(rngs, json.dumps(rng_state()))
    if ctx.rank == 0:
        save_model_weights(engine.module, tmp / "model.safetensors")
        write_json(tmp / "config.json", model_config_json(model_cfg))
        write_json(tmp / "trainer_state.json", {
            "format": FORMAT, "step": step, "world_size": ctx.world_size,
            "zero_stage": cfg.zero_stage, "lr_scheduler": scheduler.state_dict(),
            "data": source.state_dict(), "rng": [json.loads(s) for s in rngs],
            "train_config": asdict(cfg), **extra})
    dist.barrier()  # every shard is on disk before the commit
    if ctx.rank == 0:
        commit_checkpoint(tmp, final, cfg.keep_checkpoints)
    dist.barrier()
    return final


def load_checkpoint(engine, scheduler, source: TokenSource, names, ctx: DistContext,
                    folder: Path, cfg: TrainConfig) -> dict:
    """Restore model, optimiser, LR scheduler, engine counters, data position and this rank's
    RNG from `folder`; returns trainer_state.json."""
    state = json.loads((folder / "trainer_state.json").read_text())
    if state["world_size"] != ctx.world_size and not optimizer_is_replicated(engine):
        raise ValueError(f"{folder}: written by {state['world_size']} ranks, this run has "
                         f"{ctx.world_size}; partitioned optimiser state needs the same count")
    engine.module.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    load_optimizer(engine, names, folder, ctx, cfg.zero_stage)
    scheduler.load_state_dict(state["lr_scheduler"])
    step = state["step"]
    engine.global_steps = step
    engine.global_samples = step * engine.train_batch_size()
    engine.micro_steps = step * cfg.grad_accum
    source.load_state_dict(state["data"])
    set_rng_state(state["rng"][min(ctx.rank, len(state["rng"]) - 1)])
    return state


# ----------------------------------------------------------------------------- metrics

def router_biases(model: torch.nn.Module) -> dict[str, list[float]]:
    """{router module name: expert_bias as a list} for every MoE layer."""
    return {name: m.expert_bias.detach().float().cpu().tolist()
            for name, m in model.named_modules() if hasattr(m, "expert_bias")}


# ----------------------------------------------------------------------------- training

@dataclass
class _StepTotals:
    """Loss parts summed over micro-batches (this rank)."""
    parts: torch.Tensor | None = None

    KEYS = ("total", "lm", "aux", "z", "mtp")

    def add(self, losses: dict) -> None:
        v = torch.stack([losses[k].detach().float() for k in self.KEYS])
        self.parts = v if self.parts is None else self.parts + v

    def mean_over_ranks(self, n_micro: int, world: int) -> dict[str, float]:
        v = self.parts / n_micro
        if world > 1:
            dist.all_reduce(v)
            v = v / world
        return dict(zip(("loss", "lm", "aux", "z", "mtp"), v.tolist()))


def _checkpoint_due(step: int, cfg: TrainConfig, last_save: float, ctx: DistContext) -> bool:
    """Every cfg.checkpoint_every_steps, or when rank 0's clock says minutes have passed
    (broadcast, so all ranks agree)."""
    due = bool(cfg.checkpoint_every_steps) and step % cfg.checkpoint_every_steps == 0
    if cfg.checkpoint_every_minutes:
        flag = torch.tensor([float(time.time() - last_save >= 60 * cfg.checkpoint_every_minutes)],
                            device=ctx.device)
        if ctx.world_size > 1:
            dist.broadcast(flag, 0)
        due = due or bool(flag.item())
    return due


def train(model_cfg: MoEConfig, train_cfg: TrainConfig, data: TokenSource, out_dir: str,
          resume: bool = True, on_step: Callable[[dict], None] | None = None) -> dict:
    """Train `MoETransformer(model_cfg)` for train_cfg.steps optimiser steps on `data`.

    Works in a single process (creates a world-of-one process group) or as one rank under
    `deepspeed`/`torchrun`. Writes out_dir/metrics.jsonl (one row per step, rank 0),
    metrics.png and checkpoint-<step>/ folders; resume=True continues from the newest complete
    checkpoint. on_step(row) is called on every rank after each step (after any checkpoint).
    Returns the final metrics (last row plus run summary and this rank's router biases).
    """
    if data.seq_len > model_cfg.max_seq_len:
        raise ValueError(f"data seq_len {data.seq_len} > model max_seq_len "
                         f"{model_cfg.max_seq_len}; repack or raise max_seq_len")
    ctx = init_distributed(train_cfg.collective_timeout_s)
    return _train(model_cfg, train_cfg, data, Path(out_dir), resume, on_step, ctx)


def _train(model_cfg, cfg, data, out_dir, resume, on_step, ctx: DistContext) -> dict:
    if ctx.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        for tmp in out_dir.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(tmp, ignore_errors=True)   # debris of a run killed mid-save
    seed_everything(cfg.seed)
    t_build = time.time()
    if ctx.rank == 0:
        log.info("building the model and the DeepSpeed engine (world size %d, %s)",
                 ctx.world_size, ctx.device)
    engine, scheduler, names = build_engine(model_cfg, cfg, ctx)
    set_collective_timeout(cfg.collective_timeout_s)
    if ctx.rank == 0:
        log.info("engine ready in %.1f s: %d parameters", time.time() - t_build,
                 sum(p.numel() for p in engine.module.parameters()))
    source = data.shard(ctx.rank, ctx.world_size)
    start_step, resumed_from = 0, None
    latest = checkpoint_dirs(out_dir)[-1:] if resume else []
    dist.barrier()
    if latest:
        state = load_checkpoint(engine, scheduler, source, names, ctx, latest[0], cfg)
        start_step, resumed_from = state["step"], str(latest[0])
        if ctx.rank == 0:
            log.info("resumed from %s (step %d; launcher restart %s)", latest[0], start_step,
                     os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    metrics_path = out_dir / "metrics.jsonl"
    rows = read_metrics(metrics_path, start_step) if ctx.rank == 0 else []
    if ctx.rank == 0:
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokens_per_step = cfg.micro_batch * cfg.grad_accum * ctx.world_size * source.seq_len
    flops_per_token = engine.module.flops_per_token(source.seq_len)
    peak = PEAK_BF16_FLOPS_H100_H200 if ctx.device.type == "cuda" else None
    last_save, run_start = time.time(), time.time()
    row, ckpt = (rows[-1] if rows else None), (latest[0] if latest else None)
    if ctx.rank == 0 and start_step < cfg.steps:
        log.info("training steps %d..%d (%d tokens per step)", start_step + 1, cfg.steps,
                 tokens_per_step)
    for step in range(start_step + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        row = _train_step(engine, source, cfg, model_cfg, ctx, step, scheduler)
        dt = time.perf_counter() - t0
        tps = tokens_per_step / dt
        row.update(step_time_s=dt, tokens_per_s=tps, tokens_seen=step * tokens_per_step,
                   mfu=tps * flops_per_token / (peak * ctx.world_size) if peak else None,
                   epoch=source.epoch)
        if ctx.rank == 0:
            rows.append(row)
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if step % cfg.log_every == 0 or step in (start_step + 1, cfg.steps):
                log.info("step %d loss %.4f lr %.3g gnorm %.3g tok/s %.0f", step, row["loss"],
                         row["lr"], row["grad_norm"], tps)
        if step == cfg.steps or _checkpoint_due(step, cfg, last_save, ctx):
            ckpt = save_checkpoint(engine, scheduler, source, names, ctx, out_dir, step,
                                   model_cfg, cfg, {"tokens_seen": row["tokens_seen"]})
            last_save = time.time()
            if ctx.rank == 0:
                plot_pretrain_metrics(rows, out_dir / "metrics.png")
        if on_step is not None:
            on_step(row)
    final = dict(row or {})
    final.update(resumed_from=resumed_from, start_step=start_step, world_size=ctx.world_size,
                 restart_count=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
                 zero_stage=cfg.zero_stage, device=str(ctx.device),
                 dtype="bf16" if engine.bfloat16_enabled() else "fp32",
                 wall_s=time.time() - run_start, checkpoint=str(ckpt) if ckpt else None,
                 first_loss=rows[0]["loss"] if rows else None,
                 num_params=engine.module.num_params(),
                 active_params=engine.module.num_params(active_only=True),
                 flops_per_token=flops_per_token, router_bias=router_biases(engine.module))
    return final


def _train_step(engine, source: TokenSource, cfg: TrainConfig, model_cfg: MoEConfig,
                ctx: DistContext, step: int, scheduler) -> dict:
    """One optimiser step (grad_accum micro-batches), then the router-bias update."""
    lr = scheduler.get_last_lr()[0]
    totals, grad_norm = _StepTotals(), None
    for _ in range(cfg.grad_accum):
        rows = source.next_batch(cfg.micro_batch)
        if rows.max() >= model_cfg.vocab_size:
            raise ValueError(f"token id {rows.max()} in the data >= vocab_size "
                             f"{model_cfg.vocab_size}; tokenizer and model config disagree")
        batch = torch.from_numpy(rows).to(ctx.device, non_blocking=True)
        _, losses = engine(batch[:, :-1], batch[:, 1:], return_logits=False)
        engine.backward(losses["total"])
        if engine.is_gradient_accumulation_boundary():
            grad_norm = grad_norm_before_step(engine)
        engine.step()
        totals.add(losses)
    if engine.global_steps != step:
        raise RuntimeError(f"engine took {engine.global_steps} steps, expected {step}")
    ds_norm = engine.get_global_grad_norm()
    if ds_norm is not None:
        grad_norm = float(ds_norm)
    gamma = bias_gamma(step, model_cfg, cfg)
    loads = update_router_bias(engine.module, gamma, all_reduce=_sum_over_ranks)
    row = {"step": step, **totals.mean_over_ranks(cfg.grad_accum, ctx.world_size), "lr": lr,
           "grad_norm": grad_norm, "gamma": gamma,
           "expert_load": [{"layer": k, "max_over_mean": v} for k, v in loads.items()]}
    return row


# ----------------------------------------------------------------------------- CLI

@record  # under torchrun: this rank's traceback goes into the launcher's failure report
def main(argv: list[str] | None = None) -> dict:
    """`python -m deeprecipe.stages.pretrain --model tiny --tokens a.npy --out DIR [--train '{json}']`;
    also one rank under `deepspeed`/`torchrun` (which pass --local_rank / LOCAL_RANK)."""
    import argparse

    from deeprecipe.stages.moe_model import MOE_CONFIGS

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", default="tiny", choices=sorted(MOE_CONFIGS))
    ap.add_argument("--model-overrides", default="{}", help="JSON of MoEConfig fields")
    ap.add_argument("--train", default="{}", help="JSON of TrainConfig fields")
    ap.add_argument("--tokens", nargs="+", required=True, help=".npy shards (N, seq_len+1)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model_cfg = dataclasses.replace(MOE_CONFIGS[args.model], **json.loads(args.model_overrides))
    train_cfg = TrainConfig(**json.loads(args.train))
    data = TokenSource.from_npy(args.tokens, seed=train_cfg.seed)
    final = train(model_cfg, train_cfg, data, args.out, resume=not args.no_resume)
    if final.get("world_size") and int(os.environ.get("RANK", "0")) == 0:
        summary = json.dumps({k: v for k, v in final.items() if k != "router_bias"})
        tmp = Path(args.out) / f"{TMP_PREFIX}{SUMMARY_FILE}"
        tmp.write_text(summary)
        os.replace(tmp, Path(args.out) / SUMMARY_FILE)   # rank 0 may run on any host
        print(summary)
    return final


if __name__ == "__main__":
    main()


@torch.no_grad()
def validation_loss(model: MoETransformer, tokens_NL: np.ndarray, batch_size: int = 16,
                    max_batches: int = 20) -> float:
    """Mean next-token cross-entropy (nats/token) of `model` on packed rows (N, L+1), on the
    model's device: fp32 on CPU, bf16 autocast on CUDA (as in training)."""
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for i in range(0, min(len(tokens_NL), batch_size * max_batches), batch_size):
        rows = torch.as_tensor(np.asarray(tokens_NL[i:i + batch_size], dtype=np.int64), device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, parts = model(rows[:, :-1], rows[:, 1:])
        losses.append(float(parts["lm"]))
    return float(np.mean(losses)) if losses else float("nan")

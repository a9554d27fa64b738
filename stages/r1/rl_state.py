"""A GRPO run's resumable state on disk: safetensors for tensors, JSON for the rest (no pickles).

Each save is a folder checkpoint-<steps done> (the layout `stages.pretrain` uses) holding
policy.safetensors, reference.safetensors, optimizer.safetensors (AdamW moments, keyed
"<param index>.<name>"), generator.safetensors (the sampling generator's state) and state.json
(steps done, optimiser param groups, the problem-order RNG's state and the order left, the
spike guard's gradient-norm history, the metric rows so far). It is written into a temporary
folder and renamed into place, and only then are older saves removed
(`training_io.commit_checkpoint`), so a run killed while saving still finds the previous state
whole (`training_io.checkpoint_dirs`: the newest complete).
"""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from deeprecipe.stages.training_io import (CHECKPOINT_PREFIX, TMP_PREFIX, checkpoint_dirs,
                                           commit_checkpoint, cpu_tensors, save_model_weights)

STATE_JSON = "state.json"


def save_rl_state(folder: str | Path, *, steps_done: int, policy: nn.Module, ref: nn.Module,
                  opt: torch.optim.Optimizer, gen: torch.Generator, rng: random.Random,
                  order: list[int], applied_norms: list[float], rows: list[dict]) -> Path:
    """Write the state after `steps_done` steps to `folder`/checkpoint-<steps_done>, then remove
    the older ones; returns the new checkpoint folder."""
    final = Path(folder) / f"{CHECKPOINT_PREFIX}{steps_done:08d}"
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model_weights(policy, tmp / "policy.safetensors")
    save_model_weights(ref, tmp / "reference.safetensors")
    opt_state = opt.state_dict()
    moments = {f"{i}.{name}": (v if torch.is_tensor(v) else torch.tensor(float(v)))
               for i, per_param in opt_state["state"].items() for name, v in per_param.items()}
    save_file(cpu_tensors(moments), str(tmp / "optimizer.safetensors"))
    save_file({"state": gen.get_state()}, str(tmp / "generator.safetensors"))
    version, internal, gauss = rng.getstate()
    (tmp / STATE_JSON).write_text(json.dumps({
        "steps_done": steps_done, "param_groups": opt_state["param_groups"],
        "rng_state": [version, list(internal), gauss], "order": order,
        "applied_norms": applied_norms, "rows": rows}))
    commit_checkpoint(tmp, final, keep=1, marker=STATE_JSON)
    return final


def load_rl_state(folder: str | Path, *, policy: nn.Module, ref: nn.Module,
                  opt: torch.optim.Optimizer, gen: torch.Generator,
                  rng: random.Random) -> dict | None:
    """Restore a state written by `save_rl_state` into the given objects (built as the saved run
    built them); returns {"steps_done", "order", "applied_norms", "rows"}, or None when `folder`
    holds no complete state (the newest complete checkpoint is loaded)."""
    saved = checkpoint_dirs(folder, STATE_JSON)
    if not saved:
        return None
    folder = saved[-1]
    meta = json.loads((folder / STATE_JSON).read_text())
    policy.load_state_dict(load_file(str(folder / "policy.safetensors")), strict=True)
    ref.load_state_dict(load_file(str(folder / "reference.safetensors")), strict=True)
    per_param: dict[int, dict] = {}  # load_state_dict moves each moment to its param's device
    for key, v in load_file(str(folder / "optimizer.safetensors")).items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = v
    opt.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    gen.set_state(load_file(str(folder / "generator.safetensors"))["state"])
    version, internal, gauss = meta["rng_state"]
    rng.setstate((version, tuple(internal), gauss))
    return {k: meta[k] for k in ("steps_done", "order", "applied_norms", "rows")}


class RunSaver:
    """Saves a run's state (`save_rl_state`) after a step once `every_s` seconds have passed
    since the start or the last save; `objects` are save_rl_state's policy, ref, opt, gen, rng."""

    def __init__(self, folder: str | Path, every_s: float, **objects):
        self.folder, self.every_s, self.objects = folder, every_s, objects
        self.last = time.monotonic()

    def after_step(self, steps_done: int, order: list[int], applied_norms: list[float],
                   rows: list[dict]) -> bool:
        """Save if it is time; whether it saved."""
        if time.monotonic() - self.last < self.every_s:
            return False
        save_rl_state(self.folder, steps_done=steps_done, order=order,
                      applied_norms=applied_norms, rows=rows, **self.objects)
        self.last = time.monotonic()
        return True

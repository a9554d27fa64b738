"""A GRPO run's resumable state on disk: safetensors for tensors, JSON for the rest (no pickles).

A folder holds policy.safetensors, reference.safetensors, optimizer.safetensors (AdamW moments,
keyed "<param index>.<name>"), generator.safetensors (the sampling generator's state) and
state.json (steps done, optimiser param groups, the problem-order RNG's state and the order
left, the spike guard's gradient-norm history, the metric rows so far). It is written into a
sibling temporary folder and renamed into place, so a run killed while saving leaves the
previous state whole.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

STATE_JSON = "state.json"


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses views and tensors sharing memory)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_rl_state(folder: str | Path, *, steps_done: int, policy: nn.Module, ref: nn.Module,
                  opt: torch.optim.Optimizer, gen: torch.Generator, rng: random.Random,
                  order: list[int], applied_norms: list[float], rows: list[dict]) -> Path:
    """Write the state after `steps_done` steps to `folder` (replacing an older one)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_tensors(policy.state_dict()), str(tmp / "policy.safetensors"))
    save_file(_tensors(ref.state_dict()), str(tmp / "reference.safetensors"))
    opt_state = opt.state_dict()
    moments = {f"{i}.{name}": (v if torch.is_tensor(v) else torch.tensor(float(v)))
               for i, per_param in opt_state["state"].items() for name, v in per_param.items()}
    save_file(_tensors(moments), str(tmp / "optimizer.safetensors"))
    save_file({"state": gen.get_state()}, str(tmp / "generator.safetensors"))
    version, internal, gauss = rng.getstate()
    (tmp / STATE_JSON).write_text(json.dumps({
        "steps_done": steps_done, "param_groups": opt_state["param_groups"],
        "rng_state": [version, list(internal), gauss], "order": order,
        "applied_norms": applied_norms, "rows": rows}))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_rl_state(folder: str | Path, *, policy: nn.Module, ref: nn.Module,
                  opt: torch.optim.Optimizer, gen: torch.Generator,
                  rng: random.Random) -> dict | None:
    """Restore a state written by `save_rl_state` into the given objects (built as the saved run
    built them); returns {"steps_done", "order", "applied_norms", "rows"}, or None when `folder`
    holds no state."""
    folder = Path(folder)
    if not (folder / STATE_JSON).exists():
        return None
    meta = json.loads((folder / STATE_JSON).read_text())
    policy.load_state_dict(load_file(str(folder / "policy.safetensors")), strict=True)
    ref.load_state_dict(load_file(str(folder / "reference.safetensors")), strict=True)
    device = next(policy.parameters()).device
    per_param: dict[int, dict] = {}
    for key, v in load_file(str(folder / "optimizer.safetensors")).items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = v if name == "step" else v.to(device)
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

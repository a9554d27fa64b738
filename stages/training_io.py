"""Training plumbing shared by pretraining (`stages.pretrain`) and post-training
(`stages.r1`): model folders (config.json + model.safetensors + tokenizer.json), state trees as
safetensors + JSON (no pickles), checkpoint folders committed by one rename, metrics.jsonl.
The learning-rate schedule is `stages.train_config.warmup_cosine`."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file

from deeprecipe.stages.moe_model import MoEConfig, MoETransformer
from deeprecipe.stages.report import plot_series

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"


# ----------------------------------------------------------------------------- state trees

def tree_to_tensors(obj, tensors: dict[str, torch.Tensor], path: str = "s"):
    """A state_dict-like tree -> JSON-able skeleton; tensors move into `tensors` (CPU copies)
    under their tree path and are replaced by {"__tensor__": path}. Tuples and dicts with
    non-string keys are tagged so `tree_from_tensors` rebuilds them exactly."""
    if torch.is_tensor(obj):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(obj, Enum):
        return obj.value
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        items = [(k, tree_to_tensors(v, tensors, f"{path}.{k}")) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items)
        return {"__items__": [[k, v] for k, v in items]}
    if isinstance(obj, (list, tuple)):
        out = [tree_to_tensors(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    raise TypeError(f"cannot store {type(obj).__name__} at {path} as safetensors + JSON")


def tree_from_tensors(node, tensors: dict[str, torch.Tensor]):
    """Inverse of `tree_to_tensors`."""
    if isinstance(node, list):
        return [tree_from_tensors(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__tuple__" in node:
        return tuple(tree_from_tensors(v, tensors) for v in node["__tuple__"])
    if "__items__" in node:
        return {k: tree_from_tensors(v, tensors) for k, v in node["__items__"]}
    return {k: tree_from_tensors(v, tensors) for k, v in node.items()}


# ----------------------------------------------------------------------------- model folders

def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


def model_config_json(model_cfg: MoEConfig) -> dict:
    return {**asdict(model_cfg), "architectures": ["MoETransformer"],
            "model_type": "deeprecipe_moe"}


def cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One contiguous CPU copy of each tensor: what safetensors can write (ZeRO keeps params as
    views into shared flat buffers; safetensors refuses views and tensors sharing memory)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Module state (params and persistent buffers) as safetensors (`cpu_tensors`)."""
    save_file(cpu_tensors(model.state_dict()), str(path))


def export_hf_folder(model: MoETransformer, model_cfg: MoEConfig,
                     tokenizer_json: str | Path | None, folder: str | Path) -> Path:
    """`folder`/config.json (MoEConfig + architectures), model.safetensors, tokenizer.json."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", model_config_json(model_cfg))
    save_model_weights(model, out / "model.safetensors")
    if tokenizer_json is not None:
        shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    return out


def load_model(folder: str | Path, max_seq_len: int | None = None) -> MoETransformer:
    """MoETransformer from a folder with config.json + model.safetensors (an export or a
    checkpoint); weights load strictly, in the saved dtype's values. `max_seq_len` widens the
    RoPE tables (buffers, not weights) so post-training can run longer sequences than
    pretraining did."""
    folder_p = Path(folder)
    raw = json.loads((folder_p / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(MoEConfig)}
    cfg = MoEConfig(**{k: v for k, v in raw.items() if k in fields})
    if max_seq_len:
        cfg = dataclasses.replace(cfg, max_seq_len=max(cfg.max_seq_len, int(max_seq_len)))
    model = MoETransformer(cfg)
    model.load_state_dict(load_file(str(folder_p / "model.safetensors")), strict=True)
    return model


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_dirs(out_dir: str | Path, marker: str = "trainer_state.json") -> list[Path]:
    """Complete checkpoints (committed by rename, with their `marker` file), oldest first."""
    out = Path(out_dir)
    found = [p for p in out.glob(f"{CHECKPOINT_PREFIX}*")
             if p.is_dir() and (p / marker).exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def commit_checkpoint(tmp: Path, final: Path, keep: int,
                      marker: str = "trainer_state.json") -> None:
    """Put the finished temp folder `tmp` in place as `final` by one rename (a reader finds the
    old checkpoint or the new one whole, never part of one), then remove all but the newest
    `keep` complete checkpoints beside it (`checkpoint_dirs` with `marker`). A folder leaves
    by a rename to a temp name before it is deleted, so a process killed at any point leaves
    every `checkpoint-*` folder whole (temp folders are debris the next run removes)."""
    if final.exists():
        discard_folder(final)
    os.rename(tmp, final)
    for old in checkpoint_dirs(final.parent, marker)[:-keep]:
        discard_folder(old)


def discard_folder(folder: Path) -> None:
    """Rename `folder` to a TMP_PREFIX name beside it (one atomic step), then delete it."""
    doomed = folder.with_name(f"{TMP_PREFIX}old-{folder.name}")
    shutil.rmtree(doomed, ignore_errors=True)
    os.rename(folder, doomed)
    shutil.rmtree(doomed)


# ----------------------------------------------------------------------------- metrics files

def write_metrics(rows: Sequence[Mapping], path: str | Path) -> None:
    """One JSON object per line."""
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """Rows of metrics.jsonl with step <= up_to_step (a resumed run drops the rest)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= up_to_step]


def write_run_metrics(rows: Sequence[Mapping], folder: str | Path, plot_keys: Sequence[str],
                      title: str) -> None:
    """`folder`/metrics.jsonl (`write_metrics`) and metrics.png: one panel per key of
    `plot_keys` over the rows' steps (`stages.report.plot_series`)."""
    write_metrics(rows, Path(folder) / "metrics.jsonl")
    plot_series(rows, plot_keys, Path(folder) / "metrics.png", title)

"""Export of `small` (746M, MLA, MTP) as a transformers folder: seconds and size on disk.

    python bench/hf_export.py [--model small] [--dir /tmp/hf_export_bench] [--load]

Builds the model randomly initialised on CPU from MOE_CONFIGS, saves it as our checkpoint
folder (config.json + model.safetensors + tokenizer.json, as a model stage does), then times
`stages.hf_export.export_folder` (what `deeprecipe export` runs: load our folder, remap, write)
and, separately, `export_transformers` from the model in memory (what a stage runs after
training). Sizes: our model.safetensors vs the export's. --load: also time
`AutoModelForCausalLM.from_pretrained` on the export (targets: export <= 30 s, size <= 1.2x).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from deeprecipe.stages import hf_export, training_io
from deeprecipe.stages.moe_model import MOE_CONFIGS, MoETransformer
from deeprecipe.stages.tokenizer_train import train_tokenizer


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="small", choices=sorted(MOE_CONFIGS))
    ap.add_argument("--dir", default="/tmp/hf_export_bench")
    ap.add_argument("--load", action="store_true")
    args = ap.parse_args()
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cfg = MOE_CONFIGS[args.model]
    tok = train_tokenizer(["the cat sat on the mat, 1 2 3"] * 20, vocab_size=300)
    tok.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    t = time.perf_counter()
    model = MoETransformer(cfg)
    build_s = time.perf_counter() - t
    params = model.num_params()
    ckpt = root / "ours"
    t = time.perf_counter()
    training_io.export_hf_folder(model, cfg, root / "tokenizer.json", ckpt)
    save_s = time.perf_counter() - t

    t = time.perf_counter()
    hf_export.export_transformers(model, root / "tokenizer.json", root / "hf_in_memory")
    in_memory_s = time.perf_counter() - t
    shutil.rmtree(root / "hf_in_memory")
    del model
    t = time.perf_counter()
    manifest = hf_export.export_folder(ckpt, root / "hf")
    from_folder_s = time.perf_counter() - t
    ours_b = (ckpt / "model.safetensors").stat().st_size
    hf_b = (root / "hf" / "model.safetensors").stat().st_size
    res = {"model": args.model, "params": params,
           "build_s": round(build_s, 1), "our_save_s": round(save_s, 1),
           "export_in_memory_s": round(in_memory_s, 1),
           "export_from_folder_s": round(from_folder_s, 1),
           "checkpoint_bytes": ours_b, "export_weights_bytes": hf_b,
           "export_folder_bytes": folder_bytes(root / "hf"),
           "size_ratio": round(folder_bytes(root / "hf") / folder_bytes(ckpt), 3),
           "tensors": manifest["tensors"], "dropped_tensors": len(manifest["dropped"]),
           "model_type": manifest["model_type"]}
    if args.load:
        import transformers
        t = time.perf_counter()
        transformers.AutoModelForCausalLM.from_pretrained(root / "hf", dtype=torch.float32)
        res["transformers_load_s"] = round(time.perf_counter() - t, 1)
    print(json.dumps(res))
    shutil.rmtree(root, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()

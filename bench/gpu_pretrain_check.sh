#!/usr/bin/env bash
# One GPU call: the pretraining entry point (python -m deeprecipe.stages.pretrain: DeepSpeed
# ZeRO-1, bf16, compiled blocks, Triton MoE) on `small` for 60 steps of 32 x 2048 random tokens,
# then a resume from its checkpoint; prints the last logged tokens/s and MFU. Checks that the
# trainer runs on CUDA after a change, and its speed against BENCHMARKS.md's (36.9 % MFU of 989
# at 32 x 2048). Run through the device tool from the project root, carrying .whl:
#   bash bench/gpu_pretrain_check.sh
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD TORCH_CUDA_ARCH_LIST=9.0 || exit 1
OUT=${OUT:-bench_out}
mkdir -p "$OUT" /tmp/tok
python3 -c "
import numpy as np
rng = np.random.default_rng(0)
for i in range(2):
    np.save(f'/tmp/tok/train-{i:05d}.npy', rng.integers(0, 32768, (2048, 2049), dtype=np.int32))
"
TRAIN='{"steps": 60, "micro_batch": 32, "warmup_steps": 5, "zero_stage": 1, "dtype": "bf16",
        "compile": true, "log_every": 10, "checkpoint_every_steps": 30, "gamma_start": 0.03,
        "gamma_decay_frac": 1.0}'
timeout 420 python3 -m deeprecipe.stages.pretrain --model small --model-overrides '{"vocab_size": 32768}' \
  --train "$TRAIN" --tokens /tmp/tok/*.npy --out /tmp/run > "$OUT/pretrain.log" 2>&1
echo "pretrain rc=$?"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("/tmp/run/metrics.jsonl") if l.strip()]
for r in rows[-3:]:
    print({k: round(r[k], 4) if isinstance(r.get(k), float) else r.get(k)
           for k in ("step", "loss", "tokens_per_s", "mfu", "step_time_s")})
PY
tail -2 "$OUT/pretrain.log"
# resume: 10 more steps from the step-60 checkpoint (same out folder)
TRAIN2=$(echo "$TRAIN" | sed 's/"steps": 60/"steps": 70/')
timeout 150 python3 -m deeprecipe.stages.pretrain --model small --model-overrides '{"vocab_size": 32768}' \
  --train "$TRAIN2" --tokens /tmp/tok/*.npy --out /tmp/run > "$OUT/resume.log" 2>&1
echo "resume rc=$? $(tail -1 "$OUT/resume.log")"

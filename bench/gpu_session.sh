#!/usr/bin/env bash
# One GPU call that checks the tree on the GPU and measures the sampler's fused-weight reuse.
# Run through the device tool from the project root, carrying .whl (../shared/gpu/README.md):
#   bash bench/gpu_session.sh
# 1. GPU tests of the kernels, the sampler, the model and post-training (skipped on CPU in CI).
# 2. bench/sampler_gpu.py on `small` (bf16) at batch 64, 256, 1024: the Triton expert path's
#    [Wg | Wu] buffer rebuilt every call (DEEPRECIPE_MOE_WEIGHT_CACHE=0, the baseline) vs kept
#    while the weights do not change, in the same run.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD TORCH_CUDA_ARCH_LIST=9.0 || exit 1
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 230 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_sampler.py \
  tests/test_moe_model.py tests/test_post_train.py > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? $(tail -1 "$OUT/pytest.log")"
for batch in 256 64 1024; do
  for cache in 0 1; do
    extra=""; [ "$batch" != 256 ] && extra=--skip-recompute
    DEEPRECIPE_MOE_WEIGHT_CACHE=$cache timeout 120 python3 bench/sampler_gpu.py --batch "$batch" $extra \
      > "$OUT/sampler_b${batch}_cache${cache}.txt" 2>&1
    echo "batch $batch weight_cache=$cache rc=$?"
    grep -E "CUDA graphs|roofline:" "$OUT/sampler_b${batch}_cache${cache}.txt"
  done
done

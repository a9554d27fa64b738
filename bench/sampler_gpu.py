"""Sampler throughput on the GPU: batched generation with the KV cache vs recomputing the
whole sequence every step, DeepSeekMoE `small` in bf16, against the HBM roofline.

    python bench/sampler_gpu.py [--batch 256] [--prompt 64] [--new 256] [--hbm-tbs 4.8]

Roofline: a decode step must at least read every weight an active expert set touches (at batch
256 every routed expert is hit, so all weights) plus the KV cache once; tokens/s ≤ batch /
(bytes per step / HBM bandwidth)."""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from stages.moe_model import MOE_CONFIGS, MoETransformer
from stages.sampler import generate


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--hbm-tbs", type=float, default=4.8, help="HBM TB/s (H200 4.8, H100 3.35)")
    args = ap.parse_args()
    cfg = dataclasses.replace(MOE_CONFIGS["small"], max_seq_len=args.prompt + args.new + 8)
    torch.manual_seed(0)
    model = MoETransformer(cfg).cuda().to(torch.bfloat16)
    g = torch.Generator(device="cpu").manual_seed(0)
    prompts = torch.randint(0, cfg.vocab_size, (args.batch, args.prompt), generator=g).tolist()
    run = lambda cache, n: generate(model, prompts, n, eos_id=None, temperature=0.0, use_cache=cache)  # noqa: E731
    run(True, 4), run(False, 4)  # warm-up (kernels, autotune)
    t_cache, out_cache = timed(lambda: run(True, args.new))
    t_nocache, out_nocache = timed(lambda: run(False, args.new))
    same = bool((out_cache.tokens_BN == out_nocache.tokens_BN).float().mean() > 0.99)
    new_tokens = args.batch * args.new
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # MLA caches the latent + rope key per layer; approximate with the MHA-free formula below
    kv_per_token = cfg.n_layers * (getattr(cfg, "kv_lora_rank", 0) + getattr(cfg, "qk_rope_head_dim", 0)) * 2
    mean_ctx = args.prompt + args.new / 2
    bytes_per_step = weight_bytes + args.batch * mean_ctx * kv_per_token
    roofline_tps = args.batch / (bytes_per_step / (args.hbm_tbs * 1e12))
    tps_cache, tps_nocache = new_tokens / t_cache, new_tokens / t_nocache
    print(f"model: small ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, bf16), "
          f"batch {args.batch}, prompt {args.prompt}, new {args.new}, greedy; "
          f"cached == no-cache tokens: {same}")
    print("| path | seconds | new tokens/s | vs no-cache | % of HBM roofline |")
    print("|---|---:|---:|---:|---:|")
    print(f"| KV cache | {t_cache:.2f} | {tps_cache:,.0f} | {tps_cache / tps_nocache:.1f}x | "
          f"{100 * tps_cache / roofline_tps:.1f} % |")
    print(f"| no cache (full recompute) | {t_nocache:.2f} | {tps_nocache:,.0f} | 1.0x | "
          f"{100 * tps_nocache / roofline_tps:.1f} % |")
    print(f"roofline: {roofline_tps:,.0f} tokens/s ({bytes_per_step / 1e9:.2f} GB per step at {args.hbm_tbs} TB/s)")


if __name__ == "__main__":
    main()

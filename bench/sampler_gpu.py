"""Sampler throughput: batched generation with the KV cache (CUDA graphs and eager) vs recomputing
the whole sequence every step, DeepSeekMoE `small` in bf16 on a GPU, against the HBM roofline.

    python bench/sampler_gpu.py [--config small|tiny] [--device cuda|cpu] [--dtype bf16|fp32]
                                [--batch 256] [--prompt 64] [--new 256] [--hbm-tbs 4.8]
    python bench/sampler_gpu.py --smoke   # tiny config, CPU, fp32, seconds: checks the logic

Roofline: a one-token decode step must at least read every weight it uses once (the embedding
only for its B rows; the routed experts that B*top_k picks hit, in expectation; not the MTP
block) plus each row's cached KV once (MLA: the latent c_kv + the shared RoPE key per layer;
MHA: K and V), in the model's dtype; tokens/s <= batch / (bytes per step / HBM bandwidth), at
the mean context of the decode steps. The timed runs include the prefill (and graph captures).
Greedy agreement: the share of generated tokens equal to the no-cache path's, and the mean
length of a row's equal prefix. A random model's logits are full of near-ties (on `small`,
the median top-1/top-2 gap is ~0.1), so in bf16 one flipped argmax (~8 % of steps, about as
often as bf16 vs fp32 of the same full forward) makes the rest of the row differ: a low agreement
is expected there; fp32 agrees (tests/test_sampler.py; ~99.9 % on `small` on an H200).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from deeprecipe.stages.moe_model import MOE_CONFIGS, MoE, MoETransformer
from deeprecipe.stages.r1.sampler import generate

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def timed(fn, device: torch.device) -> tuple[float, object]:
    """(seconds, fn()) with the device drained before and after."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def kv_bytes_per_position(cfg, elt: int) -> int:
    """Cached bytes per token over all layers: MLA c_kv + RoPE key, MHA K + V."""
    if cfg.attention == "mla":
        per_layer = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    else:
        per_layer = 2 * cfg.n_heads * cfg.head_dim
    return cfg.n_layers * per_layer * elt


def weight_bytes_per_step(model: MoETransformer, batch: int) -> float:
    """Weight bytes a decode step of `batch` rows reads at least once (see module docstring)."""
    cfg = model.cfg
    hit = 1 - (1 - cfg.top_k / cfg.n_routed_experts) ** batch  # P(an expert is picked)
    routed = {id(p) for m in model.modules() if isinstance(m, MoE)
              for p in (m.w_gate_EDF, m.w_up_EDF, m.w_down_EFD)}
    skip = {id(p) for p in model.mtp.parameters()} if model.mtp is not None else set()
    skip.add(id(model.embed.weight))
    total = batch * cfg.d_model * model.embed.weight.element_size()
    for p in model.parameters():
        if id(p) not in skip:
            total += p.numel() * p.element_size() * (hit if id(p) in routed else 1.0)
    return total


def agreement(a_BN: torch.Tensor, b_BN: torch.Tensor) -> tuple[float, float]:
    """(share of equal tokens, mean length of the equal prefix of a row in tokens)."""
    same_BN = a_BN == b_BN
    prefix_B = same_BN.long().cumprod(1).sum(1)
    return same_BN.float().mean().item(), prefix_B.float().mean().item()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(MOE_CONFIGS), default="small")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                    help="weights' dtype (default bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--hbm-tbs", type=float, default=4.8, help="HBM TB/s (H200 4.8, H100 3.35)")
    ap.add_argument("--skip-recompute", action="store_true",
                    help="leave out the no-cache path (slow at large batches): no agreement column")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny config on CPU in fp32, batch 4, prompt 8, 8 new tokens")
    args = ap.parse_args()
    if args.smoke:
        args.config, args.device, args.dtype = "tiny", "cpu", "fp32"
        args.batch, args.prompt, args.new = 4, 8, 8
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: steadier timings on a shared CPU
    cfg = dataclasses.replace(MOE_CONFIGS[args.config], max_seq_len=args.prompt + args.new + 8)
    torch.manual_seed(0)
    model = MoETransformer(cfg).to(device=device, dtype=DTYPES[args.dtype]).eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    prompts = torch.randint(0, cfg.vocab_size, (args.batch, args.prompt), generator=g).tolist()

    def run(n: int, **kw):
        return generate(model, prompts, n, eos_id=None, temperature=0.0, **kw)

    paths = {"KV cache, eager": dict(cuda_graph=False)}
    if not args.skip_recompute:
        paths["no cache (full recompute)"] = dict(use_cache=False)
    if device.type == "cuda":
        paths = {"KV cache + CUDA graphs": dict(cuda_graph=True), **paths}
    results = {}
    for name, kw in paths.items():
        run(min(4, args.new), **kw)  # warm-up: kernels, Triton autotuning
        results[name] = timed(lambda: run(args.new, **kw), device)

    B, P, N = args.batch, args.prompt, args.new
    elt = next(model.parameters()).element_size()
    mean_ctx = P + N / 2  # decode steps attend to P+1 .. P+N-1 positions
    w_bytes = weight_bytes_per_step(model, B)
    kv_bytes = B * mean_ctx * kv_bytes_per_position(cfg, elt)
    bw = args.hbm_tbs * 1e12
    roofline_tps = B / ((w_bytes + kv_bytes) / bw)
    t_ref, ref = results.get("no cache (full recompute)", (None, None))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.config} ({n_params / 1e6:.1f}M params, {cfg.attention.upper()}, "
          f"{args.dtype}) on {device.type}, batch {B}, prompt {P}, new {N}, greedy")
    print("| path | seconds | new tokens/s | vs no-cache | % of HBM roofline | "
          "greedy agreement | equal prefix |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (t, out) in results.items():
        tps = B * N / t
        if ref is None:
            vs, same_s, prefix_s = "-", "-", "-"
        else:
            same, prefix = agreement(out.tokens_BN, ref.tokens_BN)
            vs, same_s, prefix_s = f"{t_ref / t:.1f}x", f"{100 * same:.1f} %", f"{prefix:.1f} tokens"
        print(f"| {name} | {t:.2f} | {tps:,.0f} | {vs} | "
              f"{100 * tps / roofline_tps:.1f} % | {same_s} | {prefix_s} |")
    print(f"roofline: {roofline_tps:,.0f} tokens/s = {B} rows per "
          f"{(w_bytes + kv_bytes) / bw * 1e3:.3f} ms step ({w_bytes / 1e9:.3f} GB weights + "
          f"{kv_bytes / 1e9:.3f} GB KV cache at mean context {mean_ctx:.0f}, {args.hbm_tbs} TB/s)")


if __name__ == "__main__":
    main()

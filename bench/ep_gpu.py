"""Expert parallelism on GPUs (NCCL, Triton experts): correctness against one rank, step time
and memory of EP against plain data parallelism, and all-to-all bandwidth.

    torchrun --standalone --nproc_per_node 2 bench/ep_gpu.py --out DIR
    torchrun --standalone --nproc_per_node 2 bench/ep_gpu.py --out DIR --smoke   # CPU, gloo

1. check: a small model (64 experts, top-6, MTP) in bf16 autocast; EP = world vs the same
   model on rank 0 over the global batch: loss and gradient errors, balanced and skewed routing
   (router bias +10 on experts 0-5: every token goes to EP rank 0).
2. step: `MOE_CONFIGS["small"]`, micro-batch B x T per GPU, eager, forward + backward +
   gradient averaging (no optimiser): ms/step and peak GiB, EP = 1 (every GPU holds every
   expert, all grads all-reduced) and EP = world.
3. a2a: all_to_all_single of the per-layer dispatch size (B*T*top_k rows of d_model bf16):
   ms and bytes each GPU sends to others per second.
Rank 0 writes DIR/ep_gpu.json. --smoke runs the same logic on CPU ranks (gloo, the reference
experts, `tiny`, a few tokens, fp32): for checking the script, not for numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import torch
import torch.distributed as dist

from deeprecipe.stages.expert_parallel import (expert_mesh, gather_experts, reduce_gradients,
                                               shard_experts)
from deeprecipe.stages.moe_model import MOE_CONFIGS, MoEConfig, MoETransformer


def build(cfg: MoEConfig, dev, skewed=False, seed=0) -> MoETransformer:
    torch.manual_seed(seed)
    model = MoETransformer(cfg).to(dev).train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("router.weight"):
                p.normal_(0.0, 0.3)
        if skewed:
            for name, b in model.named_buffers():
                if name.endswith("expert_bias"):
                    b[:cfg.top_k] = 10.0
    return model


def tokens(cfg, B, T, dev, step=0):
    g = torch.Generator().manual_seed(1000 + step)
    seq = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    return seq[:, :-1].to(dev), seq[:, 1:].to(dev)


def fwd_bwd(model, idx, tgt):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=idx.is_cuda):
        _, losses = model(idx, tgt, return_logits=False)
    losses["total"].backward()
    return losses["total"].detach()


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12)).item()


def check(dev, rank, world, skewed):
    cfg = MoEConfig(vocab_size=4096, d_model=256, n_layers=3, n_heads=4, head_dim=64,
                    n_dense_layers=1, d_ff_dense=1024, n_shared_experts=1, n_routed_experts=64,
                    top_k=6, d_ff_expert=128, max_seq_len=256, mtp_depth=1,
                    moe_backend="triton" if dev.type == "cuda" else "reference")
    B, T = 4 * world, 256 if dev.type == "cuda" else 16
    idx, tgt = tokens(cfg, B, T, dev)
    mesh = expert_mesh(world, dev.type)
    model = shard_experts(build(cfg, dev, skewed), mesh)
    n = B // world
    loss = fwd_bwd(model, idx[rank * n:(rank + 1) * n], tgt[rank * n:(rank + 1) * n])
    reduce_gradients(model, mesh)
    dist.all_reduce(loss)
    grads = gather_experts(model, {k: p.grad for k, p in model.named_parameters()})
    if rank != 0:
        return None
    ref = build(cfg, dev, skewed)
    ref_loss = fwd_bwd(ref, idx, tgt)
    errs = {k: rel_err(grads[k], p.grad) for k, p in ref.named_parameters()}
    experts = [k for k in errs if k.endswith(("w_gate_EDF", "w_up_EDF", "w_down_EFD"))]
    return {"skewed": skewed, "loss_ep": (loss / world).item(), "loss_one_rank": ref_loss.item(),
            "max_grad_rel_err_experts": max(errs[k] for k in experts),
            "max_grad_rel_err_other": max(v for k, v in errs.items() if k not in experts),
            "worst_param": max(errs, key=errs.get)}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def step_time(dev, rank, world, ep, B, T, steps=6, warm=3):
    cuda = dev.type == "cuda"
    cfg = dataclasses.replace(MOE_CONFIGS["small" if cuda else "tiny"],
                              moe_backend="triton" if cuda else "reference")
    mesh = expert_mesh(ep, dev.type)
    model = shard_experts(build(cfg, dev), mesh)
    idx, tgt = tokens(cfg, B, T, dev, step=rank)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(warm + steps):
        if i == warm:
            sync(dev)
            dist.barrier()
            t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        fwd_bwd(model, idx, tgt)
        reduce_gradients(model, mesh)
    sync(dev)
    ms = (time.perf_counter() - t0) / steps * 1e3
    local_params = sum(p.numel() for p in model.parameters())
    out = {"ep": ep, "B": B, "T": T, "ms_per_step": ms, "tokens_per_s_per_gpu": B * T / ms * 1e3,
           "peak_GiB": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None,
           "params_per_gpu": local_params}
    return out


def a2a(dev, world, rows, D, reps=10):
    x = torch.randn(rows, D, device=dev, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    for _ in range(3):
        dist.all_to_all_single(y, x)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        dist.all_to_all_single(y, x)
    sync(dev)
    s = (time.perf_counter() - t0) / reps
    sent = x.numel() * 2 * (world - 1) / world  # bytes leaving this GPU
    return {"rows": rows, "D": D, "ms": s * 1e3, "GB_per_s_out_per_gpu": sent / s / 1e9}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--T", type=int, default=2048)
    ap.add_argument("--smoke", action="store_true", help="CPU ranks, gloo, tiny sizes")
    args = ap.parse_args()
    if args.smoke:
        dev = torch.device("cpu")
        args.B, args.T = 2, 32
        dist.init_process_group("gloo")
    else:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    rank, world = dist.get_rank(), dist.get_world_size()
    res = {"world": world, "torch": torch.__version__,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    res["check"] = [check(dev, rank, world, s) for s in (False, True)]
    res["step"] = [step_time(dev, rank, world, ep, args.B, args.T) for ep in (1, world)]
    small = MOE_CONFIGS["small"]
    res["a2a"] = a2a(dev, world, args.B * args.T * small.top_k, small.d_model)
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "ep_gpu.json"), "w") as f:
            json.dump(res, f, indent=1)
        print(json.dumps(res, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

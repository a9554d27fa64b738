"""GPU benchmark of the DeepSeekMoE `small` config: MoE backends side by side, MFU, and the
aux-loss-free vs aux-loss balancing ablation. One script, one run, <= ~8 minutes on an H200.

    PYTHONUNBUFFERED=1 python bench/moe_gpu.py --out "$OUT"          # on the GPU
    python bench/moe_gpu.py --smoke --out /tmp/moe_smoke               # CPU check of the logic

Parts (all by default; --parts picks some):
  micro    MoE routed-expert layer fwd and fwd+bwd per backend (triton / torch / reference) at
           16384 tokens, checked against an fp32 reference; SDPA variants for MLA's head dims.
  timing   training step of the `small` config (bf16 autocast, AdamW fused, clip 1.0, bias
           update) for each MoE backend, eager and with `compile_regions`; tokens/s, MFU
           against 989 and 790 TFLOP/s, peak memory; a profile of the fastest row.
  ablation runs from the same seed on the same tokens of a fixed random Markov source, with
           the stage's warmup + cosine LR: aux-free (gamma 0.001, alpha 0.0001; variants with
           another gamma or a decaying gamma, ABLATION_VARIANTS) vs aux loss (gamma 0,
           alpha 0.01); final max/mean expert load (last steps, per layer, then mean/max over
           layers) and held-out validation loss. The step count is set from the time left
           (same for every run) unless --abl-steps is given.
Prints a short table last; full logs, the profile and results.json go to --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from deeprecipe.kernels.moe_grouped import moe_experts  # noqa: E402
from deeprecipe.stages.moe_model import (MOE_CONFIGS, MoETransformer, compile_regions,  # noqa: E402
                              router_load_ratios, update_router_bias)
from deeprecipe.stages.pretrain import scheduled_gamma  # noqa: E402
from deeprecipe.stages.train_config import TrainConfig, lr_multiplier  # noqa: E402

PEAKS = {"989": 989e12, "790": 790e12}
T_START = time.time()


class Log:
    def __init__(self, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        self.f = open(os.path.join(out_dir, "log.txt"), "a")

    def __call__(self, *a):
        msg = " ".join(str(x) for x in a)
        line = f"[{time.time() - T_START:7.1f}s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def autocast(dev):
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


def free(dev):
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- data

class MarkovSource:
    """A fixed random first-order Markov source over the vocabulary: every token has n_succ
    successors drawn from a Zipf(s) popularity over the vocabulary (so token frequencies are
    skewed, as in text), chosen with Zipf(1) probabilities over the n_succ slots. Learnable
    (loss falls from ln V towards the source entropy) and routing is not trivially uniform."""

    def __init__(self, V, n_succ=8, zipf=1.1, seed=0, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        pop = 1.0 / torch.arange(1, V + 1, dtype=torch.float64) ** zipf
        pop = pop[torch.randperm(V, generator=g)]
        self.pop = (pop / pop.sum()).float()
        self.succ = torch.multinomial(self.pop, V * n_succ, replacement=True,
                                      generator=g).view(V, n_succ)
        p = 1.0 / torch.arange(1, n_succ + 1, dtype=torch.float32)
        self.p = p / p.sum()
        self.V, self.device = V, torch.device(device)
        self.succ_d, self.p_d, self.pop_d = (t.to(self.device) for t in (self.succ, self.p,
                                                                          self.pop))

    def sample(self, n_seq, T, seed):
        """n_seq sequences of T+1 tokens (inputs = [:, :-1], targets = [:, 1:])."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        tok = torch.empty(n_seq, T + 1, dtype=torch.long, device=self.device)
        tok[:, 0] = torch.multinomial(self.pop_d, n_seq, replacement=True, generator=g)
        ch = torch.multinomial(self.p_d, n_seq * T, replacement=True, generator=g).view(n_seq, T)
        for t in range(T):
            tok[:, t + 1] = self.succ_d[tok[:, t], ch[:, t]]
        return tok

    def entropy(self, tokens):
        """Conditional entropy (nats/token) of the source, weighted by the contexts' frequency
        in `tokens`: the floor a perfect bigram model reaches on this data."""
        eq = self.succ[:, :, None] == self.succ[:, None, :]
        q = (eq.float() * self.p[None, None, :]).sum(-1)  # mass of the slot's token
        h_V = -(self.p[None, :] * q.log()).sum(-1)
        ctx = tokens[:, :-1].reshape(-1).cpu()
        w = torch.bincount(ctx, minlength=self.V).float()
        return float((w * h_V).sum() / w.sum())


# ----------------------------------------------------------------------------- model steps

def make_model(cfg, dev, compiled):
    torch.manual_seed(0)
    with dev:  # build and initialise on the device (0.7B parameters: slow on the host)
        model = MoETransformer(cfg).train()
    if compiled:
        compile_regions(model)
    return model


def make_opt(model, lr, fused):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), fused=fused)


def train_step(model, opt, batch, dev, gamma, alpha, mtp_weight, track_load=False):
    """One optimiser step. The model is built with seq_aux_alpha = 1 so its 'aux' is the raw
    balance term; alpha is applied here (keeps compiled graphs identical across runs)."""
    inp, tgt = batch[:, :-1], batch[:, 1:]
    with autocast(dev):
        _, L = model(inp, tgt, return_logits=False)
    loss = L["lm"] + alpha * L["aux"] + L["z"] + mtp_weight * L["mtp"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    ratios = router_load_ratios(model) if track_load else None
    update_router_bias(model, gamma, return_stats=False)
    return L["lm"].detach(), ratios


# ----------------------------------------------------------------------------- micro

def bench_ms(fn, dev, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    sync(dev)
    if dev.type == "cuda":
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        sync(dev)
        return a.elapsed_time(b) / iters
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) * 1e3 / iters


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30)).item()


def micro_moe(log, dev, backends, N, D, Fe, E, K):
    g = torch.Generator(device=dev).manual_seed(0)
    dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    x = torch.randn(N, D, device=dev, generator=g).to(dt)
    # skewed router-like choice: a few popular experts, all experts used
    logits = torch.randn(N, E, device=dev, generator=g) + torch.linspace(1, 0, E, device=dev)
    idx = logits.topk(K, -1).indices
    gates = torch.rand(N, K, device=dev, generator=g)
    ws = [torch.randn(E, a, b, device=dev, generator=g) / a ** 0.5
          for a, b in ((D, Fe), (D, Fe), (Fe, D))]  # fp32 master weights, as in the model
    dy = torch.randn(N, D, device=dev, generator=g).to(dt)
    # fp32 reference (looped), computed once
    leaves = [x.detach().float().clone().requires_grad_(), gates.clone().requires_grad_()] + \
             [w.clone().requires_grad_() for w in ws]
    torch.set_float32_matmul_precision("highest")  # a true fp32 reference, no TF32
    y_ref = moe_experts(leaves[0], idx, leaves[1], *leaves[2:], backend="reference")
    y_ref.backward(dy.float())
    torch.set_float32_matmul_precision("high")
    ref = [y_ref.detach()] + [t.grad for t in leaves]
    flops = 2 * N * K * 3 * D * Fe
    rows = []
    for be in backends:
        try:
            xs = x.clone().requires_grad_()
            gs = gates.clone().requires_grad_()
            wls = [w.clone().requires_grad_() for w in ws]
            y = moe_experts(xs, idx, gs, *wls, backend=be)
            y.backward(dy)
            errs = [rel(a, b) for a, b in zip([y] + [xs.grad, gs.grad] + [w.grad for w in wls],
                                               ref)]

            def fwd():
                with torch.no_grad():
                    moe_experts(x, idx, gates, *ws, backend=be)

            def fwd_bwd():
                y = moe_experts(xs, idx, gs, *wls, backend=be)
                y.backward(dy)

            t_f = bench_ms(fwd, dev)
            t_fb = bench_ms(fwd_bwd, dev)
            row = dict(backend=be, fwd_ms=t_f, fwd_bwd_ms=t_fb,
                       fwd_tflops=flops / t_f / 1e9, fwd_bwd_tflops=3 * flops / t_fb / 1e9,
                       max_rel_err=max(errs),
                       rel_err={k: e for k, e in zip(["y", "dx", "dgate", "dWg", "dWu", "dWd"],
                                                     errs)})
        except Exception as exc:  # report and go on
            log(f"micro_moe {be} FAILED: {exc!r}\n{traceback.format_exc()}")
            row = dict(backend=be, error=repr(exc))
        log("micro_moe", json.dumps(row))
        rows.append(row)
    return rows


def micro_attn(log, dev, B, H, T, dqk, dv):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    g = torch.Generator(device=dev).manual_seed(0)
    dt = torch.bfloat16
    q, k = (torch.randn(B, H, T, dqk, device=dev, generator=g, dtype=dt).requires_grad_()
            for _ in range(2))
    v = torch.randn(B, H, T, dv, device=dev, generator=g, dtype=dt).requires_grad_()
    do = torch.randn(B, H, T, dv, device=dev, generator=g, dtype=dt)

    def run(pad, backends=None):
        def f():
            vv = F.pad(v, (0, dqk - dv)) if pad else v
            if backends is None:
                o = F.scaled_dot_product_attention(q, k, vv, is_causal=True)
            else:
                with sdpa_kernel(backends):
                    o = F.scaled_dot_product_attention(q, k, vv, is_causal=True)
            o[..., :dv].backward(do)
        return f

    flops = 3 * B * H * T * T * (dqk + dv)  # causal (half of 2BHT^2(dqk+dv)) fwd, x3 fwd+bwd
    rows = {}
    for name, fn in [("default", run(False)), ("pad_v", run(True)),
                     ("cudnn", run(False, [SDPBackend.CUDNN_ATTENTION])),
                     ("flash_pad_v", run(True, [SDPBackend.FLASH_ATTENTION])),
                     ("mem_efficient", run(False, [SDPBackend.EFFICIENT_ATTENTION]))]:
        try:
            ms = bench_ms(fn, dev)
            rows[name] = dict(ms=ms, tflops=flops / ms / 1e9)
        except Exception as exc:
            rows[name] = dict(error=repr(exc)[:200])
        log("micro_attn", name, json.dumps(rows[name]))
    return rows


# ----------------------------------------------------------------------------- timing

def time_row(log, dev, base_cfg, backend, compiled, B, T, steps, warmup, batches, out_dir,
             profile=False):
    cfg = dataclasses.replace(base_cfg, moe_backend=backend)
    row = dict(backend=backend, compiled=compiled, B=B, T=T)
    model = opt = None
    try:
        model = make_model(cfg, dev, compiled)
        opt = make_opt(model, 3e-4, fused=dev.type == "cuda")
        fpt = model.flops_per_token(T)
        t0 = time.time()
        for i in range(warmup):
            loss, _ = train_step(model, opt, batches[i % len(batches)], dev, 1e-3, 1e-4,
                                 cfg.mtp_weight)
            if i == 0:  # same init, same batch: equal across backends up to bf16 noise
                row["loss0"] = float(loss)
        sync(dev)
        row["warmup_s"] = time.time() - t0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        sync(dev)
        t0, c0 = time.time(), time.process_time()
        for i in range(steps):
            loss, _ = train_step(model, opt, batches[i % len(batches)], dev, 1e-3, 1e-4,
                                 cfg.mtp_weight)
        sync(dev)
        dt = (time.time() - t0) / steps
        row.update(ms_step=dt * 1e3, cpu_ms_step=(time.process_time() - c0) / steps * 1e3,
                   tok_s=B * T / dt, flops_per_token=fpt, loss=float(loss))
        for k, peak in PEAKS.items():
            row[f"mfu_{k}"] = row["tok_s"] * fpt / peak
        row["peak_gib"] = (torch.cuda.max_memory_allocated(dev) / 2 ** 30
                           if dev.type == "cuda" else float("nan"))
        if profile:
            row["profile"] = profile_step(log, model, opt, batches[0], dev, cfg, out_dir,
                                          f"{backend}{'_compiled' if compiled else ''}")
    except torch.cuda.OutOfMemoryError as exc:
        row["error"] = "OOM: " + str(exc)[:200]
    except Exception as exc:
        row["error"] = repr(exc)[:500]
        log(traceback.format_exc())
    log("timing", json.dumps(row))
    del model, opt
    free(dev)
    return row


def profile_step(log, model, opt, batch, dev, cfg, out_dir, name):
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    sync(dev)
    t0 = time.time()
    with profile(activities=acts) as prof:
        for _ in range(2):
            train_step(model, opt, batch, dev, 1e-3, 1e-4, cfg.mtp_weight)
        sync(dev)
    wall = (time.time() - t0) / 2
    ev = prof.key_averages()
    attr = "self_device_time_total" if hasattr(ev[0], "self_device_time_total") \
        else "self_cuda_time_total"
    # device-only rows (kernels, copies) have no CPU time; aten:: rows repeat their kernels'
    # time and "Command Buffer Full" is a launch-queue stall, not GPU work
    kern = [e for e in ev if e.self_cpu_time_total == 0 and getattr(e, attr) > 0]
    busy_us = sum(getattr(e, attr) for e in kern) / 2
    try:
        table = ev.table(sort_by=attr, row_limit=70, max_name_column_width=90)
    except Exception:
        table = ev.table(sort_by="self_cuda_time_total", row_limit=70)
    with open(os.path.join(out_dir, f"profile_{name}.txt"), "w") as f:
        f.write(f"{name}: 2 steps profiled; wall/step {wall * 1e3:.1f} ms (profiler on); "
                f"GPU busy/step {busy_us / 1e3:.1f} ms\n\n{table}\n")
    # coarse breakdown by kernel name
    cats = {"moe_gemm_triton": ("_gmm_kernel", "_gmm_dw_kernel"),
            "moe_combine_swiglu_triton": ("_combine", "_swiglu_pair"),
            "attention": ("flash", "fmha", "attention", "cudnn", "sdpa"),
            "gemm_cublas_cutlass": ("gemm", "sm90_xmma", "cutlass", "nvjet", "gemv", "matmul"),
            "inductor_fused": ("triton_",),
            "gather_scatter_sort": ("gather", "scatter", "index", "sort", "radix", "search"),
            "optimizer": ("adam", "multi_tensor", "foreach")}
    brk = {k: 0.0 for k in cats}
    brk["other"] = 0.0
    for e in kern:
        t = getattr(e, attr) / 2 / 1e3
        if t <= 0:
            continue
        name_l = e.key.lower()
        for k, pats in cats.items():
            if any(p in name_l for p in pats):
                brk[k] += t
                break
        else:
            brk["other"] += t
    res = dict(wall_ms=wall * 1e3, gpu_busy_ms=busy_us / 1e3, breakdown_ms=brk)
    log("profile", name, json.dumps(res))
    return res


# ----------------------------------------------------------------------------- ablation

# name: (gamma, alpha, gamma_start, decay_frac); gamma_start: geometric decay gamma_start ->
# gamma over the first decay_frac of the run (stages.pretrain.scheduled_gamma)
ABLATION_VARIANTS = {"aux_free": (1e-3, 1e-4, None, 0.5), "aux_loss": (0.0, 1e-2, None, 0.5),
                     "aux_free_g0.01": (1e-2, 1e-4, None, 0.5),
                     "aux_free_g0.005": (5e-3, 1e-4, None, 0.5),
                     "aux_free_decay": (1e-3, 1e-4, 3e-2, 0.5),
                     "aux_free_decay_full": (1e-3, 1e-4, 3e-2, 1.0),
                     "aux_free_decay_g0.005": (5e-3, 1e-4, 3e-2, 0.5)}


def ablation(log, dev, base_cfg, backend, compiled, B, T, steps, src, out_dir, n_val=8,
             names=("aux_free", "aux_loss")):
    tokens = src.sample(steps * B, T, seed=1)
    val = src.sample(n_val * B, T, seed=2)
    floor = src.entropy(val)
    log(f"ablation: {steps} steps x {B} x {T} = {steps * B * T / 1e6:.2f}M tokens per run; "
        f"source entropy (loss floor) {floor:.3f} nats, ln V = {math.log(src.V):.3f}")
    cfg = dataclasses.replace(base_cfg, moe_backend=backend)
    runs = {}
    csv = open(os.path.join(out_dir, "ablation.csv"), "w")
    csv.write("run,step,train_lm,load_max_over_mean_mean,load_max_over_mean_max\n")
    for name in names:
        gamma, alpha, gamma_start, decay_frac = ABLATION_VARIANTS[name]
        model = opt = None
        try:
            model = make_model(cfg, dev, compiled)
            opt = make_opt(model, 6e-4, fused=dev.type == "cuda")
            warm = max(1, min(30, steps // 10))
            tcfg = TrainConfig(steps=steps, micro_batch=B, lr=6e-4, min_lr=6e-5,
                               warmup_steps=warm)  # the stage's warmup + cosine
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, tcfg))
            ratios, losses = [], []
            t0 = time.time()
            for s in range(steps):
                g = scheduled_gamma(s + 1, steps, gamma, gamma_start, decay_frac)
                lm, r = train_step(model, opt, tokens[s * B:(s + 1) * B], dev, g, alpha,
                                   cfg.mtp_weight, track_load=True)
                sched.step()
                ratios.append(r)
                losses.append(lm)
                if s % 25 == 0 or s == steps - 1:
                    r_l = r.tolist()
                    log(f"  {name} step {s}: lm {lm.item():.3f}  max/mean load mean "
                        f"{sum(r_l) / len(r_l):.2f} max {max(r_l):.2f}")
                    csv.write(f"{name},{s},{lm.item():.4f},{sum(r_l) / len(r_l):.4f},"
                              f"{max(r_l):.4f}\n")
            sync(dev)
            train_s = time.time() - t0
            R = torch.stack(ratios).float().cpu()  # steps x layers
            last = max(1, min(50, steps // 4))
            per_layer = R[-last:].mean(0)
            model.eval()
            stance = (torch.compiler.set_stance("force_eager") if compiled
                      and hasattr(torch.compiler, "set_stance") else _null())
            vl = []
            with torch.no_grad(), stance:
                for i in range(n_val):
                    with autocast(dev):
                        _, L = model(val[i * B:(i + 1) * B, :-1], val[i * B:(i + 1) * B, 1:],
                                     return_logits=False)
                    vl.append(L["lm"].float())
            runs[name] = dict(gamma=gamma, alpha=alpha, gamma_start=gamma_start,
                              decay_frac=decay_frac, steps=steps,
                              tokens=steps * B * T, train_s=train_s,
                              train_lm_last=float(torch.stack(losses[-last:]).float().mean()),
                              load_max_over_mean=float(per_layer.mean()),
                              load_max_over_mean_worst_layer=float(per_layer.max()),
                              load_first_steps=float(R[:min(10, steps)].mean()),
                              per_layer=[round(x, 3) for x in per_layer.tolist()],
                              val_lm=float(torch.stack(vl).mean()), last_steps=last)
        except Exception as exc:
            runs[name] = dict(error=repr(exc)[:500])
            log(traceback.format_exc())
        log("ablation", name, json.dumps(runs[name]))
        del model, opt
        free(dev)
    csv.close()
    runs["source_entropy"] = floor
    return runs


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
    ap.add_argument("--parts", default="micro,attn,timing,ablation")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget", type=float, default=390.0,
                    help="seconds for the whole script; the ablation gets what is left")
    ap.add_argument("--abl-max-steps", type=int, default=500)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--compiled-backends", default="triton,torch,reference")
    ap.add_argument("--extra-batch", type=int, default=0,
                    help="also time the fastest configuration at this batch size")
    ap.add_argument("--abl-variants", default="aux_free,aux_loss")
    ap.add_argument("--abl-steps", type=int, default=0, help="fixed step count (0: from budget)")
    ap.add_argument("--abl-backend", default="", help="backend[:compiled] (default: fastest)")
    ap.add_argument("--smoke", action="store_true", help="tiny config on CPU (script check)")
    ap.add_argument("--backends", default="triton,torch,reference", help="timing rows (GPU)")
    args = ap.parse_args()
    log = Log(args.out)
    parts = set(args.parts.split(","))
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.set_float32_matmul_precision("high")  # the fp32 router GEMM on TF32
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    import triton
    env = dict(torch=torch.__version__, triton=triton.__version__, device=str(dev),
               argv=sys.argv[1:])
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        env.update(gpu=p.name, sms=p.multi_processor_count, mem_gib=p.total_memory / 2 ** 30,
                   capability=torch.cuda.get_device_capability(dev))
    log("env", json.dumps(env))
    res = dict(env=env)

    if args.smoke:
        torch.set_num_threads(1)
        base = dataclasses.replace(MOE_CONFIGS["tiny"], mtp_depth=1)
        B, T = 2, 64
        backends = ["reference"]
        compile_ok = False
        micro_shape = (256, 128, 64, 8, 2)
    else:
        base = MOE_CONFIGS["small"]
        B, T = args.batch, args.seq
        backends = args.backends.split(",")
        compile_ok = not args.no_compile
        micro_shape = (16384, base.d_model, base.d_ff_expert, base.n_routed_experts, base.top_k)
    # alpha is applied in train_step (see there): the model's 'aux' is the raw balance term
    base = dataclasses.replace(base, seq_aux_alpha=1.0, max_seq_len=max(base.max_seq_len, T))
    src = MarkovSource(base.vocab_size, seed=0, device=dev)

    if "micro" in parts:
        res["micro_moe"] = micro_moe(log, dev, backends, *micro_shape)
    if "attn" in parts:
        if dev.type == "cuda":
            res["micro_attn"] = micro_attn(log, dev, B, base.n_heads, T,
                                           base.qk_nope_head_dim + base.qk_rope_head_dim,
                                           base.v_head_dim)
            a = res["micro_attn"]
            if "ms" in a.get("default", {}) and "ms" in a.get("pad_v", {}):
                base = dataclasses.replace(base, attn_pad_v=a["pad_v"]["ms"] < a["default"]["ms"])
        log("attn_pad_v =", base.attn_pad_v)
    res["attn_pad_v"] = base.attn_pad_v

    batches = [b for b in src.sample(3 * B, T, seed=7).split(B)]
    rows = []
    if "timing" in parts:
        plan = [(be, False) for be in backends]
        if compile_ok:
            plan += [(be, True) for be in backends
                     if be in args.compiled_backends.split(",")]
        eager_ok = {}
        for be, comp in plan:
            if comp and not compile_ok:
                continue
            if comp and not eager_ok.get(be):
                log(f"skip {be} compiled: its eager row failed")
                continue
            if time.time() - T_START > args.budget * 0.55 and be == "reference":
                log(f"skip {be} compiled={comp}: time budget")
                continue
            slow = be == "reference"
            r = time_row(log, dev, base, be, comp, B, T,
                         steps=max(3, args.steps // 2) if slow else args.steps,
                         warmup=2 if slow else args.warmup, batches=batches, out_dir=args.out,
                         profile=False)
            if not comp:
                eager_ok[be] = "error" not in r
            elif "error" in r and not any(x["compiled"] and "error" not in x for x in rows):
                log(f"compiled {be} failed (its eager row ran): no more compiled rows")
                compile_ok = False
            rows.append(r)
        ok = [r for r in rows if "ms_step" in r]
        if ok:  # profile the fastest configuration (one more short build)
            best = min(ok, key=lambda r: r["ms_step"])
            res["best"] = dict(backend=best["backend"], compiled=best["compiled"])
            if time.time() - T_START < args.budget * 0.6:
                time_row(log, dev, base, best["backend"], best["compiled"], B, T, steps=2,
                         warmup=1, batches=batches, out_dir=args.out, profile=True)
            if args.extra_batch:
                B2 = args.extra_batch
                big = [b for b in src.sample(2 * B2, T, seed=8).split(B2)]
                rows.append(time_row(log, dev, base, best["backend"], best["compiled"], B2, T,
                                     steps=args.steps, warmup=args.warmup, batches=big,
                                     out_dir=args.out))
    res["timing"] = rows
    json.dump(res, open(os.path.join(args.out, "results.json"), "w"), indent=1, default=str)

    if "ablation" in parts:
        best = res.get("best", dict(backend=backends[0], compiled=compile_ok))
        if args.abl_backend:
            be, _, comp = args.abl_backend.partition(":")
            best = dict(backend=be, compiled=comp == "compiled" and compile_ok)
        step_s = next((r["ms_step"] / 1e3 for r in rows if r["backend"] == best["backend"]
                       and r["compiled"] == best["compiled"] and "ms_step" in r), None)
        left = args.budget - (time.time() - T_START) - 45  # eval, builds, summary
        if step_s is None:
            steps = 40 if args.smoke else 150
        else:
            steps = int(left / 2 / (step_s * 1.08 + 0.002))
        steps = args.abl_steps or max(20, min(args.abl_max_steps, steps))
        log(f"ablation with {best}, {steps} steps each ({left:.0f}s left, step "
            f"{step_s if step_s is None else round(step_s * 1e3, 1)} ms)")
        res["ablation"] = ablation(log, dev, base, best["backend"], best["compiled"], B, T,
                                   steps, src, args.out, names=args.abl_variants.split(","))
    res["total_s"] = time.time() - T_START
    json.dump(res, open(os.path.join(args.out, "results.json"), "w"), indent=1, default=str)
    summary(log, res, B, T, base)


def summary(log, res, B, T, cfg):
    lines = ["", f"== small config: {cfg.n_layers} layers, d {cfg.d_model}, "
                 f"{cfg.n_shared_experts} shared + {cfg.n_routed_experts} routed top-"
                 f"{cfg.top_k}, MLA, MTP; B={B} x T={T}; bf16 autocast, fused AdamW; "
                 f"attn_pad_v={res.get('attn_pad_v')} ==",
             f"{'backend':<10} {'compile':<7} {'ms/step':>8} {'tok/s':>9} {'MFU@989':>8} "
             f"{'MFU@790':>8} {'peak GiB':>8} {'warm s':>7} {'loss@0':>7}"]
    for r in res.get("timing", []):
        if "ms_step" in r:
            name = r["backend"] if r["B"] == B else f"{r['backend']} B={r['B']}"
            lines.append(f"{name:<10} {str(r['compiled']):<7} {r['ms_step']:8.1f} "
                         f"{r['tok_s']:9.0f} {100 * r['mfu_989']:7.1f}% {100 * r['mfu_790']:7.1f}%"
                         f" {r['peak_gib']:8.1f} {r['warmup_s']:7.1f} {r['loss0']:7.3f}")
        else:
            lines.append(f"{r['backend']:<10} {str(r['compiled']):<7} ERROR {r.get('error')}")
    if res.get("micro_moe"):
        lines.append("-- routed-expert layer alone (16384 tok, fp32 master weights, bf16): "
                     "ms fwd / fwd+bwd, max rel err vs fp32")
        for r in res["micro_moe"]:
            if "fwd_ms" in r:
                lines.append(f"{r['backend']:<10} {r['fwd_ms']:7.2f} / {r['fwd_bwd_ms']:7.2f} ms"
                             f"  ({r['fwd_bwd_tflops']:.0f} TFLOP/s fwd+bwd)  err "
                             f"{r['max_rel_err']:.1e}")
            else:
                lines.append(f"{r['backend']:<10} ERROR {r.get('error')}")
    if res.get("micro_attn"):
        lines.append("-- causal SDPA fwd+bwd (MLA dims): " + ", ".join(
            f"{k} {v['ms']:.2f} ms" if "ms" in v else f"{k} n/a"
            for k, v in res["micro_attn"].items()))
    ab = res.get("ablation")
    if ab:
        lines.append(f"-- ablation (same seed, same tokens; source entropy "
                     f"{ab.get('source_entropy', float('nan')):.3f} nats)")
        lines.append(f"{'run':<9} {'gamma':>6} {'alpha':>7} {'Mtok':>6} {'max/mean':>8} "
                     f"{'worst':>6} {'train lm':>8} {'val lm':>7}")
        for k in ABLATION_VARIANTS:
            if k not in ab:
                continue
            r = ab.get(k, {})
            if "val_lm" in r:
                g0 = f"{r['gamma_start']:.0e}->" if r.get("gamma_start") else ""
                lines.append(f"{k:<14} {g0}{r['gamma']:6.0e} {r['alpha']:7.0e} "
                             f"{r['tokens'] / 1e6:6.1f} {r['load_max_over_mean']:8.2f} "
                             f"{r['load_max_over_mean_worst_layer']:6.2f} "
                             f"{r['train_lm_last']:8.3f} {r['val_lm']:7.3f}")
            else:
                lines.append(f"{k:<9} ERROR {r.get('error')}")
    lines.append(f"total {res.get('total_s', 0):.0f} s")
    for ln in lines:
        log(ln)


if __name__ == "__main__":
    main()

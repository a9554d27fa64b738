"""stages/expert_parallel.py on 4 CPU gloo ranks: EP = 2 (x 2 data-parallel) and EP = 4 match
the single-rank model on the same global batch (loss, every gradient, the router-bias update),
also when routing is skewed so that some EP ranks receive no tokens; a sharded checkpoint
written at EP = 4 loads at EP = 2 (and unsharded) with the same loss on the next batch.

One spawn of 4 processes runs every case; rank 0 writes the results, the tests compare them
with the single-process model computed here."""
from __future__ import annotations

import copy
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from deeprecipe.stages.moe_model import MoEConfig, MoETransformer, update_router_bias

WORLD, B, T, SEED, CFG_GAMMA = 4, 8, 12, 0, 1e-2
ADAM = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1)
MOMENTS = ("exp_avg", "exp_avg_sq")
CFG = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=2, head_dim=16, n_dense_layers=1,
           d_ff_dense=48, n_shared_experts=1, n_routed_experts=8, top_k=2, d_ff_expert=16,
           max_seq_len=T, mtp_depth=1, seq_aux_alpha=0.01, router_z_loss=1e-3,
           moe_backend="reference")
CASES = [(2, False), (4, False), (2, True), (4, True)]


def build_model(skewed: bool, seed: int = SEED) -> MoETransformer:
    """The tiny model with decisive routing (router std 0.3: no near-ties between ranks'
    rounding); skewed: router bias +10 on experts 0 and 1, so every token picks exactly them
    (they live on EP rank 0; the other ranks receive nothing)."""
    torch.manual_seed(seed)
    model = MoETransformer(MoEConfig(**CFG)).train()
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("router.expert_bias") and skewed:
                buf[:2] = 10.0
        for name, p in model.named_parameters():
            if name.endswith("router.weight"):
                p.normal_(0.0, 0.3)
    return model


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Global batch (B, T) of token ids and next-token targets."""
    g = torch.Generator().manual_seed(100 + step)
    seq = torch.randint(0, CFG["vocab_size"], (B, T + 1), generator=g)
    return seq[:, :-1], seq[:, 1:]


def local(x: torch.Tensor, rank: int) -> torch.Tensor:
    n = B // WORLD
    return x[rank * n:(rank + 1) * n]


def biases(model) -> dict[str, torch.Tensor]:
    return {f"bias.{n}": b.clone() for n, b in model.named_buffers() if n.endswith("expert_bias")}


# ----------------------------------------------------------------------------- the ranks

def _ep_step(ep: int, skewed: bool, rank: int) -> dict[str, torch.Tensor]:
    from deeprecipe.stages.expert_parallel import (expert_mesh, gather_experts, reduce_gradients,
                                                   shard_experts)
    mesh = expert_mesh(ep)
    model = shard_experts(build_model(skewed), mesh)
    idx, tgt = batch(0)
    _, losses = model(local(idx, rank), local(tgt, rank))
    losses["total"].backward()
    reduce_gradients(model, mesh)
    loss = losses["total"].detach().clone()
    dist.all_reduce(loss)
    grads = gather_experts(model, {n: p.grad for n, p in model.named_parameters()})
    twin = copy.deepcopy(model)  # as a reference-policy copy is made: shares the EP group
    with torch.no_grad():
        loss_twin = twin(local(idx, rank), local(tgt, rank))[1]["total"].clone()
    dist.all_reduce(loss_twin)
    update_router_bias(model, CFG_GAMMA)
    rows = [float(m.w_gate_EDF.shape[0]) for m in model.modules() if hasattr(m, "w_gate_EDF")]
    out = {"loss": loss / WORLD, **{f"grad.{n}": g for n, g in grads.items()}, **biases(model),
           "local_experts": torch.tensor(rows), "loss_deepcopy": loss_twin / WORLD}
    return out


def train_step(model, opt, step: int, rank: int | None = None, mesh=None) -> None:
    """One AdamW step on batch `step` (this rank's rows when `rank` is given) and the bias
    update (loads summed over ranks when distributed)."""
    from deeprecipe.stages.expert_parallel import reduce_gradients
    idx, tgt = batch(step)
    if rank is not None:
        idx, tgt = local(idx, rank), local(tgt, rank)
    opt.zero_grad()
    model.train()(idx, tgt)[1]["total"].backward()
    if mesh is not None:
        reduce_gradients(model, mesh)
    opt.step()
    update_router_bias(model, CFG_GAMMA, all_reduce=None if mesh is not None else lambda t: None)


def restore_adam(model, opt, folder, read) -> None:
    """Adam moments (after one step) from `save_sharded` folders, laid out for `model`."""
    moments = {m: read(model, f"{folder}/{m}") for m in MOMENTS}
    for n, p in model.named_parameters():
        opt.state[p] = {"step": torch.tensor(1.0), **{m: moments[m][n] for m in MOMENTS}}


def next_loss(model, rank: int | None = None) -> torch.Tensor:
    """Loss on batch 2 (mean over ranks when `rank` is given)."""
    idx, tgt = batch(2)
    if rank is not None:
        idx, tgt = local(idx, rank), local(tgt, rank)
    with torch.no_grad():
        loss = model.eval()(idx, tgt)[1]["total"].clone()
    if rank is not None:
        dist.all_reduce(loss)
        loss /= WORLD
    return loss


def _checkpoint_case(rank: int, folder: str) -> dict[str, torch.Tensor]:
    """EP = 4: one AdamW step, save weights and Adam moments sharded, a second step, loss on the
    next batch; EP = 2: a differently initialised model loads the checkpoint and moments, takes
    the same second step, loss on the next batch."""
    from deeprecipe.stages.expert_parallel import (expert_mesh, load_sharded, read_sharded,
                                                   save_sharded, shard_experts)
    mesh4 = expert_mesh(4)
    model4 = shard_experts(build_model(False), mesh4)
    opt4 = torch.optim.AdamW(model4.parameters(), **ADAM)
    train_step(model4, opt4, 0, rank, mesh4)
    save_sharded(model4, f"{folder}/model", mesh4)
    for m in MOMENTS:
        save_sharded(model4, f"{folder}/{m}", mesh4,
                     {n: opt4.state[p][m] for n, p in model4.named_parameters()})
    train_step(model4, opt4, 1, rank, mesh4)

    mesh2 = expert_mesh(2)
    model2 = shard_experts(build_model(True, seed=SEED + 1), mesh2)
    load_sharded(model2, f"{folder}/model")
    opt2 = torch.optim.AdamW(model2.parameters(), **ADAM)
    restore_adam(model2, opt2, folder, read_sharded)
    train_step(model2, opt2, 1, rank, mesh2)
    return {"loss_ep4": next_loss(model4, rank), "loss_ep2": next_loss(model2, rank)}


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        for ep, skewed in CASES:
            res = _ep_step(ep, skewed, rank)
            if rank == 0:
                save_file({k: v.contiguous() for k, v in res.items()},
                          f"{out}/ep{ep}_skewed{int(skewed)}.safetensors")
        res = _checkpoint_case(rank, f"{out}/ckpt")
        if rank == 0:
            save_file(res, f"{out}/checkpoint.safetensors")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("ep")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(out)), nprocs=WORLD, join=True)
    return out


# ----------------------------------------------------------------------------- single rank

def reference_step(skewed: bool) -> dict[str, torch.Tensor]:
    model = build_model(skewed)
    idx, tgt = batch(0)
    _, losses = model(idx, tgt)
    losses["total"].backward()
    grads = {f"grad.{n}": p.grad.clone() for n, p in model.named_parameters()}
    loads = {n: m.tokens_per_expert.clone() for n, m in model.named_modules()
             if hasattr(m, "tokens_per_expert")}
    update_router_bias(model, CFG_GAMMA, all_reduce=lambda t: None)
    return {"loss": losses["total"].detach(), **grads, **biases(model)}, loads


@pytest.mark.parametrize("ep,skewed", CASES)
def test_ep_matches_single_rank_loss_gradients_and_bias_update(ranks_out, ep, skewed):
    got = load_file(str(ranks_out / f"ep{ep}_skewed{int(skewed)}.safetensors"))
    assert got.pop("local_experts").tolist() == [8 / ep, 8 / ep]  # both MoE layers sharded
    torch.testing.assert_close(got.pop("loss_deepcopy"), got["loss"], rtol=1e-6, atol=0)
    want, loads = reference_step(skewed)
    assert set(got) == set(want)
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-6)
    for k in want:
        if k.startswith("grad."):
            torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)
        elif k.startswith("bias."):
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-7, msg=k)
    expert_grads = [k for k in want if k.endswith("w_down_EFD")]
    assert expert_grads and all(want[k].abs().sum() > 0 for k in expert_grads)
    if skewed:  # every token went to experts 0 and 1: EP ranks >= 1 received no rows
        for name, load in loads.items():
            assert load[2:].sum() == 0 and load[:2].sum() > 0, name
        for k in expert_grads:
            assert want[k][2:].abs().sum() == 0 and got[k][2:].abs().sum() == 0


def test_sharded_checkpoint_written_at_ep4_resumes_at_ep2_and_unsharded(ranks_out):
    """Weights, router biases and Adam moments written at EP = 4 after one step; resumed at
    EP = 2 and on one rank, the second step gives the same next-batch loss as two steps
    without a checkpoint."""
    from deeprecipe.stages.expert_parallel import load_sharded, read_sharded
    got = load_file(str(ranks_out / "checkpoint.safetensors"))
    model = build_model(False)
    opt = torch.optim.AdamW(model.parameters(), **ADAM)
    for step in (0, 1):
        train_step(model, opt, step)
    want = next_loss(model)
    resumed = build_model(True, seed=SEED + 1)
    load_sharded(resumed, ranks_out / "ckpt" / "model")
    opt = torch.optim.AdamW(resumed.parameters(), **ADAM)
    restore_adam(resumed, opt, ranks_out / "ckpt", read_sharded)
    train_step(resumed, opt, 1)
    torch.testing.assert_close(got["loss_ep4"], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["loss_ep2"], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(next_loss(resumed), want, rtol=1e-5, atol=1e-6)
    assert abs(want - next_loss(build_model(False))) > 1e-3  # the two steps changed the loss
    files = sorted(p.name for p in (ranks_out / "ckpt" / "model").iterdir())
    assert files == ["experts-ep0-of-4.safetensors", "experts-ep1-of-4.safetensors",
                     "experts-ep2-of-4.safetensors", "experts-ep3-of-4.safetensors",
                     "experts.index.json", "replicated.safetensors"]

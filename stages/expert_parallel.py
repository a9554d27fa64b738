"""Expert parallelism (EP) for the DeepSeekMoE layers of `moe_model`.

Layout of W ranks: a 2-D mesh (W/ep, ep) with the EP dimension innermost, so rank r has
ep_rank = r % ep. Each EP group of `ep` ranks holds every routed expert once: ep_rank p owns
experts [p*E/ep, (p+1)*E/ep) (L = E/ep local experts, stacked as the model stacks them). Ranks
with the same ep_rank form the expert-data-parallel group (W/ep replicas of one shard).
Attention, dense and shared-expert FFNs, the router and its aux-free bias are replicated (data
parallel over all W ranks).

Routed experts of one MoE layer on one rank (N local tokens, top-K, M = N*K assignments):

    sort assignments by expert (global ids; rank p's experts are contiguous)
      -> all-to-all of the per-expert counts (E,) -> host: send/receive row splits (one sync)
      -> all-to-all of the sorted token rows (variable splits; nothing dropped, as DeepSeek-V3)
      -> this rank's L experts on the rows it received: `kernels.moe_experts` (grouped GEMM,
         Triton on GPU) with top-1 and unit gates
      -> all-to-all back (the reverse splits) -> gate-weighted combine of the K rows per token.
The gather and the combine are the `torch` backend's autograd Functions (`kernels.moe_grouped`:
deterministic gather-sum backward, a bmm combine that keeps y in the activation dtype).

The exchange is `torch.distributed._functional_collectives.all_to_all_single_autograd` (as
torchtitan): its backward is the reverse all-to-all, so gradients of the token rows and of the
expert weights cross ranks. gloo implements it on CPU tensors (variable and zero splits), NCCL
on GPU. The router gates stay on the token's own rank; `tokens_per_expert` keeps the global-E
counts of local tokens, and `update_router_bias` sums them over all ranks, so every rank applies
the same bias update as one rank on the global batch would.

EP = 1 is the plain model: `shard_experts` leaves it untouched (`MoE.ep is None`).
Gradients: `reduce_gradients` sums replicated parameters over all ranks and expert shards over
their expert-data-parallel group, both divided by W (the mean over the W local losses).
Checkpoints: `save_sharded` writes one safetensors file per EP rank (one tensor per expert) plus
the replicated entries and a JSON index, for the state_dict or any tensors keyed like it (Adam
moments); `read_sharded` / `load_sharded` lay it out for any EP size dividing E (or none).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file
from torch.distributed._functional_collectives import (all_to_all_single,
                                                       all_to_all_single_autograd, wait_tensor)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from deeprecipe.kernels import moe_experts
from deeprecipe.kernels.moe_grouped import (_CombineTorch, _GatherRows, inverse_permutation,
                                            permute_tokens)
from deeprecipe.stages.moe_model import MoE

EXPERT_WEIGHTS = ("w_gate_EDF", "w_up_EDF", "w_down_EFD")
INDEX_FILE = "experts.index.json"
REPLICATED_FILE = "replicated.safetensors"


def expert_mesh(ep_size: int, device_type: str = "cpu") -> DeviceMesh:
    """The (W/ep, ep) mesh over the initialised default group, dims ('edp', 'ep')."""
    world = dist.get_world_size()
    if world % ep_size:
        raise ValueError(f"EP size {ep_size} does not divide the world size {world}")
    return init_device_mesh(device_type, (world // ep_size, ep_size), mesh_dim_names=("edp", "ep"))


@dataclass
class ExpertShard:
    """One rank's slice of a layer's routed experts: experts [first, first + n_local) of
    n_experts, exchanged over `group` (the EP group, `size` ranks, this one `rank`)."""
    group: dist.ProcessGroup
    size: int
    rank: int
    n_experts: int

    @property
    def n_local(self) -> int:
        return self.n_experts // self.size

    @property
    def first(self) -> int:
        return self.rank * self.n_local

    def __deepcopy__(self, memo):  # a deep-copied model shares the process group
        return ExpertShard(self.group, self.size, self.rank, self.n_experts)

    def routed_experts(self, x_ND, topk_idx_NK, gates_NK, w_gate_LDF, w_up_LDF, w_down_LFD,
                       backend: str | None = None) -> torch.Tensor:
        """y_ND = sum_k gates[n,k] FFN_{idx[n,k]}(x_n), the experts spread over the EP group;
        w_* hold this rank's L local experts. One host sync (the split sizes)."""
        P, L = self.size, self.n_local
        order_M, token_M, _, counts_E = permute_tokens(topk_idx_NK, self.n_experts)
        pos_M = inverse_permutation(order_M)
        x_MD = _GatherRows.apply(x_ND, token_M, pos_M)
        # recv_PL[p, l]: rows EP rank p sends to my local expert l
        recv_PL = wait_tensor(all_to_all_single(counts_E, None, None, self.group)).view(P, L)
        send_splits, recv_splits = torch.stack([counts_E.view(P, L).sum(1),
                                                recv_PL.sum(1)]).tolist()  # the one host sync
        x_RD = all_to_all_single_autograd(x_MD, recv_splits, send_splits, self.group)
        local_R1 = torch.arange(L, device=x_ND.device).repeat(P).repeat_interleave(
            recv_PL.reshape(-1), output_size=sum(recv_splits))[:, None]
        ones_R1 = torch.ones(local_R1.shape, device=x_ND.device, dtype=gates_NK.dtype)
        y_RD = moe_experts(wait_tensor(x_RD), local_R1, ones_R1, w_gate_LDF, w_up_LDF,
                           w_down_LFD, backend=backend)
        y_MD = wait_tensor(all_to_all_single_autograd(y_RD, send_splits, recv_splits, self.group))
        return _CombineTorch.apply(y_MD, pos_M, order_M, gates_NK)


def moe_layers(model: nn.Module) -> list[tuple[str, MoE]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MoE)]


@torch.no_grad()
def shard_experts(model: nn.Module, mesh: DeviceMesh) -> nn.Module:
    """Keep this rank's experts of every MoE layer (in place; every rank must hold the same full
    model) and route through the EP group. EP = 1 leaves the model unchanged."""
    group, size = mesh.get_group("ep"), mesh.size(mesh.mesh_dim_names.index("ep"))
    if size == 1:
        return model
    rank = mesh.get_local_rank("ep")
    for name, moe in moe_layers(model):
        E = moe.cfg.n_routed_experts
        if moe.ep is not None or E % size:
            raise ValueError(f"{name}: already sharded, or {E} experts not divisible by EP {size}")
        moe.ep = ExpertShard(group, size, rank, E)
        sl = slice(moe.ep.first, moe.ep.first + moe.ep.n_local)
        for w in EXPERT_WEIGHTS:
            setattr(moe, w, nn.Parameter(getattr(moe, w)[sl].clone()))
    return model


def expert_param_names(model: nn.Module) -> set[str]:
    """Names of the sharded expert weights (empty for an unsharded model)."""
    return {f"{n}.{w}" for n, m in moe_layers(model) if m.ep is not None for w in EXPERT_WEIGHTS}


def reduce_gradients(model: nn.Module, mesh: DeviceMesh) -> None:
    """Average gradients as data-parallel training over W ranks does: replicated parameters
    summed over all ranks, expert shards over their expert-data-parallel group, both / W."""
    experts = expert_param_names(model)
    grads = [(n in experts, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    for is_expert, group in ((False, None), (True, mesh.get_group("edp"))):
        bucket = [g for e, g in grads if e == is_expert]
        if not bucket:
            continue
        flat = torch.cat([g.reshape(-1) for g in bucket])  # one all-reduce per group
        dist.all_reduce(flat, group=group)
        flat /= dist.get_world_size()
        for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(part.view_as(g))


def gather_experts(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full (E, ...) tensors from this rank's expert shards in `tensors` (e.g. the state_dict
    or the grads, keyed like named_parameters), all-gathered over each layer's EP group; other
    entries pass through. Collective: every rank calls it."""
    out = dict(tensors)
    for name, moe in moe_layers(model):
        if moe.ep is None:
            continue
        for w in EXPERT_WEIGHTS:
            key = f"{name}.{w}"
            parts = [torch.empty_like(tensors[key]) for _ in range(moe.ep.size)]
            dist.all_gather(parts, tensors[key].contiguous(), group=moe.ep.group)
            out[key] = torch.cat(parts)
    return out


# ----------------------------------------------------------------------------- checkpoints

def _expert_key(layer: str, weight: str, expert: int) -> str:
    return f"{layer}.{weight}.{expert}"


def _local_experts(moe: MoE) -> range:
    """Global ids of the experts this rank holds for `moe`."""
    if moe.ep is None:
        return range(moe.cfg.n_routed_experts)
    return range(moe.ep.first, moe.ep.first + moe.ep.n_local)


def _all_expert_names(model: nn.Module) -> set[str]:
    return {f"{n}.{w}" for n, _ in moe_layers(model) for w in EXPERT_WEIGHTS}


def save_sharded(model: nn.Module, folder: str | Path, mesh: DeviceMesh,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """Write `state` (default: the model's state_dict; or any tensors keyed and shaped like it,
    e.g. Adam moments by parameter name) to `folder`: every EP rank of the first replica writes
    `experts-ep{p}-of-{ep}.safetensors`, one tensor per local expert named
    `<layer>.<weight>.<global expert>`; rank 0 writes the other (replicated) entries to
    `replicated.safetensors` and `experts.index.json` (EP size at save, tensor name -> file).
    Collective (ends with a barrier)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if state is None else state
    ep = mesh.size(mesh.mesh_dim_names.index("ep"))
    experts = _all_expert_names(model)
    file_of = lambda p: f"experts-ep{p}-of-{ep}.safetensors"  # noqa: E731
    if mesh.get_local_rank("edp") == 0:
        tensors = {_expert_key(name, w, e): state[f"{name}.{w}"][l].contiguous()
                   for name, moe in moe_layers(model) for w in EXPERT_WEIGHTS
                   if f"{name}.{w}" in state for l, e in enumerate(_local_experts(moe))}
        save_file(tensors, str(folder / file_of(mesh.get_local_rank("ep"))))
    if dist.get_rank() == 0:
        replicated = {k: v.contiguous() for k, v in state.items() if k not in experts}
        save_file(replicated, str(folder / REPLICATED_FILE))
        weight_map = {k: REPLICATED_FILE for k in replicated}
        for name, moe in moe_layers(model):
            E = moe.cfg.n_routed_experts
            weight_map.update({_expert_key(name, w, e): file_of(e // (E // ep))
                               for w in EXPERT_WEIGHTS if f"{name}.{w}" in state
                               for e in range(E)})
        (folder / INDEX_FILE).write_text(json.dumps({"ep_size": ep, "weight_map": weight_map},
                                                    indent=1))
    dist.barrier()


def read_sharded(model: nn.Module, folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `save_sharded` folder (written at any EP size) laid out for this rank of
    `model` (sharded or not): every replicated entry, and each MoE weight stacked from the
    experts this rank holds, read one tensor at a time from the files the index names."""
    folder = Path(folder)
    weight_map = json.loads((folder / INDEX_FILE).read_text())["weight_map"]
    handles = {}

    def read(key: str) -> torch.Tensor:
        file = weight_map[key]
        if file not in handles:
            handles[file] = safe_open(str(folder / file), framework="pt")
        return handles[file].get_tensor(key)

    out = {k: read(k) for k, file in weight_map.items() if file == REPLICATED_FILE}
    for name, moe in moe_layers(model):
        for w in EXPERT_WEIGHTS:
            if _expert_key(name, w, 0) in weight_map:
                out[f"{name}.{w}"] = torch.stack([read(_expert_key(name, w, e))
                                                  for e in _local_experts(moe)])
    return out


@torch.no_grad()
def load_sharded(model: nn.Module, folder: str | Path) -> None:
    """`model.load_state_dict` (strict) from a `save_sharded` folder of its state_dict."""
    model.load_state_dict(read_sharded(model, folder), strict=True)

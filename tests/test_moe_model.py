"""DeepSeekMoE model: router, aux-free balancing, every-expert calls, training, MTP, MLA."""
import dataclasses
import math

import pytest
import torch
import torch.nn as nn

from deeprecipe.kernels import moe_grouped
from deeprecipe.stages.moe_model import (MOE_CONFIGS, MoE, MoEConfig, MoETransformer, KVCache, Router,
                              router_load_ratios, update_router_bias)


@pytest.fixture(autouse=True)
def _cpu_reference_path(monkeypatch):
    """Model tests use the fast PyTorch path (test_kernels covers Triton), seeded, 1 thread."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("DEEPRECIPE_MOE_BACKEND", raising=False)
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # robust on a shared 2-core box (no OpenMP spin contention)
    yield
    torch.set_num_threads(n)


def small_cfg(**kw):
    base = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=2, head_dim=16, n_dense_layers=1,
                d_ff_dense=64, n_shared_experts=1, n_routed_experts=8, top_k=2, d_ff_expert=16,
                max_seq_len=32)
    base.update(kw)
    return MoEConfig(**base)


# ----------------------------------------------------------------------------- router


def _skewed_moe(cfg):
    """An MoE layer whose router strongly prefers experts 0 and 1 for inputs along u."""
    moe = MoE(cfg)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.02)
        u = torch.zeros(cfg.d_model)
        u[0] = 1.0
        moe.router.weight.normal_(0, 0.3)
        moe.router.weight[0] += 2.0 * u
        moe.router.weight[1] += 1.5 * u
    return moe, u


def test_bias_update_drives_load_towards_balance():
    cfg = small_cfg(n_routed_experts=8, top_k=2)
    moe, u = _skewed_moe(cfg)
    model = nn.ModuleDict({"moe": moe}).train()
    g = torch.Generator().manual_seed(1)
    ratios = []
    for _ in range(150):
        x = torch.randn(4, 32, cfg.d_model, generator=g) + 2.0 * u
        with torch.no_grad():
            model["moe"](x)
        stats = update_router_bias(model, gamma=0.01)
        ratios.append(stats["moe"])
        assert abs(moe.router.expert_bias.mean().item()) < 1e-6  # re-centred
        assert moe.tokens_per_expert.sum() == 0  # reset for the next step
    first, last = ratios[0], sum(ratios[-10:]) / 10
    assert first > 3.0, f"input not skewed enough: max/mean {first:.2f}"
    assert last < 1.5 and last < first / 2, f"max/mean {first:.2f} -> {last:.2f}"
    b = moe.router.expert_bias
    assert b[0] < 0 and b[1] < 0  # the favoured experts were pushed down


def test_bias_update_uses_global_load_from_all_reduce():
    """Locally balanced counts but a skewed global load (as another rank would add): the bias
    follows the global load, and the reported ratio is the global one."""
    cfg = small_cfg(n_routed_experts=4, top_k=1)
    model = nn.ModuleDict({"moe": MoE(cfg)})
    moe = model["moe"]
    moe.tokens_per_expert.copy_(torch.tensor([10.0, 10.0, 10.0, 10.0]))
    other_rank = torch.tensor([30.0, 0.0, 10.0, 0.0])
    calls = []

    def fake_all_reduce(t):
        calls.append(t.shape)
        t += other_rank

    stats = update_router_bias(model, gamma=0.1, all_reduce=fake_all_reduce)
    assert calls == [torch.Size([1, 4])]
    assert stats["moe"] == pytest.approx(40.0 / 20.0)  # global load [40, 10, 20, 10]
    # sign(load - mean) = [+1, -1, 0, -1]; b = -0.1 * sign, re-centred
    expected = torch.tensor([-0.1, 0.1, 0.0, 0.1])
    torch.testing.assert_close(moe.router.expert_bias, expected - expected.mean())


def test_bias_changes_choice_but_not_gate_values():
    cfg = small_cfg(n_routed_experts=8, top_k=2, route_scale=2.5)
    router = Router(cfg)
    nn.init.normal_(router.weight, 0, 0.5)
    assert "expert_bias" not in dict(router.named_parameters())  # a buffer, never trained
    assert "expert_bias" in router.state_dict()  # but checkpointed
    x = torch.randn(50, cfg.d_model)
    idx0, gates0, scores, _ = router(x)
    s_ref = torch.sigmoid(x @ router.weight.T)
    torch.testing.assert_close(scores, s_ref)

    with torch.no_grad():
        router.expert_bias[5] = 10.0
        router.expert_bias[6] = 9.0
    idx1, gates1, scores1, _ = router(x)
    torch.testing.assert_close(scores1, scores)  # affinities untouched by b
    assert torch.all(idx1.sort(-1).values == torch.tensor([5, 6]))  # choice follows b
    assert not torch.equal(idx0.sort(-1).values, idx1.sort(-1).values)
    for idx, gates in ((idx0, gates0), (idx1, gates1)):
        s_k = s_ref.gather(1, idx)
        torch.testing.assert_close(gates, s_k / s_k.sum(-1, keepdim=True) * 2.5)
        torch.testing.assert_close(gates.sum(-1), torch.full((50,), 2.5))


def test_every_expert_runs_even_when_empty(monkeypatch):
    cfg = small_cfg(n_routed_experts=6, top_k=2, moe_backend="reference")
    moe = MoE(cfg)
    for p in moe.parameters():
        nn.init.normal_(p, 0, 0.1)
    with torch.no_grad():
        moe.router.expert_bias[:2] = 100.0  # every token picks experts 0 and 1
    rows = []
    real = moe_grouped.expert_ffn_reference

    def counting(x_TD, *w):
        rows.append(x_TD.shape[0])
        return real(x_TD, *w)

    monkeypatch.setattr(moe_grouped, "expert_ffn_reference", counting)
    x = torch.randn(2, 5, cfg.d_model, requires_grad=True)
    y, aux = moe(x)
    assert rows == [10, 10, 0, 0, 0, 0]  # one call per expert, the empty ones included
    (y.square().sum() + aux["aux"]).backward()
    assert moe.w_gate_EDF.grad is not None and moe.w_down_EFD.grad is not None
    assert torch.all(moe.w_gate_EDF.grad[2:] == 0) and moe.w_gate_EDF.grad[:2].abs().sum() > 0


def test_seq_aux_loss_matches_definition():
    cfg = small_cfg(n_routed_experts=4, top_k=2, seq_aux_alpha=0.5)
    moe = MoE(cfg)
    nn.init.normal_(moe.router.weight, 0, 0.5)
    for p in (moe.w_gate_EDF, moe.w_up_EDF, moe.w_down_EFD):
        nn.init.normal_(p, 0, 0.1)
    x = torch.randn(3, 7, cfg.d_model)
    _, aux = moe(x)
    expected = 0.0
    for b in range(3):
        idx, _, s, _ = moe.router(x[b])
        loss = 0.0
        for i in range(4):
            f_i = 4 / (2 * 7) * (idx == i).sum().item()
            P_i = (s[:, i] / s.sum(-1)).mean().item()
            loss += f_i * P_i
        expected += 0.5 * loss / 3
    assert aux["aux"].item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- model


def test_tiny_model_loss_falls_on_repeated_batch():
    cfg = MOE_CONFIGS["tiny"]
    model = MoETransformer(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, cfg.vocab_size, (8, 65), generator=g)
    losses = []
    for _ in range(30):
        _, L = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        L["total"].backward()
        opt.step()
        update_router_bias(model, cfg.bias_update_speed)
        losses.append(L["lm"].item())
    assert abs(losses[0] - math.log(cfg.vocab_size)) < 0.5  # sensible init
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize("variant", [
    dict(mtp_depth=1, mtp_weight=0.3),
    dict(attention="mla", kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
         v_head_dim=12),
    dict(attention="mla", q_lora_rank=20, kv_lora_rank=24, qk_nope_head_dim=16,
         qk_rope_head_dim=8, v_head_dim=12, mtp_depth=1, router_z_loss=1e-3),
])
def test_variants_forward_backward(variant):
    cfg = small_cfg(**variant)
    model = MoETransformer(cfg).train()
    idx = torch.randint(0, cfg.vocab_size, (2, 17))
    logits, L = model(idx[:, :-1], idx[:, 1:])
    assert logits.shape == (2, 16, cfg.vocab_size)
    assert set(L) == {"lm", "aux", "z", "mtp", "total"}
    assert all(torch.isfinite(v) for v in L.values())
    expected_total = L["lm"] + L["aux"] + L["z"] + cfg.mtp_weight * L["mtp"]
    torch.testing.assert_close(L["total"], expected_total)
    if cfg.mtp_depth:
        assert L["mtp"] > 0
    if cfg.router_z_loss:
        assert L["z"] > 0
    L["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    if cfg.mtp_depth:
        assert model.mtp.proj.weight.grad.abs().sum() > 0
    stats = update_router_bias(model, 1e-3)
    n_moe = cfg.n_layers - cfg.n_dense_layers + cfg.mtp_depth
    assert len(stats) == n_moe and all(v >= 1.0 for v in stats.values())


@pytest.mark.parametrize("attention", ["mha", "mla"])
def test_causal_and_kv_cache_match_full_forward(attention):
    cfg = small_cfg(attention=attention, kv_lora_rank=24, qk_nope_head_dim=16,
                    qk_rope_head_dim=8, v_head_dim=12)
    model = MoETransformer(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        full, losses = model(idx)
        assert losses == {}
        changed = idx.clone()
        changed[:, 8:] = (changed[:, 8:] + 1) % cfg.vocab_size
        torch.testing.assert_close(model(changed)[0][:, :8], full[:, :8])  # causal
        cache = KVCache()
        steps = [model(idx[:, :5], kv_cache=cache, start_pos=0)[0]]  # prefill
        for t in range(5, 9):
            steps.append(model(idx[:, t:t + 1], kv_cache=cache, start_pos=t)[0])
        steps.append(model(idx[:, 9:], kv_cache=cache, start_pos=9)[0])  # chunk of 3
    assert cache.seq_len() == 12
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_param_and_flop_counts():
    cfg = MOE_CONFIGS["tiny"]
    model = MoETransformer(cfg)
    D, H, hd, V, L = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.vocab_size, cfg.n_layers
    E, K, Fe, ns = cfg.n_routed_experts, cfg.top_k, cfg.d_ff_expert, cfg.n_shared_experts
    n_moe = L - cfg.n_dense_layers
    attn = 4 * D * H * hd
    dense = 3 * D * cfg.d_ff_dense
    moe_fixed = E * D + 3 * D * Fe * ns  # router + shared experts
    routed = 3 * D * Fe * E
    norms = (2 * L + 1) * D
    total = V * D * 2 + L * attn + cfg.n_dense_layers * dense + n_moe * (moe_fixed + routed) + norms
    assert model.num_params() == total
    active = total - n_moe * routed * (1 - K / E)
    assert model.num_params(active_only=True) == active
    matmul_active = active - V * D - norms  # no embedding lookup, no norm weights
    T = 128
    assert model.flops_per_token(T) == 6 * matmul_active + 6 * L * H * (2 * hd) * T
    mtp = MoETransformer(dataclasses.replace(cfg, mtp_depth=1))  # + MTP block, head runs twice
    mtp_matmul = (matmul_active + 2 * D * D + attn + moe_fixed + routed * K / E + V * D)
    assert mtp.flops_per_token(T) == 6 * mtp_matmul + 6 * (L + 1) * H * (2 * hd) * T
    small = MOE_CONFIGS["small"]
    assert (small.n_layers, small.d_model, small.n_shared_experts, small.n_routed_experts,
            small.top_k, small.max_seq_len) == (12, 1024, 2, 64, 6, 2048)
    assert 1e6 < total < 1e7  # "a few million"


# ----------------------------------------------------------------------------- fast paths


def test_return_logits_false_gives_same_losses_and_grads():
    cfg = small_cfg(attention="mla", kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
                    v_head_dim=12, mtp_depth=1, router_z_loss=1e-3)
    model = MoETransformer(cfg).train()
    idx = torch.randint(0, cfg.vocab_size, (2, 17))
    idx[0, 5] = -1  # an ignored target
    inp, tgt = idx[:, :-1].clamp(min=0), idx[:, 1:]
    logits, L = model(inp, tgt)
    L["total"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    none, L2 = model(inp, tgt, return_logits=False)
    L2["total"].backward()
    assert none is None and logits.shape == (2, 16, cfg.vocab_size)
    for k in L:
        torch.testing.assert_close(L2[k], L[k], atol=1e-6, rtol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-6, rtol=1e-5, msg=n)


def test_padded_v_attention_matches_unpadded():
    base = dict(attention="mla", kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
                v_head_dim=12)
    model = MoETransformer(small_cfg(**base, attn_pad_v=False)).eval()
    padded = MoETransformer(small_cfg(**base, attn_pad_v=True)).eval()
    padded.load_state_dict(model.state_dict())
    idx = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(padded(idx)[0], model(idx)[0], atol=1e-5, rtol=1e-5)
        cache = KVCache()  # decoding path (T=1 and chunked queries) too
        a = padded(idx[:, :6], kv_cache=cache)[0]
        b = padded(idx[:, 6:7], kv_cache=cache, start_pos=6)[0]
        torch.testing.assert_close(torch.cat([a, b], 1), model(idx[:, :7])[0], atol=1e-5,
                                   rtol=1e-4)


def test_load_counts_and_ratios_without_sync():
    cfg = small_cfg(n_routed_experts=8, top_k=2)
    model = MoETransformer(cfg).train()
    moe = model.layers[1].ffn
    seen = []
    real = moe.router.forward

    def spy(x):
        out = real(x)
        seen.append(out[0])
        return out

    moe.router.forward = spy
    idx = torch.randint(0, cfg.vocab_size, (3, 9))
    model(idx[:, :-1], idx[:, 1:])
    counts = torch.bincount(seen[0].flatten(), minlength=8).float()
    torch.testing.assert_close(moe.tokens_per_expert, counts)
    ratio = router_load_ratios(model)
    assert ratio.shape == (1,)
    assert ratio[0].item() == pytest.approx((counts.max() / counts.mean()).item())
    stats = update_router_bias(model, 1e-3, return_stats=False)
    assert stats == {} and moe.tokens_per_expert.sum() == 0

"""Batched sampling on the tiny MoE model: KV cache == full recompute, ragged prompts, EOS."""
import pytest
import torch

from deeprecipe.stages.r1.grpo_loss import token_logprobs
from deeprecipe.stages.moe_model import KVCache, MoEConfig, MoETransformer
from deeprecipe.stages.r1.sampler import (DONE_CHECK_EVERY, generate, generate_no_cache, static_decode_logits,
                            top_p_filter, unpad_left)

PROMPTS = [[5, 17, 3], [9], [40, 41, 42, 43, 44, 45], [7, 7]]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a loaded CI box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_model(attention: str = "mha") -> MoETransformer:
    torch.manual_seed(0)
    cfg = MoEConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, head_dim=16,
                    n_dense_layers=1, d_ff_dense=64, n_shared_experts=1, n_routed_experts=4,
                    top_k=2, d_ff_expert=16, max_seq_len=48, init_std=0.5, attention=attention,
                    kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)
    # a large init std gives peaked, input-dependent logits (no near-ties for argmax)
    return MoETransformer(cfg).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model("mha")


@pytest.mark.parametrize("attention", ["mha", "mla"])
def test_greedy_with_cache_equals_full_recompute(attention):
    model = tiny_model(attention)
    cached = generate(model, PROMPTS, max_new_tokens=12, eos_id=None, temperature=0.0)
    full = generate_no_cache(model, PROMPTS, max_new_tokens=12, eos_id=None, temperature=0.0)
    assert torch.equal(cached.tokens_BN, full.tokens_BN)
    assert cached.lengths_B.tolist() == [12] * len(PROMPTS)
    torch.testing.assert_close(cached.logprobs_BN, full.logprobs_BN, atol=1e-4, rtol=0)
    assert len({tuple(r) for r in cached.tokens_BN.tolist()}) > 1  # not one constant output


def test_ragged_batch_equals_each_row_alone(model):
    batch = generate(model, PROMPTS, max_new_tokens=10, eos_id=None, temperature=0.0)
    for b, prompt in enumerate(PROMPTS):
        alone = generate(model, [prompt], max_new_tokens=10, eos_id=None, temperature=0.0)
        assert batch.tokens_BN[b].tolist() == alone.tokens_BN[0].tolist(), b


def test_logprobs_match_a_forward_pass(model):
    out = generate(model, PROMPTS, max_new_tokens=8, eos_id=None, temperature=1.0,
                   generator=torch.Generator().manual_seed(3))
    for b, prompt in enumerate(PROMPTS):
        seq = torch.tensor([prompt + out.tokens_BN[b].tolist()])
        logits, _ = model(seq[:, :-1])
        lp = token_logprobs(logits, seq[:, 1:])[0, len(prompt) - 1:]
        torch.testing.assert_close(lp, out.logprobs_BN[b], atol=1e-4, rtol=0)


def test_eos_stops_a_row_while_others_continue(model):
    free = generate(model, PROMPTS, max_new_tokens=12, eos_id=None, temperature=0.0)
    rows = free.tokens_BN.tolist()
    # the EOS: row 0's 4th token, chosen among those that row 2 never produces
    eos = next(t for t in rows[0][3:] if t not in rows[2])
    out = generate(model, PROMPTS, max_new_tokens=12, eos_id=eos, pad_id=63, temperature=0.0)
    for b, row in enumerate(rows):
        n = row.index(eos) + 1 if eos in row else 12
        assert out.lengths_B[b].item() == n
        assert out.finished_B[b].item() == (eos in row)
        assert out.tokens_BN[b, :n].tolist() == row[:n]
        assert out.tokens_BN[b, n:].tolist() == [63] * (12 - n)
        assert (out.logprobs_BN[b, n:] == 0).all()
        assert out.mask_BN()[b].sum().item() == n
    assert out.lengths_B[0] < 12 and out.lengths_B[2] == 12


def test_tiny_top_p_equals_greedy(model):
    greedy = generate(model, PROMPTS, max_new_tokens=10, eos_id=None, temperature=0.0)
    nucleus = generate(model, PROMPTS, max_new_tokens=10, eos_id=None, temperature=1.0,
                       top_p=1e-6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(greedy.tokens_BN, nucleus.tokens_BN)


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    def run(seed):
        return generate(model, PROMPTS, max_new_tokens=10, eos_id=None, temperature=1.0,
                        generator=torch.Generator().manual_seed(seed)).tokens_BN
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_top_p_filter_keeps_the_nucleus():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    torch.testing.assert_close(top_p_filter(probs, 0.7), torch.tensor([[0.0, 0.625, 0.375, 0.0]]))
    torch.testing.assert_close(top_p_filter(probs, 0.5), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    torch.testing.assert_close(top_p_filter(probs, 1.0), probs)


def test_left_padded_input_and_length_limit(model):
    idx = torch.tensor([[0, 0, 5, 17, 3], [40, 41, 42, 43, 44]])
    assert unpad_left(idx, torch.tensor([3, 5])) == [[5, 17, 3], [40, 41, 42, 43, 44]]
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, [[1] * 40], max_new_tokens=9, eos_id=None)


def test_training_mode_and_router_counters_untouched(model):
    model.train()
    try:
        generate(model, PROMPTS, max_new_tokens=3, eos_id=None, temperature=0.0)
        assert model.training
        counts = [m.tokens_per_expert for m in model.modules() if hasattr(m, "tokens_per_expert")]
        assert counts and all(c.sum() == 0 for c in counts)
    finally:
        model.eval()


# ----------------------------------------------------------------------------- KV cache, decode


def _step_logits(model, idx, prefill, cache):
    """Logits of prefill idx[:, :prefill] then one-token steps, each (B, V), via the cache."""
    out = [model(idx[:, :prefill], kv_cache=cache)[0][:, -1]]
    for t in range(prefill, idx.shape[1]):
        out.append(model(idx[:, t:t + 1], kv_cache=cache, start_pos=t)[0][:, -1])
    return torch.stack(out, 1)


@pytest.mark.parametrize("attention", ["mha", "mla"])
@pytest.mark.parametrize("max_len", [None, 20, 48])
def test_preallocated_and_growing_cache_match_full_forward(attention, max_len):
    model = tiny_model(attention)
    idx = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(idx)[0][:, 3:]
        cache = KVCache(max_len=max_len)
        steps = _step_logits(model, idx, 4, cache)
    assert cache.seq_len() == 20
    assert cache.room() == (max_len or 32)  # None: room doubled 16 -> 32
    torch.testing.assert_close(steps, full, atol=1e-4, rtol=1e-4)


def test_absorbed_mla_decode_matches_full_forward():
    model = tiny_model("mla")
    calls = []
    for blk in model.layers:
        real = blk.attn._attend_absorbed
        blk.attn._attend_absorbed = lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k)
    idx = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx)[0][:, 8:]
        n0 = len(calls)
        steps = _step_logits(model, idx, 9, KVCache(max_len=16))
    assert len(calls) - n0 == 2 * 7  # every one-token step, both layers, was absorbed
    torch.testing.assert_close(steps, full, atol=1e-4, rtol=1e-4)


def test_absorbed_equals_expanded_attention_on_a_chunk():
    """Both MLA paths on T=5 queries over S=12 cached positions (causal mask at the end)."""
    attn = tiny_model("mla").layers[1].attn
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 12, 32, generator=g)
    cos, sin = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    with torch.no_grad():
        q_nope, q_pe, c_kv, k_pe = attn._project(x, cos, sin)
        q_nope, q_pe = q_nope[:, :, 7:], q_pe[:, :, 7:]
        kv = torch.cat([c_kv, k_pe.squeeze(1)], -1)
        absorbed = attn._attend_absorbed(q_nope, q_pe, kv)
        expanded = attn._attend_expanded(q_nope, q_pe, c_kv, k_pe)
        full = attn(x, cos, sin)[:, 7:]
    torch.testing.assert_close(absorbed, expanded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(expanded, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["mha", "mla"])
def test_static_decode_step_matches_eager(attention):
    """The CUDA-graph step (device position, fixed span, masked tail) on CPU."""
    model = tiny_model(attention)
    idx = torch.randint(0, 64, (3, 14), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        eager = _step_logits(model, idx, 5, KVCache(max_len=14))
        cache = KVCache(max_len=14)
        static = [model(idx[:, :5], kv_cache=cache)[0][:, -1]]
        for t in range(5, 14):
            span = 8 if t < 8 else 14  # two "graph buckets"
            static.append(static_decode_logits(model, cache, idx[:, t:t + 1],
                                               torch.tensor([t]), span))
            cache.end_static(t + 1)
    assert cache.seq_len() == 14 and cache.key_mask_S is None
    torch.testing.assert_close(torch.stack(static, 1), eager, atol=1e-4, rtol=1e-4)


def test_cache_overflow_and_misuse_give_clear_errors():
    model = tiny_model("mla")
    idx = torch.randint(0, 64, (2, 9))
    cache = KVCache(max_len=8)
    with torch.no_grad():
        model(idx[:, :8], kv_cache=cache)
        with pytest.raises(ValueError, match="KVCache overflow.*max_len is 8"):
            model(idx[:, 8:], kv_cache=cache, start_pos=8)
        with pytest.raises(ValueError, match="span 9 > room 0"):
            KVCache(max_len=8).begin_static(torch.tensor([0]), 9)
        c = KVCache(max_len=8)
        model(idx[:, :2], kv_cache=c)
        with pytest.raises(ValueError, match=r"KVCache: layer 0 holds \(2, 8, 24\)"):
            model(idx[:1, 2:3], kv_cache=c, start_pos=2)  # another batch size


def test_generate_with_a_growing_cache_and_cpu_graph_request(model):
    default = generate(model, PROMPTS, max_new_tokens=10, eos_id=None, temperature=0.0)
    growing = generate(model, PROMPTS, max_new_tokens=10, eos_id=None, temperature=0.0,
                       new_cache=KVCache)
    assert torch.equal(default.tokens_BN, growing.tokens_BN)
    with pytest.raises(ValueError, match="cuda_graph=True"):
        generate(model, PROMPTS, max_new_tokens=2, eos_id=None, cuda_graph=True)


def test_stop_ids_end_rows_like_eos(model):
    free = generate(model, PROMPTS, max_new_tokens=12, eos_id=None, temperature=0.0)
    rows = free.tokens_BN.tolist()
    eos = next(t for t in rows[0][3:] if t not in rows[2])
    stop = next(t for t in rows[2][2:] if t not in rows[0][:rows[0].index(eos) + 1])
    out = generate(model, PROMPTS, max_new_tokens=12, eos_id=eos, pad_id=63, temperature=0.0,
                   stop_ids=[stop])
    for b, row in enumerate(rows):
        ends = [row.index(t) + 1 for t in (eos, stop) if t in row]
        n = min(ends, default=12)
        assert out.lengths_B[b].item() == n and out.finished_B[b].item() == bool(ends)
        assert out.tokens_BN[b, :n].tolist() == row[:n]
    assert out.lengths_B[0].item() == rows[0].index(eos) + 1
    assert out.lengths_B[2].item() == rows[2].index(stop) + 1
    # a stop id alone (no EOS) ends rows exactly as that id given as the EOS does
    as_stop = generate(model, PROMPTS, max_new_tokens=12, eos_id=None, temperature=0.0,
                       stop_ids=[eos])
    as_eos = generate(model, PROMPTS, max_new_tokens=12, eos_id=eos, temperature=0.0)
    assert torch.equal(as_stop.lengths_B, as_eos.lengths_B)
    assert torch.equal(as_stop.finished_B, as_eos.finished_B)
    assert torch.equal(as_stop.tokens_BN, as_eos.tokens_BN)


def test_all_rows_at_eos_stop_within_the_check_interval(model):
    free = generate(model, [[5, 17, 3]], max_new_tokens=40, eos_id=None, temperature=0.0)
    eos = free.tokens_BN[0, 1].item()  # hit at the 2nd (or 1st) token
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = generate(model, [[5, 17, 3]] * 2, max_new_tokens=40, eos_id=eos, temperature=0.0)
    finally:
        hook.remove()
    assert out.finished_B.all() and (out.lengths_B <= 2).all()
    assert len(calls) == DONE_CHECK_EVERY  # not 40 steps, one host check

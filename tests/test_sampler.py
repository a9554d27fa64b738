"""Batched sampling on the tiny MoE model: KV cache == full recompute, ragged prompts, EOS."""
import pytest
import torch

from stages.grpo import token_logprobs
from stages.moe_model import MoEConfig, MoETransformer
from stages.sampler import generate, generate_no_cache, top_p_filter, unpad_left

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

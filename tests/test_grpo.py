"""GRPO math against hand-computed numbers; SFT loss and packing masks; Bradley-Terry."""
import math

import pytest
import torch
import torch.nn as nn

from deeprecipe.stages.r1.grpo_loss import (bradley_terry_loss, group_advantages, grpo_loss, informative_group_fraction, k3_kl,
                         make_reference_model, maybe_reset_reference, pack_sft_examples, sft_loss,
                         token_logprobs)

LN2 = math.log(2.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a loaded CI box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_group_advantages_hand_computed():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0],
                            [0.0, 0.0, 0.0, 0.0],
                            [2.0, 0.0, 1.0, 1.0]])
    # group 0: mean 0.5, sample std sqrt(1/3) = 0.57735 -> +-0.5 / 0.57735 = +-0.866025
    # group 1: all equal -> 0; group 2: mean 1, sample std sqrt(2/3) = 0.816497 -> +-1.224745
    want = torch.tensor([[0.866025, -0.866025, -0.866025, 0.866025],
                         [0.0, 0.0, 0.0, 0.0],
                         [1.224745, -1.224745, 0.0, 0.0]])
    torch.testing.assert_close(group_advantages(rewards, eps=1e-8), want, atol=1e-5, rtol=0)
    # population std: group 0 std 0.5 -> +-1
    torch.testing.assert_close(group_advantages(rewards[:1], eps=0.0, unbiased=False),
                               torch.tensor([[1.0, -1.0, -1.0, 1.0]]))
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))


def test_k3_kl_values_and_unbiasedness():
    new = torch.tensor([-1.0, -1.0, -1.0])
    ref = torch.tensor([-1.0 + LN2, -1.0 - LN2, -1.0])
    # d = ln2: 2 - ln2 - 1 = 0.306853; d = -ln2: 0.5 + ln2 - 1 = 0.193147; d = 0: 0
    torch.testing.assert_close(k3_kl(new, ref), torch.tensor([0.306853, 0.193147, 0.0]),
                               atol=1e-6, rtol=0)
    # E_{x ~ p_new} k3 = KL(p_new || p_ref) exactly for a categorical
    p_new = torch.tensor([0.5, 0.3, 0.2])
    p_ref = torch.tensor([0.2, 0.2, 0.6])
    expected_k3 = (p_new * k3_kl(p_new.log(), p_ref.log())).sum()
    kl = (p_new * (p_new.log() - p_ref.log())).sum()
    torch.testing.assert_close(expected_k3, kl)
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_token_logprobs():
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]]])  # (1, 2, 2)
    tokens = torch.tensor([[1, 0]])
    torch.testing.assert_close(token_logprobs(logits, tokens),
                               torch.tensor([[math.log(0.75), math.log(0.5)]]))


def hand_example():
    """Two outputs, T=3. Output 0: A=+1, mask [1,1,0], ratios [1, 1.5, (ignored)].
    Output 1: A=-0.5, mask [1,1,1], ratios [0.5, 1, 1.1]. ref - new = [ln2, 0, *], [0, -ln2, 0]."""
    old = torch.tensor([[-1.0, -2.0, -3.0], [-1.5, -0.5, -2.0]])
    new = old + torch.log(torch.tensor([[1.0, 1.5, 50.0], [0.5, 1.0, 1.1]]))
    ref = new + torch.tensor([[LN2, 0.0, 3.0], [0.0, -LN2, 0.0]])
    A = torch.tensor([1.0, -0.5])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    return new, old, ref, A, mask


def test_grpo_loss_hand_computed():
    new, old, ref, A, mask = hand_example()
    loss, stats = grpo_loss(new, old, ref, A, mask, clip_eps=0.2, beta=0.1)
    # output 0: t0 min(1, 1) - 0.1*0.306853 = 0.969315; t1 ratio 1.5 clipped to 1.2 -> 1.2
    #           mean over 2 tokens = 1.084657
    # output 1: t0 ratio 0.5 -> min(-0.25, 0.8*-0.5 = -0.4) = -0.4; t1 -0.5 - 0.1*0.193147
    #           = -0.519315; t2 -0.55 -> mean over 3 = -0.489772
    # loss = -(1.084657 - 0.489772) / 2 = -0.297443
    assert loss.item() == pytest.approx(-0.297443, abs=1e-5)
    assert stats["clip_fraction"] == pytest.approx(2 / 5)          # out0 t1, out1 t0
    assert stats["kl"] == pytest.approx((0.306853 / 2 + 0.193147 / 3) / 2, abs=1e-6)
    assert stats["ratio"] == pytest.approx((1 + 1.5 + 0.5 + 1 + 1.1) / 5, abs=1e-6)


def test_grpo_clipping_and_gradient_signs():
    new, old, ref, A, mask = hand_example()
    new = new.clone().requires_grad_(True)
    loss, _ = grpo_loss(new, old, ref, A, mask, clip_eps=0.2, beta=0.0)
    loss.backward()
    g = new.grad
    # unclipped, A=+1: d loss / d logp = -(1/2 outputs)(1/2 tokens) * ratio * A = -0.25
    assert g[0, 0].item() == pytest.approx(-0.25)
    # ratio 1.5 > 1 + eps with A > 0: clipped, no gradient
    assert g[0, 1].item() == 0.0
    # masked-out token: no gradient although its ratio is 50
    assert g[0, 2].item() == 0.0
    # ratio 0.5 < 1 - eps with A < 0: clipped, no gradient
    assert g[1, 0].item() == 0.0
    # negative advantage, unclipped: gradient pushes logp down (positive d loss / d logp)
    # -(1/2)(1/3) * 1.1 * -0.5 = +0.091667
    assert g[1, 2].item() == pytest.approx(0.0916667, abs=1e-6)
    # the KL term pulls towards the reference: with A = 0, beta > 0 and ref > new, the
    # gradient lowers the loss by raising logp_new
    z = torch.zeros(1, 1, requires_grad=True)
    loss, _ = grpo_loss(z, z.detach(), torch.full((1, 1), 0.5), torch.zeros(1), torch.ones(1, 1),
                        beta=1.0)
    loss.backward()
    assert z.grad.item() < 0


def test_kl_clamp_stops_the_gradient_of_a_token_far_below_the_reference():
    """ref - new = 5 on one token: k3 = e^5 - 6 = 142.4, gradient 1 - e^5 = -147.4 (x beta and
    1/|o|); capped at 10 that token's KL term gives no gradient, the other token's is kept."""
    ref = torch.tensor([[5.0, 0.1]])
    for clamp, want0 in ((0.0, (1 - math.exp(5)) / 2), (10.0, 0.0)):
        new = torch.zeros(1, 2, requires_grad=True)
        loss, stats = grpo_loss(new, new.detach(), ref, torch.zeros(1), torch.ones(1, 2),
                                beta=1.0, kl_clamp=clamp)
        loss.backward()
        assert new.grad[0, 0].item() == pytest.approx(want0, rel=1e-5)
        assert new.grad[0, 1].item() == pytest.approx((1 - math.exp(0.1)) / 2, rel=1e-5)
        # the reported KL is the uncapped estimate either way
        assert stats["kl"] == pytest.approx((math.exp(5) - 6 + math.exp(0.1) - 1.1) / 2, rel=1e-5)
        assert stats["kl_max"] == pytest.approx(math.exp(5) - 6, rel=1e-5)


class Bigram(nn.Module):
    def __init__(self, V=8):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.head = nn.Linear(16, V)

    def forward(self, idx_BT):
        return self.head(self.emb(idx_BT))


def test_grpo_step_raises_logp_of_positive_advantage_output():
    torch.manual_seed(0)
    model = Bigram()
    seq = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])  # disjoint tokens: independent rows
    A = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 3)

    def logp():
        return token_logprobs(model(seq[:, :-1]), seq[:, 1:])

    before = logp().detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, stats = grpo_loss(logp(), before, before, A, mask, clip_eps=0.2, beta=0.04)
    assert stats["ratio"] == pytest.approx(1.0) and stats["kl"] == pytest.approx(0.0)
    loss.backward()
    opt.step()
    after = logp().detach()
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()


def test_reference_reset_every_n_steps():
    torch.manual_seed(0)
    policy = nn.Linear(3, 2)
    ref = make_reference_model(policy)
    assert all(not p.requires_grad for p in ref.parameters()) and not ref.training
    with torch.no_grad():
        policy.weight.add_(1.0)
    assert not maybe_reset_reference(policy, ref, step=3, every=4)
    assert not torch.equal(ref.weight, policy.weight)
    assert maybe_reset_reference(policy, ref, step=8, every=4)
    assert torch.equal(ref.weight, policy.weight)
    assert not maybe_reset_reference(policy, ref, step=8, every=0)


def test_sft_loss_only_response_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.float32)
    loss = sft_loss(logits, targets, mask)
    ce = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert loss.item() == pytest.approx((ce * mask).sum().item() / 6)
    changed = targets.clone()
    changed[mask == 0] = (changed[mask == 0] + 3) % 7     # different prompt/pad targets
    assert sft_loss(logits, changed, mask).item() == pytest.approx(loss.item())
    changed = targets.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 7                # a response target moves the loss
    assert sft_loss(logits, changed, mask).item() != pytest.approx(loss.item())


def test_pack_sft_examples_hand_checked():
    examples = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9]), ([10, 11], [12])]
    p = pack_sft_examples(examples, seq_len=8, pad_id=0)
    # best-fit decreasing into rows of 9: [ex0 (5) + ex1 (4)], [ex2 (3)]
    assert p.inputs_BT.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8], [10, 11, 12, 0, 0, 0, 0, 0]]
    assert p.targets_BT.tolist() == [[2, 3, 4, 5, 6, 7, 8, 9], [11, 12, 0, 0, 0, 0, 0, 0]]
    assert p.loss_mask_BT.tolist() == [[0, 0, 1, 1, 0, 1, 1, 1], [0, 1, 0, 0, 0, 0, 0, 0]]
    assert p.position_ids_BT.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 0, 0, 0, 0, 0]]
    assert p.segment_ids_BT.tolist() == [[1, 1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert (p.n_truncated, p.n_dropped) == (0, 0)


def test_pack_sft_masks_cover_exactly_the_responses():
    g = torch.Generator().manual_seed(0)
    examples = []
    for i in range(40):
        n_p, n_r = (int(x) for x in torch.randint(1, 9, (2,), generator=g))
        # prompt ids < 100, response ids >= 100 so any leak of a prompt token is visible
        examples.append((torch.randint(1, 100, (n_p,), generator=g).tolist(),
                         torch.randint(100, 200, (n_r,), generator=g).tolist()))
    examples.append((list(range(1, 40)), [150]))             # prompt fills a row: dropped
    examples.append(([1, 2], list(range(100, 140))))         # response truncated
    p = pack_sft_examples(examples, seq_len=16, pad_id=0)
    assert (p.n_dropped, p.n_truncated) == (1, 1)
    masked_targets = p.targets_BT[p.loss_mask_BT.bool()]
    assert (masked_targets >= 100).all()
    want = sorted(t for _, r in examples[:40] for t in r) + list(range(100, 115))
    assert sorted(masked_targets.tolist()) == sorted(want)
    # each response token sits right after a token of the same sample
    seg_next = torch.cat([p.segment_ids_BT[:, 1:], torch.zeros_like(p.segment_ids_BT[:, :1])], 1)
    inside = p.loss_mask_BT.bool()[:, :-1]
    assert (p.segment_ids_BT[:, :-1][inside] == seg_next[:, :-1][inside]).all()


def test_bradley_terry_loss():
    # -log sigmoid(2) = log(1 + e^-2) = 0.126928; equal rewards: log 2
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == \
        pytest.approx(0.126928, abs=1e-6)
    assert bradley_terry_loss(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0])).item() == \
        pytest.approx(LN2)
    rc = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(rc, torch.tensor([0.0])).backward()
    assert rc.grad.item() == pytest.approx(-0.5)  # raises the chosen reward


def test_informative_group_fraction_counts_groups_with_unequal_rewards():
    rewards_BG = torch.tensor([[0.0, 0.0, 0.0, 0.0],    # all wrong: no signal
                               [1.0, 1.0, 1.0, 1.0],    # all right: no signal
                               [0.0, 2.0, 0.0, 0.0],    # one right: signal
                               [1.0, 0.5, 0.5, 0.5]])   # signal
    assert informative_group_fraction(rewards_BG) == 0.5
    assert (group_advantages(rewards_BG)[:2] == 0).all() and (group_advantages(rewards_BG)[2:] != 0).any()


def test_truncated_is_weights_and_their_place_in_the_loss():
    """w = min(pi_old / pi_sampler, cap) per token, constant; it scales the clipped policy term
    of the loss (and so its gradient) and leaves the KL term alone."""
    from deeprecipe.stages.r1.grpo_loss import truncated_is_weights
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    sampler = torch.log(torch.tensor([[0.25, 0.4, 0.1]]))
    w = truncated_is_weights(old, sampler, cap=2.0)
    assert torch.allclose(w, torch.tensor([[2.0, 0.5, 2.0]]))  # 2.0 exact, 0.5, 9 -> cap 2
    with pytest.raises(ValueError):
        truncated_is_weights(old, sampler, cap=0.0)
    mask, A = torch.ones(1, 3), torch.tensor([1.5])
    grads = []
    for weights in (None, torch.full((1, 3), 0.5)):
        new = old.clone().requires_grad_(True)
        loss, _ = grpo_loss(new, old, old, A, mask, clip_eps=0.2, beta=0.0, is_weight_BT=weights)
        loss.backward()
        grads.append(new.grad)
    assert torch.allclose(grads[1], 0.5 * grads[0]) and grads[0].abs().sum() > 0
    new = old.clone().requires_grad_(True)   # the KL term is not weighted
    ref = old - 0.3
    l_plain, _ = grpo_loss(new, old, ref, torch.zeros(1), mask, beta=1.0)
    l_weighted, _ = grpo_loss(new, old, ref, torch.zeros(1), mask, beta=1.0,
                              is_weight_BT=torch.full((1, 3), 0.1))
    assert l_plain.item() == pytest.approx(l_weighted.item()) and l_plain.item() > 0


def test_dr_grpo_options_unscaled_advantages_and_constant_length_norm():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(group_advantages(r, scale=False), torch.tensor([[0.75, -0.25, -0.25, -0.25]]))
    assert group_advantages(r)[0, 0] > 1.0  # the std division blows the lone success up
    # two responses sharing their first token (same context, same token) with advantages +1/-1
    # but lengths 1 and 3: per-sequence norm leaves the shared token a net push, constant norm
    # cancels it exactly
    logp = torch.full((2, 3), -0.5, requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    A = torch.tensor([1.0, -1.0])
    for norm, cancels in ((None, False), (3.0, True)):
        logp.grad = None
        loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), A, mask, beta=0.0, norm_tokens=norm)
        loss.backward()
        shared = logp.grad[0, 0] + logp.grad[1, 0]
        assert (abs(shared.item()) < 1e-7) == cancels, (norm, shared)
    loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), A, mask, beta=0.0, norm_tokens=3.0)
    assert loss.item() == pytest.approx(-(1 / 3 - 3 / 3) / 2)

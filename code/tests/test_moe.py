"""The sparse mixture-of-experts layer of the MoE lesson: dispatch equals a per-token loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.lm.moe import (
    MoEConfig,
    SparseMoE,
    expert_capacity,
    moe_aux_loss,
    moe_layers,
    moe_loop_reference,
    parameter_counts,
    train_moe_lm,
    use_moe_ffn,
)


def make_moe(seed: int = 0, **changes) -> SparseMoE:
    torch.manual_seed(seed)
    config = MoEConfig(**{"dim": 12, "ffn_dim": 20, "n_experts": 4, **changes})
    moe = SparseMoE(config)
    with torch.no_grad():  # a sharper router than at init: unequal loads, so capacity bites
        moe.router.weight.mul_(4.0)
    return moe


CASES = [  # (top_k, gating, capacity_factor, input shape)
    (1, "softmax_topk", None, (2, 7, 12)),
    (1, "softmax_topk", 1.0, (3, 5, 12)),
    (1, "softmax_topk", 0.5, (17, 12)),
    (2, "topk_softmax", None, (2, 9, 12)),
    (2, "topk_softmax", 0.75, (2, 9, 12)),
    (2, "softmax_topk", 1.25, (1, 1, 13, 12)),
    (3, "topk_softmax", 0.6, (4, 6, 12)),
]


@pytest.mark.parametrize("top_k, gating, factor, shape", CASES)
def test_dispatch_equals_per_token_loop_forward_and_backward(top_k, gating, factor, shape):
    moe = make_moe(top_k=top_k, gating=gating, capacity_factor=factor)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    result = moe.dispatch(x)
    reference, dropped = moe_loop_reference(moe, x_ref)
    torch.testing.assert_close(result.output, reference, atol=1e-5, rtol=1e-5)
    assert result.dropped == dropped
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((result.output * upstream).sum(), [x, *moe.parameters()],
                                allow_unused=True)
    grads_ref = torch.autograd.grad((reference * upstream).sum(), [x_ref, *moe.parameters()],
                                    allow_unused=True)
    for ours, theirs in zip(grads, grads_ref, strict=True):
        if ours is None or theirs is None:  # an expert that received no token in both
            assert ours is None and theirs is None
            continue
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_capacity_drops_are_counted_and_pass_nothing():
    moe = make_moe(capacity_factor=0.5)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(3))
    result = moe.dispatch(x)
    capacity = expert_capacity(40, moe.config)
    assert capacity == math.ceil(0.5 * 40 / 4) == 5
    assert (result.kept_per_expert <= capacity).all()
    assert result.kept_per_expert.sum() + result.dropped == 40
    assert result.dropped >= 40 - 4 * capacity  # at least the overflow of 4 full experts
    assert result.dropped_tokens == result.dropped  # k = 1: a dropped assignment is a token
    zero_rows = (result.output.abs().sum(-1) == 0).sum()
    assert zero_rows == result.dropped_tokens  # dropped tokens get exactly zero from the layer


def test_without_capacity_nothing_is_dropped_and_counts_add_up():
    moe = make_moe(top_k=2, gating="topk_softmax", capacity_factor=None)
    result = moe.dispatch(torch.randn(3, 11, 12))
    assert result.dropped == result.dropped_tokens == 0 and result.capacity is None
    assert result.tokens_per_expert.sum() == 2 * 33
    assert torch.equal(result.tokens_per_expert, result.kept_per_expert)


def test_topk_softmax_gates_sum_to_one_and_softmax_topk_gates_do_not():
    x = torch.randn(10, 12)
    _, _, gates = make_moe(top_k=2, gating="topk_softmax").route(x)
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    logits, experts, gates = make_moe(top_k=2, gating="softmax_topk").route(x)
    torch.testing.assert_close(gates, logits.softmax(-1).gather(1, experts))
    assert (gates.sum(-1) < 1).all()


def test_balance_loss_is_one_when_even_and_larger_when_collapsed():
    moe = make_moe(n_experts=4)
    with torch.no_grad():
        moe.router.weight.zero_()
    x = torch.randn(64, 12)
    logits = torch.zeros(64, 4)
    even = torch.arange(64).remainder(4)[:, None]  # every expert a quarter of the tokens
    balance, z = moe.auxiliary_losses(logits, even)
    torch.testing.assert_close(balance, torch.tensor(1.0))
    torch.testing.assert_close(z, torch.tensor(math.log(4) ** 2))
    collapsed_logits = torch.zeros(64, 4)
    collapsed_logits[:, 0] = 5.0
    collapsed, _ = moe.auxiliary_losses(collapsed_logits, torch.zeros(64, 1, dtype=torch.long))
    assert collapsed > 3.5  # all tokens on expert 0 with p_0 close to 1: about E = 4
    assert moe.dispatch(x).balance_loss.requires_grad


def test_balance_loss_gradient_pushes_probability_away_from_busy_expert():
    moe = make_moe(n_experts=3)
    logits = torch.zeros(30, 3, requires_grad=True)
    experts = torch.zeros(30, 1, dtype=torch.long)  # everything went to expert 0
    balance, _ = moe.auxiliary_losses(logits, experts)
    (grad,) = torch.autograd.grad(balance, logits)
    assert (grad[:, 0] > 0).all() and (grad[:, 1:] < 0).all()  # descent lowers expert 0's logit


@pytest.mark.parametrize("changes, message", [
    (dict(top_k=5, n_experts=4), "top_k = 5 must be <= n_experts = 4"),
    (dict(top_k=1, gating="topk_softmax"), "every gate exactly 1"),
    (dict(capacity_factor=0.0), "capacity_factor"),
    (dict(n_experts=0), "n_experts"),
])
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        MoEConfig(**changes)


def test_dispatch_rejects_wrong_width():
    with pytest.raises(ValueError, match="dim = 12"):
        make_moe().dispatch(torch.zeros(2, 3, 10))


class TinyBlocks(nn.Module):
    """Two residual blocks with an ``ffn`` each, like the DecoderLM's blocks."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict({"ffn": nn.Linear(dim, dim)}) for _ in range(2))
        for block in self.blocks:
            block.ffn_norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block.ffn(block.ffn_norm(x))
        return x


@pytest.mark.parametrize("n_experts, top_k", [(4, 1), (8, 2)])
def test_use_moe_ffn_and_active_parameters(n_experts, top_k):
    model = TinyBlocks(12)
    config = MoEConfig(dim=12, ffn_dim=20, n_experts=n_experts, top_k=top_k,
                       gating="softmax_topk")
    use_moe_ffn(model, config)
    assert len(moe_layers(model)) == 2
    counts = parameter_counts(model)
    expert = 3 * 12 * 20  # gate, up and down projections, no biases
    router = 12 * n_experts
    assert counts["total"] == 2 * (n_experts * expert + router)
    assert counts["active"] == 2 * (top_k * expert + router)
    y = model(torch.randn(2, 5, 12))
    assert y.shape == (2, 5, 12)
    aux = moe_aux_loss(model)
    assert aux.requires_grad and aux.item() > 0
    aux.backward()
    assert model.blocks[0].ffn.router.weight.grad is not None


def test_train_moe_lm_records_usage_and_learns():
    from neuralarch.lm.model import DecoderLM, LMConfig
    from neuralarch.lm.pretrain import PretrainConfig

    tokens = torch.arange(600).remainder(7).numpy()  # a periodic stream: easy to predict
    config = LMConfig(vocab_size=7, dim=16, n_layers=2, n_heads=2, ffn_dim=24, max_seq_len=16)
    recipe = PretrainConfig(steps=30, batch_size=4, context=16, lr=1e-2, warmup_steps=3,
                            eval_every=10, eval_windows=4)
    torch.manual_seed(0)
    model = use_moe_ffn(DecoderLM(config), MoEConfig(dim=16, ffn_dim=12, n_experts=4, top_k=2,
                                                     gating="topk_softmax"))
    result = train_moe_lm(model, tokens, tokens, recipe)
    assert result.steps == [10, 20, 30]
    assert result.val_loss[-1] < min(1.0, result.val_loss[0])  # chance: ln 7 = 1.95
    assert len(result.usage) == 30 and result.usage[0].shape == (2, 4)
    torch.testing.assert_close(result.usage[-1].sum(-1), torch.ones(2))
    assert all(0.0 <= d <= 1.0 for d in result.dropped)
    dense = train_moe_lm(DecoderLM(config), tokens, tokens, recipe)
    assert dense.usage == [] and dense.tokens_per_second > 0

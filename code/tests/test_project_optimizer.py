"""AdaBelief: hand-computed steps, a NumPy reference, and torch.optim.Adam/AdamW step for step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from neuralarch.optim.project_optimizer import AdaBelief


def quadratic(dim: int, seed: int, dtype: torch.dtype = torch.float64):
    """A random convex quadratic f(x) = 0.5 x^T A x - b^T x: returns (A, b) as NumPy arrays."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((dim, dim))
    a = q @ q.T / dim + 0.1 * np.eye(dim)
    b = rng.standard_normal(dim)
    return a, b


def run_torch(optimizer_cls, x0, a, b, steps, **kwargs):
    """Minimise the quadratic with a torch optimizer; return the trajectory (steps + 1, dim)."""
    x = nn.Parameter(torch.tensor(x0))
    opt = optimizer_cls([x], **kwargs)
    a_t, b_t = torch.tensor(a), torch.tensor(b)
    path = [x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * x @ a_t @ x - b_t @ x
        loss.backward()
        opt.step()
        path.append(x.detach().clone())
    return torch.stack(path)


def adabelief_numpy(x0, a, b, steps, lr, betas, eps, weight_decay=0.0):
    """Algorithm 2 of Zhuang et al. (2020), written out in float64 NumPy (decoupled decay)."""
    beta1, beta2 = betas
    x, m, s = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    path = [x.copy()]
    for t in range(1, steps + 1):
        g = a @ x - b
        x = x * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * (g - m) ** 2 + eps
        m_hat, s_hat = m / (1 - beta1**t), s / (1 - beta2**t)
        x = x - lr * m_hat / (np.sqrt(s_hat) + eps)
        path.append(x.copy())
    return torch.tensor(np.array(path))


@pytest.mark.parametrize(("lr", "betas", "eps", "weight_decay"), [
    (1e-2, (0.9, 0.999), 1e-16, 0.0),
    (3e-2, (0.8, 0.99), 1e-12, 0.05),
    (1e-3, (0.95, 0.9), 1e-8, 0.0),
])
def test_matches_the_papers_algorithm_over_150_steps(lr, betas, eps, weight_decay):
    a, b = quadratic(dim=7, seed=1)
    x0 = np.random.default_rng(2).standard_normal(7)
    ours = run_torch(AdaBelief, x0, a, b, 150, lr=lr, betas=betas, eps=eps,
                     weight_decay=weight_decay)
    reference = adabelief_numpy(x0, a, b, 150, lr, betas, eps, weight_decay)
    assert_close(ours, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("lr", "betas", "weight_decay"), [
    (1e-3, (0.9, 0.999), 0.0),
    (5e-2, (0.5, 0.9), 0.1),
])
@pytest.mark.parametrize("decoupled", [False, True])
def test_without_belief_it_is_torch_adam_or_adamw_step_for_step(dtype, lr, betas,
                                                                   weight_decay, decoupled):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    twin = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    twin.load_state_dict(model.state_dict())
    ours = AdaBelief(model.parameters(), lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay,
                     decoupled_weight_decay=decoupled, belief=False)
    reference_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    reference = reference_cls(twin.parameters(), lr=lr, betas=betas, eps=1e-8,
                              weight_decay=weight_decay, foreach=False)
    x, y = torch.randn(32, 6, dtype=dtype), torch.randn(32, 3, dtype=dtype)
    for _ in range(120):
        for net, opt in ((model, ours), (twin, reference)):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert_close(p, q)


def test_first_two_steps_by_hand():
    # g = 2 twice, lr = 0.1, default betas: m1 = 0.2, s1 = 0.001 * 1.8**2 (+ eps), so the
    # bias-corrected step is lr * 2 / 1.8 = lr / beta1.
    x = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = AdaBelief([x], lr=0.1)
    x.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert_close(x.detach(), torch.tensor([1.0 - 0.1 / 0.9], dtype=torch.float64))
    opt.step()  # same gradient again
    m2 = 0.9 * 0.2 + 0.1 * 2.0
    s2 = 0.999 * (0.001 * 1.8**2 + 1e-16) + 0.001 * (2.0 - m2) ** 2 + 1e-16
    step2 = 0.1 * (m2 / (1 - 0.9**2)) / (math.sqrt(s2 / (1 - 0.999**2)) + 1e-16)
    assert_close(x.detach(), torch.tensor([1.0 - 0.1 / 0.9 - step2], dtype=torch.float64))
    assert opt.state[x]["step"] == 2


def test_consistent_gradients_get_bigger_steps_than_in_adam_and_noise_does_not():
    def mean_step(grads, belief):
        x = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = AdaBelief([x], lr=1e-3, eps=1e-8, belief=belief)
        moves = []
        for g in grads:
            before = x.item()
            x.grad = torch.tensor([g], dtype=torch.float64)
            opt.step()
            moves.append(abs(x.item() - before))
        return sum(moves[-100:]) / 100

    rng = np.random.default_rng(0)
    steady = 0.01 + 1e-4 * rng.standard_normal(300)  # small, consistent gradients
    noisy = np.where(np.arange(300) % 2 == 0, 1.0, -0.9)  # large gradients, no consistent sign
    assert mean_step(steady, belief=True) > 2 * mean_step(steady, belief=False)
    assert 0.8 < mean_step(noisy, belief=True) / mean_step(noisy, belief=False) < 1.25


def test_closure_is_called_and_its_loss_returned():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    opt = AdaBelief(model.parameters(), lr=1e-2)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(50)]
    assert len(calls) == 50
    assert losses[-1] < 0.8 * losses[0]
    assert opt.step() is None  # no closure: no loss


def test_param_groups_use_their_own_hyperparameters():
    torch.manual_seed(0)
    w1, w2 = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    v1, v2 = nn.Parameter(w1.detach().clone()), nn.Parameter(w2.detach().clone())
    grouped = AdaBelief([{"params": [w1]}, {"params": [w2], "lr": 0.1, "weight_decay": 0.5}],
                        lr=0.01)
    alone1, alone2 = AdaBelief([v1], lr=0.01), AdaBelief([v2], lr=0.1, weight_decay=0.5)
    for _ in range(20):
        g1, g2 = torch.randn(3), torch.randn(3)
        w1.grad, w2.grad, v1.grad, v2.grad = g1, g2, g1.clone(), g2.clone()
        grouped.step()
        alone1.step()
        alone2.step()
    assert_close(w1, v1)
    assert_close(w2, v2)
    assert grouped.param_groups[1]["lr"] == 0.1 and grouped.param_groups[0]["lr"] == 0.01


def test_state_dict_round_trip_continues_exactly():
    torch.manual_seed(0)
    data = [(torch.randn(8, 5), torch.randn(8, 2)) for _ in range(20)]

    def train(model, opt, batches):
        for x, y in batches:
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    straight = nn.Linear(5, 2)
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    opt = AdaBelief(straight.parameters(), lr=1e-2, weight_decay=0.01)
    train(straight, opt, data)

    first = nn.Linear(5, 2)
    first.load_state_dict(start)
    opt1 = AdaBelief(first.parameters(), lr=1e-2, weight_decay=0.01)
    train(first, opt1, data[:10])
    saved_model, saved_opt = first.state_dict(), opt1.state_dict()
    second = nn.Linear(5, 2)
    second.load_state_dict(saved_model)
    opt2 = AdaBelief(second.parameters(), lr=1e-2, weight_decay=0.01)
    opt2.load_state_dict(saved_opt)
    assert opt2.state_dict()["state"][0]["step"] == 10
    train(second, opt2, data[10:])
    for p, q in zip(straight.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)


def test_parameters_without_gradients_are_left_alone():
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = AdaBelief([used, unused], lr=0.1)
    used.grad = torch.ones(2)
    opt.step()
    assert not torch.equal(used, torch.ones(2))
    assert torch.equal(unused, torch.ones(2)) and unused not in opt.state


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": -1.0}, r"lr must be a finite number >= 0, got -1.0"),
    ({"lr": float("nan")}, r"lr must be"),
    ({"lr": True}, r"lr must be"),
    ({"betas": (0.9,)}, r"betas must be a tuple of 2 numbers"),
    ({"betas": (1.0, 0.999)}, r"betas\[0\] must be a number in \[0, 1\), got 1.0"),
    ({"betas": (0.9, -0.1)}, r"betas\[1\]"),
    ({"eps": -1e-8}, r"eps must be"),
    ({"weight_decay": -0.1}, r"weight_decay must be"),
    ({"belief": 1}, r"belief must be True or False, got 1"),
    ({"decoupled_weight_decay": None}, r"decoupled_weight_decay must be True or False"),
])
def test_bad_hyperparameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaBelief([nn.Parameter(torch.zeros(1))], **kwargs)


def test_bad_values_in_a_param_group_are_rejected():
    opt = AdaBelief([nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0, got -0.5"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": -0.5})
    with pytest.raises(ValueError, match=r"betas\[1\] must be"):
        AdaBelief([{"params": [nn.Parameter(torch.zeros(1))], "betas": (0.9, 1.5)}])


def test_sparse_and_complex_gradients_are_rejected():
    embedding = nn.Embedding(10, 3, sparse=True)
    opt = AdaBelief(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()
    z = nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    z.grad = torch.ones(2, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"complex one for a parameter of shape \(2,\)"):
        AdaBelief([z]).step()

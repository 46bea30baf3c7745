"""Tests for lesson 2.3: SGD, Adam, AdamW (against torch.optim), Lion and Adan (against the
papers' update rules, computed by hand), and the Rosenbrock trajectory helper."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from neuralarch.optim.adam import Adam, AdamW
from neuralarch.optim.adan import Adan
from neuralarch.optim.lion import Lion
from neuralarch.optim.rosenbrock import rosenbrock, rosenbrock_minimum, trajectory
from neuralarch.optim.sgd import SGD

STEPS = 100  # steps of lock-step training against torch.optim



def _model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _batches(steps: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(steps, 16, 5, generator=generator, dtype=dtype)  # (steps, B, 5)
    y = torch.randn(steps, 16, 3, generator=generator, dtype=dtype)  # (steps, B, 3)
    return x, y


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def _groups(model: nn.Module, group_options: list[dict] | None) -> list:
    """All parameters in one list, or one param group per layer with its own options."""
    if group_options is None:
        return list(model.parameters())
    layers = [model[0], model[2]]
    return [{"params": list(layer.parameters()), **opts}
            for layer, opts in zip(layers, group_options, strict=True)]


def _lockstep(ours_cls, ref_cls, hyper: dict, dtype: torch.dtype = torch.float32,
              group_options: list[dict] | None = None, steps: int = STEPS) -> None:
    """Train two identical models, one per optimizer, and compare parameters after each step."""
    ours_model, ref_model = _model(dtype), _model(dtype)
    ours = ours_cls(_groups(ours_model, group_options), **hyper)
    ref = ref_cls(_groups(ref_model, group_options), **hyper)
    xs, ys = _batches(steps, dtype)
    for t in range(steps):
        for model, optimizer in ((ours_model, ours), (ref_model, ref)):
            optimizer.zero_grad()
            _loss(model, xs[t], ys[t]).backward()
            optimizer.step()
        for p, q in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
            assert_close(p, q, msg=lambda m, t=t: f"step {t}: {m}")
    start = _model(dtype)
    moved = [not torch.equal(p, q) for p, q in zip(ours_model.parameters(), start.parameters(),
                                               strict=True)]
    assert all(moved), "every parameter must have been updated"


# --- SGD, Adam and AdamW equal torch.optim over 100 steps ---------------------------------

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.5),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.03, momentum=0.9, weight_decay=0.01),
    dict(lr=0.03, momentum=0.5, nesterov=True, weight_decay=0.1),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hyper", SGD_CASES)
def test_sgd_matches_torch(hyper: dict, dtype: torch.dtype) -> None:
    _lockstep(SGD, torch.optim.SGD, hyper, dtype)


ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.05),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=5e-3, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hyper", ADAM_CASES)
def test_adam_matches_torch(hyper: dict, dtype: torch.dtype) -> None:
    _lockstep(Adam, torch.optim.Adam, hyper, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hyper", [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.3),
                                   dict(lr=2e-3, betas=(0.7, 0.95), amsgrad=True)])
def test_adamw_matches_torch(hyper: dict, dtype: torch.dtype) -> None:
    _lockstep(AdamW, torch.optim.AdamW, hyper, dtype)


@pytest.mark.parametrize(("ours", "ref", "hyper", "groups"), [
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9),
     [dict(lr=0.2), dict(lr=0.01, momentum=0.5, nesterov=True)]),
    (Adam, torch.optim.Adam, dict(lr=1e-2), [dict(lr=3e-2), dict(lr=1e-3, weight_decay=0.1)]),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2), [dict(lr=3e-2, amsgrad=True), dict(lr=1e-3)]),
])
def test_param_groups_with_different_lrs_match_torch(ours, ref, hyper, groups) -> None:
    _lockstep(ours, ref, hyper, group_options=groups)


def test_adam_and_adamw_differ_only_through_weight_decay() -> None:
    def final(cls, wd: float) -> torch.Tensor:
        w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        optimizer = cls([w], lr=0.1, weight_decay=wd)
        for _ in range(5):
            optimizer.zero_grad()
            (w**2).sum().backward()
            optimizer.step()
        return w.detach()

    assert_close(final(Adam, 0.0), final(AdamW, 0.0), rtol=0, atol=0)
    assert not torch.allclose(final(Adam, 0.5), final(AdamW, 0.5))


def test_adam_first_step_moves_every_coordinate_by_lr() -> None:
    # Bias correction makes m̂ = g and v̂ = g² at t = 1, so the first step is lr * sign(g).
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([1e-4, -3.0, 250.0], dtype=torch.float64)
    Adam([w], lr=0.01, eps=0.0).step()
    assert_close(w.detach(), torch.tensor([-0.01, 0.01, -0.01], dtype=torch.float64))


# --- Optimizer machinery: state_dict, zero_grad, closures, frozen parameters -------------

FACTORIES = {
    "sgd": lambda params: SGD(params, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda params: Adam(params, lr=1e-2, amsgrad=True),
    "adamw": lambda params: AdamW(params, lr=1e-2, weight_decay=0.1),
    "lion": lambda params: Lion(params, lr=1e-3, weight_decay=0.1),
    "adan": lambda params: Adan(params, lr=1e-2, weight_decay=0.02),
}
STATE_KEYS = {
    "sgd": {"momentum_buffer"},
    "adam": {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    "adamw": {"step", "exp_avg", "exp_avg_sq"},
    "lion": {"exp_avg"},
    "adan": {"step", "exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad"},
}


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, xs, ys, steps: range) -> None:
    for t in steps:
        optimizer.zero_grad()
        _loss(model, xs[t], ys[t]).backward()
        optimizer.step()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_dict_round_trip_resumes_exactly(name: str) -> None:
    xs, ys = _batches(40, torch.float32)
    straight_model = _model(torch.float32)
    straight = FACTORIES[name](straight_model.parameters())
    _train(straight_model, straight, xs, ys, range(40))

    model = _model(torch.float32)
    first = FACTORIES[name](model.parameters())
    _train(model, first, xs, ys, range(20))
    saved = copy.deepcopy(first.state_dict())
    assert set(saved["state"][0]) == STATE_KEYS[name]
    resumed = FACTORIES[name](model.parameters())  # fresh optimizer, empty state
    resumed.load_state_dict(saved)
    _train(model, resumed, xs, ys, range(20, 40))
    for p, q in zip(model.parameters(), straight_model.parameters(), strict=True):
        assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_zero_grad_closure_and_frozen_parameters(name: str) -> None:
    model = _model(torch.float64)
    model[0].bias.requires_grad_(False)  # frozen: gets no gradient, so no update and no state
    optimizer = FACTORIES[name](model.parameters())
    x, y = _batches(1, torch.float64)
    frozen = model[0].bias.detach().clone()
    before = model[2].weight.detach().clone()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _loss(model, x[0], y[0])
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss is not None and loss.item() > 0
    assert torch.equal(model[0].bias, frozen)
    assert model[0].bias not in optimizer.state
    assert not torch.equal(model[2].weight, before)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# --- Invalid hyperparameters -------------------------------------------------------------

BAD = [
    (SGD, dict(lr=-0.1), "lr must be"),
    (SGD, dict(lr=float("nan")), "lr must be"),
    (SGD, dict(lr=True), "lr must be"),
    (SGD, dict(momentum=1.0), "momentum must be"),
    (SGD, dict(momentum=-0.5), "momentum must be"),
    (SGD, dict(dampening=1.5), "dampening must be"),
    (SGD, dict(weight_decay=-1e-4), "weight_decay must be"),
    (SGD, dict(nesterov=True), "nesterov=True needs momentum > 0"),
    (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "dampening = 0"),
    (SGD, dict(nesterov="yes"), "nesterov must be True or False"),
    (Adam, dict(lr=-1e-3), "lr must be"),
    (Adam, dict(betas=(1.0, 0.999)), r"betas\[0\] must be a number in \[0, 1\)"),
    (Adam, dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (Adam, dict(betas=(0.9,)), "tuple of 2"),
    (Adam, dict(eps=-1e-8), "eps must be"),
    (Adam, dict(amsgrad=1), "amsgrad must be True or False"),
    (AdamW, dict(weight_decay=-0.01), "weight_decay must be"),
    (Lion, dict(lr=-1e-4), "lr must be"),
    (Lion, dict(betas=(0.9, 1.0)), r"betas\[1\]"),
    (Lion, dict(weight_decay=-1.0), "weight_decay must be"),
    (Adan, dict(betas=(0.98, 0.92)), "tuple of 3"),
    (Adan, dict(betas=(0.98, 0.92, 1.0)), r"betas\[2\]"),
    (Adan, dict(eps=-1.0), "eps must be"),
    (Adan, dict(weight_decay=float("inf")), "weight_decay must be"),
]


@pytest.mark.parametrize(("cls", "hyper", "match"), BAD)
def test_invalid_hyperparameters_raise(cls, hyper: dict, match: str) -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        cls([w], **hyper)


def test_invalid_param_group_is_rejected_and_not_added() -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr must be"):
        SGD([{"params": [a], "lr": -1.0}], lr=0.1)
    optimizer = Adam([a], lr=1e-3)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        optimizer.add_param_group({"params": [b], "betas": (2.0, 0.9)})
    assert len(optimizer.param_groups) == 1


# --- Lion: the paper's update rule, by hand ----------------------------------------------

def test_lion_first_step_by_hand() -> None:
    # m_0 = 0, so c_1 = (1 - β1) g_1 and θ_1 = θ_0 - η (sign(g_1) + λ θ_0).
    w = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([4.0, -0.01, 2.0, 0.0], dtype=torch.float64)
    Lion([w], lr=0.1, weight_decay=0.5).step()
    # 0.5 - 0.1 (1 + 0.25) = 0.375;  -1 - 0.1 (-1 - 0.5) = -0.85;  2 - 0.1 (1 + 1) = 1.8;
    # 3 - 0.1 (0 + 1.5) = 2.85 (sign(0) = 0: only the decay moves it)
    assert_close(w.detach(), torch.tensor([0.375, -0.85, 1.8, 2.85], dtype=torch.float64))


@pytest.mark.parametrize(("betas", "weight_decay"), [((0.9, 0.99), 0.0), ((0.5, 0.3), 0.2)])
def test_lion_three_steps_match_paper_rule(betas: tuple[float, float],
                                           weight_decay: float) -> None:
    lr, (b1, b2) = 0.05, betas
    grads = [[1.0, -2.0, 0.5], [-0.3, 1.0, 0.5], [-0.2, -0.4, -2.0]]
    w = torch.tensor([0.2, -0.4, 1.0], dtype=torch.float64, requires_grad=True)
    optimizer = Lion([w], lr=lr, betas=betas, weight_decay=weight_decay)
    theta, m = [0.2, -0.4, 1.0], [0.0, 0.0, 0.0]
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        for i in range(3):  # Chen et al. (2023), Algorithm 2, one coordinate at a time
            c = b1 * m[i] + (1 - b1) * g[i]
            theta[i] = theta[i] - lr * (math.copysign(1.0, c) * (c != 0) + weight_decay * theta[i])
            m[i] = b2 * m[i] + (1 - b2) * g[i]
        assert_close(w.detach(), torch.tensor(theta, dtype=torch.float64))
    assert_close(optimizer.state[w]["exp_avg"], torch.tensor(m, dtype=torch.float64))


def test_lion_momentum_can_overrule_the_current_gradient() -> None:
    # With β1 = 0.9 the direction follows the momentum, not a small opposite gradient.
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = Lion([w], lr=0.1, betas=(0.9, 0.0))  # β2 = 0: m becomes the last gradient
    w.grad = torch.tensor([1.0], dtype=torch.float64)
    optimizer.step()  # m = 1
    w.grad = torch.tensor([-2.0], dtype=torch.float64)
    optimizer.step()  # c = 0.9 * 1 + 0.1 * (-2) = 0.7 > 0: steps down again despite g < 0
    assert_close(w.detach(), torch.tensor([-0.2], dtype=torch.float64))


# --- Adan: the paper's update rule, by hand ----------------------------------------------

def test_adan_first_step_by_hand() -> None:
    # Step 1: v = 0 (no previous gradient), m̂ = g, n̂ = g²,
    # so θ_1 = (θ_0 - η g / (|g| + ε)) / (1 + ηλ).
    w = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([3.0, -0.5], dtype=torch.float64)
    Adan([w], lr=0.1, eps=0.0, weight_decay=0.5).step()
    assert_close(w.detach(), torch.tensor([0.9 / 1.05, -0.9 / 1.05], dtype=torch.float64))


@pytest.mark.parametrize(("betas", "weight_decay"),
                         [((0.98, 0.92, 0.99), 0.0), ((0.7, 0.6, 0.9), 0.1)])
def test_adan_three_steps_match_paper_rule(betas: tuple[float, float, float],
                                           weight_decay: float) -> None:
    # Xie et al., Algorithm 1, with the paper's weights of the *new* term
    # (β1', β2', β3') = (1 - β1, 1 - β2, 1 - β3), zero-initialised moments with bias correction
    # (as in the authors' code), and the proximal weight decay θ ← θ / (1 + ηλ).
    lr, eps = 0.05, 1e-8
    p1, p2, p3 = (1 - b for b in betas)
    grads = [[1.0, -2.0], [0.4, -1.0], [-0.6, 0.5]]
    w = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    optimizer = Adan([w], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    theta, m, v, n = [0.3, 0.7], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
    previous = grads[0]  # g_0 := g_1, so the first difference is zero
    for k, g in enumerate(grads, start=1):
        w.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        for i in range(2):
            diff = g[i] - previous[i]
            m[i] = (1 - p1) * m[i] + p1 * g[i]
            v[i] = (1 - p2) * v[i] + p2 * diff
            n[i] = (1 - p3) * n[i] + p3 * (g[i] + (1 - p2) * diff) ** 2
            m_hat, v_hat = m[i] / (1 - (1 - p1) ** k), v[i] / (1 - (1 - p2) ** k)
            n_hat = n[i] / (1 - (1 - p3) ** k)
            step_size = lr / (math.sqrt(n_hat) + eps)
            theta[i] = (theta[i] - step_size * (m_hat + (1 - p2) * v_hat)) / (1 + lr * weight_decay)
        previous = g
        assert_close(w.detach(), torch.tensor(theta, dtype=torch.float64))
    assert_close(optimizer.state[w]["exp_avg_diff"], torch.tensor(v, dtype=torch.float64))


# --- Rosenbrock -----------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [(1.0, 100.0), (2.0, 5.0)])
def test_rosenbrock_value_gradient_and_minimum(a: float, b: float) -> None:
    xy = torch.tensor([[-1.5, 2.0], [0.3, -0.7], [2.0, 1.0]], dtype=torch.float64,
                      requires_grad=True)  # (3, 2)
    value = rosenbrock(xy, a, b)
    assert value.shape == (3,)
    x, y = xy.detach()[:, 0], xy.detach()[:, 1]
    assert_close(value.detach(), (a - x) ** 2 + b * (y - x**2) ** 2)
    value.sum().backward()
    dx = -2 * (a - x) - 4 * b * x * (y - x**2)
    dy = 2 * b * (y - x**2)
    assert_close(xy.grad, torch.stack([dx, dy], dim=-1))
    minimum = torch.tensor(rosenbrock_minimum(a), dtype=torch.float64)
    assert rosenbrock(minimum, a, b).item() == 0.0


def test_rosenbrock_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        rosenbrock(torch.zeros(4, 3))


def test_trajectory_records_start_every_step_and_losses() -> None:
    run = trajectory(lambda params: SGD(params, lr=1e-3, momentum=0.9), (-1.5, 2.0), steps=50)
    assert run.path.shape == (51, 2) and run.losses.shape == (51,)
    assert_close(run.path[0], torch.tensor([-1.5, 2.0], dtype=torch.float64))
    assert_close(run.losses, rosenbrock(run.path))
    assert not run.diverged
    assert run.losses[-1] < run.losses[0]
    one = torch.tensor([1.0, 1.0], dtype=torch.float64)
    expected = torch.linalg.vector_norm(run.path[-1] - one)
    assert run.distance_to((1.0, 1.0)) == pytest.approx(expected.item())


def test_trajectory_matches_torch_adam_and_stops_when_diverging() -> None:
    ours = trajectory(lambda params: Adam(params, lr=0.05), steps=30)
    ref = trajectory(lambda params: torch.optim.Adam(params, lr=0.05), steps=30)
    assert_close(ours.path, ref.path, rtol=0, atol=0)
    blown = trajectory(lambda params: SGD(params, lr=0.1), steps=200)
    assert blown.diverged
    assert len(blown.path) < 201 and not torch.isfinite(blown.losses[-1])


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(steps=-1), "steps must be"),
    (dict(steps=2.5), "steps must be"),
    (dict(start=(0.0,)), "start must be"),
    (dict(start=(0.0, float("nan"))), "start must be"),
])
def test_trajectory_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trajectory(lambda params: SGD(params, lr=1e-3), **kwargs)

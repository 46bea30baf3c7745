"""Tests for lesson 2.2: loss functions from scratch against torch.nn.functional."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linprog
from torch import nn
from torch.testing import assert_close

from neuralarch.losses.classification import (
    LinearFit,
    binary_cross_entropy_with_logits,
    cross_entropy,
    fit_linear_classifier,
    focal_loss,
    log1p_exp,
    log_softmax,
    logsumexp,
)
from neuralarch.losses.contrastive import (
    info_nce,
    l2_normalize,
    nt_xent,
    retrieval_accuracy,
    similarity_logits,
    train_contrastive,
    two_views,
)
from neuralarch.losses.regression import (
    check_reduction,
    check_same_shape,
    fit_line,
    huber_loss,
    mae_loss,
    mse_loss,
    reduce_loss,
)

SHAPES = [(7,), (3, 5), (2, 3, 4)]
DTYPES = [torch.float32, torch.float64]
REDUCTIONS = ["mean", "sum", "none"]


def randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def value_and_grads(fn, *inputs):
    """Evaluate fn on fresh leaf copies of ``inputs``; return the loss and d(sum loss)/d inputs."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = fn(*leaves)
    out.sum().backward()
    return out.detach(), [t.grad for t in leaves if t.requires_grad]


def assert_same_value_and_grads(ours, ref, *inputs, **tolerances):
    value, grads = value_and_grads(ours, *inputs)
    ref_value, ref_grads = value_and_grads(ref, *inputs)
    assert_close(value, ref_value, **tolerances)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert_close(grad, ref_grad, **tolerances)
    return value, grads



# ---------------------------------------------------------------- reductions and shape checks


def test_reduce_loss_modes():
    loss = torch.tensor([1.0, 2.0, 6.0])
    assert reduce_loss(loss, "mean").item() == 3.0
    assert reduce_loss(loss, "sum").item() == 9.0
    assert reduce_loss(loss, "none") is loss
    assert check_reduction("sum") == "sum"


@pytest.mark.parametrize("bad", ["avg", "Mean", None, "batchmean"])
def test_bad_reduction_is_rejected(bad):
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_loss(torch.ones(3), bad)
    with pytest.raises(ValueError, match="reduction must be one of"):
        mse_loss(torch.ones(3), torch.ones(3), reduction=bad)


def test_check_same_shape_names_both_shapes():
    check_same_shape(torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"pred and y .* \(4, 1\) and \(4,\)"):
        check_same_shape(torch.ones(4, 1), torch.ones(4), names=("pred", "y"))


# ---------------------------------------------------------------- regression


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("ours", "ref"), [(mse_loss, F.mse_loss), (mae_loss, F.l1_loss)], ids=["mse", "mae"]
)
def test_mse_and_mae_match_torch(ours, ref, shape, dtype, reduction):
    pred, target = randn(*shape, seed=1, dtype=dtype), randn(*shape, seed=2, dtype=dtype)
    value, _ = assert_same_value_and_grads(
        partial(ours, reduction=reduction), partial(ref, reduction=reduction), pred, target
    )
    assert value.shape == (shape if reduction == "none" else ())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.3, 2.5])
def test_huber_matches_torch(shape, dtype, reduction, delta):
    pred, target = randn(*shape, seed=3, dtype=dtype, scale=2.0), randn(*shape, seed=4, dtype=dtype)
    assert_same_value_and_grads(
        partial(huber_loss, delta=delta, reduction=reduction),
        partial(F.huber_loss, delta=delta, reduction=reduction),
        pred,
        target,
    )


def test_huber_is_quadratic_inside_and_linear_outside():
    residual = torch.tensor([0.5, 1.0, 3.0])
    loss = huber_loss(residual, torch.zeros(3), delta=1.0, reduction="none")
    assert_close(loss, torch.tensor([0.125, 0.5, 2.5]))
    _, (grad,) = value_and_grads(partial(huber_loss, target=torch.zeros(3), reduction="none"),
                                 residual)
    assert_close(grad, torch.tensor([0.5, 1.0, 1.0]))  # the residual, clipped at delta


@pytest.mark.parametrize("fn", [mse_loss, mae_loss, huber_loss])
def test_regression_losses_refuse_mismatched_shapes(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.ones(5, 1), torch.ones(5))


@pytest.mark.parametrize("delta", [0, -1.0, True, "1", float("nan")])
def test_huber_rejects_bad_delta(delta):
    with pytest.raises(ValueError, match="delta must be a number > 0"):
        huber_loss(torch.ones(3), torch.zeros(3), delta=delta)


def _line_data(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(n, generator=g, dtype=torch.float64)
    y = 0.5 * x + 1 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
    y[x.argsort()[-4:]] += 6.0  # four outliers at the right end
    return x, y


def _least_absolute_deviations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact MAE line fit as a linear program: min sum(u + v) s.t. a x + b + u - v = y."""
    n = len(x)
    a_eq = np.hstack([np.stack([x, np.ones(n)], 1), np.eye(n), -np.eye(n)])
    cost = np.r_[0.0, 0.0, np.ones(2 * n)]
    bounds = [(None, None)] * 2 + [(0, None)] * (2 * n)
    return linprog(cost, A_eq=a_eq, b_eq=y, bounds=bounds).x[:2]


def test_fit_line_with_mse_matches_least_squares():
    x, y = _line_data()
    fit = fit_line(x, y, mse_loss, steps=600)
    design = torch.stack([x, torch.ones_like(x)], dim=1)  # (N, 2)
    exact = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)
    assert_close(torch.tensor([fit.slope, fit.intercept], dtype=torch.float64), exact,
                 atol=2e-3, rtol=0)
    assert fit.losses[-1] < fit.losses[0]


def test_fit_line_with_mae_reaches_the_linear_programming_optimum():
    x, y = _line_data()
    fit = fit_line(x, y, mae_loss, steps=600)
    slope, intercept = _least_absolute_deviations(x.numpy(), y.numpy())
    best = mae_loss(slope * x + intercept, y).item()
    ours = mae_loss(fit.slope * x + fit.intercept, y).item()
    assert best - 1e-9 <= ours < best + 1e-3


def test_robust_losses_resist_outliers():
    x, y = _line_data()
    slopes = {name: fit_line(x, y, fn, steps=400).slope
              for name, fn in [("mse", mse_loss), ("mae", mae_loss),
                               ("huber", partial(huber_loss, delta=0.3))]}
    assert slopes["mse"] > 0.8  # dragged up by the outliers
    assert abs(slopes["mae"] - 0.5) < 0.1
    assert abs(slopes["huber"] - 0.5) < 0.1


def test_fit_line_rejects_bad_input():
    with pytest.raises(ValueError, match="one-dimensional"):
        fit_line(torch.ones(3, 1), torch.ones(3, 1), mse_loss)
    with pytest.raises(ValueError, match="x and y must have the same shape"):
        fit_line(torch.ones(3), torch.ones(4), mse_loss)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        fit_line(torch.ones(3), torch.ones(3), mse_loss, steps=0)


# ---------------------------------------------------------------- log-sum-exp


@pytest.mark.parametrize("shape", [(6,), (3, 5), (2, 4, 3)])
@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_matches_torch(shape, dim, keepdim, dtype):
    x = randn(*shape, seed=5, dtype=dtype, scale=3.0)
    assert_same_value_and_grads(
        partial(logsumexp, dim=dim, keepdim=keepdim),
        partial(torch.logsumexp, dim=dim, keepdim=keepdim),
        x,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_is_stable_on_extreme_logits(dtype):
    x = torch.tensor([[1e4, 1e4 - 1.0, -1e4], [-1e4, -1e4, -1e4 + 2.0]], dtype=dtype)
    assert not torch.isfinite(torch.log(torch.exp(x).sum(dim=1))).all()  # the naive formula fails
    value, (grad,) = value_and_grads(partial(logsumexp, dim=1), x)
    ref_value, (ref_grad,) = value_and_grads(partial(torch.logsumexp, dim=1), x)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert_close(value, ref_value)
    # The gradient is the softmax. torch computes it as exp(x - result), and in float32 the result
    # 1e4 + 0.31 is rounded to a multiple of 2**-10, so torch is off by ~1e-4; ours is exact.
    assert_close(grad, torch.softmax(x.double(), dim=1).to(dtype))
    assert_close(grad, ref_grad, atol=1e-3 if dtype == torch.float32 else 1e-7, rtol=0)


def test_logsumexp_of_infinities_matches_torch():
    x = torch.tensor([[-math.inf, -math.inf], [math.inf, 0.0], [-math.inf, 1.0]])
    assert_close(logsumexp(x, dim=1), torch.logsumexp(x, dim=1))
    assert logsumexp(x, dim=1)[0].item() == -math.inf


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_log_softmax_matches_torch(dim, scale):
    x = randn(4, 3, 5, seed=6, dtype=torch.float64, scale=scale)
    assert_same_value_and_grads(partial(log_softmax, dim=dim), partial(torch.log_softmax, dim=dim),
                                x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log1p_exp_matches_softplus(dtype):
    z = torch.cat([torch.linspace(-30, 30, 121), torch.tensor([0.0, -1e4, 1e4])]).to(dtype)
    value, (grad,) = assert_same_value_and_grads(log1p_exp, F.softplus, z)
    assert torch.isfinite(value).all()
    assert grad[121].item() == 0.5  # sigmoid(0): exact at the kink-free point z = 0


# ---------------------------------------------------------------- binary cross-entropy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_torch(shape, dtype, reduction):
    logits = randn(*shape, seed=7, dtype=dtype, scale=4.0)
    target = torch.rand(shape, generator=torch.Generator().manual_seed(8)).to(dtype)  # soft
    assert_same_value_and_grads(
        partial(binary_cross_entropy_with_logits, reduction=reduction),
        partial(F.binary_cross_entropy_with_logits, reduction=reduction),
        logits,
        target,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_weight_and_pos_weight_matches_torch(reduction):
    logits = randn(6, 3, seed=9, dtype=torch.float64, scale=3.0)
    target = (randn(6, 3, seed=10) > 0).double()
    weight = torch.rand(6, 1, dtype=torch.float64)  # one weight per example, broadcast
    pos_weight = torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64)  # one per class
    kwargs = dict(weight=weight, pos_weight=pos_weight, reduction=reduction)
    assert_same_value_and_grads(partial(binary_cross_entropy_with_logits, **kwargs),
                                partial(F.binary_cross_entropy_with_logits, **kwargs),
                                logits, target)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_is_stable_on_extreme_logits(dtype):
    logits = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0, 30.0], dtype=dtype)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=dtype)
    naive = -(target * torch.log(torch.sigmoid(logits))
              + (1 - target) * torch.log(1 - torch.sigmoid(logits)))
    assert not torch.isfinite(naive).all()  # log(0) on the confidently wrong examples
    value, (grad, _) = assert_same_value_and_grads(
        partial(binary_cross_entropy_with_logits, reduction="none"),
        partial(F.binary_cross_entropy_with_logits, reduction="none"),
        logits, target,
    )
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert_close(value[:4], torch.tensor([0.0, 0.0, 1e4, 1e4], dtype=dtype))
    assert_close(grad[:5], torch.tensor([0.0, 0.0, 1.0, -1.0, -0.5], dtype=dtype))  # p - y


def test_bce_rejects_bad_input():
    with pytest.raises(ValueError, match="logits and target must have the same shape"):
        binary_cross_entropy_with_logits(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="floating-point"):
        binary_cross_entropy_with_logits(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) must broadcast"):
        binary_cross_entropy_with_logits(torch.zeros(4, 3), torch.zeros(4, 3),
                                         pos_weight=torch.ones(2))
    with pytest.raises(ValueError, match=r"weight of shape \(4, 3, 1\) must broadcast"):
        binary_cross_entropy_with_logits(torch.zeros(4, 3), torch.zeros(4, 3),
                                         weight=torch.ones(4, 3, 1))


# ---------------------------------------------------------------- cross-entropy


CE_CASES = [
    dict(),
    dict(weight="w"),
    dict(ignore_index=1),
    dict(label_smoothing=0.1),
    dict(weight="w", ignore_index=2, label_smoothing=0.2),
    dict(ignore_index=-1, label_smoothing=1.0),
]


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("case", CE_CASES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_torch(shape, case, reduction, dtype):
    n_classes = shape[1]
    logits = randn(*shape, seed=11, dtype=dtype, scale=3.0)
    g = torch.Generator().manual_seed(12)
    target = torch.randint(0, n_classes, shape[:1] + shape[2:], generator=g)
    target.view(-1)[::3] = case.get("ignore_index", -100)  # some ignored targets
    kwargs = dict(case, reduction=reduction)
    if kwargs.get("weight") == "w":
        kwargs["weight"] = torch.linspace(0.5, 2.0, n_classes, dtype=dtype)
    assert_same_value_and_grads(partial(cross_entropy, **kwargs),
                                partial(F.cross_entropy, **kwargs), logits, target)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_is_stable_on_extreme_logits(label_smoothing):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4 - 3, -1e4]])
    target = torch.tensor([1, 0, 1])
    assert not torch.isfinite(-torch.log(torch.softmax(logits, 1)[range(3), target])).all()
    # Row 3's loss, 3.05, is x - logsumexp(x) with logsumexp near 1e4: in float32 both are
    # multiples of 2**-10 there, so any implementation carries an absolute error of ~1e-3.
    value, (grad,) = assert_same_value_and_grads(
        partial(cross_entropy, label_smoothing=label_smoothing, reduction="none"),
        partial(F.cross_entropy, label_smoothing=label_smoothing, reduction="none"),
        logits, target, atol=1e-3, rtol=1e-6,
    )
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert value[0].item() == pytest.approx(2e4 * (1 - label_smoothing) + 1e4 * label_smoothing)


def test_cross_entropy_with_every_target_ignored_is_nan_like_torch():
    logits, target = torch.zeros(2, 3), torch.full((2,), -100)
    assert math.isnan(cross_entropy(logits, target).item())
    assert math.isnan(F.cross_entropy(logits, target).item())
    assert cross_entropy(logits, target, reduction="sum").item() == 0.0


def test_cross_entropy_rejects_bad_input():
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C\)"):
        cross_entropy(torch.zeros(3), torch.tensor(1))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        cross_entropy(logits, torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class indices"):
        cross_entropy(logits, torch.zeros(4))
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\).* got 3"):
        cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"got -2"):
        cross_entropy(logits, torch.tensor([0, -2, 2, -100]))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        cross_entropy(logits, torch.zeros(4, dtype=torch.long), weight=torch.ones(4))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        cross_entropy(logits, torch.zeros(4, dtype=torch.long), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cross_entropy(logits, torch.zeros(4, dtype=torch.long), reduction="avg")


# ---------------------------------------------------------------- focal loss


def focal_reference(logits, target, gamma, alpha, reduction="none"):
    """The formula of Lin et al. (2017), as torchvision.ops.sigmoid_focal_loss writes it."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("shape", [(7,), (2, 3, 4)])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_loss_matches_its_formula(shape, gamma, alpha, reduction):
    logits = randn(*shape, seed=13, dtype=torch.float64, scale=3.0)
    target = (randn(*shape, seed=14) > 0.5).double()
    kwargs = dict(target=target, gamma=gamma, alpha=alpha, reduction=reduction)
    # gradients with respect to the logits only: hard labels are not differentiable inputs
    assert_same_value_and_grads(partial(focal_loss, **kwargs), partial(focal_reference, **kwargs),
                                logits)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_loss_with_gamma_zero_is_bce(shape, reduction):
    logits, target = randn(*shape, seed=15, scale=5.0), (randn(*shape, seed=16) > 0).float()
    assert_same_value_and_grads(
        partial(focal_loss, target=target, gamma=0.0, alpha=None, reduction=reduction),
        partial(F.binary_cross_entropy_with_logits, target=target, reduction=reduction),
        logits,
    )


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_loss_is_stable_on_extreme_logits(gamma):
    logits = torch.tensor([1e4, -1e4, 1e4, -1e4, 20.0])
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    value, (grad, _) = value_and_grads(partial(focal_loss, gamma=gamma, reduction="none"),
                                       logits, target)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert_close(value[:4], torch.tensor([0.0, 0.0, 0.75e4, 0.25e4]))  # alpha_t * (-log p_t)
    if gamma == 2.0:  # where the textbook formula's gradient is finite, ours equals it
        _, (ref_grad, _) = value_and_grads(partial(focal_reference, gamma=gamma, alpha=0.25),
                                           logits, target)
        assert_close(grad, ref_grad)


def test_focal_loss_rejects_bad_input():
    logits = torch.zeros(3)
    with pytest.raises(ValueError, match="hard labels"):
        focal_loss(logits, torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="floating-point"):
        focal_loss(logits, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="gamma must be a number >= 0"):
        focal_loss(logits, torch.zeros(3), gamma=-1.0)
    with pytest.raises(ValueError, match=r"alpha must be None or in \[0, 1\]"):
        focal_loss(logits, torch.zeros(3), alpha=1.5)
    with pytest.raises(ValueError, match="logits and target must have the same shape"):
        focal_loss(logits, torch.zeros(3, 1))


def _imbalanced(seed=0, n_neg=990, n_pos=10):
    g = torch.Generator().manual_seed(seed)
    neg = torch.randn(n_neg, 2, generator=g)
    pos = 0.7 * torch.randn(n_pos, 2, generator=g) + 2.5
    return torch.cat([neg, pos]), torch.cat([torch.zeros(n_neg), torch.ones(n_pos)])


@pytest.mark.parametrize("loss_fn", [binary_cross_entropy_with_logits, focal_loss])
def test_fit_linear_classifier_learns(loss_fn):
    x, y = _imbalanced()
    fit = fit_linear_classifier(x, y, loss_fn, steps=150)
    assert isinstance(fit, LinearFit)
    assert fit.losses[-1] < 0.3 * fit.losses[0]
    scores = fit.logits(x)
    pairs_ranked = scores[y == 1].unsqueeze(1) > scores[y == 0].unsqueeze(0)  # (P, N)
    assert pairs_ranked.float().mean() > 0.95  # positives rank above negatives (AUC)


def test_fit_linear_classifier_rejects_bad_input():
    with pytest.raises(ValueError, match=r"features must be \(N, D\)"):
        fit_linear_classifier(torch.zeros(5), torch.zeros(5), focal_loss)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        fit_linear_classifier(torch.zeros(5, 2), torch.zeros(5), focal_loss, steps=0)


# ---------------------------------------------------------------- contrastive


def test_l2_normalize_matches_torch():
    x = torch.cat([randn(4, 3, seed=17), torch.zeros(1, 3)])  # a zero row must not divide by 0
    assert_close(l2_normalize(x), F.normalize(x, dim=-1))
    assert_close(l2_normalize(x, dim=0), F.normalize(x, dim=0))


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_similarity_logits_are_cosine_similarities(temperature):
    q, k = randn(3, 5, seed=18), randn(4, 5, seed=19)
    expected = F.cosine_similarity(q.unsqueeze(1), k.unsqueeze(0), dim=-1) / temperature
    assert_close(similarity_logits(q, k, temperature), expected)


@pytest.mark.parametrize(("n", "m", "d"), [(6, 6, 3), (4, 9, 5), (1, 3, 2)])
@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_info_nce_is_cross_entropy_on_the_similarity_matrix(n, m, d, temperature, reduction):
    query, key = randn(n, d, seed=20, dtype=torch.float64), randn(m, d, seed=21,
                                                                   dtype=torch.float64)

    def reference(q, k):
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature  # (N, M)
        return F.cross_entropy(logits, torch.arange(n), reduction=reduction)

    assert_same_value_and_grads(partial(info_nce, temperature=temperature, reduction=reduction),
                                reference, query, key)


def test_info_nce_is_log_m_at_chance_and_stable_at_tiny_temperature():
    query, key = randn(5, 3, seed=22), torch.ones(8, 3)  # every key looks the same
    assert info_nce(query, key).item() == pytest.approx(math.log(8), rel=1e-5)
    query = randn(5, 3, seed=23)
    value, (grad_q, grad_k) = assert_same_value_and_grads(
        partial(info_nce, temperature=1e-4),
        lambda q, k: F.cross_entropy(F.normalize(q) @ F.normalize(k).T / 1e-4, torch.arange(5)),
        query, randn(5, 3, seed=24),
    )
    assert torch.isfinite(value) and torch.isfinite(grad_q).all() and torch.isfinite(grad_k).all()


@pytest.mark.parametrize(("n", "d"), [(4, 3), (7, 16)])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nt_xent_matches_the_simclr_definition(n, d, temperature, reduction):
    z1, z2 = randn(n, d, seed=25, dtype=torch.float64), randn(n, d, seed=26, dtype=torch.float64)

    def reference(a, b):  # l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)
        z = F.normalize(torch.cat([a, b]), dim=1)
        sim = z @ z.T / temperature
        losses = []
        for i in range(2 * n):
            j = (i + n) % (2 * n)
            others = torch.cat([sim[i, :i], sim[i, i + 1:]])
            losses.append(torch.logsumexp(others, 0) - sim[i, j])
        loss = torch.stack(losses)
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]

    assert_same_value_and_grads(partial(nt_xent, temperature=temperature, reduction=reduction),
                                reference, z1, z2)


def test_contrastive_losses_reject_bad_input():
    with pytest.raises(ValueError, match=r"query and key must be \(N, D\) and \(M, D\)"):
        info_nce(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least as many rows"):
        info_nce(torch.zeros(4, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        info_nce(torch.zeros(4, 3), torch.zeros(4, 3), temperature=0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        info_nce(torch.zeros(4, 3), torch.zeros(4, 3), reduction="avg")
    with pytest.raises(ValueError, match="z1 and z2 must have the same shape"):
        nt_xent(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"z1 and z2 must be \(N, D\)"):
        nt_xent(torch.zeros(4), torch.zeros(4))


def test_two_views_share_the_signal_and_nothing_else():
    signal = randn(50, 4, seed=27)
    a, b = two_views(signal, nuisance_dims=6, noise=0.01,
                     generator=torch.Generator().manual_seed(0))
    assert a.shape == b.shape == (50, 10)
    assert_close(a[:, :4], b[:, :4], atol=0.1, rtol=0)  # same signal up to small jitter
    assert (a[:, 4:] - b[:, 4:]).abs().mean() > 0.5  # independent nuisance
    a2, _ = two_views(signal, nuisance_dims=6, noise=0.01,
                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, a2)  # reproducible from the generator
    with pytest.raises(ValueError, match=r"signal must have shape \(N, S\)"):
        two_views(torch.zeros(5))
    with pytest.raises(ValueError, match="nuisance_dims must be an int >= 0"):
        two_views(signal, nuisance_dims=-1)


def test_retrieval_accuracy():
    z = randn(20, 8, seed=28)
    assert retrieval_accuracy(z, z) == 1.0
    assert retrieval_accuracy(z, z.flip(0)) < 0.2


def test_train_contrastive_learns_to_ignore_the_nuisance():
    torch.manual_seed(0)
    signals = randn(512, 4, seed=29)
    encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    run = train_contrastive(encoder, signals, steps=80, batch_size=64, lr=1e-2)
    assert len(run.losses) == 80
    assert np.mean(run.losses[-10:]) < 0.6 * np.mean(run.losses[:5])
    test_a, test_b = two_views(randn(64, 4, seed=30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = retrieval_accuracy(test_a, test_b)
        learned = retrieval_accuracy(run.encoder(test_a), run.encoder(test_b))
    assert learned > raw + 0.3


def test_train_contrastive_rejects_bad_input():
    encoder = nn.Linear(16, 4)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        train_contrastive(encoder, torch.zeros(8, 4), steps=0)
    with pytest.raises(ValueError, match=r"batch_size must be in \[2, 8\]"):
        train_contrastive(encoder, torch.zeros(8, 4), batch_size=9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_losses_run_on_cuda():
    cuda = torch.device("cuda")
    logits = randn(6, 4, seed=40).to(cuda)
    classes = torch.tensor([0, 1, 2, 3, -100, 1], device=cuda)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5], device=cuda)
    assert_close(cross_entropy(logits, classes, weight=weight, label_smoothing=0.1),
                 F.cross_entropy(logits, classes, weight=weight, label_smoothing=0.1))
    labels = (randn(6, 4, seed=41) > 0).float().to(cuda)
    assert_close(binary_cross_entropy_with_logits(logits, labels),
                 F.binary_cross_entropy_with_logits(logits, labels))
    assert_close(focal_loss(logits, labels, gamma=0.0, alpha=None),
                 F.binary_cross_entropy_with_logits(logits, labels))
    assert_close(huber_loss(logits, labels), F.huber_loss(logits, labels))
    view_a, view_b = two_views(randn(8, 4, seed=42).to(cuda))
    assert view_a.device.type == "cuda"
    assert_close(info_nce(view_a, view_b),
                 F.cross_entropy(F.normalize(view_a) @ F.normalize(view_b).T / 0.1,
                                 torch.arange(8, device=cuda)))
    assert 0.0 <= retrieval_accuracy(view_a, view_b) <= 1.0
    fit = fit_line(torch.arange(5.0, device=cuda), 2 * torch.arange(5.0, device=cuda) + 1,
                   mse_loss, steps=300)
    assert abs(fit.slope - 2) < 0.05

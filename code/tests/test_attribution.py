"""Attribution methods against direct autograd, scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.ndimage
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.vision.attribution import (
    IG_METHODS,
    SALIENCY_KINDS,
    gaussian_blur,
    integrated_gradients,
    path_quadrature,
    saliency,
    select_scores,
    smoothgrad,
)
from neuralarch.vision.attribution_checks import (
    area_under_curve,
    average_ranks,
    cascading_randomization,
    deletion_curve,
    randomize_parameters,
    rank_correlation,
)
from neuralarch.vision.gradcam import grad_cam
from neuralarch.vision.resnet import ResNet, ResNetConfig


class PoolLinear(nn.Module):
    """features -> global average pool -> linear: Grad-CAM weights are w_ck / (h w) exactly."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def tiny_resnet(seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(widths=(4, 8), blocks=(1, 1), strides=(1, 2),
                                zero_init_residual=False))
    with torch.no_grad():  # trained-looking BatchNorm: shifts make the network non-homogeneous
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.5)
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_grad_cam_hand_checked() -> None:
    # two 2x2 maps; class 0 weighs map 0 by +1 and map 1 by -2 -> alpha = (1/4, -2/4)
    weight = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    model = PoolLinear(weight)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 0.0], [2.0, 0.0]]]])  # (1, 2, 2, 2)
    cam = grad_cam(model, x, model.features, target=0)
    expected = torch.tensor([[[0.25 * 1 - 0.5 * 1, 0.25 * 2], [0.25 * 3 - 0.5 * 2, 0.25 * 4]]])
    torch.testing.assert_close(cam, expected.clamp_min(0))
    torch.testing.assert_close(grad_cam(model, x, model.features, target=1),
                               0.125 * x.sum(dim=1))


@pytest.mark.parametrize("stage", [0, 1])
def test_grad_cam_matches_direct_autograd_on_resnet(stage: int) -> None:
    model = tiny_resnet()
    x = torch.randn(3, 1, 12, 10, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 3, 7])
    cam = grad_cam(model, x, model.stages[stage], target)
    maps = model.stages[: stage + 1](model.stem(x))
    logits = model.head(model.stages[stage + 1:](maps).mean(dim=(2, 3)))
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), maps)
    ref = F.relu((grads.mean(dim=(2, 3), keepdim=True) * maps).sum(1, keepdim=True))
    ref = F.interpolate(ref, size=(12, 10), mode="bilinear", align_corners=False)[:, 0]
    assert cam.shape == (3, 12, 10)
    assert (cam >= 0).all() and cam.max() > 0
    torch.testing.assert_close(cam, ref.detach())


# ---------------------------------------------------------------- shared helpers and targets


def mlp(seed: int = 0, features: int = 6, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, classes)).double()


def images(n: int = 3, h: int = 12, w: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


def direct_gradient(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The reference: autograd on each example's logit separately."""
    grads = []
    for xi, c in zip(x, classes, strict=True):
        xi = xi[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0, c], xi)
        grads.append(g[0])
    return torch.stack(grads)


@pytest.mark.parametrize("make, x", [(tiny_resnet, images()),
                                     (mlp, torch.randn(5, 6, dtype=torch.float64))])
@pytest.mark.parametrize("target", [None, 2, "tensor"])
@pytest.mark.parametrize("kind", SALIENCY_KINDS)
def test_saliency_equals_autograd(make, x, target, kind) -> None:
    model = make()
    if target == "tensor":
        target = torch.arange(len(x)) % 3
    classes = model(x).argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
    grad = direct_gradient(model, x, classes)
    expected = {"abs": grad.abs(), "gradient": grad, "grad_x_input": grad * x}[kind]
    torch.testing.assert_close(saliency(model, x, target, kind), expected)
    assert all(p.grad is None for p in model.parameters()), "parameter .grad must stay empty"


def test_select_scores_and_errors() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    scores, classes = select_scores(logits, None)
    assert classes.tolist() == [1, 0] and scores.tolist() == [2.0, 3.0]
    assert select_scores(logits, 2)[0].tolist() == [1.0, 1.0]
    assert select_scores(logits, torch.tensor([0, 2]))[0].tolist() == [0.0, 1.0]
    for bad in (1.0, True, torch.tensor([0.0, 1.0]), torch.tensor([0, 1, 2]),
                torch.tensor([True, False])):
        with pytest.raises(ValueError, match="target must be an int"):
            select_scores(logits, bad)
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 2\]"):
        select_scores(logits, 3)
    with pytest.raises(ValueError, match=r"must return logits \(N, K\)"):
        select_scores(torch.zeros(2, 3, 4), None)


def test_bad_model_input_and_kind() -> None:
    model = mlp()
    with pytest.raises(ValueError, match=r"model must be an nn\.Module"):
        saliency(lambda t: t, torch.zeros(2, 6))
    for bad in (torch.zeros(2, 6, dtype=torch.long), torch.zeros(6), torch.zeros(0, 6), [1.0]):
        with pytest.raises(ValueError, match="x must be a non-empty float batch"):
            saliency(model, bad)
    with pytest.raises(ValueError, match="kind must be one of"):
        saliency(model, torch.zeros(2, 6, dtype=torch.float64), kind="squared")


def test_modes_restored_and_eval_used() -> None:
    model = tiny_resnet()
    model.train()
    model.stages[0].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    running = model.stem[1].running_mean.clone()
    x = images()
    out = saliency(model, x, 1)
    assert {name: m.training for name, m in model.named_modules()} == before
    torch.testing.assert_close(model.stem[1].running_mean, running)  # no BatchNorm update
    model.eval()
    torch.testing.assert_close(out, saliency(model, x, 1))  # computed in eval mode


def test_works_under_no_grad_and_with_frozen_parameters() -> None:
    model = tiny_resnet()
    for p in model.parameters():
        p.requires_grad_(False)
    x = images()
    with torch.no_grad():
        sal = saliency(model, x, 0)
        cam = grad_cam(model, x, model.stages[-1], 0)
    assert sal.abs().sum() > 0 and cam.sum() > 0


# ------------------------------------------------------------------------------ SmoothGrad


def test_smoothgrad_without_noise_equals_saliency() -> None:
    model, x = tiny_resnet(), images()
    for kind in SALIENCY_KINDS:
        torch.testing.assert_close(smoothgrad(model, x, 4, samples=3, noise=0.0, kind=kind),
                                   saliency(model, x, 4, kind))


def test_smoothgrad_is_deterministic_with_a_generator_and_averages_noisy_saliency() -> None:
    model, x = tiny_resnet(), images()
    first = smoothgrad(model, x, samples=4, noise=0.2, generator=torch.Generator().manual_seed(3))
    again = smoothgrad(model, x, samples=4, noise=0.2, generator=torch.Generator().manual_seed(3))
    other = smoothgrad(model, x, samples=4, noise=0.2, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)
    # by hand: the same noise draws, the class fixed on the clean input
    gen, classes = torch.Generator().manual_seed(3), model(x).argmax(1)
    spread = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    manual = sum(direct_gradient(model, x + 0.2 * spread * torch.randn(x.shape, generator=gen),
                                 classes).abs() for _ in range(4)) / 4
    torch.testing.assert_close(first, manual)


@pytest.mark.parametrize("kwargs, match", [({"samples": 0}, "samples must be an int >= 1"),
                                           ({"samples": 2.0}, "samples must be an int >= 1"),
                                           ({"noise": -0.1}, "noise must be a number >= 0"),
                                           ({"noise": "0.1"}, "noise must be a number >= 0"),
                                           ({"kind": "max"}, "kind must be one of")])
def test_smoothgrad_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        smoothgrad(tiny_resnet(), images(), **kwargs)


# -------------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize("method, order", [("riemann_left", 1), ("riemann_right", 1),
                                           ("riemann_middle", 2), ("riemann_trapezoid", 2)])
@pytest.mark.parametrize("steps", [3, 10])
def test_quadrature_error_shrinks_at_the_rule_order(method, order, steps) -> None:
    def error(n: int) -> float:
        alphas, weights = path_quadrature(n, method)
        assert alphas.shape == weights.shape == (n,)
        assert alphas.min() >= 0 and alphas.max() <= 1
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
        return abs((weights * torch.exp(alphas)).sum().item() - (np.e - 1))

    # for the trapezoid the step is 1 / (n - 1), so compare n and 2n - 1 points
    ratio = error(steps) / error(2 * steps - 1 if method == "riemann_trapezoid" else 2 * steps)
    assert ratio == pytest.approx(2 ** order, rel=0.15)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_gauss_legendre_is_exact_for_polynomials_of_degree_2n_minus_1(steps) -> None:
    alphas, weights = path_quadrature(steps, "gauss_legendre")
    degree = 2 * steps - 1
    assert (weights * alphas ** degree).sum().item() == pytest.approx(1 / (degree + 1), abs=1e-14)
    assert abs((weights * alphas ** (degree + 1)).sum().item() - 1 / (degree + 2)) > 1e-6


def test_quadrature_against_numpy_and_scipy() -> None:
    alphas, weights = path_quadrature(7, "riemann_trapezoid")
    values = torch.sin(3 * alphas)
    assert (weights * values).sum().item() == pytest.approx(
        scipy.integrate.trapezoid(values.numpy(), alphas.numpy()), abs=1e-14)
    nodes, gl_weights = scipy.special.roots_legendre(5)
    alphas, weights = path_quadrature(5, "gauss_legendre")
    np.testing.assert_allclose(alphas.numpy(), (nodes + 1) / 2, atol=1e-14)
    np.testing.assert_allclose(weights.numpy(), gl_weights / 2, atol=1e-14)


@pytest.mark.parametrize("steps, method, match", [
    (1, "riemann_trapezoid", "steps must be an int >= 2"),
    (0, "riemann_left", "steps must be an int >= 1"),
    (4.0, "gauss_legendre", "steps must be"),
    (4, "simpson", "method must be one of"),
])
def test_quadrature_errors(steps, method, match) -> None:
    with pytest.raises(ValueError, match=match):
        path_quadrature(steps, method)


@pytest.mark.parametrize("method", IG_METHODS)
def test_integrated_gradients_of_a_linear_model_is_exact(method) -> None:
    torch.manual_seed(0)
    model = nn.Linear(7, 3).double()
    x, b = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    attributions, gap = integrated_gradients(model, x, target, baseline=b, steps=3,
                                             method=method, return_gap=True)
    torch.testing.assert_close(attributions, (x - b) * model.weight[target].detach())
    torch.testing.assert_close(gap, torch.zeros(4, dtype=torch.float64))


def test_integrated_gradients_of_a_separable_model_against_the_exact_integral() -> None:
    class Cubic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class k scores sum (k+1) x^3
            return (x ** 3).sum(dim=1, keepdim=True) * torch.arange(1.0, 4.0, dtype=x.dtype)

    x, b = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    attributions = integrated_gradients(Cubic(), x, 2, b, steps=2, method="gauss_legendre")
    torch.testing.assert_close(attributions, 3 * (x ** 3 - b ** 3))  # exact for a cubic


def test_integrated_gradients_completeness_converges_on_a_cnn() -> None:
    model, x = tiny_resnet(), images().double()
    model.double()
    gaps = [integrated_gradients(model, x, 1, steps=s, return_gap=True)[1].abs().max().item()
            for s in (4, 16, 256)]
    assert gaps[0] > gaps[1] > gaps[2], gaps
    with torch.no_grad():
        change = (model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]).abs().max().item()
    assert gaps[2] < 5e-3 * change


def test_integrated_gradients_against_scipy_quad() -> None:
    model, x = mlp(), torch.randn(2, 6, dtype=torch.float64)
    b = torch.full_like(x, 0.3)
    ig = integrated_gradients(model, x, 3, b, steps=24, method="gauss_legendre")

    def path_gradient(alpha: float, n: int, i: int) -> float:
        point = (b + alpha * (x - b))[n:n + 1]
        return direct_gradient(model, point, torch.tensor([3]))[0, i].item()

    for n, i in ((0, 0), (1, 4)):
        integral, _ = scipy.integrate.quad(path_gradient, 0, 1, args=(n, i))
        assert ig[n, i].item() == pytest.approx((x[n, i] - b[n, i]).item() * integral,
                                                rel=1e-8, abs=1e-12)


def test_integrated_gradients_batching_and_baselines() -> None:
    model, x = tiny_resnet(), images()
    full = integrated_gradients(model, x, 2, steps=8, batch_size=1000)
    torch.testing.assert_close(integrated_gradients(model, x, 2, steps=8, batch_size=1), full)
    torch.testing.assert_close(integrated_gradients(model, x, 2, torch.tensor(0.0), steps=8), full)
    for baseline, match in ((torch.zeros(2, 1, 12, 10), "does not broadcast"),
                            (0.0, "baseline must be a tensor or None")):
        with pytest.raises(ValueError, match=match):
            integrated_gradients(model, x, baseline=baseline)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        integrated_gradients(model, x, batch_size=0)


# ----------------------------------------------------------------------------- blurring


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
@pytest.mark.parametrize("shape", [(2, 1, 9, 7), (1, 3, 5, 12)])
def test_gaussian_blur_matches_scipy(sigma, shape) -> None:
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = scipy.ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest")
    torch.testing.assert_close(gaussian_blur(x, sigma), torch.from_numpy(ref))


def test_gaussian_blur_errors() -> None:
    with pytest.raises(ValueError, match=r"x must be a float batch of images \(N, C, H, W\)"):
        gaussian_blur(torch.zeros(3, 4, 4), 1.0)
    with pytest.raises(ValueError, match="sigma must be a number > 0"):
        gaussian_blur(torch.zeros(1, 1, 4, 4), 0.0)


# -------------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_removes_hooks_and_restores_modes() -> None:
    model = tiny_resnet().train()
    layer = model.stages[-1]
    cam = grad_cam(model, images(), layer)
    assert not layer._forward_hooks and not layer._backward_hooks
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    torch.testing.assert_close(cam, grad_cam(model, images(), layer))
    # also after an error inside the forward pass
    with pytest.raises(ValueError, match=r"expected images of shape"):
        grad_cam(model, torch.zeros(2, 3, 8, 8), layer)
    assert not layer._forward_hooks


def test_grad_cam_is_not_fooled_by_an_inplace_relu_after_the_layer() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(3, 4)).eval()
    x = images(n=2, h=6, w=6)
    cam = grad_cam(model, x, conv, 1)
    maps = conv(x)  # pre-ReLU maps: Grad-CAM is about the layer's own output
    (grads,) = torch.autograd.grad(model[1:](maps.clone())[:, 1].sum(), maps)
    ref = F.relu((grads.mean(dim=(2, 3), keepdim=True) * maps).sum(1))
    assert (maps < 0).any()  # otherwise the ReLU would not matter
    torch.testing.assert_close(cam, ref.detach())


def test_grad_cam_errors() -> None:
    model = tiny_resnet()
    with pytest.raises(ValueError, match="target_layer must be a submodule of model"):
        grad_cam(model, images(), nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"x must be a batch of images \(N, C, H, W\)"):
        grad_cam(model, torch.zeros(2, 12, 10), model.stem)
    with pytest.raises(ValueError, match=r"must output feature maps \(N, C, h, w\)"):
        grad_cam(model, images(), model.head)
    shared = nn.Conv2d(1, 1, 3, padding=1)
    twice = nn.Sequential(shared, shared, nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="exactly once per forward pass, it ran 2 times"):
        grad_cam(twice, images(), shared)
    assert not shared._forward_hooks


# ------------------------------------------------------------------ rank correlation


def test_average_ranks_match_scipy_rankdata() -> None:
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0, 5.0, -1.0]],
                          dtype=torch.float64)
    expected = scipy.stats.rankdata(values.numpy(), axis=1)
    np.testing.assert_array_equal(average_ranks(values).numpy(), expected)


@pytest.mark.parametrize("shape", [(4, 30), (3, 1, 6, 5), (2, 7, 7)])
@pytest.mark.parametrize("ties", [False, True])
def test_rank_correlation_matches_scipy_spearmanr(shape, ties) -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(shape, generator=gen)
    b = a + 0.8 * torch.randn(shape, generator=gen)
    if ties:  # ReLU-like maps: many exact zeros, like Grad-CAM
        a, b = a.clamp_min(0), b.round()
    rho = rank_correlation(a, b)
    expected = [scipy.stats.spearmanr(x.flatten().numpy(), y.flatten().numpy()).statistic
                for x, y in zip(a, b, strict=True)]
    torch.testing.assert_close(rho, torch.tensor(expected, dtype=torch.float64))
    assert rho.min() > 0.3  # the maps are related; a bug in the ranks would break this


def test_rank_correlation_edge_cases_and_errors() -> None:
    a = torch.arange(12.0).view(2, 6)
    torch.testing.assert_close(rank_correlation(a, a ** 3), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(rank_correlation(a, -a), -torch.ones(2, dtype=torch.float64))
    assert torch.isnan(rank_correlation(a, torch.ones(2, 6))).all()  # a constant map
    with pytest.raises(ValueError, match="same number of maps of the same size"):
        rank_correlation(a, torch.zeros(3, 6))
    with pytest.raises(ValueError, match="b contains NaN or infinite values"):
        rank_correlation(a, torch.full((2, 6), float("nan")))
    with pytest.raises(ValueError, match=r"a must be a float tensor \(N, \.\.\.\)"):
        rank_correlation(torch.arange(12).view(2, 6), a)


# ------------------------------------------------------------ parameter randomisation


def test_randomize_parameters_keeps_scale_and_is_deterministic() -> None:
    layer = nn.Linear(40, 30)
    with torch.no_grad():
        layer.weight.mul_(3.0).add_(0.5)
    before = [p.clone() for p in layer.parameters()]
    twin = nn.Linear(40, 30)
    twin.load_state_dict(layer.state_dict())
    randomize_parameters(layer, torch.Generator().manual_seed(5))
    randomize_parameters(twin, torch.Generator().manual_seed(5))
    for old, new, again in zip(before, layer.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(new, again, rtol=0, atol=0)
        assert not torch.allclose(old, new)
        assert new.mean().item() == pytest.approx(old.mean().item(), abs=0.2 * old.std().item())
        assert new.std().item() == pytest.approx(old.std().item(), rel=0.2)


def test_cascading_randomization() -> None:
    model, x = tiny_resnet(), images(n=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    target = torch.tensor([0, 1, 2, 3])
    layers = ["head", "stages.1", "stages.0", "stem"]
    results = cascading_randomization(model, x, lambda m, t: saliency(m, t, target), layers,
                                      torch.Generator().manual_seed(0))
    assert [name for name, _ in results] == ["original", *layers]
    torch.testing.assert_close(results[0][1], saliency(model, x, target))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    rho = [rank_correlation(results[0][1], maps).mean().item() for _, maps in results]
    assert rho[0] == pytest.approx(1.0)
    assert rho[-1] < 0.5, rho  # every layer random: the saliency map has changed


@pytest.mark.parametrize("names, match", [([], "non-empty sequence"), ("head", "non-empty"),
                                          (["head", "nope"], r"\['nope'\] are not submodules"),
                                          ([""], r"\[''\] are not submodules")])
def test_cascading_randomization_errors(names, match) -> None:
    with pytest.raises(ValueError, match=match):
        cascading_randomization(tiny_resnet(), images(), lambda m, t: saliency(m, t), names)


# ---------------------------------------------------------- deletion and insertion curves


class SumOfPixels(nn.Module):
    """Two classes: logit 0 = weighted pixel sum, logit 1 = 0, so p0 = sigmoid(sum)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).flatten(1).sum(dim=1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_deletion_and_insertion_curves_by_hand() -> None:
    weight = torch.tensor([[[[3.0, -1.0], [0.5, 2.0]]]])  # (1, 1, 2, 2)
    model, x = SumOfPixels(weight), torch.ones(1, 1, 2, 2)
    fractions, deletion = deletion_curve(model, x, weight.expand(1, 1, 2, 2), 0, steps=4)
    torch.testing.assert_close(fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    # removal order by attribution: 3, 2, 0.5, -1 -> remaining sums 4.5, 1.5, -0.5, -1, 0
    expected = torch.sigmoid(torch.tensor([[4.5, 1.5, -0.5, -1.0, 0.0]]))
    torch.testing.assert_close(deletion, expected)
    _, insertion = deletion_curve(model, x, weight[:, 0], 0, mode="insertion", steps=4)
    torch.testing.assert_close(insertion, torch.sigmoid(torch.tensor([[0.0, 3.0, 5.0, 5.5, 4.5]])))
    # a baseline image instead of 0, and two points per forward pass give the same curve
    _, shifted = deletion_curve(model, x, weight, 0, steps=2, baseline=torch.full_like(x, 2.0),
                                batch_size=2)
    torch.testing.assert_close(shifted, torch.sigmoid(torch.tensor([[4.5, 9.5, 9.0]])))


def test_deletion_curve_on_a_cnn_is_faithful_to_integrated_gradients() -> None:
    model, x = tiny_resnet(), images(n=3, h=8, w=8)
    ig = integrated_gradients(model, x, steps=16)
    fractions, good = deletion_curve(model, x, ig, steps=8)
    _, bad = deletion_curve(model, x, -ig, steps=8)
    with torch.no_grad():
        probs = model(x).softmax(1)
        torch.testing.assert_close(good[:, 0], probs.max(1).values)  # nothing deleted yet
        torch.testing.assert_close(good[:, -1], bad[:, -1])  # everything deleted
        blank = model(torch.zeros_like(x)).softmax(1).gather(1, probs.argmax(1)[:, None])[:, 0]
    torch.testing.assert_close(good[:, -1], blank)
    assert (area_under_curve(fractions, good) < area_under_curve(fractions, bad)).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "flip"}, "mode must be one of"), ({"steps": 0}, r"steps must be an int in \[1, 16\]"),
    ({"steps": 17}, r"steps must be an int in \[1, 16\]"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"attribution": torch.zeros(2, 4, 4)}, r"attribution must have the shape of x"),
])
def test_deletion_curve_errors(kwargs, match) -> None:
    model, x = tiny_resnet(), images(n=3, h=4, w=4)
    args = {"attribution": torch.zeros(3, 4, 4), "steps": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        deletion_curve(model, x, **args)
    with pytest.raises(ValueError, match=r"x must be a batch of images"):
        deletion_curve(mlp(), torch.zeros(3, 6, dtype=torch.float64), torch.zeros(3, 6))


def test_area_under_curve_matches_scipy() -> None:
    fractions = torch.tensor([0.0, 0.1, 0.3, 0.6, 1.0], dtype=torch.float64)
    values = torch.rand(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = scipy.integrate.trapezoid(values.numpy(), fractions.numpy(), axis=1)
    torch.testing.assert_close(area_under_curve(fractions, values), torch.from_numpy(expected))
    with pytest.raises(ValueError, match=r"fractions must be \(S,\) with S >= 2"):
        area_under_curve(fractions, values[:, :3])

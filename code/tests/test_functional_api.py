"""Tests for neuralarch.layers.functional_api: pure MLP, per-sample gradients, DP-SGD, ensembles."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad
from torch.testing import assert_close

from neuralarch.layers.functional_api import (
    dp_sgd_step,
    ensemble_forward,
    init_mlp_params,
    mlp_apply,
    per_sample_grad_norms,
    per_sample_gradients_loop,
    per_sample_gradients_vmap,
    privatize_gradients,
    stacked_grad_norms,
)


def _mlp(d_in: int = 6, n_out: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, 9), nn.Tanh(), nn.Linear(9, n_out))


def _cnn(n_out: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(), nn.Linear(4 * 3 * 3, n_out))


def _bn_eval(n_out: int = 4) -> nn.Module:
    """A model with buffers (BatchNorm running statistics), used in eval mode."""
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, n_out))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return model.eval()


def _frozen_first_layer(n_out: int = 4) -> nn.Module:
    model = _mlp(n_out=n_out)
    model[0].weight.requires_grad_(False)
    return model


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (_mlp, (6,)),
    "cnn": (_cnn, (2, 8, 8)),
    "bn-eval": (_bn_eval, (6,)),
    "frozen": (_frozen_first_layer, (6,)),
}


def _batch(input_shape: tuple[int, ...], batch: int, n_out: int = 4, seed: int = 0,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *input_shape), generator=gen, dtype=dtype)
    y = torch.randint(0, n_out, (batch,), generator=gen)
    return x, y


def _assert_grads_close(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == ref.keys()
    for name in ref:
        assert_close(ours[name], ref[name])


# --- the pure-functional MLP ---------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[5, 3], [7, 11, 4], [3, 8, 8, 2]])
@pytest.mark.parametrize("lead", [(4,), (), (2, 3)])
def test_mlp_apply_matches_nn_sequential(sizes: list[int], lead: tuple[int, ...]) -> None:
    params = init_mlp_params(sizes, torch.Generator().manual_seed(1))
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(params[f"layer{i}.weight"])
            linear.bias.copy_(params[f"layer{i}.bias"])
        layers += [linear, nn.ReLU()]
    reference = nn.Sequential(*layers[:-1])  # no ReLU after the last layer
    x = torch.randn((*lead, sizes[0]))
    out = mlp_apply(params, x)
    assert out.shape == (*lead, sizes[-1])
    assert_close(out, reference(x))


def test_init_mlp_params_shapes_bounds_and_seed() -> None:
    params = init_mlp_params([400, 30, 5], torch.Generator().manual_seed(0), torch.float64)
    assert {n: tuple(p.shape) for n, p in params.items()} == {
        "layer0.weight": (30, 400), "layer0.bias": (30,),
        "layer1.weight": (5, 30), "layer1.bias": (5,)}
    assert all(p.dtype == torch.float64 for p in params.values())
    w = params["layer0.weight"]
    assert w.abs().max() <= 400 ** -0.5
    # U(-b, b) has standard deviation b / sqrt(3): the same law as nn.Linear's default init.
    assert_close(w.std().item(), 400 ** -0.5 / 3 ** 0.5, rtol=0.02, atol=0.0)
    again = init_mlp_params([400, 30, 5], torch.Generator().manual_seed(0), torch.float64)
    assert all(torch.equal(params[n], again[n]) for n in params)


def test_grad_of_pure_mlp_matches_autograd() -> None:
    params = init_mlp_params([5, 7, 3], torch.Generator().manual_seed(2))
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    ours = grad(lambda p: F.cross_entropy(mlp_apply(p, x), y))(params)
    leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    F.cross_entropy(mlp_apply(leaves, x), y).backward()
    _assert_grads_close(ours, {n: p.grad for n, p in leaves.items()})


@pytest.mark.parametrize("sizes", [[3], [], [4, 0], [4, 2.5], [True, 3]])
def test_init_mlp_params_rejects_bad_sizes(sizes: list) -> None:
    with pytest.raises(ValueError, match="sizes must list"):
        init_mlp_params(sizes)


def test_mlp_apply_rejects_bad_params_and_inputs() -> None:
    with pytest.raises(ValueError, match=r"layer0\.weight"):
        mlp_apply({"w": torch.zeros(2, 2)}, torch.zeros(2))
    params = init_mlp_params([5, 3])
    with pytest.raises(ValueError, match="x has 4 features"):
        mlp_apply(params, torch.zeros(2, 4))


# --- functional_call ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_functional_call_equals_module_call(name: str) -> None:
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = factory()
    x, _ = _batch(shape, 5)
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    assert_close(functional_call(model, state, (x,)), model(x))
    # Substituted parameters: the same as a module holding them, and the module is unchanged.
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-0.5)
    before = {n: p.clone() for n, p in model.named_parameters()}
    swapped = functional_call(model, dict(other.named_parameters()), (x,))
    assert_close(swapped, other(x))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


# --- per-sample gradients -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_vmap_per_sample_gradients_match_loop(name: str, batch: int) -> None:
    factory, shape = MODELS[name]
    torch.manual_seed(batch)
    model = factory()
    x, y = _batch(shape, batch, seed=batch)
    ref = per_sample_gradients_loop(model, F.cross_entropy, x, y)
    ours = per_sample_gradients_vmap(model, F.cross_entropy, x, y)
    _assert_grads_close(ours, ref)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert ref.keys() == trainable.keys()
    for n, p in trainable.items():
        assert ref[n].shape == (batch, *p.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_sample_regression_loss_and_chunking(dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.SiLU(), nn.Linear(6, 2)).to(dtype)
    x = torch.randn(10, 4, dtype=dtype)
    y = torch.randn(10, 2, dtype=dtype)
    ref = per_sample_gradients_loop(model, F.mse_loss, x, y)
    for chunk in (None, 1, 3, 10):
        _assert_grads_close(per_sample_gradients_vmap(model, F.mse_loss, x, y, chunk), ref)
    assert ref["0.weight"].dtype == dtype


def test_per_sample_gradients_sum_to_batch_gradient() -> None:
    torch.manual_seed(4)
    model = _cnn()
    x, y = _batch((2, 8, 8), 6)
    per_sample = per_sample_gradients_vmap(model, F.cross_entropy, x, y)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    for n, p in model.named_parameters():
        assert_close(per_sample[n].sum(dim=0), p.grad)


def test_loop_leaves_dot_grad_untouched() -> None:
    model = _mlp()
    x, y = _batch((6,), 4)
    per_sample_gradients_loop(model, F.cross_entropy, x, y)
    assert all(p.grad is None for p in model.parameters())


def test_per_sample_gradients_reject_bad_inputs() -> None:
    model = _mlp()
    x, y = _batch((6,), 4)
    for fn in (per_sample_gradients_loop, per_sample_gradients_vmap):
        with pytest.raises(ValueError, match="same batch size"):
            fn(model, F.cross_entropy, x, y[:3])
        with pytest.raises(ValueError, match="same batch size"):
            fn(model, F.cross_entropy, x, torch.tensor(1))
        with pytest.raises(ValueError, match="empty batch"):
            fn(model, F.cross_entropy, x[:0], y[:0])
        frozen = copy.deepcopy(model).requires_grad_(False)
        with pytest.raises(ValueError, match="no parameter with requires_grad"):
            fn(frozen, F.cross_entropy, x, y)
        bn = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 4)).train()
        with pytest.raises(ValueError, match=r"'1' is a BatchNorm1d in training mode"):
            fn(bn, F.cross_entropy, x, y)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        per_sample_gradients_loop(model, lambda out, t: F.cross_entropy(out, t, reduction="none"),
                                  x, y)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="chunk_size must be None or an int"):
            per_sample_gradients_vmap(model, F.cross_entropy, x, y, chunk_size=bad)


def test_stacked_grad_norms_match_flattened_norm() -> None:
    gen = torch.Generator().manual_seed(5)
    grads = {"a": torch.randn(5, 3, 4, generator=gen), "b": torch.randn(5, 7, generator=gen),
             "c": torch.randn(5, generator=gen)}
    flat = torch.cat([g.reshape(5, -1) for g in grads.values()], dim=1)  # (5, 20)
    assert_close(stacked_grad_norms(grads), torch.linalg.vector_norm(flat, dim=1))


def test_stacked_grad_norms_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="grads is empty"):
        stacked_grad_norms({})
    with pytest.raises(ValueError, match="same batch size"):
        stacked_grad_norms({"a": torch.zeros(3, 2), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match="same batch size"):
        stacked_grad_norms({"a": torch.tensor(1.0)})


@pytest.mark.parametrize("batch_size", [3, 512])
def test_per_sample_grad_norms_over_a_dataset(batch_size: int) -> None:
    torch.manual_seed(6)
    model = _cnn()
    x, y = _batch((2, 8, 8), 11)
    ref = stacked_grad_norms(per_sample_gradients_loop(model, F.cross_entropy, x, y))
    norms = per_sample_grad_norms(model, F.cross_entropy, x, y, batch_size=batch_size)
    assert norms.shape == (11,)
    assert_close(norms, ref)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="batch_size must be an int"):
            per_sample_grad_norms(model, F.cross_entropy, x, y, batch_size=bad)


# --- DP-SGD ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_norm", [0.05, 0.5, 1e6])
def test_privatize_without_noise_is_mean_of_clipped_gradients(max_norm: float) -> None:
    torch.manual_seed(7)
    model = _mlp()
    x, y = _batch((6,), 8)
    grads = per_sample_gradients_loop(model, F.cross_entropy, x, y)
    expected = {n: torch.zeros_like(g[0]) for n, g in grads.items()}
    for i in range(8):  # clip one example at a time with torch's clip_grad_norm_
        params = [nn.Parameter(torch.zeros_like(g[i])) for g in grads.values()]
        for p, g in zip(params, grads.values(), strict=True):
            p.grad = g[i].clone()
        nn.utils.clip_grad_norm_(params, max_norm)
        for p, n in zip(params, grads, strict=True):
            expected[n] += p.grad / 8
    private = privatize_gradients(grads, max_norm, noise_multiplier=0.0)
    _assert_grads_close(private, expected)
    if max_norm == 1e6:  # nothing clipped: the ordinary mean gradient
        F.cross_entropy(model(x), y).backward()
        _assert_grads_close(private, {n: p.grad for n, p in model.named_parameters()})


@pytest.mark.parametrize(("sigma", "max_norm"), [(1.0, 1.0), (0.3, 2.5)])
def test_privatize_noise_has_the_dp_sgd_scale(sigma: float, max_norm: float) -> None:
    zeros = {"w": torch.zeros(4, 3, 2), "b": torch.zeros(4, 3)}  # batch of 4, zero gradients
    private = privatize_gradients(zeros, max_norm, sigma, torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    for name, g in zeros.items():
        expected = sigma * max_norm * torch.randn(g.shape[1:], generator=gen) / 4
        assert_close(private[name], expected)
    big = {"w": torch.zeros(20, 200, 100)}  # the empirical std of many draws
    noise = privatize_gradients(big, max_norm, sigma, torch.Generator().manual_seed(0))["w"]
    assert_close(noise.std().item(), sigma * max_norm / 20, rtol=0.02, atol=0.0)


def test_privatize_rejects_bad_settings() -> None:
    grads = {"w": torch.ones(2, 3)}
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_norm must be a number > 0"):
            privatize_gradients(grads, bad, 1.0)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="noise_multiplier must be a number >= 0"):
            privatize_gradients(grads, 1.0, bad)


def test_dp_sgd_step_without_noise_or_clipping_equals_sgd() -> None:
    torch.manual_seed(8)
    model = _cnn()
    reference = copy.deepcopy(model)
    x, y = _batch((2, 8, 8), 5)
    stats = dp_sgd_step(model, F.cross_entropy, x, y, lr=0.1, max_norm=1e6,
                        noise_multiplier=0.0)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    loss = F.cross_entropy(reference(x), y)
    loss.backward()
    optimizer.step()
    for (n, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert_close(p, q, msg=n)
    assert stats["loss"] == pytest.approx(loss.item())
    assert stats["clipped_fraction"] == 0.0
    assert stats["mean_grad_norm"] > 0


def test_dp_sgd_step_clips_and_rejects_bad_lr() -> None:
    torch.manual_seed(9)
    model = _mlp()
    x, y = _batch((6,), 6)
    stats = dp_sgd_step(model, F.cross_entropy, x, y, lr=0.1, max_norm=1e-4,
                        noise_multiplier=1.0, generator=torch.Generator().manual_seed(0))
    assert stats["clipped_fraction"] == 1.0
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="lr must be a number > 0"):
            dp_sgd_step(model, F.cross_entropy, x, y, lr=bad, max_norm=1.0,
                        noise_multiplier=1.0)


# --- ensembles ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn", "bn-eval"])
@pytest.mark.parametrize("n_models", [1, 3])
def test_ensemble_forward_equals_looping_the_models(name: str, n_models: int) -> None:
    factory, shape = MODELS[name]
    torch.manual_seed(10)
    models = [factory() for _ in range(n_models)]
    x, _ = _batch(shape, 5)
    out = ensemble_forward(models, x)
    assert out.shape == (n_models, 5, 4)
    assert_close(out, torch.stack([m(x) for m in models]))
    xs = torch.stack([_batch(shape, 5, seed=s)[0] for s in range(n_models)])  # (M, B, ...)
    per_model = ensemble_forward(models, xs, x_per_model=True)
    assert_close(per_model, torch.stack([m(xb) for m, xb in zip(models, xs, strict=True)]))


def test_ensemble_dropout_draws_a_mask_per_model() -> None:
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(6, 50), nn.Dropout(0.5), nn.Linear(50, 3)).train()
    out = ensemble_forward([model, copy.deepcopy(model)], torch.randn(4, 6))  # same weights
    assert not torch.allclose(out[0], out[1])
    model.eval()
    out = ensemble_forward([model, copy.deepcopy(model)], torch.randn(4, 6))
    assert_close(out[0], out[1])


def test_ensemble_forward_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="models is empty"):
        ensemble_forward([], torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"models\[1\] does not have the architecture"):
        ensemble_forward([_mlp(), _mlp(d_in=5)], torch.zeros(2, 6))
    with pytest.raises(ValueError, match="expected 2, got shape"):
        ensemble_forward([_mlp(), _mlp()], torch.zeros(3, 2, 6), x_per_model=True)

"""Tests for neuralarch.autograd.gradient_health: clipping vs torch, monitor hooks, NaN finders."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.autograd.gradient_health import (
    GradientMonitor,
    StepRecord,
    build_deep_mlp,
    clip_grad_norm,
    clip_grad_value,
    first_nonfinite_grad,
    grad_norms,
    nonfinite_grads,
    total_norm,
)

NORM_TYPES = [2.0, 1.0, math.inf, 3.5, 0.5]


def _params_with_grads(seed: int, dtype: torch.dtype = torch.float32,
                       scale: float = 1.0) -> list[nn.Parameter]:
    """Parameters of odd shapes with random gradients; the third has grad=None."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 5), (7,), (2, 3, 4), (1,), (4, 1)]
    params = [nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    for i, p in enumerate(params):
        if i != 2:
            p.grad = scale * torch.randn(p.shape, generator=gen, dtype=dtype)
    return params


def _clone(params: list[nn.Parameter]) -> list[nn.Parameter]:
    return copy.deepcopy(params)


def _assert_grads_equal(ours: list[nn.Parameter], ref: list[nn.Parameter]) -> None:
    for a, b in zip(ours, ref, strict=True):
        if b.grad is None:
            assert a.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad, equal_nan=True)


# --- total_norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_total_norm_matches_torch(norm_type: float, dtype: torch.dtype) -> None:
    grads = [p.grad for p in _params_with_grads(0, dtype) if p.grad is not None]
    ours = total_norm(grads, norm_type)
    ref = torch.nn.utils.get_total_norm(grads, norm_type)
    torch.testing.assert_close(ours, ref)
    assert ours.dtype == dtype


def test_total_norm_equals_norm_of_concatenation_and_handles_edge_cases() -> None:
    grads = [p.grad for p in _params_with_grads(1) if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.testing.assert_close(total_norm(grads), flat.norm())
    torch.testing.assert_close(total_norm(grads[0]), grads[0].norm())  # a single tensor
    torch.testing.assert_close(total_norm([]), torch.nn.utils.get_total_norm([]))
    mixed = [torch.ones(3), torch.ones(4, dtype=torch.float64)]  # dtypes are promoted
    torch.testing.assert_close(total_norm(mixed), torch.nn.utils.get_total_norm(mixed))


# --- clip_grad_norm -----------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3, math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_grad_norm_matches_torch(norm_type: float, max_norm: float,
                                      dtype: torch.dtype) -> None:
    ours, ref = _params_with_grads(2, dtype), _params_with_grads(2, dtype)
    before = [None if p.grad is None else p.grad.clone() for p in ours]
    got = clip_grad_norm(ours, max_norm, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type=norm_type)
    torch.testing.assert_close(got, want)  # the norm *before* clipping
    _assert_grads_equal(ours, ref)
    assert ours[2].grad is None  # grad=None parameters are skipped, not created
    after = total_norm([p.grad for p in ours if p.grad is not None], norm_type)
    assert after.item() <= max_norm * (1 + 1e-5)
    if got.item() <= max_norm:  # nothing to clip: gradients unchanged
        for p, grad in zip(ours, before, strict=True):
            if grad is not None:
                torch.testing.assert_close(p.grad, grad)


def test_clip_grad_norm_keeps_direction_and_accepts_a_single_tensor() -> None:
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    norm = clip_grad_norm(p, 1.0)
    torch.testing.assert_close(norm, torch.tensor(5.0))
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6, rtol=0)


def test_clip_grad_norm_with_no_gradients_returns_zero_like_torch() -> None:
    ours = [nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))]
    ref = _clone(ours)
    torch.testing.assert_close(clip_grad_norm(ours, 1.0), torch.nn.utils.clip_grad_norm_(ref, 1.0))
    assert all(p.grad is None for p in ours)


def test_clip_grad_norm_on_a_trained_model_matches_torch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    twin = copy.deepcopy(model)
    x, y = torch.randn(9, 6), torch.randint(0, 3, (9,))
    for m in (model, twin):
        F.cross_entropy(m(x), y).backward()
    torch.testing.assert_close(clip_grad_norm(model.parameters(), 0.05),
                               torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.05))
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_nonfinite_like_torch(bad_value: float, norm_type: float) -> None:
    ours, ref = _params_with_grads(3), _params_with_grads(3)
    for params in (ours, ref):
        params[3].grad[0] = bad_value
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"non-finite.*parameters\[3\]"):
        clip_grad_norm(ours, 1.0, norm_type, error_if_nonfinite=True)
    _assert_grads_equal(ours, ref)  # raising leaves the gradients untouched
    got = clip_grad_norm(ours, 1.0, norm_type, error_if_nonfinite=False)
    want = torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type, error_if_nonfinite=False)
    torch.testing.assert_close(got, want, equal_nan=True)
    assert not torch.isfinite(got)
    _assert_grads_equal(ours, ref)  # scaled by 1 / inf or NaN, exactly like torch


def test_clip_grad_norm_reports_an_overflowing_norm_of_finite_gradients() -> None:
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 1e30)  # finite float32, but its square overflows
    with pytest.raises(RuntimeError, match="every gradient is finite"):
        clip_grad_norm([p], 1.0, error_if_nonfinite=True)


# --- clip_grad_value ----------------------------------------------------------------------------

@pytest.mark.parametrize("clip_value", [0.0, 0.3, 1.0, 10.0, math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_grad_value_matches_torch(clip_value: float, dtype: torch.dtype) -> None:
    ours, ref = _params_with_grads(4, dtype, scale=2.0), _params_with_grads(4, dtype, scale=2.0)
    ours[0].grad[0, 0] = ref[0].grad[0, 0] = math.nan
    assert clip_grad_value(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(ref, clip_value)
    _assert_grads_equal(ours, ref)
    assert ours[2].grad is None
    finite = torch.cat([p.grad.reshape(-1) for p in ours if p.grad is not None]).nan_to_num(0.0)
    assert finite.abs().max() <= torch.tensor(clip_value, dtype=dtype)  # clip_value rounded


def test_clip_grad_value_without_any_gradient_is_a_no_op() -> None:
    params = [nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))]
    clip_grad_value(params, 1.0)  # torch 2.13's clip_grad_value_ raises on this input
    assert all(p.grad is None for p in params)


def test_clip_grad_value_accepts_a_single_tensor() -> None:
    p = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([-5.0, 0.2, 5.0])
    clip_grad_value(p, 1)
    torch.testing.assert_close(p.grad, torch.tensor([-1.0, 0.2, 1.0]))


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [0, -1.0, math.nan, "fro", True])
def test_bad_norm_type_raises(norm_type: object) -> None:
    params = _params_with_grads(5)
    with pytest.raises(ValueError, match="norm_type must be a number > 0"):
        clip_grad_norm(params, 1.0, norm_type=norm_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm_type"):
        total_norm([torch.ones(2)], norm_type)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-0.1, math.nan, "1", None, False])
def test_bad_limits_raise(value: object) -> None:
    params = _params_with_grads(6)
    with pytest.raises(ValueError, match="max_norm must be a number >= 0"):
        clip_grad_norm(params, value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip_value must be a number >= 0"):
        clip_grad_value(params, value)  # type: ignore[arg-type]


def test_non_tensor_parameters_raise() -> None:
    with pytest.raises(ValueError, match=r"parameters\[1\] is a str"):
        clip_grad_norm([torch.ones(2), "w"], 1.0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"tensors\[0\] is a float"):
        total_norm([1.0])  # type: ignore[list-item]


# --- NaN / inf finders --------------------------------------------------------------------------

class UnsafeRMSNorm(nn.Module):
    """x / (sqrt(mean(x^2)) + eps): finite forward, NaN gradient for an all-zero row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-5)


def _nan_model() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.Linear(6, 5, bias=False),
                          UnsafeRMSNorm(), nn.Linear(5, 3))
    x = torch.randn(8, 4)
    x[0] = 0.0  # a padding row: zero all the way to the norm
    return model, x, torch.randint(0, 3, (8,))


def test_nonfinite_finders_name_the_bad_parameters_in_model_order() -> None:
    model, x, y = _nan_model()
    assert first_nonfinite_grad(model) is None  # no gradients yet
    F.cross_entropy(model(x), y).backward()
    assert nonfinite_grads(model) == ["0.weight", "2.weight"]
    assert first_nonfinite_grad(model) == "0.weight"  # the earliest layer, not the origin
    healthy = nn.Linear(3, 2)
    healthy(torch.randn(4, 3)).sum().backward()
    assert first_nonfinite_grad(healthy) is None


def test_monitor_names_where_the_nan_started() -> None:
    model, x, y = _nan_model()
    x.requires_grad_(True)  # so that the full backward hook on layer "0" has an input gradient
    with GradientMonitor(model) as by_param, GradientMonitor(
            model, "modules", module_types=(nn.Tanh, UnsafeRMSNorm, nn.Linear)) as by_module:
        F.cross_entropy(model(x[1:]), y[1:]).backward()  # no padding row: healthy
        assert by_param.end_step().first_nonfinite is None
        assert by_module.end_step().first_nonfinite is None
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        param_step, module_step = by_param.end_step(), by_module.end_step()
    assert param_step.first_nonfinite == "2.weight"  # backward order: nearest the origin first
    assert param_step.nonfinite == ["2.weight", "0.weight"]
    assert module_step.first_nonfinite == "3"  # the norm turned a finite gradient into NaN
    assert math.isfinite(module_step.norms["3"])  # ... its output gradient was still finite
    assert "4" not in module_step.nonfinite


# --- GradientMonitor ----------------------------------------------------------------------------

def _small_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 2))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_parameter_mode_records_grad_norms(norm_type: float) -> None:
    model = _small_model()
    x = torch.randn(6, 5)
    with GradientMonitor(model, norm_type=norm_type) as monitor:
        assert monitor.attached
        model(x).pow(2).sum().backward()
        record = monitor.end_step()
    assert not monitor.attached
    expected = {n: torch.linalg.vector_norm(p.grad, norm_type).item()
                for n, p in model.named_parameters()}
    assert record.norms == pytest.approx(expected)
    assert record.norms == pytest.approx(grad_norms(model, norm_type))
    assert [n.split(".")[0] for n in record.norms] == ["4", "4", "2", "2", "0", "0"]  # backward
    assert record.nonfinite == [] and record.first_nonfinite is None


def test_parameter_mode_sees_accumulated_gradients_and_skips_frozen_ones() -> None:
    model = _small_model()
    model[0].weight.requires_grad_(False)
    x1, x2 = torch.randn(3, 5), torch.randn(4, 5)
    with GradientMonitor(model) as monitor:
        model(x1).sum().backward()
        model(x2).sum().backward()  # gradient accumulation: two backward passes, one step
        record = monitor.end_step()
    assert "0.weight" not in record.norms
    assert record.norms["4.weight"] == pytest.approx(model[4].weight.grad.norm().item())


def test_module_mode_records_output_gradient_norms() -> None:
    model = _small_model()
    x = torch.randn(6, 5)  # does not require grad: layer "0" has no input gradient
    outputs: dict[str, torch.Tensor] = {}
    hooks = [model[i].register_forward_hook(
        lambda m, inp, out, i=i: outputs.__setitem__(str(i), out)) for i in (1, 2, 3)]
    with GradientMonitor(model, "modules", module_types=(nn.ReLU, nn.Tanh, nn.Linear),
                         norm_type=1.0) as monitor:
        loss = model(x).pow(2).sum()
        grads = torch.autograd.grad(loss, [outputs[k] for k in ("1", "2", "3")],
                                    retain_graph=True)
        monitor.end_step()  # autograd.grad fires the hooks too: discard that "step"
        with pytest.warns(UserWarning, match="no inputs require gradients"):
            loss.backward()  # torch warns for layer "0", then still calls the hook
        record = monitor.end_step()
    for hook in hooks:
        hook.remove()
    for key, grad in zip(("1", "2", "3"), grads, strict=True):
        assert record.norms[key] == pytest.approx(grad.abs().sum().item())
    assert list(record.norms) == ["4", "3", "2", "1", "0"]  # backward order


def test_module_mode_defaults_to_leaf_modules_and_combines_repeated_calls() -> None:
    cell = nn.Linear(3, 3)
    model = nn.Sequential(cell, nn.Tanh())
    monitor = GradientMonitor(model, "modules")
    assert [name for name, _ in monitor.targets] == ["0", "1"]
    h0 = torch.randn(2, 3, requires_grad=True)  # an input that needs grad: no torch warning
    with monitor:  # attach before the forward pass: module hooks are wired in during forward
        h1 = model(h0)
        h2 = model(h1)  # the same modules called twice, as in a recurrent network
        g1, g2 = torch.autograd.grad(h2.sum(), [h1, h2], retain_graph=True)
        monitor.end_step()  # autograd.grad fires the hooks too: discard that "step"
        h2.sum().backward()
    record = monitor.end_step()
    # Tanh's outputs are h1 and h2: the norm of both output gradients together.
    both = torch.cat([g1.reshape(-1), g2.reshape(-1)]).norm().item()
    assert record.norms["1"] == pytest.approx(both)
    inf_monitor = GradientMonitor(model, "modules", norm_type=math.inf)
    with inf_monitor:
        model(model(h0)).sum().backward()
    assert inf_monitor.end_step().norms["1"] == pytest.approx(max(g1.abs().max(), g2.abs().max()))


def test_monitor_removes_its_hooks_and_keeps_history() -> None:
    model = _small_model()
    x = torch.randn(4, 5)
    with GradientMonitor(model) as p_mon, GradientMonitor(
            model, "modules", module_types=(nn.Tanh,)) as m_mon:
        for _ in range(3):
            model.zero_grad()
            model(x).sum().backward()
            p_mon.end_step()
            m_mon.end_step()
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())
    assert all(not m._backward_hooks for m in model.modules())
    model(x).sum().backward()  # after removal: nothing is recorded
    assert p_mon.end_step() == StepRecord() and m_mon.end_step() == StepRecord()
    history = p_mon.history()
    assert list(history) == [n for n, _ in model.named_parameters()]
    assert len(history["0.weight"]) == 4 and math.isnan(history["0.weight"][3])
    assert history["0.weight"][0] == pytest.approx(history["0.weight"][2])
    assert list(m_mon.history()) == ["3"]


def test_monitor_attach_twice_raises_and_can_reattach() -> None:
    monitor = GradientMonitor(_small_model())
    monitor.attach()
    with pytest.raises(RuntimeError, match="already attached"):
        monitor.attach()
    monitor.remove()
    with monitor:
        assert monitor.attached


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "layers"}, "mode must be one of"),
    ({"mode": "modules", "module_types": (nn.Conv2d,)}, "no modules"),
    ({"mode": "modules", "module_types": [nn.Linear]}, "module_types must be a tuple"),
    ({"mode": "modules", "module_types": (int,)}, "module_types must be a tuple"),
    ({"norm_type": -2.0}, "norm_type"),
])
def test_monitor_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GradientMonitor(_small_model(), **kwargs)


def test_monitor_rejects_non_modules_and_frozen_models() -> None:
    with pytest.raises(ValueError, match=r"model must be an nn\.Module"):
        GradientMonitor(torch.ones(2))  # type: ignore[arg-type]
    frozen = _small_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        GradientMonitor(frozen)


# --- build_deep_mlp -----------------------------------------------------------------------------

def test_build_deep_mlp_shapes_and_init() -> None:
    torch.manual_seed(0)
    model = build_deep_mlp(depth=3, width=256, activation=nn.ReLU, scale=2.0, in_features=20,
                           n_classes=4)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 256), (256, 256),
                                                                  (256, 256), (256, 4)]
    assert model(torch.randn(5, 1, 4, 5)).shape == (5, 4)  # flattens (B, 1, 4, 5) -> (B, 20)
    std = linears[1].weight.std().item()
    assert std == pytest.approx(2.0 / math.sqrt(256), rel=0.02)
    assert linears[-1].weight.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)


@pytest.mark.parametrize("scale", [1.0, math.sqrt(2), 2.0])
def test_relu_gradient_gain_per_layer_is_scale_over_sqrt2(scale: float) -> None:
    torch.manual_seed(1)
    depth = 12
    model = build_deep_mlp(depth=depth, width=256, activation=nn.ReLU, scale=scale,
                           in_features=32)
    with GradientMonitor(model, "modules", module_types=(nn.ReLU,)) as monitor:
        F.cross_entropy(model(torch.randn(128, 32)), torch.randint(0, 10, (128,))).backward()
        norms = list(monitor.end_step().norms.values())  # top layer first
    gain = (norms[-1] / norms[1]) ** (1 / (depth - 2))  # per layer, towards the input
    assert gain == pytest.approx(scale / math.sqrt(2), rel=0.1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"depth": 0}, "depth must be an int >= 1"),
    ({"width": 2.5}, "width must be an int >= 1"),
    ({"scale": 0.0}, "scale must be a finite number > 0"),
    ({"scale": math.inf}, "scale must be a finite number > 0"),
])
def test_build_deep_mlp_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"depth": 2, "width": 4, "activation": nn.Tanh, "scale": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        build_deep_mlp(**args)


def test_monitor_norms_do_not_overflow_for_huge_finite_float32_gradients() -> None:
    model = _small_model()
    with GradientMonitor(model) as monitor:
        (model(torch.randn(4, 5)).sum() * 1e25).backward()  # finite float32 gradients ~1e25
        record = monitor.end_step()
    assert math.isinf(grad_norms(model)["4.weight"])  # float32 norm: the squares overflow
    assert math.isfinite(record.norms["4.weight"]) and record.norms["4.weight"] > 1e25
    assert record.nonfinite == []

"""Lesson 3.2: the from-scratch Linear, Conv2d (im2col) and GELU / SiLU equal torch.nn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from neuralarch.layers.activations import GELU, SiLU, gelu, silu
from neuralarch.layers.conv import (
    Conv2d,
    conv2d_im2col,
    conv_output_size,
    im2col,
    im2col_loops,
)
from neuralarch.layers.linear import Linear, linear


def _grads(module: nn.Module, x: torch.Tensor, upstream: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run forward and backward with a fixed upstream gradient; return output and all grads."""
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.backward(upstream)
    grads = {"out": out.detach(), "x": x.grad}
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return grads


def _assert_same_forward_backward(ours: nn.Module, ref: nn.Module, x: torch.Tensor,
                                  **tol: float) -> None:
    ours.load_state_dict(ref.state_dict())  # same weights, copied from the torch module
    g = torch.Generator().manual_seed(1)
    out_shape = ref(x).shape
    upstream = torch.randn(out_shape, generator=g, dtype=x.dtype)
    a, b = _grads(ours, x, upstream), _grads(ref, x, upstream)
    assert a.keys() == b.keys()
    for name in a:
        assert_close(a[name], b[name], **tol, msg=lambda m, n=name: f"{n}: {m}")


# ---------------------------------------------------------------- Linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead, n_in, n_out", [((5,), 3, 7), ((2, 4), 16, 1), ((), 6, 6),
                                               ((3, 1, 2), 1, 5)])
def test_linear_matches_torch_forward_and_backward(lead, n_in, n_out, bias, dtype):
    torch.manual_seed(0)
    ref = nn.Linear(n_in, n_out, bias=bias, dtype=dtype)
    ours = Linear(n_in, n_out, bias=bias, dtype=dtype)
    x = torch.randn(*lead, n_in, dtype=dtype)
    _assert_same_forward_backward(ours, ref, x)
    assert ours(x).shape == (*lead, n_out)


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 5), (784, 10), (27, 64)])
def test_linear_default_init_draws_the_same_numbers_as_torch(n_in, n_out):
    torch.manual_seed(123)
    ref = nn.Linear(n_in, n_out)
    torch.manual_seed(123)
    ours = Linear(n_in, n_out)
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    bound = n_in**-0.5
    assert ours.weight.abs().max() <= bound and ours.bias.abs().max() <= bound


def test_linear_state_dict_and_repr_match_torch():
    ours, ref = Linear(4, 3, bias=False), nn.Linear(4, 3, bias=False)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    assert ours.extra_repr() == ref.extra_repr()
    assert Linear(4, 3).extra_repr() == nn.Linear(4, 3).extra_repr()


def test_linear_functional_matches_f_linear():
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g) for s in [(2, 3, 5), (4, 5), (4,)])
    assert_close(linear(x, w, b), F.linear(x, w, b))
    assert_close(linear(x, w), F.linear(x, w))


@pytest.mark.parametrize("args, match", [
    ((torch.ones(2, 3), torch.ones(4, 5)), r"x must have shape \(\.\.\., 5\)"),
    ((torch.tensor(1.0), torch.ones(4, 5)), "x must have shape"),
    ((torch.ones(2, 5), torch.ones(5)), r"weight must have shape \(out_features, in_features\)"),
    ((torch.ones(2, 5), torch.ones(4, 5), torch.ones(5)), r"bias must have shape \(4,\)"),
])
def test_linear_rejects_bad_shapes(args, match):
    with pytest.raises(ValueError, match=match):
        linear(*args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_features=0, out_features=3), "in_features must be an int >= 1, got 0"),
    (dict(in_features=3, out_features=2.0), "out_features must be an int >= 1, got 2.0"),
    (dict(in_features=True, out_features=2), "in_features must be an int >= 1, got True"),
])
def test_linear_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Linear(**kwargs)


# ---------------------------------------------------------------- convolution geometry

GEOMETRIES = [  # (size, kernel, stride, padding, dilation)
    (7, 3, 1, 0, 1), (7, 3, 2, 1, 1), (8, 3, 2, 1, 1), (28, 5, 1, 2, 1), (10, 3, 3, 0, 2),
    (5, 5, 1, 0, 1), (9, 2, 4, 3, 3), (1, 1, 1, 0, 1), (4, 7, 1, 2, 1),
]


@pytest.mark.parametrize("size, k, s, p, d", GEOMETRIES)
def test_conv_output_size_matches_f_conv2d(size, k, s, p, d):
    out = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=p,
                   dilation=d)
    assert conv_output_size(size, k, s, p, d) == out.shape[-1]


@pytest.mark.parametrize("args, match", [
    ((4, 7), "kernel spans 7 pixels .* padded input has only 4"),
    ((5, 3, 1, 0, 3), r"kernel spans 7 pixels \(kernel_size=3, dilation=3\)"),
    ((0, 3), "size must be an int >= 1, got 0"),
    ((5, 3, 0), "stride must be an int >= 1, got 0"),
    ((5, 3, 1, -1), "padding must be an int >= 0, got -1"),
    ((5, 3, 1, 0, 1.5), "dilation must be an int >= 1, got 1.5"),
])
def test_conv_output_size_rejects_bad_values(args, match):
    with pytest.raises(ValueError, match=match):
        conv_output_size(*args)


# ---------------------------------------------------------------- im2col

UNFOLD_CASES = [  # (B, C, H, W, kernel, stride, padding, dilation)
    (1, 1, 4, 4, 3, 1, 0, 1),
    (2, 3, 7, 5, (3, 2), 1, 1, 1),
    (3, 2, 9, 8, (2, 3), (2, 1), (0, 2), (2, 1)),
    (1, 4, 6, 6, 1, 2, 0, 1),
    (2, 1, 5, 7, (5, 1), 1, (2, 0), 1),
]


@pytest.mark.parametrize("b, c, h, w, k, s, p, d", UNFOLD_CASES)
def test_im2col_loops_equals_im2col_equals_f_unfold(b, c, h, w, k, s, p, d):
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(0))
    expected = F.unfold(x, k, dilation=d, padding=p, stride=s)
    fast, slow = im2col(x, k, s, p, d), im2col_loops(x, k, s, p, d)
    assert torch.equal(fast, expected)  # pure copies: bit-for-bit equal
    assert torch.equal(slow, expected)
    kh, kw = (k, k) if isinstance(k, int) else k
    assert slow.shape[:2] == (b, c * kh * kw)


def test_im2col_columns_are_the_patches():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    cols = im2col_loops(x, 3)  # (1, 9, 4): four 3x3 patches
    assert cols.shape == (1, 9, 4)
    assert cols[0, :, 0].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]  # top-left patch
    assert cols[0, :, 3].tolist() == [5, 6, 7, 9, 10, 11, 13, 14, 15]  # bottom-right patch


@pytest.mark.parametrize("fn", [im2col, im2col_loops])
@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=0), r"kernel_size must be an int >= 1 or a pair \(height, width\)"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size must be an int >= 1 or a pair"),
    (dict(kernel_size=3, stride=(1, 0)), r"stride must be an int >= 1 .* got \(1, 0\)"),
    (dict(kernel_size=3, padding=-1), "padding must be an int >= 0"),
    (dict(kernel_size=3, dilation=True), "dilation must be an int >= 1"),
    (dict(kernel_size=9), "kernel spans 9 pixels"),
])
def test_im2col_rejects_bad_hyperparameters(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(torch.zeros(1, 1, 5, 5), **kwargs)


@pytest.mark.parametrize("fn", [im2col, im2col_loops])
def test_im2col_rejects_non_image_input(fn):
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\), got \(5, 5\)"):
        fn(torch.zeros(5, 5), 3)
    with pytest.raises(ValueError, match="got list"):
        fn([[0.0]], 1)


# ---------------------------------------------------------------- Conv2d

CONV_CASES = [  # (B, C_in, C_out, H, W, kernel, stride, padding, dilation, groups, bias)
    (2, 3, 4, 8, 8, 3, 1, 1, 1, 1, True),
    (1, 1, 2, 7, 9, (3, 2), 1, 0, 1, 1, False),
    (3, 4, 6, 9, 7, 3, 2, 1, 1, 2, True),
    (2, 6, 6, 10, 10, 3, (2, 1), (1, 2), (2, 1), 6, True),  # depthwise, dilated
    (2, 4, 8, 6, 11, (1, 5), (1, 3), (0, 2), 1, 4, False),
    (4, 2, 3, 5, 5, 1, 1, 0, 1, 1, True),  # 1x1 convolution
    (1, 3, 2, 12, 6, (5, 3), 3, 2, (1, 2), 1, True),
]


@pytest.mark.parametrize("method", ["unfold", "loops"])
@pytest.mark.parametrize("b, c_in, c_out, h, w, k, s, p, d, g, bias", CONV_CASES)
def test_conv2d_matches_torch_forward_and_backward(b, c_in, c_out, h, w, k, s, p, d, g, bias,
                                                   method):
    torch.manual_seed(0)
    ref = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    ours = Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    x = torch.randn(b, c_in, h, w)
    if method == "loops":
        ours.forward = lambda t: conv2d_im2col(t, ours.weight, ours.bias, s, p, d, g, "loops")
    _assert_same_forward_backward(ours, ref, x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_conv2d_matches_torch_in_other_dtypes(dtype):
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 4, (3, 2), stride=2, padding=1, groups=1, dtype=dtype)
    ours = Conv2d(3, 4, (3, 2), stride=2, padding=1, dtype=dtype)
    tol = {} if dtype == torch.float64 else dict(atol=0.05, rtol=0.05)
    _assert_same_forward_backward(ours, ref, torch.randn(2, 3, 7, 6, dtype=dtype), **tol)


@pytest.mark.parametrize("c_in, c_out, k, g", [(1, 8, 3, 1), (3, 16, (5, 3), 1), (8, 8, 3, 4),
                                                (64, 128, 3, 1)])
def test_conv2d_default_init_draws_the_same_numbers_as_torch(c_in, c_out, k, g):
    torch.manual_seed(7)
    ref = nn.Conv2d(c_in, c_out, k, groups=g)
    torch.manual_seed(7)
    ours = Conv2d(c_in, c_out, k, groups=g)
    assert ours.weight.shape == ref.weight.shape
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)


def test_conv2d_state_dict_and_repr_match_torch():
    ref = nn.Conv2d(4, 6, (3, 1), stride=2, padding=(1, 0), groups=2, bias=False)
    ours = Conv2d(4, 6, (3, 1), stride=2, padding=(1, 0), groups=2, bias=False)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    for args, kwargs in [((4, 6, (3, 1)), dict(stride=2, padding=(1, 0), groups=2, bias=False)),
                         ((1, 1, 3), {}), ((2, 3, 5), dict(dilation=2, padding=4))]:
        assert Conv2d(*args, **kwargs).extra_repr() == nn.Conv2d(*args, **kwargs).extra_repr()


def test_conv2d_im2col_functional_matches_f_conv2d_with_bias():
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(2, 6, 9, 8, generator=g), torch.randn(9, 2, 3, 3, generator=g), \
        torch.randn(9, generator=g)
    for method in ("unfold", "loops"):
        assert_close(conv2d_im2col(x, w, b, stride=2, padding=1, groups=3, method=method),
                     F.conv2d(x, w, b, stride=2, padding=1, groups=3))


@pytest.mark.parametrize("args, kwargs, match", [
    ((torch.zeros(1, 2, 5, 5), torch.zeros(3, 2, 3)), {}, "weight must have shape"),
    ((torch.zeros(1, 2, 5, 5), torch.zeros(3, 2, 3, 3)), dict(method="fft"),
     r"method must be one of \['loops', 'unfold'\], got 'fft'"),
    ((torch.zeros(1, 2, 5, 5), torch.zeros(3, 2, 3, 3)), dict(groups=0),
     "groups must be an int >= 1, got 0"),
    ((torch.zeros(1, 4, 5, 5), torch.zeros(3, 2, 3, 3)), dict(groups=2),
     "C_out divisible by 2"),
    ((torch.zeros(1, 3, 5, 5), torch.zeros(4, 2, 3, 3)), {}, "but x has C_in = 3"),
    ((torch.zeros(1, 2, 5, 5), torch.zeros(4, 2, 3, 3), torch.zeros(3)), {},
     r"bias must have shape \(4,\)"),
    ((torch.zeros(2, 5, 5), torch.zeros(4, 2, 3, 3)), {}, r"x must be a tensor of shape"),
    ((torch.zeros(1, 2, 2, 2), torch.zeros(4, 2, 3, 3)), {}, "kernel spans 3 pixels"),
])
def test_conv2d_im2col_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv2d_im2col(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, match", [
    ((0, 4, 3), {}, "in_channels must be an int >= 1, got 0"),
    ((4, 4.0, 3), {}, "out_channels must be an int >= 1, got 4.0"),
    ((4, 6, 3), dict(groups=4), "groups=4 must divide in_channels=4 and out_channels=6"),
    ((4, 6, 3), dict(groups=0), "groups must be an int >= 1, got 0"),
    ((4, 6, (3, 0)), {}, "kernel_size must be an int >= 1"),
    ((4, 6, 3), dict(padding=(1,)), "padding must be an int >= 0 or a pair"),
])
def test_conv2d_module_rejects_bad_hyperparameters(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(*args, **kwargs)


# ---------------------------------------------------------------- activations


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    # torch computes bfloat16 activations in float32 and rounds once; our formulas round after
    # every operation (and 1 + erf(x / sqrt 2) cancels for x < -2), so allow a few bfloat16
    # ulps (eps = 2**-7) there; float32 and float64 use assert_close's tight defaults.
    return dict(atol=0.02, rtol=0.03) if dtype == torch.bfloat16 else {}


def _activation_case(ours: nn.Module, ref: nn.Module, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-12, 12, 97, dtype=dtype),
                   4 * torch.randn(3, 50, generator=g, dtype=torch.float64).to(dtype).flatten(),
                   torch.tensor([-100.0, 100.0, 0.0], dtype=dtype)]).view(5, -1)
    _assert_same_forward_backward(ours, ref, x, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_forward_and_backward(approximate, dtype):
    _activation_case(GELU(approximate), nn.GELU(approximate), dtype)
    x = torch.linspace(-3, 3, 11, dtype=dtype)
    assert_close(gelu(x, approximate), F.gelu(x, approximate=approximate), **_tolerance(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_silu_matches_torch_forward_and_backward(dtype):
    _activation_case(SiLU(), nn.SiLU(), dtype)
    x = torch.linspace(-3, 3, 11, dtype=dtype)
    assert_close(silu(x), F.silu(x), **_tolerance(dtype))


def test_activation_gradients_stay_finite_far_from_zero():
    x = torch.tensor([-1000.0, -90.0, 90.0, 1000.0], requires_grad=True)
    (silu(x) + gelu(x) + gelu(x, "tanh")).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert_close(x.grad, torch.tensor([0.0, 0.0, 3.0, 3.0]))  # 0 on the left, slope 1 each right


def test_gelu_tanh_is_close_to_but_not_equal_to_exact():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    gap = (gelu(x, "tanh") - gelu(x)).abs().max().item()
    assert 1e-5 < gap < 1e-3


def test_activation_reprs_and_bad_approximation():
    assert GELU("tanh").extra_repr() == nn.GELU("tanh").extra_repr() == "approximate='tanh'"
    with pytest.raises(ValueError, match=r"must be one of \['none', 'tanh'\], got 'erf'"):
        GELU("erf")
    with pytest.raises(ValueError, match="approximate must be one of"):
        gelu(torch.zeros(2), approximate=None)


def test_tiny_cnn_from_our_layers_equals_the_torch_one():
    def build(conv, act, lin):
        torch.manual_seed(0)
        return nn.Sequential(conv(1, 4, 3, padding=1), act(), conv(4, 8, 3, stride=2, groups=2),
                             nn.Flatten(), lin(8 * 3 * 3, 5))

    ours, ref = build(Conv2d, SiLU, Linear), build(nn.Conv2d, nn.SiLU, nn.Linear)
    x = torch.randn(3, 1, 8, 8)
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed, same layer order: identical initial weights
    _assert_same_forward_backward(ours, ref, x)

"""Tests for neuralarch.layers.init: bit-identical to torch.nn.init, LeCun by its std, hooks."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from neuralarch.layers.init import (
    NONLINEARITIES,
    SCHEMES,
    ActivationStats,
    activation_statistics,
    fan_in_and_fan_out,
    gain,
    init_model,
    kaiming_normal_,
    kaiming_std,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    xavier_normal_,
    xavier_std,
    xavier_uniform_,
)

# Linear (out, in), Conv1d (out, in, k), Conv2d (out, in, kh, kw), Conv3d, and a square one.
SHAPES = [(7, 3), (3, 7), (16, 16), (5, 4, 3), (8, 3, 3, 5), (6, 2, 3, 4, 2)]
DTYPES = [torch.float32, torch.float64]


def _pair(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 123):
    """Two empty tensors and two generators with the same seed: one for us, one for torch."""
    mine, ref = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
    return mine, ref, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


# --- fans and gains -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [*SHAPES, (1, 1), (2, 9, 1, 1)])
def test_fans_match_torch(shape: tuple[int, ...]) -> None:
    tensor = torch.empty(shape)
    assert fan_in_and_fan_out(tensor) == nn.init._calculate_fan_in_and_fan_out(tensor)


@pytest.mark.parametrize("layer", [nn.Linear(5, 3), nn.Conv1d(4, 6, 5), nn.Conv2d(3, 8, (3, 5)),
                                   nn.Conv2d(4, 8, 3, groups=2), nn.Conv3d(2, 3, (1, 2, 3))])
def test_fans_of_real_layers(layer: nn.Module) -> None:
    fan_in, fan_out = fan_in_and_fan_out(layer.weight)
    kernel = math.prod(layer.weight.shape[2:])
    in_per_group = layer.weight.shape[1]  # Conv weight is (out, in / groups, *kernel)
    assert fan_in == in_per_group * kernel
    assert fan_out == layer.weight.shape[0] * kernel
    assert (fan_in, fan_out) == nn.init._calculate_fan_in_and_fan_out(layer.weight)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fans_need_two_dims(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_gain_matches_torch(nonlinearity: str) -> None:
    assert gain(nonlinearity) == pytest.approx(nn.init.calculate_gain(nonlinearity), rel=0, abs=0)


@pytest.mark.parametrize("slope", [None, 0, 0.2, 1, 3.5])
def test_leaky_relu_gain_matches_torch(slope: float | None) -> None:
    assert gain("leaky_relu", slope) == nn.init.calculate_gain("leaky_relu", slope)


def test_gain_values_from_their_derivations() -> None:
    assert gain("relu") ** 2 == pytest.approx(2.0)  # ReLU keeps half the second moment
    assert gain("leaky_relu", 0.0) == gain("relu")
    assert gain("leaky_relu", 1.0) == pytest.approx(1.0)  # slope 1 is the identity
    assert gain("linear", 7.0) == 1.0  # param ignored outside leaky_relu


def test_gain_bad_input() -> None:
    with pytest.raises(ValueError, match=r"nonlinearity must be one of .*'gelu'"):
        gain("gelu")
    with pytest.raises(ValueError, match=r"negative slope of leaky_relu.*'0.1'"):
        gain("leaky_relu", "0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative slope"):
        gain("leaky_relu", True)


# --- bit-identical to torch.nn.init -----------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gain_", [1.0, 5.0 / 3, math.sqrt(2.0), 0.25])
@pytest.mark.parametrize("ours, theirs", [(xavier_uniform_, nn.init.xavier_uniform_),
                                          (xavier_normal_, nn.init.xavier_normal_)])
def test_xavier_identical_to_torch(ours, theirs, shape, dtype, gain_) -> None:
    mine, ref, g1, g2 = _pair(shape, dtype)
    out = ours(mine, gain=gain_, generator=g1)
    theirs(ref, gain=gain_, generator=g2)
    assert out is mine  # in place, returned like torch does
    assert torch.equal(mine, ref)
    assert torch.equal(g1.get_state(), g2.get_state())  # same number of draws


KAIMING_ARGS = [(0.0, "relu"), (0.0, "leaky_relu"), (0.2, "leaky_relu"),
                (math.sqrt(5), "leaky_relu"), (0.0, "tanh"), (0.0, "linear"), (0.0, "selu")]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("a, nonlinearity", KAIMING_ARGS)
@pytest.mark.parametrize("ours, theirs", [(kaiming_uniform_, nn.init.kaiming_uniform_),
                                          (kaiming_normal_, nn.init.kaiming_normal_)])
def test_kaiming_identical_to_torch(ours, theirs, shape, dtype, mode, a, nonlinearity) -> None:
    mine, ref, g1, g2 = _pair(shape, dtype)
    ours(mine, a=a, mode=mode, nonlinearity=nonlinearity, generator=g1)
    theirs(ref, a=a, mode=mode, nonlinearity=nonlinearity, generator=g2)
    assert torch.equal(mine, ref)


def test_defaults_match_torch_defaults_on_the_global_rng() -> None:
    """Without a generator both draw from the global RNG; defaults are He-leaky_relu(0)."""
    for ours, theirs in [(kaiming_uniform_, nn.init.kaiming_uniform_),
                         (kaiming_normal_, nn.init.kaiming_normal_),
                         (xavier_uniform_, nn.init.xavier_uniform_),
                         (xavier_normal_, nn.init.xavier_normal_)]:
        torch.manual_seed(7)
        mine = ours(torch.empty(9, 4))
        torch.manual_seed(7)
        ref = theirs(torch.empty(9, 4))
        assert torch.equal(mine, ref)


def test_initialises_a_parameter_without_recording_a_graph() -> None:
    layer, ref = nn.Linear(6, 4), nn.Linear(6, 4)
    kaiming_normal_(layer.weight, generator=torch.Generator().manual_seed(1))
    nn.init.kaiming_normal_(ref.weight, generator=torch.Generator().manual_seed(1))
    assert layer.weight.grad_fn is None and layer.weight.requires_grad
    assert torch.equal(layer.weight, ref.weight)


# --- LeCun: no torch function, so test the formula and its equivalence --------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ours, theirs", [(lecun_uniform_, nn.init.kaiming_uniform_),
                                          (lecun_normal_, nn.init.kaiming_normal_)])
def test_lecun_is_kaiming_with_gain_one(ours, theirs, shape) -> None:
    mine, ref, g1, g2 = _pair(shape, torch.float32)
    ours(mine, generator=g1)
    theirs(ref, nonlinearity="linear", generator=g2)
    assert torch.equal(mine, ref)


@pytest.mark.parametrize("shape", [(400, 1000), (250, 40, 3, 3), (600, 900)])
@pytest.mark.parametrize("fill", [lecun_normal_, lecun_uniform_])
def test_lecun_std_is_one_over_sqrt_fan_in(fill, shape) -> None:
    fan_in = fan_in_and_fan_out(torch.empty(shape))[0]
    w = fill(torch.empty(shape, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    expected = 1.0 / math.sqrt(fan_in)
    # 360k+ samples: the sample std is within ~0.2% of the truth; 2% cannot fail by chance.
    assert w.std().item() == pytest.approx(expected, rel=0.02)
    assert abs(w.mean().item()) < 0.02 * expected
    if fill is lecun_uniform_:
        assert w.abs().max().item() <= math.sqrt(3.0 / fan_in)


@pytest.mark.parametrize("fill, std_of", [
    (xavier_uniform_, lambda w: xavier_std(w, 1.5)),
    (xavier_normal_, lambda w: xavier_std(w, 1.5)),
    (kaiming_uniform_, lambda w: kaiming_std(w, 0.0, "fan_out", "relu")),
    (kaiming_normal_, lambda w: kaiming_std(w, 0.0, "fan_out", "relu")),
])
def test_sample_std_matches_the_formula(fill, std_of) -> None:
    w = torch.empty(300, 700, dtype=torch.float64)
    kwargs = {"gain": 1.5} if "xavier" in fill.__name__ else {"mode": "fan_out",
                                                               "nonlinearity": "relu"}
    fill(w, generator=torch.Generator().manual_seed(3), **kwargs)
    assert w.std().item() == pytest.approx(std_of(w), rel=0.02)


def test_std_formulas() -> None:
    w = torch.empty(20, 30)  # fan_in 30, fan_out 20
    assert xavier_std(w) == pytest.approx(math.sqrt(2 / 50))
    assert kaiming_std(w, nonlinearity="relu") == pytest.approx(math.sqrt(2 / 30))
    assert kaiming_std(w, mode="fan_out", nonlinearity="relu") == pytest.approx(math.sqrt(2 / 20))


# --- empty tensors and bad input ----------------------------------------------------------------

ALL_FILLS = [xavier_uniform_, xavier_normal_, kaiming_uniform_, kaiming_normal_,
             lecun_uniform_, lecun_normal_]


@pytest.mark.parametrize("fill", ALL_FILLS)
@pytest.mark.parametrize("shape", [(0, 0), (3, 0), (0, 4, 3)])
def test_empty_tensor_is_a_silent_no_op(fill, shape) -> None:
    w = torch.empty(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fill(w) is w
    assert w.shape == shape


@pytest.mark.parametrize("fill", ALL_FILLS)
def test_bad_tensors(fill) -> None:
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*got shape \(5,\)"):
        fill(torch.empty(5))
    with pytest.raises(ValueError, match=r"floating-point tensor, got dtype torch.int64"):
        fill(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"must be a torch.Tensor, got list"):
        fill([[1.0, 2.0]])


@pytest.mark.parametrize("fill", [xavier_uniform_, xavier_normal_])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "1"])
def test_bad_gain(fill, bad) -> None:
    with pytest.raises(ValueError, match="gain must be a finite number > 0"):
        fill(torch.empty(3, 4), gain=bad)


@pytest.mark.parametrize("fill", [kaiming_uniform_, kaiming_normal_])
@pytest.mark.parametrize("shape", [(3, 4), (0, 4)])  # also rejected when there is nothing to fill
def test_bad_kaiming_arguments(fill, shape) -> None:
    with pytest.raises(ValueError, match=r"mode must be one of \['fan_in', 'fan_out'\], got 'fan'"):
        fill(torch.empty(shape), mode="fan")
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        fill(torch.empty(shape), nonlinearity="swish")


# --- init_model ---------------------------------------------------------------------------------

def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10, bias=False), nn.Tanh(),
                         nn.Sequential(nn.Conv1d(1, 2, 3), nn.Linear(8, 5)))


REFERENCE = {
    "xavier_uniform": lambda w, g: nn.init.xavier_uniform_(w, gain=0.5, generator=g),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, gain=0.5, generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="tanh", generator=g),
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="tanh", generator=g),
    "lecun_uniform": lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="linear", generator=g),
    "lecun_normal": lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="linear", generator=g),
    "normal": lambda w, g: nn.init.normal_(w, 0.0, 0.3, generator=g),
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_init_model_matches_torch_layer_by_layer(scheme: str) -> None:
    model, ref = _net(), _net()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(9.0)  # so a layer that was skipped cannot pass by accident
    names = init_model(model, scheme, gain=0.5, nonlinearity="tanh", std=0.3,
                       generator=torch.Generator().manual_seed(5))
    assert names == ["0", "4", "6.0", "6.1"]
    g = torch.Generator().manual_seed(5)
    for name in names:
        REFERENCE[scheme](ref.get_submodule(name).weight, g)
    for name in names:
        mine = model.get_submodule(name)
        assert torch.equal(mine.weight, ref.get_submodule(name).weight)
        if mine.bias is not None:
            assert torch.equal(mine.bias, torch.zeros_like(mine.bias))
    assert torch.equal(model[1].weight, torch.full((4,), 9.0))  # BatchNorm is left alone


def test_init_model_bad_input() -> None:
    with pytest.raises(ValueError, match=r"scheme must be one of .*got 'he'"):
        init_model(_net(), "he")
    with pytest.raises(ValueError, match=r"std must be a finite number > 0.*got -1"):
        init_model(_net(), "normal", std=-1)
    with pytest.raises(ValueError, match="has no layer of type"):
        init_model(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)), "xavier_normal")
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        init_model(_net(), "kaiming_normal", nonlinearity="gelu")


# --- activation_statistics ----------------------------------------------------------------------

def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 4), nn.ReLU())


def test_activation_statistics_match_a_manual_forward() -> None:
    model, x = _mlp(), torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    model.train()
    stats = activation_statistics(model, x)
    assert isinstance(stats, ActivationStats)
    assert stats.names == ["0", "1", "2", "3", "4"]
    h, expected = x, []
    for layer in model:
        h = h if isinstance(layer, nn.Dropout) else layer(h)  # eval mode: dropout is identity
        expected.append((h.mean().item(), h.std(correction=0).item()))
    assert stats.mean == pytest.approx([m for m, _ in expected], rel=1e-5, abs=1e-7)
    assert stats.std == pytest.approx([s for _, s in expected], rel=1e-5)
    assert model.training  # mode restored
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


def test_activation_statistics_filter_by_type() -> None:
    model = _mlp().eval()
    stats = activation_statistics(model, torch.randn(8, 6), layer_types=(nn.Tanh, nn.ReLU))
    assert stats.names == ["1", "4"]
    assert not model.training
    assert stats.std[0] <= 1.0 and stats.mean[1] >= 0.0  # tanh is bounded, ReLU non-negative


def test_activation_statistics_bad_input() -> None:
    model = _mlp()
    with pytest.raises(ValueError, match=r"x must be a torch.Tensor batch, got list"):
        activation_statistics(model, [[0.0] * 6])
    for bad in ([nn.ReLU], (), (int,), (nn.ReLU, "relu")):
        with pytest.raises(ValueError, match="layer_types must be a non-empty tuple"):
            activation_statistics(model, torch.randn(2, 6), layer_types=bad)
    with pytest.raises(ValueError, match="has no module of type"):
        activation_statistics(model, torch.randn(2, 6), layer_types=(nn.Conv2d,))


def test_activation_statistics_rejects_tuple_outputs_and_cleans_up() -> None:
    model = nn.Sequential(nn.LSTM(3, 4, batch_first=True))
    with pytest.raises(ValueError, match=r"'0' \(LSTM\) returned a tuple"):
        activation_statistics(model, torch.randn(2, 5, 3))
    assert not model[0]._forward_hooks and model.training


def test_he_keeps_relu_signal_where_xavier_halves_it_each_layer() -> None:
    """The lesson's claim in miniature: per layer, Xavier scales the 2nd moment by 1/2, He by 1."""
    depth, width = 20, 128
    layers = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]
    x = torch.randn(128, width, generator=torch.Generator().manual_seed(0))
    final = {}
    for scheme in ("xavier_normal", "kaiming_normal"):
        model = nn.Sequential(*layers)
        init_model(model, scheme, generator=torch.Generator().manual_seed(1))
        final[scheme] = activation_statistics(model, x, layer_types=(nn.ReLU,)).std[-1]
    assert 0.3 < final["kaiming_normal"] < 3.0
    # sqrt(1/2)^20 ~ 1e-3 of the He value (2^-10 exactly in expectation).
    assert final["xavier_normal"] / final["kaiming_normal"] == pytest.approx(2**-10, rel=0.5)

"""Receptive fields: the recurrence against hand-computed values, torch's output sizes and the
gradient-based measurement, on many stacks and on the book's ResNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve
from torch import nn

from neuralarch.vision.antialias import BlurPool2d
from neuralarch.vision.receptive_field import (
    LayerSpec,
    MeasuredField,
    ReceptiveField,
    apply_layer,
    conv_output_size,
    effective_receptive_field,
    erf_spread,
    gradient_receptive_field,
    layer_spec,
    merge_receptive_fields,
    positive_copy,
    receptive_field,
)
from neuralarch.vision.resnet import BasicBlock, ResNet, ResNetConfig


def conv(k=3, s=1, p=None, d=1, c_in=2, c_out=2, **kw) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, s, (d * (k - 1) // 2) if p is None else p, d, **kw)


def vgg16_features() -> nn.Sequential:
    """VGG-16's convolutional part (channels shrunk to 1: geometry is all that matters)."""
    layers: list[nn.Module] = []
    for convs in (2, 2, 3, 3, 3):
        layers += [m for _ in range(convs) for m in (conv(c_in=1, c_out=1), nn.ReLU())]
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------ hand-computed values


def test_two_3x3_convs_see_5x5_and_three_see_7x7():
    assert receptive_field(nn.Sequential(conv(), conv()))[-1].size == (5, 5)
    assert receptive_field(nn.Sequential(conv(), nn.ReLU(), conv(), conv()))[-1].size == (7, 7)


def test_vgg16_known_values():
    rows = receptive_field(vgg16_features())
    sizes = [row.size[0] for row in rows]
    # the standard values: conv5_3 sees 196 x 196 pixels and pool5 212 x 212 (Araujo et al.)
    assert sizes[-2:] == [196, 212]
    assert sizes[:4] == [1, 3, 5, 6]  # input, conv1_1, conv1_2, pool1
    assert rows[-1].jump == (32, 32)


def test_alexnet_known_values():
    net = nn.Sequential(nn.Conv2d(3, 4, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                        nn.Conv2d(4, 4, 5, padding=2), nn.MaxPool2d(3, 2),
                        *[nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)], nn.MaxPool2d(3, 2))
    rows = receptive_field(net, 224)
    assert [r.size[0] for r in rows] == [1, 11, 19, 51, 67, 99, 131, 163, 195]
    assert [r.jump[0] for r in rows][-1] == 32
    assert rows[-1].out_size == (6, 6)


def test_book_resnet_rows():
    model = ResNet(ResNetConfig(widths=(16, 32, 64), blocks=(2, 2, 2), strides=(2, 2, 2)))
    rows = receptive_field(model, 28)
    assert [r.name for r in rows[:3]] == ["input", "stem.0", "stages.0.0.conv1"]
    assert rows[-1].name == "stages.2.1.conv2"
    assert rows[-1].size == (101, 101) and rows[-1].jump == (8, 8)
    assert rows[-1].start == (-50, -50) and rows[-1].out_size == (4, 4)
    assert rows[-1].center == (0.0, 0.0)


def test_start_center_and_box():
    rows = receptive_field(nn.Sequential(conv(3, 2, 1), conv(3, 2, 0)), 16)
    last = rows[-1]
    assert last.size == (7, 7) and last.jump == (4, 4) and last.start == (-1, -1)
    assert last.center == (2.0, 2.0)
    assert last.box((1, 2)) == (3, 9, 7, 13)
    assert last.box((0, 0), (16, 16)) == (0, 5, 0, 5)


def test_non_square_kernels_and_strides():
    net = nn.Sequential(nn.Conv2d(1, 1, (3, 5), (1, 2), (1, 2)), nn.MaxPool2d((2, 1)))
    last = receptive_field(net)[-1]
    assert last.size == (4, 5) and last.jump == (2, 2) and last.start == (-1, -2)


def test_same_and_valid_padding():
    same = layer_spec(nn.Conv2d(1, 1, 4, padding="same"))
    assert same.padding == (1, 1) and same.end_padding == (2, 2)
    valid = layer_spec(nn.Conv2d(1, 1, 3, padding="valid", dilation=2))
    assert valid.padding == (0, 0) and valid.end_padding == (0, 0) and valid.dilation == (2, 2)


def test_blurpool_spec():
    spec = layer_spec(BlurPool2d(3, filter_size=4, stride=2))
    assert spec.kind == "blurpool" and spec.kernel == (4, 4) and spec.stride == (2, 2)
    assert spec.padding == (1, 1) and spec.end_padding == (2, 2)


def test_walk_stops_at_global_layers():
    net = nn.Sequential(conv(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3), conv())
    assert [r.name for r in receptive_field(net)] == ["input", "0"]


def test_merge_is_the_union_of_two_branches():
    a = ReceptiveField("a", (5, 5), (2, 2), (-2, -2), (8, 8))
    b = ReceptiveField("b", (3, 9), (2, 2), (-3, 0), (8, 8))
    merged = merge_receptive_fields(a, b, "block")
    assert merged.start == (-3, -2) and merged.size == (6, 11) and merged.jump == (2, 2)
    with pytest.raises(ValueError, match="do not align"):
        merge_receptive_fields(a, ReceptiveField("c", (1, 1), (1, 1), (0, 0), (8, 8)), "block")


def test_walk_adds_merge_row_when_the_shortcut_is_wider():
    block = BasicBlock(2, 2)  # identity shortcut: the main path covers it, no merge row
    assert [r.name for r in receptive_field(block)] == ["input", "conv1", "conv2"]
    block.shortcut = nn.Conv2d(2, 2, 7, 1, 3)  # a shortcut wider than the main path's 5x5
    rows = receptive_field(block)
    assert rows[-1].name == "" and rows[-1].size == (7, 7) and rows[-1].start == (-3, -3)


# ------------------------------------------------------------------ output sizes vs torch


SIZES = [(28, 3, 1, 1, 1), (28, 3, 2, 1, 1), (27, 5, 2, 2, 1), (17, 3, 3, 0, 2),
         (10, 4, 2, 1, 1), (9, 2, 2, 0, 1), (31, 3, 2, 1, 3), (5, 2, 2, 1, 1)]


@pytest.mark.parametrize(("n", "k", "s", "p", "d"), SIZES)
def test_output_size_matches_conv2d(n, k, s, p, d):
    out = nn.Conv2d(1, 1, k, s, p, d)(torch.zeros(1, 1, n, n + 3)).shape[2:]
    assert (conv_output_size(n, k, s, p, d), conv_output_size(n + 3, k, s, p, d)) == tuple(out)


@pytest.mark.parametrize(("n", "k", "s", "p", "d"), SIZES)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_output_size_matches_pools(n, k, s, p, d, ceil_mode):
    if p > k // 2:
        pytest.skip("torch pools need padding <= kernel / 2")
    x = torch.zeros(1, 1, n, n)
    maxpool = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil_mode)(x).shape[-1]
    assert conv_output_size(n, k, s, p, d, ceil_mode) == maxpool
    avgpool = nn.AvgPool2d(k, s, p, ceil_mode=ceil_mode)(x).shape[-1]
    assert conv_output_size(n, k, s, p, 1, ceil_mode) == avgpool


def test_table_output_sizes_match_the_real_feature_maps():
    model = ResNet(ResNetConfig(widths=(4, 8), blocks=(1, 2), strides=(2, 2)))
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=n: shapes.__setitem__(name, o.shape))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    model(torch.zeros(1, 1, 23, 30))
    for hook in hooks:
        hook.remove()
    for row in receptive_field(model, (23, 30))[1:]:
        assert row.out_size == tuple(shapes[row.name][2:]), row.name


# ------------------------------------------------------------------ analytic == measured

STACKS = {
    "3x3 convs": lambda: nn.Sequential(conv(), nn.ReLU(), conv(), nn.ReLU(), conv()),
    "strided": lambda: nn.Sequential(conv(3, 2), nn.BatchNorm2d(2), nn.ReLU(), conv(3, 2),
                                     conv(5, 1)),
    "dilated": lambda: nn.Sequential(conv(3, d=1), conv(3, d=2), conv(3, d=4)),
    "no padding": lambda: nn.Sequential(conv(3, 1, 0), conv(5, 2, 0), conv(3, 1, 0)),
    "big padding": lambda: nn.Sequential(conv(3, 1, 2), conv(3, 2, 3)),
    "max and avg pools": lambda: nn.Sequential(conv(), nn.MaxPool2d(2), conv(),
                                               nn.AvgPool2d(3, 2, 1), conv()),
    "dilated ceil pool": lambda: nn.Sequential(conv(), nn.MaxPool2d(3, 2, 1, 2, ceil_mode=True),
                                               conv()),
    "non-square": lambda: nn.Sequential(nn.Conv2d(1, 2, (5, 3), (2, 1), (2, 1)), nn.ReLU(),
                                        nn.Conv2d(2, 2, (1, 3), (1, 2), (0, 1), (1, 2))),
    "same padding": lambda: nn.Sequential(nn.Conv2d(1, 2, 4, padding="same"),
                                          nn.Conv2d(2, 2, 3, padding="same", dilation=3)),
    "blur pool": lambda: nn.Sequential(conv(c_in=1), BlurPool2d(2, 3, 2, "zeros"), conv(),
                                       BlurPool2d(2, 4, 2, "zeros"), conv()),
    "strided 2x2 pool with bias": lambda: nn.Sequential(conv(bias=True), nn.GELU(),
                                                        nn.MaxPool2d(2), conv(bias=True)),
}
RESNETS = {
    "book resnet": ResNetConfig(widths=(4, 4, 4), blocks=(2, 2, 2), strides=(2, 2, 2)),
    "one stride": ResNetConfig(widths=(4, 8), blocks=(1, 1), strides=(1, 2)),
    "stride 3": ResNetConfig(widths=(4, 4), blocks=(2, 1), strides=(3, 1)),
    "plain net": ResNetConfig(widths=(4, 4), blocks=(1, 2), strides=(2, 2), residual=False),
}


def _check_every_row(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Compare the analytic box of several units of every row with the measured one."""
    checked = 0
    for row in receptive_field(model, input_size)[1:]:
        h, w = row.out_size
        for unit in {(0, 0), (h - 1, w - 1), (h // 2, w // 2), (h - 1, 0), (min(1, h - 1), w // 3)}:
            top, bottom, left, right = row.box(unit, input_size)
            if top > bottom or left > right:  # the unit's window lies in the padding
                with pytest.raises(ValueError, match="sees only padding"):
                    gradient_receptive_field(model, input_size, layer=row.name, unit=unit)
                continue
            measured = gradient_receptive_field(model, input_size, layer=row.name, unit=unit)
            assert measured.box == row.box(unit, input_size), (row.name, unit)
            checked += 1
    return checked


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", list(STACKS))
def test_analytic_equals_gradient_on_stacks(name):
    torch.manual_seed(0)
    assert _check_every_row(STACKS[name](), (37, 30)) >= 6


@pytest.mark.parametrize("name", list(RESNETS))
def test_analytic_equals_gradient_on_resnets(name):
    torch.manual_seed(0)
    model = ResNet(RESNETS[name])
    assert _check_every_row(model, (40, 44)) >= 10


def test_resnet_field_has_no_holes_but_a_strided_1x1_does():
    model = ResNet(ResNetConfig(widths=(4, 4), blocks=(1, 1), strides=(2, 2)))
    assert gradient_receptive_field(model, 64, layer="stages").is_box
    holes = gradient_receptive_field(nn.Sequential(conv(1, 2, 0), conv(3, 1, 1)), 16)
    assert holes.size == (5, 5) and not holes.is_box and int(holes.mask.sum()) == 9


def test_reflect_padding_shows_mirror_pixels_at_the_border_only():
    net = nn.Sequential(conv(c_in=1), BlurPool2d(2, 3, 2), conv(), BlurPool2d(2, 4, 2))
    row = receptive_field(net, (37, 30))[-1]  # the formula assumes zero padding
    inner = gradient_receptive_field(net, (37, 30), unit=(4, 3))
    assert inner.box == row.box((4, 3), (37, 30))
    border = gradient_receptive_field(net, (37, 30), unit=(9, 0))
    assert border.box[0] < row.box((9, 0), (37, 30))[0]  # mirrored pixels from further up


def test_gradient_field_ignores_zero_gains_and_max_routing():
    model = ResNet(ResNetConfig(widths=(4,), blocks=(1,), strides=(2,)))  # bn2 gain is 0
    nn.init.zeros_(model.stem[1].weight)  # a zero gain would hide everything from autograd
    measured = gradient_receptive_field(model, 20, layer="stages", unit=(5, 5))
    assert measured.box == (6, 14, 6, 14) and measured.size == (9, 9)  # -4 + 2 * 5 = 6
    assert isinstance(measured, MeasuredField) and int(measured.mask.sum()) == 81


def test_positive_copy_leaves_the_model_alone():
    net = nn.Sequential(conv(c_in=1), nn.BatchNorm2d(2), nn.MaxPool2d(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe = positive_copy(net)
    assert isinstance(net[2], nn.MaxPool2d) and not isinstance(probe[2], nn.MaxPool2d)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert probe[0].weight.dtype == torch.float64 and bool((probe[0].weight > 0).all())


# ------------------------------------------------------------------ effective receptive field


@pytest.mark.parametrize(("layers", "k"), [(1, 3), (4, 3), (6, 5)])
def test_erf_of_uniform_stack_is_the_repeated_box_filter(layers, k):
    net = nn.Sequential(*[nn.Conv2d(1, 1, k, padding=k // 2, bias=False) for _ in range(layers)])
    for layer in net:
        nn.init.constant_(layer.weight, 1.0 / k**2)
    size = 2 * layers * (k // 2) + 9  # room for the whole field around the centre
    erf = effective_receptive_field(net, torch.rand(2, 1, size, size))
    box = np.ones(k) / k
    profile = np.array([1.0])
    for _ in range(layers):
        profile = convolve(profile, box)  # the 1-D gradient: an n-fold convolution of boxes
    expected = np.zeros(size)
    offset = (size - len(profile)) // 2
    expected[offset:offset + len(profile)] = profile
    torch.testing.assert_close(erf, torch.tensor(np.outer(expected, expected), dtype=erf.dtype))


def test_erf_sums_to_one_and_restores_mode():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(widths=(4, 4), blocks=(1, 1), strides=(2, 2))).train()
    erf = effective_receptive_field(model, torch.randn(3, 1, 16, 16), layer="stages", unit=(1, 2))
    assert model.training and erf.shape == (16, 16)
    torch.testing.assert_close(erf.sum(), torch.tensor(1.0))
    assert float(erf[:, 12:].sum()) < float(erf[:, :12].sum())  # unit (1, 2) sits left of 12


def test_erf_spread_matches_numpy_weighted_std():
    rng = np.random.default_rng(0)
    erf = rng.random((7, 11))
    rows, cols = np.indices(erf.shape)
    expected = [np.sqrt(np.cov(axis.ravel(), aweights=erf.ravel(), bias=True)) for axis in
                (rows, cols)]
    assert erf_spread(torch.tensor(erf)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="non-negative"):
        erf_spread(torch.tensor([[1.0, -1.0]]))


# ------------------------------------------------------------------ bad input


def test_errors():
    with pytest.raises(ValueError, match="no receptive-field rule for Upsample"):
        receptive_field(nn.Sequential(conv(), nn.Upsample(scale_factor=2)))
    with pytest.raises(ValueError, match="no receptive-field rule for GroupNorm"):
        layer_spec(nn.GroupNorm(1, 2))  # normalises over all positions: not pointwise
    with pytest.raises(ValueError, match="kernel must be >= 1"):
        LayerSpec("conv", (0, 3), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        LayerSpec("conv", (3, 3), (1, 1), (0, 0), padding_end=(-1, 0))
    with pytest.raises(ValueError, match="input_size must be an int or a pair"):
        receptive_field(conv(), input_size=(3, 4, 5))
    with pytest.raises(ValueError, match="does not fit an input of length n=2"):
        conv_output_size(2, kernel=3, dilation=2)
    with pytest.raises(ValueError, match="has no submodule 'nope'"):
        gradient_receptive_field(nn.Sequential(conv()), 8, layer="nope")
    model = ResNet(ResNetConfig(widths=(4,), blocks=(1,), strides=(2,)))
    with pytest.raises(ValueError, match=r"not a feature map .* pass layer="):
        gradient_receptive_field(model, 8)
    with pytest.raises(ValueError, match=r"unit \(9, 0\) lies outside the feature map"):
        gradient_receptive_field(model, 8, layer="stages", unit=(9, 0))
    with pytest.raises(ValueError, match="images must be a batch"):
        effective_receptive_field(model, torch.zeros(1, 8, 8))


def test_apply_layer_without_sizes():
    row = apply_layer(ReceptiveField("input", (1, 1), (1, 1), (0, 0)),
                      LayerSpec("conv", (3, 3), (2, 2), (1, 1), (2, 2)), "x")
    assert row.size == (5, 5) and row.jump == (2, 2) and row.start == (-1, -1)
    assert row.out_size is None and row.layer.kind == "conv"

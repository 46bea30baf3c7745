"""BlurPool2d against explicit convolutions (torch and scipy), the downsampling nets, and the
shift-consistency measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import correlate2d
from scipy.special import comb
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.vision.antialias import (
    BlurPool2d,
    DownsamplingNetConfig,
    binomial_filter,
    build_downsampling_net,
    downsampling_block,
    feature_similarity,
    prediction_consistency,
    shift_images,
)
from neuralarch.vision.receptive_field import receptive_field


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
def test_binomial_filter_is_pascals_row(size):
    expected = comb(size - 1, np.arange(size)) / 2 ** (size - 1)
    torch.testing.assert_close(binomial_filter(size), torch.tensor(expected))


def test_binomial_filter_of_three_is_1_2_1():
    torch.testing.assert_close(binomial_filter(3), torch.tensor([0.25, 0.5, 0.25],
                                                                dtype=torch.float64))


CASES = [(3, 3, 2, "reflect", (11, 14)), (2, 2, 2, "zeros", (8, 9)),
         (4, 5, 3, "replicate", (13, 12)), (1, 4, 1, "reflect", (7, 7)),
         (5, 1, 2, "zeros", (6, 10)), (2, 7, 2, "replicate", (9, 9))]


@pytest.mark.parametrize(("channels", "size", "stride", "pad_mode", "hw"), CASES)
def test_blurpool_equals_grouped_conv(channels, size, stride, pad_mode, hw):
    gen = torch.Generator().manual_seed(channels + size)
    x = torch.randn(2, channels, *hw, generator=gen)
    taps = binomial_filter(size).float()
    weight = torch.outer(taps, taps).repeat(channels, 1, 1, 1)  # (C, 1, k, k)
    before, after = (size - 1) // 2, size // 2
    mode = "constant" if pad_mode == "zeros" else pad_mode
    expected = F.conv2d(F.pad(x, (before, after, before, after), mode=mode), weight,
                        stride=stride, groups=channels)
    torch.testing.assert_close(BlurPool2d(channels, size, stride, pad_mode)(x), expected)


@pytest.mark.parametrize(("channels", "size", "stride", "pad_mode", "hw"), CASES)
def test_blurpool_equals_scipy_per_channel(channels, size, stride, pad_mode, hw):
    gen = torch.Generator().manual_seed(size)
    x = torch.randn(1, channels, *hw, generator=gen, dtype=torch.float64)
    taps = binomial_filter(size).numpy()
    before, after = (size - 1) // 2, size // 2
    np_mode = {"reflect": "reflect", "replicate": "edge", "zeros": "constant"}[pad_mode]
    expected = np.stack([
        correlate2d(np.pad(x[0, c].numpy(), ((before, after), (before, after)), mode=np_mode),
                    np.outer(taps, taps), mode="valid")[::stride, ::stride]
        for c in range(channels)])
    out = BlurPool2d(channels, size, stride, pad_mode)(x)
    torch.testing.assert_close(out[0], torch.from_numpy(expected))


def test_blurpool_special_cases():
    x = torch.randn(2, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(BlurPool2d(3, 2, 2)(x), F.avg_pool2d(x, 2))  # [1, 1] / 2 = box
    torch.testing.assert_close(BlurPool2d(3, 1, 3)(x), x[:, :, ::3, ::3])  # no blur: subsample
    assert BlurPool2d(3, 3, 2)(x).shape == (2, 3, 5, 6)
    assert "filter_size=3" in repr(BlurPool2d(3))
    assert not BlurPool2d(3).state_dict() and not list(BlurPool2d(3).parameters())


def test_blurpool_removes_the_nyquist_frequency():
    i, j = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    checkerboard = ((-1.0) ** (i + j))[None, None]  # the highest frequency a grid can hold
    subsampled = checkerboard[:, :, ::2, ::2]
    assert torch.equal(subsampled, torch.ones_like(subsampled))  # aliased to a constant
    blurred = BlurPool2d(1, 3, 2)(checkerboard)
    torch.testing.assert_close(blurred[:, :, 1:, 1:], torch.zeros(1, 1, 5, 5))


def test_blurpool_errors():
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        BlurPool2d(3, filter_size=0)
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        BlurPool2d(3, pad_mode="circular")
    with pytest.raises(ValueError, match="channels and stride must be >= 1"):
        BlurPool2d(3, stride=0)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        BlurPool2d(3)(torch.zeros(1, 2, 8, 8))


@pytest.mark.parametrize(("kind", "final"), [("stride", 4), ("max", 3), ("avg", 3), ("blur", 4),
                                             ("maxblur", 3)])
def test_downsampling_nets(kind, final):
    config = DownsamplingNetConfig(widths=(4, 6, 8), downsample=kind)
    net = build_downsampling_net(config)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    rows = receptive_field(net, 28)
    assert rows[-1].out_size == (final, final) and rows[-1].jump == (8, 8)


def test_downsampling_block_and_config_errors():
    assert len(downsampling_block(2, 3, "stride")) == 3
    with pytest.raises(ValueError, match="kind must be one of"):
        downsampling_block(2, 3, "nearest")
    with pytest.raises(ConfigError, match="downsample"):
        DownsamplingNetConfig(downsample="nearest")
    with pytest.raises(ConfigError, match="widths must be non-empty"):
        DownsamplingNetConfig(widths=())
    assert len(build_downsampling_net()) == 9  # stem (3), three blocks, pool, flatten, head


def test_shift_images_is_a_translation_on_blank_margins():
    x = torch.zeros(2, 1, 10, 10)
    x[:, :, 3:7, 2:6] = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    moved = torch.zeros_like(x)
    moved[:, :, 4:8, 0:4] = x[:, :, 3:7, 2:6]  # 1 down, 2 left
    assert torch.equal(shift_images(x, 1, -2), moved)
    assert torch.equal(shift_images(shift_images(x, 3, 4), -3, -4), x)
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\)"):
        shift_images(torch.zeros(3, 4), 1, 1)


SHIFTS = [(0, 1), (1, 0), (-1, -1)]


def test_consistency_of_an_invariant_and_a_positional_model():
    x = torch.rand(40, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    # mean over positions, then a linear map: a circular shift cannot change the prediction
    invariant = nn.Sequential(nn.Conv2d(1, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 3)).train()
    torch.testing.assert_close(prediction_consistency(invariant, x, SHIFTS), torch.ones(3))
    assert invariant.training  # the mode is restored
    positional = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))  # every pixel has its own weight
    consistency = prediction_consistency(positional, x, SHIFTS, batch_size=7)
    assert bool((consistency < 0.9).all()) and bool((consistency > 0).all())


def test_feature_similarity():
    x = torch.rand(10, 2, 5, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(feature_similarity(lambda t: t.mean((2, 3)), x, SHIFTS),
                               torch.ones(3))
    sims = feature_similarity(lambda t: t, x, [(0, 2)], batch_size=3)
    expected = F.cosine_similarity(torch.roll(x, 2, 3).flatten(1), x.flatten(1)).mean()
    torch.testing.assert_close(sims, expected[None])
    with pytest.raises(ValueError, match="at least one"):
        feature_similarity(lambda t: t, x, [])
    with pytest.raises(ValueError, match="non-empty batch"):
        prediction_consistency(nn.Flatten(), x[:0], SHIFTS)

"""Tests of the 1-D signal and 2-D toy diffusion helpers (lessons 7.1 and 7.4)."""

import pytest
import torch

from neuralarch.generative.ddim import ddim_sample
from neuralarch.generative.ddpm import Diffusion, fit_denoiser
from neuralarch.generative.noise_schedules import cosine_schedule
from neuralarch.generative.signals import SignalDenoiser, dominant_frequency, noisy_sinusoids
from neuralarch.generative.toy import MLPDenoiser, two_moons


def test_noisy_sinusoids_shape_and_frequencies():
    x = noisy_sinusoids(500, length=64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 1, 64)
    f = dominant_frequency(x)
    assert f.min() >= 1 and f.max() <= 3
    assert 0.3 < x.abs().amax(dim=-1).mean() < 1.2


def test_two_moons_is_standardised():
    p = two_moons(4000, generator=torch.Generator().manual_seed(0))
    assert p.shape == (4000, 2)
    assert p.mean(0).abs().max() < 0.1 and ((p.std(0) - 1).abs() < 0.2).all()


@pytest.mark.parametrize("length", [32, 48])
def test_signal_denoiser_shape_and_training(length):
    d = Diffusion(cosine_schedule(50))
    model = SignalDenoiser(time_steps=50, width=16, blocks=2)
    data = noisy_sinusoids(256, length=length, generator=torch.Generator().manual_seed(0))
    losses = fit_denoiser(model, d, data, steps=60, batch_size=64, lr=3e-3)
    assert losses[-1] < losses[0]
    out = ddim_sample(model, d, (4, 1, length), 5)
    assert out.shape == (4, 1, length) and torch.isfinite(out).all()


def test_mlp_denoiser_validates():
    with pytest.raises(ValueError, match="embed_dim"):
        MLPDenoiser(embed_dim=7)
    assert MLPDenoiser(time_steps=10)(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)

"""Tests of the diffusion noise schedules (lesson 7.1)."""

import math

import pytest
import torch

from neuralarch.generative.noise_schedules import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
)


@pytest.mark.parametrize("steps", [10, 200, 1000])
def test_linear_schedule_matches_ho_et_al_at_1000_and_scales(steps):
    s = linear_schedule(steps)
    torch.testing.assert_close(s.betas[0].item(), 1e-4 * 1000 / steps)
    torch.testing.assert_close(s.betas[-1].item(), min(0.02 * 1000 / steps, 0.999))
    assert s.alpha_bars[-1] < 0.01, "the chain must end in (almost) pure noise"


@pytest.mark.parametrize("steps", [50, 200])
def test_cosine_alpha_bar_follows_the_formula(steps):
    s = cosine_schedule(steps)
    t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    f0 = math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / f0
    torch.testing.assert_close(s.alpha_bars[:-1], f[:-1], rtol=1e-6, atol=1e-9)  # last is clipped


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_derived_quantities(kind):
    s = make_schedule(kind, 100)
    torch.testing.assert_close(s.alpha_bars, torch.cumprod(1 - s.betas, 0))
    assert s.alpha_bars_prev[0] == 1 and torch.equal(s.alpha_bars_prev[1:], s.alpha_bars[:-1])
    expected = (1 - s.alpha_bars_prev) / (1 - s.alpha_bars) * s.betas
    torch.testing.assert_close(s.posterior_variances, expected)
    assert bool((s.posterior_variances <= s.betas + 1e-12).all())
    assert bool((s.snr().diff() < 0).all()), "the signal-to-noise ratio must fall with t"


def test_invalid_schedules_raise():
    with pytest.raises(ValueError, match="steps"):
        linear_schedule(0)
    with pytest.raises(ValueError, match="beta"):
        linear_schedule(10, beta_start=0.5, beta_end=0.1)
    with pytest.raises(ValueError, match="kind"):
        make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="beta"):
        NoiseSchedule(torch.tensor([0.1, 1.5], dtype=torch.float64))

"""Tests of DDIM sampling, classifier-free guidance and temperature (lesson 7.4)."""

import pytest
import torch

from neuralarch.generative.ddim import (
    ClassifierFreeGuidance,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
)
from neuralarch.generative.ddpm import Diffusion
from neuralarch.generative.noise_schedules import cosine_schedule, linear_schedule


def gaussian_oracle(diffusion, mu, s):
    """The exact noise predictor for data x0 ~ N(mu, s^2), elementwise."""
    def model(x, t, y=None):
        ab = diffusion.alpha_bars[t].view(-1, *([1] * (x.ndim - 1)))
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)
    return model


@pytest.mark.parametrize("total, steps", [(200, 10), (100, 100), (50, 1), (37, 5)])
def test_timesteps(total, steps):
    grid = ddim_timesteps(total, steps)
    assert len(grid) == steps and grid[0] == total - 1 and (grid[-1] == 0 or steps == 1)
    assert grid == sorted(set(grid), reverse=True)


@pytest.mark.parametrize("make", [linear_schedule, cosine_schedule])
def test_eta_one_with_unit_steps_is_ddpm(make):
    """eta = 1 on consecutive steps: DDIM's variance is DDPM's beta_tilde and its mean DDPM's."""
    d = Diffusion(make(100))
    t = torch.arange(1, 100)
    sigma2 = ddim_sigma(d.alpha_bars[t], d.alpha_bars[t - 1], 1.0) ** 2
    torch.testing.assert_close(sigma2, d.posterior_variances[t], rtol=1e-4, atol=1e-8)
    x, eps = torch.randn(99, 3), torch.randn(99, 3)
    mean = ddim_step(x, eps, d.alpha_bars[t], d.alpha_bars[t - 1], 1.0,
                     noise=torch.zeros_like(x))
    torch.testing.assert_close(mean, d.posterior_mean(x, t, eps), rtol=1e-4, atol=1e-4)


def test_eta_zero_is_deterministic_and_eta_one_is_not():
    d = Diffusion(cosine_schedule(100))
    oracle = gaussian_oracle(d, 0.5, 0.7)
    start = torch.randn(16, 2)
    a = ddim_sample(oracle, d, (16, 2), 10, eta=0.0, x_start=start)
    b = ddim_sample(oracle, d, (16, 2), 10, eta=0.0, x_start=start.clone())
    assert torch.equal(a, b)
    c = ddim_sample(oracle, d, (16, 2), 10, eta=1.0, x_start=start)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("eta, steps, tol", [(0.0, 200, 0.02), (1.0, 200, 0.02),
                                             (0.0, 50, 0.03)])
def test_ddim_with_exact_denoiser_recovers_the_data(eta, steps, tol):
    d = Diffusion(cosine_schedule(200))
    x = ddim_sample(gaussian_oracle(d, 2.0, 0.5), d, (20000, 1), steps, eta=eta,
                    generator=torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - 2.0) < 0.02 and abs(x.std().item() - 0.5) < tol


def test_few_ddim_steps_shrink_the_spread():
    """With big strides, x0_hat = E[x0 | x_t] is over-smoothed: fewer steps, less spread."""
    d = Diffusion(cosine_schedule(200))
    stds = [ddim_sample(gaussian_oracle(d, 0.0, 0.5), d, (5000, 1), steps,
                        generator=torch.Generator().manual_seed(0)).std().item()
            for steps in (5, 20, 200)]
    assert stds[0] < stds[1] < stds[2]


def fake_model(x, t, y):
    return x * 0 + y.view(-1, *([1] * (x.ndim - 1))).float()  # "noise" = the class id


def test_guidance_zero_is_the_conditional_model_and_combination_is_right():
    x, t, y = torch.randn(6, 3), torch.zeros(6, dtype=torch.long), torch.arange(6)
    assert torch.equal(ClassifierFreeGuidance(fake_model, 0.0, 10)(x, t, y), fake_model(x, t, y))
    out = ClassifierFreeGuidance(fake_model, 2.5, 10)(x, t, y)
    expected = 3.5 * y.float()[:, None] - 2.5 * 10.0
    torch.testing.assert_close(out, expected.expand(6, 3))


def test_temperature_zero_with_eta_zero_starts_from_zero():
    d = Diffusion(cosine_schedule(50))
    oracle = gaussian_oracle(d, 1.0, 1.0)
    x = ddim_sample(oracle, d, (8, 2), 5, eta=0.0, temperature=0.0)
    torch.testing.assert_close(x, torch.full((8, 2), x[0, 0].item()))
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(oracle, d, (8, 2), 5, eta=2.0)
    with pytest.raises(ValueError, match="guidance"):
        ClassifierFreeGuidance(oracle, -1.0, 10)

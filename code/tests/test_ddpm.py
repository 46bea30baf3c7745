"""Tests of the DDPM forward process, loss and ancestral sampler (lesson 7.1)."""

import pytest
import torch

from neuralarch.generative.ddpm import Diffusion, fit_denoiser, loss_summary, train_with_ema
from neuralarch.generative.noise_schedules import cosine_schedule, linear_schedule
from neuralarch.generative.toy import MLPDenoiser, two_moons


def gaussian_oracle(diffusion, mu, s):
    """The exact noise predictor for data x0 ~ N(mu, s^2), elementwise."""
    def model(x, t, y=None):
        ab = diffusion.alpha_bars[t].view(-1, *([1] * (x.ndim - 1)))
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)
    return model


@pytest.mark.parametrize("shape", [(4000, 2), (2000, 3, 5), (1000, 2, 3, 4)])
@pytest.mark.parametrize("step", [0, 37, 99])
def test_forward_process_moments(shape, step):
    """x_t given x_0 has mean sqrt(ab) x_0 and variance 1 - ab, for any tensor shape."""
    d = Diffusion(cosine_schedule(100))
    gen = torch.Generator().manual_seed(step)
    x0 = torch.randn(shape[1:], generator=gen).expand(shape)  # one x_0, many draws
    t = torch.full((shape[0],), step, dtype=torch.long)
    xt = d.q_sample(x0, t, torch.randn(shape, generator=gen))
    ab = d.alpha_bars[step]
    n = shape[0]
    torch.testing.assert_close(xt.mean(0), ab.sqrt() * x0[0], atol=5 / n**0.5, rtol=0)
    torch.testing.assert_close(xt.var(0), (1 - ab).expand(shape[1:]), atol=8 / n**0.5, rtol=0)


def test_invalid_steps_raise():
    d = Diffusion(linear_schedule(10))
    with pytest.raises(ValueError, match="steps"):
        d.q_sample(torch.zeros(2, 3), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="int64"):
        d.q_sample(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


def test_predict_x0_inverts_q_sample():
    d = Diffusion(linear_schedule(50))
    x0, eps = torch.randn(8, 3, 4), torch.randn(8, 3, 4)
    t = torch.arange(0, 48, 6)
    torch.testing.assert_close(d.predict_x0(d.q_sample(x0, t, eps), t, eps), x0,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mu, s", [(1.5, 0.5), (-1.0, 2.0)])
def test_ancestral_sampling_with_exact_denoiser_recovers_the_data(mu, s):
    d = Diffusion(linear_schedule(200))
    x = d.sample(gaussian_oracle(d, mu, s), (20000, 1), generator=torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - mu) < 0.05 and abs(x.std().item() - s) < 0.05 * s


def test_sample_chain_and_temperature():
    d = Diffusion(linear_schedule(20))
    oracle = gaussian_oracle(d, 0.0, 1.0)
    chain = d.sample(oracle, (5, 2), return_chain=True)
    assert chain.shape == (21, 5, 2)
    cold = d.sample(oracle, (4000, 1), generator=torch.Generator().manual_seed(1), temperature=0.5)
    assert cold.std() < 0.6, "temperature 0.5 shrinks the spread of the samples"


def test_loss_goes_down_on_two_moons():
    d = Diffusion(cosine_schedule(50))
    model = MLPDenoiser(time_steps=50, hidden=64)
    losses = fit_denoiser(model, d, two_moons(2000, generator=torch.Generator().manual_seed(0)),
                          steps=300, batch_size=128)
    assert sum(losses[-30:]) / 30 < 0.8 * sum(losses[:30]) / 30


def test_posterior_mean_forms_agree_and_clip_only_binds_outside_the_range():
    d = Diffusion(cosine_schedule(50))
    x, eps, t = torch.randn(49, 3), torch.randn(49, 3), torch.arange(1, 50)
    torch.testing.assert_close(d.posterior_mean_from_x0(x, t, d.predict_x0(x, t, eps)),
                               d.posterior_mean(x, t, eps), atol=1e-3, rtol=1e-3)
    oracle = gaussian_oracle(d, 0.0, 0.3)
    gen = torch.Generator().manual_seed(0)
    wide = d.sample(oracle, (2000, 1), generator=gen, clip=100.0)
    plain = d.sample(oracle, (2000, 1), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wide, plain, atol=1e-3, rtol=1e-3)
    tight = d.sample(oracle, (2000, 1), generator=torch.Generator().manual_seed(0), clip=0.1)
    assert tight.abs().max() < plain.abs().max()


class LabelRecorder(torch.nn.Module):
    """A linear denoiser that records the labels it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, y=None):
        self.seen.append(y)
        return self.linear(x)


def train_recorder(ema: float, p_uncond: float = 0.0) -> LabelRecorder:
    torch.manual_seed(0)
    model = LabelRecorder()
    data, labels = torch.randn(64, 2), torch.arange(64) % 3
    train_with_ema(model, Diffusion(cosine_schedule(20)), data, steps=30, batch_size=8, lr=1e-2,
                   ema=ema, generator=torch.Generator().manual_seed(1), labels=labels,
                   null_class=3, p_uncond=p_uncond, progress=False)
    return model


def test_train_with_ema_ends_on_the_moving_average_and_drops_labels():
    last = train_recorder(ema=0.0)  # an average with no memory is the last iterate
    averaged = train_recorder(ema=0.9)
    assert not torch.equal(last.linear.weight, averaged.linear.weight)
    assert all(bool((y < 3).all()) for y in last.seen)  # p_uncond = 0: labels kept
    dropped = train_recorder(ema=0.0, p_uncond=1.0)
    assert all(bool((y == 3).all()) for y in dropped.seen)  # every label became the null class


def test_loss_summary_averages_the_first_and_last_tenth():
    assert loss_summary([5.0] * 10 + [1.0] * 80 + [2.0] * 10) == {"first_loss": 5.0,
                                                                   "final_loss": 2.0}

"""The VAE of lesson 7.2: KL, likelihood and reparameterisation against torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from randomised import generator, randomise
from torch.distributions import Bernoulli, Normal, kl_divergence

from neuralarch.config import ConfigError
from neuralarch.generative.vae import (
    VAE,
    VAEConfig,
    VAERecipe,
    active_units,
    bernoulli_log_likelihood,
    binarize,
    elbo,
    evaluate_elbo,
    gaussian_kl,
    importance_log_likelihood,
    latent_grid,
    mnist_vae,
    nats_to_bits_per_dim,
    reparameterize,
)
from neuralarch.train.artefacts import CACHE_ENV


@pytest.mark.parametrize("n, d", [(1, 1), (5, 2), (7, 16)])
def test_gaussian_kl_equals_torch_distributions(n, d):
    gen = generator(d)
    mu, logvar = torch.randn(n, d, generator=gen), 2 * torch.randn(n, d, generator=gen)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)),
                             Normal(torch.zeros(d), torch.ones(d))).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (1, 1, 28, 28)])
def test_bernoulli_log_likelihood_equals_torch_distributions(shape):
    gen = generator(1)
    logits = 3 * torch.randn(shape, generator=gen)
    x = torch.bernoulli(torch.full(shape, 0.3), generator=gen)
    expected = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), expected)


def test_reparameterize_moments_and_gradient():
    mu = torch.tensor([1.0, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    z = reparameterize(mu.expand(20_000, 2), logvar.expand(20_000, 2), generator(2))
    torch.testing.assert_close(z.mean(0), mu.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0]), atol=0.05, rtol=0)
    z.sum().backward()  # a sample that gradients flow through: dz/dmu = 1
    torch.testing.assert_close(mu.grad, torch.full((2,), 20_000.0))
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


@pytest.mark.parametrize("latent, hidden", [(2, (64,)), (8, (32, 16))])
def test_vae_shapes_and_elbo_terms(latent, hidden):
    model = randomise(VAE(VAEConfig(latent_dim=latent, hidden=hidden)), scale=0.05, shift=0.0)
    x = binarize(torch.rand(4, 1, 28, 28, generator=generator(3)), generator(4))
    logits, mu, logvar = model(x, generator(5))
    assert logits.shape == x.shape and mu.shape == logvar.shape == (4, latent)
    terms = elbo(model, x, beta=0.5, generator=generator(5))
    torch.testing.assert_close(terms.elbo, terms.reconstruction - 0.5 * terms.kl)
    torch.testing.assert_close(terms.reconstruction, bernoulli_log_likelihood(logits, x))
    assert model.sample(3, generator(6)).shape == (3, 1, 28, 28)
    assert bool((terms.kl >= 0).all())


def test_importance_bound_with_one_sample_is_the_elbo_and_tightens():
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=4, hidden=(32,)))
    x = binarize(torch.rand(20, 1, 28, 28, generator=generator(7)), generator(8))
    one = importance_log_likelihood(model, x, k=1, seed=3)
    # same draws: k = 1 uses the same eps as the ELBO with the same generator
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn((1, *mu.shape),
                                                       generator=torch.Generator().manual_seed(3))
        by_hand = (bernoulli_log_likelihood(model.decode(z[0]), x) - gaussian_kl(mu, logvar))
    assert one == pytest.approx(by_hand.mean().item(), abs=2.0)  # KL exact vs sampled
    assert importance_log_likelihood(model, x, k=256) > evaluate_elbo(model, x, samples=20)["elbo"]


def test_evaluate_elbo_and_units():
    model = VAE(VAEConfig(latent_dim=3, hidden=(16,)))
    x = binarize(torch.rand(10, 1, 28, 28, generator=generator(9)), generator(10))
    scores = evaluate_elbo(model, x, samples=2)
    assert scores["elbo"] == pytest.approx(scores["reconstruction"] - scores["kl"])
    assert nats_to_bits_per_dim(784 * math.log(2)) == pytest.approx(1.0)
    assert 0 <= active_units(model, x) <= 3


def test_latent_grid_decodes_the_grid():
    model = VAE(VAEConfig(latent_dim=2, hidden=(16,)))
    grid = latent_grid(model, steps=4)
    assert grid.shape == (4, 4, 28, 28) and bool(((grid >= 0) & (grid <= 1)).all())
    z = Normal(0.0, 1.0).icdf(torch.tensor([0.05, 0.95]))
    with torch.no_grad():  # the top-left cell is (smallest z1, largest z2)
        torch.testing.assert_close(grid[0, 0], torch.sigmoid(model.decode(
            torch.tensor([[z[0], z[1]]])))[0, 0])
    with pytest.raises(ValueError, match="2-D latent"):
        latent_grid(VAE(VAEConfig(latent_dim=3, hidden=(8,))))


def test_config_errors():
    with pytest.raises(ConfigError, match="hidden"):
        VAEConfig(hidden=())
    with pytest.raises(ConfigError, match="latent_dim"):
        VAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        VAE().encode(torch.zeros(2, 784))


def test_mnist_vae_learns_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    recipe = VAERecipe(arch=VAEConfig(latent_dim=4, hidden=(64,)), epochs=1, batch_size=256)
    first = mnist_vae(recipe)
    assert first.trained_now and first.metrics["test_elbo"] < 0
    assert first.metrics["test_elbo"] > -300  # an untrained model scores about -550 nats
    assert first.metrics["test_elbo"] == pytest.approx(
        first.metrics["test_reconstruction"] - first.metrics["test_kl"])
    second = mnist_vae(recipe)
    assert not second.trained_now and second.fingerprint == first.fingerprint
    torch.testing.assert_close(first.model.sample(2, generator(1)),
                               second.model.sample(2, generator(1)), rtol=0, atol=0)

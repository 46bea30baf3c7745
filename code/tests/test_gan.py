"""The GAN of lesson 7.3: losses against BCE, gradients, networks, ring coverage, caching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from randomised import generator
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.generative.gan import (
    RING_VARIANTS,
    BatchedMLP,
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
    GANRecipe,
    RingSweepConfig,
    ToyGANConfig,
    discriminator_loss,
    generator_loss,
    logged,
    mnist_gan,
    mode_coverage,
    ring_modes,
    ring_sweep,
    sample_ring,
    train_toy_gans,
)
from neuralarch.train.artefacts import CACHE_ENV


@pytest.mark.parametrize("n", [1, 7, 64])
def test_losses_equal_binary_cross_entropy(n):
    gen = generator(n)
    real, fake = 3 * torch.randn(n, generator=gen), 3 * torch.randn(n, generator=gen)
    bce = F.binary_cross_entropy_with_logits
    expected_d = bce(real, torch.ones(n)) + bce(fake, torch.zeros(n))
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss(fake, "non-saturating"), bce(fake, torch.ones(n)))
    # saturating: minimise E log(1 - D(G(z))) = -BCE(fake, 0)
    torch.testing.assert_close(generator_loss(fake, "saturating"), -bce(fake, torch.zeros(n)))


def test_saturating_gradient_vanishes_where_non_saturating_does_not():
    logits = torch.tensor([-8.0, -4.0, 0.0], requires_grad=True)  # D rejects the first firmly
    (sat,) = torch.autograd.grad(generator_loss(logits, "saturating"), logits)
    (ns,) = torch.autograd.grad(generator_loss(logits, "non-saturating"), logits)
    torch.testing.assert_close(sat, -torch.sigmoid(logits.detach()) / 3)
    torch.testing.assert_close(ns, -torch.sigmoid(-logits.detach()) / 3)
    assert abs(sat[0]) < 1e-3 and abs(ns[0]) > 0.33 - 1e-3
    torch.testing.assert_close(sat[2], ns[2])  # equal where D is undecided
    with pytest.raises(ValueError, match="kind"):
        generator_loss(logits, "wasserstein")


@pytest.mark.parametrize("noise_dim, width", [(64, 64), (8, 16)])
def test_dcgan_shapes_and_range(noise_dim, width):
    config = DCGANConfig(noise_dim=noise_dim, width=width)
    g, d = DCGANGenerator(config).eval(), DCGANDiscriminator(config)
    images = g.sample(5, generator(1))
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert d(images * 2 - 1).shape == (5,)


def test_batched_mlp_equals_separate_mlps():
    seeds = (3, 5)
    batched = BatchedMLP((4, 6, 2), seeds, nn.ReLU())
    x = torch.randn(2, 9, 4, generator=generator(2))
    out = batched(x)
    for r in range(2):
        w1, w2 = batched.weights[0][r], batched.weights[1][r]
        b1, b2 = batched.biases[0][r], batched.biases[1][r]
        torch.testing.assert_close(out[r], torch.relu(x[r] @ w1 + b1) @ w2 + b2)
    # each run's weights depend only on its own seed
    alone = BatchedMLP((4, 6, 2), (5,), nn.ReLU())
    torch.testing.assert_close(alone.weights[0][0], batched.weights[0][1])


def test_mode_coverage_counts_modes_and_quality():
    modes = ring_modes()
    assert modes.shape == (8, 2)
    torch.testing.assert_close(modes.norm(dim=1), torch.full((8,), 2.0))
    ring = sample_ring(4000, generator=generator(3))
    full = mode_coverage(ring, modes, std=0.02)
    assert full["modes_hit"] == 8 and full["high_quality"] > 0.98
    assert full["largest_mode"] < 0.2
    collapsed = modes[2] + 0.02 * torch.randn(1000, 2, generator=generator(4))
    one = mode_coverage(torch.cat([collapsed, torch.zeros(200, 2)]), modes, std=0.02)
    assert one["modes_hit"] == 1 and one["largest_mode"] == 1.0
    assert one["high_quality"] == pytest.approx(1000 / 1200, abs=0.01)


def test_toy_gan_runs_are_independent_and_learn():
    config = ToyGANConfig(seeds=(0, 1), steps=300, hidden=32, batch_size=64)
    both = train_toy_gans(config, snapshots=(100,), eval_samples=200)
    alone = train_toy_gans(config.model_copy(update={"seeds": (1,)}), eval_samples=200)
    assert both["samples"].shape == (2, 200, 2) and both["snapshots"][100].shape == (2, 200, 2)
    assert len(both["coverage"]) == 2
    # same seed, same initial weights; the data stream differs, so only the start is shared
    start = train_toy_gans(config.model_copy(update={"steps": 1}), eval_samples=50)
    assert start["samples"].shape == (2, 50, 2)
    spread = both["samples"].norm(dim=-1).mean()
    assert 0.5 < spread < 4, "after 300 steps the samples move towards the ring of radius 2"
    assert alone["samples"].shape == (1, 200, 2)
    with pytest.raises(ConfigError, match="pack"):
        ToyGANConfig(pack=3, batch_size=64)


def test_mnist_gan_trains_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    recipe = GANRecipe(arch=DCGANConfig(noise_dim=8, width=8), steps=20, batch_size=16,
                       log_every=10)
    first = mnist_gan(recipe)
    assert first.trained_now
    steps, d_loss = logged(first.metrics, "d_loss")
    assert steps == [10, 20] and all(0 < v < 5 for v in d_loss)
    second = mnist_gan(recipe)
    assert not second.trained_now and second.fingerprint == first.fingerprint


def test_ring_sweep_stores_every_variant_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = RingSweepConfig(base=ToyGANConfig(seeds=(0, 1), steps=20, hidden=16,
                                               batch_size=32),
                             snapshots=(10, 20), eval_samples=50)
    first = ring_sweep(config)
    sweep = first.model
    assert sweep.samples.shape == (3, 2, 50, 2) and sweep.snapshots.shape == (3, 2, 2, 50, 2)
    torch.testing.assert_close(sweep.snapshots[:, -1], sweep.samples)  # step 20 is the end
    coverage = sweep.coverage(std=0.02)
    assert list(coverage) == list(RING_VARIANTS) and all(len(v) == 2 for v in coverage.values())
    assert set(first.metrics) >= {f"{name}/modes_hit" for name in RING_VARIANTS}
    second = ring_sweep(config)
    assert not second.trained_now
    torch.testing.assert_close(second.model.samples, sweep.samples)

"""Latent diffusion of lesson 7.2: the denoiser, the step embedding, training and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from randomised import generator

from neuralarch.generative.ddpm import Diffusion
from neuralarch.generative.latent_diffusion import (
    LatentDenoiser,
    LatentDenoiserConfig,
    LatentDiffusionRecipe,
    PixelSamplesConfig,
    encode_latents,
    latent_ddpm,
    pixel_diffusion_samples,
    sample_images,
    step_embedding,
)
from neuralarch.generative.mnist_ddpm import MnistDDPMConfig, mnist_ddpm
from neuralarch.generative.noise_schedules import make_schedule
from neuralarch.generative.unet import UNetConfig
from neuralarch.generative.vae import VAE, VAEConfig, VAERecipe, mnist_vae
from neuralarch.train.artefacts import CACHE_ENV


def test_step_embedding_is_sin_cos_of_scaled_steps():
    t = torch.tensor([0, 3, 199])
    emb = step_embedding(t, 8)
    assert emb.shape == (3, 8)
    freqs = [10_000 ** (-i / 4) for i in range(4)]
    expected = [[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs]
                for s in (0, 3, 199)]
    torch.testing.assert_close(emb, torch.tensor(expected))


@pytest.mark.parametrize("latent, classes", [(16, 10), (2, 0), (5, 3)])
def test_denoiser_shapes_and_conditioning(latent, classes):
    model = LatentDenoiser(LatentDenoiserConfig(latent_dim=latent, num_classes=classes,
                                                hidden=32, depth=2, time_steps=50))
    z = torch.randn(4, latent, generator=generator())
    t = torch.tensor([0, 10, 20, 49])
    out = model(z, t)
    assert out.shape == (4, latent)
    if classes:
        y = torch.tensor([0, 1, 2, 0]) % classes
        assert not torch.allclose(model(z, t, y), out)  # the class changes the prediction
        null = torch.full((4,), classes)
        torch.testing.assert_close(model(z, t, null), out)  # no label = the null class


def test_latent_diffusion_trains_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    vae_recipe = VAERecipe(arch=VAEConfig(latent_dim=4, hidden=(32,)), epochs=1,
                           batch_size=512)
    recipe = LatentDiffusionRecipe(
        arch=LatentDenoiserConfig(latent_dim=4, hidden=32, depth=1, time_steps=20),
        vae=vae_recipe, steps=60, batch_size=64)
    trained = latent_ddpm(recipe)
    assert trained.trained_now and trained.metrics["final_loss"] < trained.metrics["first_loss"]
    assert trained.model.scale.item() > 0  # fitted to the training latents
    again = latent_ddpm(recipe)
    assert not again.trained_now
    torch.testing.assert_close(again.model.scale, trained.model.scale)
    vae = mnist_vae(vae_recipe).model
    diffusion = Diffusion(make_schedule("cosine", 20))
    images = sample_images(trained.model, vae, diffusion, labels=torch.arange(3),
                           generator=generator(1))
    assert images.shape == (3, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert sample_images(trained.model, vae, diffusion, n=2).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="exactly one"):
        sample_images(trained.model, vae, diffusion)
    guided = sample_images(trained.model, vae, diffusion, labels=torch.arange(3),
                           generator=generator(1), guidance=2.0)
    assert guided.shape == images.shape and not torch.equal(guided, images)
    unguided = sample_images(trained.model, vae, diffusion, labels=torch.arange(3),
                             generator=generator(1), guidance=0.0)
    torch.testing.assert_close(unguided, images)  # w = 0 is the conditional model itself
    with pytest.raises(ValueError, match="guidance needs labels"):
        sample_images(trained.model, vae, diffusion, n=2, guidance=2.0)


def test_encode_latents_are_posterior_means():
    vae = VAE(VAEConfig(latent_dim=3, hidden=(8,)))
    x = torch.rand(5, 1, 28, 28, generator=generator(2))
    torch.testing.assert_close(encode_latents(vae, x, batch_size=2), vae.encode(x)[0])


def test_pixel_sample_bank_draws_each_sampler(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    ddpm = MnistDDPMConfig(arch=UNetConfig(channels=(8, 16), time_steps=6, embed_dim=16,
                                           heads=2, groups=4), steps=2, batch_size=4)
    config = PixelSamplesConfig(ddpm=ddpm, n=6, ddim_steps=(2, 3), batch_size=4)
    bank = pixel_diffusion_samples(config)
    assert bank.trained_now and bank.model.images.shape == (2, 6, 1, 28, 28)
    assert bank.metrics["T"] == 6 and {"ddim-2/seconds", "ddim-3/seconds"} <= set(bank.metrics)
    pixels = bank.model.pixels(1)
    assert pixels.dtype == torch.float32 and pixels.min() >= 0 and pixels.max() <= 1
    torch.testing.assert_close(bank.model.labels, torch.arange(6) % 10)
    assert not pixel_diffusion_samples(config).trained_now
    assert bank.config.ddpm_fingerprint == mnist_ddpm(ddpm).fingerprint  # tied to the weights

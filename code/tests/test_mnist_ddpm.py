"""Tests of the cached MNIST diffusion model's recipe and the adapter's (lessons 7.1, 7.5)."""

import pytest
import torch

from neuralarch.generative.control_adapter import ControlAdapterConfig
from neuralarch.generative.mnist_ddpm import (
    MnistDDPMConfig,
    diffusion_for,
    to_model_range,
    to_pixels,
    train_mnist_ddpm,
)
from neuralarch.generative.unet import UNet, UNetConfig


def test_pixel_range_round_trip():
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(to_pixels(to_model_range(x)), x)
    assert to_model_range(x).min() >= -1 and to_pixels(torch.full((1,), 3.0)).item() == 1.0


def test_recipe_validates_and_matches_the_network():
    with pytest.raises(ValueError, match="schedule"):
        MnistDDPMConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="p_uncond"):
        MnistDDPMConfig(p_uncond=1.5)
    config = MnistDDPMConfig()
    assert diffusion_for(config).steps == config.arch.time_steps
    assert ControlAdapterConfig().base == config, "the adapter must steer the cached model"


def test_a_few_training_steps_run_and_end_on_the_moving_average():
    config = MnistDDPMConfig(arch=UNetConfig(channels=(8, 16), time_steps=20, embed_dim=16,
                                             heads=2), steps=3, batch_size=8, ema=0.5)
    torch.manual_seed(0)
    model = UNet(config.arch)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_mnist_ddpm(model, config)
    assert set(metrics) == {"first_loss", "final_loss"} and metrics["final_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

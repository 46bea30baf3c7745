"""The book's class-conditional MNIST diffusion model: trained once, cached, shared by pages.

Introduced in lesson 7.1 (``m07-l01``); lessons 7.4 and 7.5 load the same model. A small
:class:`~neuralarch.generative.unet.UNet` is trained with the DDPM objective on the book's 8,000
training digits scaled to [-1, 1]; the class label is dropped (replaced by the null class) for a
share of the examples so that one network is both the conditional and the unconditional model
that classifier-free guidance combines.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import load_mnist
from neuralarch.generative.ddpm import Diffusion, loss_summary, train_with_ema
from neuralarch.generative.noise_schedules import make_schedule
from neuralarch.generative.unet import UNet, UNetConfig
from neuralarch.train.artefacts import TrainedModel, cached_model


class MnistDDPMConfig(ArchConfig):
    """The recipe of the cached MNIST diffusion model (CPU-sized: a few minutes on two cores)."""

    arch: UNetConfig = Field(UNetConfig(), description="the noise-predicting U-Net")
    schedule: str = Field("cosine", description="'linear' or 'cosine'")
    steps: int = Field(1500, gt=0, description="optimizer steps")
    batch_size: int = Field(64, gt=0, description="images per step")
    lr: float = Field(2e-3, gt=0, description="peak AdamW learning rate (cosine decay)")
    p_uncond: float = Field(0.1, ge=0, lt=1, description="share of labels replaced by null")
    ema: float = Field(0.995, ge=0, lt=1, description="decay of the weights' moving average")
    threads: int = Field(2, ge=1, description="CPU threads it trains on (both cores)")
    seed: int = Field(0, ge=0, description="seeds initialisation and data order")

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, schedule: str) -> str:
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
        return schedule


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> the model's range [-1, 1]."""
    return images * 2 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """The model's range [-1, 1] -> pixels in [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def diffusion_for(config: MnistDDPMConfig) -> Diffusion:
    """The forward process the model was trained on."""
    return Diffusion(make_schedule(config.schedule, config.arch.time_steps))


def train_mnist_ddpm(model: UNet, config: MnistDDPMConfig) -> dict[str, float]:
    """Train ``model`` in place; the weights end as their moving average. Return the losses."""
    data = to_model_range(load_mnist("train").images)  # (8000, 1, 28, 28)
    labels = load_mnist("train").labels
    diffusion = diffusion_for(config)
    losses = train_with_ema(model, diffusion, data, steps=config.steps,
                            batch_size=config.batch_size, lr=config.lr, ema=config.ema,
                            generator=torch.Generator().manual_seed(config.seed),
                            labels=labels, null_class=config.arch.num_classes,
                            p_uncond=config.p_uncond)
    return loss_summary(losses)


def mnist_ddpm(config: MnistDDPMConfig | None = None) -> TrainedModel[UNet]:
    """Return the book's class-conditional MNIST DDPM (trained on first use, then cached)."""
    return cached_model("mnist-ddpm", config or MnistDDPMConfig(),
                        lambda c: UNet(c.arch), train_mnist_ddpm)

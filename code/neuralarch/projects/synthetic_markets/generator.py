"""The project's generator: a 1-D DDPM on standardised windows of real daily returns.

Introduced in lesson 7.6 (``m07-l06``). The diffusion process, its loss and its sampler are
Module 7's (:mod:`neuralarch.generative.ddpm`); only the noise predictor is new. A window's
volatility is a property of the whole window (calm 2005 or stormy 2008), so the denoiser needs
to see far: dilated convolutions (receptive field about the window length) plus, in every block,
a summary of the whole window (its mean feature vector) added back to every day.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.generative.ddim import ddim_sample
from neuralarch.generative.ddpm import Diffusion, loss_summary, train_with_ema
from neuralarch.generative.noise_schedules import make_schedule
from neuralarch.generative.unet import StepEmbedding
from neuralarch.projects.synthetic_markets.data import SPLIT_DATE, load_market_split, make_windows
from neuralarch.train.artefacts import TrainedModel, cached_model


class ReturnDenoiserConfig(ArchConfig):
    """Sizes of the 1-D noise predictor for return windows (B, 1, L)."""

    width: int = Field(32, gt=0, description="channels of every block (a multiple of 8)")
    dilations: tuple[int, ...] = Field((1, 2, 4, 8, 1), description="one block per dilation")
    time_steps: int = Field(100, gt=0, description="T: diffusion steps embedded")
    embed_dim: int = Field(64, gt=0, description="width of the step embedding (even)")

    @field_validator("width")
    @classmethod
    def _groups(cls, width: int) -> int:
        if width % 8:
            raise ValueError(f"width must be a multiple of 8 (GroupNorm groups), got {width}")
        return width

    @field_validator("dilations")
    @classmethod
    def _positive(cls, dilations: tuple[int, ...]) -> tuple[int, ...]:
        if not dilations or min(dilations) < 1:
            raise ValueError(f"dilations must be a non-empty tuple of ints >= 1, got {dilations}")
        return dilations


class DilatedBlock(nn.Module):
    """Norm-SiLU-dilated conv, + step embedding, norm-SiLU-conv, + window summary, + skip."""

    def __init__(self, width: int, dilation: int, embed_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, width)
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.emb = nn.Linear(embed_dim, width)
        self.norm2 = nn.GroupNorm(8, width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.context = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, W, L)
        h = h + self.emb(emb)[:, :, None]  # per-channel shift from the step
        h = self.conv2(F.silu(self.norm2(h)))
        h = h + self.context(h.mean(dim=2))[:, :, None]  # what the whole window looks like
        return x + h


class ReturnDenoiser(nn.Module):
    """``eps_theta(x_t, t)`` for standardised return windows (B, 1, L).

    The training mean and standard deviation (percent per day) are buffers, so a loaded model
    turns its samples back into returns without the training data.
    """

    def __init__(self, config: ReturnDenoiserConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ReturnDenoiserConfig()
        self.embed = StepEmbedding(config.time_steps, config.embed_dim)
        self.inp = nn.Conv1d(1, config.width, 3, padding=1)
        self.blocks = nn.ModuleList(DilatedBlock(config.width, d, config.embed_dim)
                                    for d in config.dilations)
        self.norm = nn.GroupNorm(8, config.width)
        self.out = nn.Conv1d(config.width, 1, 3, padding=1)
        self.register_buffer("scale", torch.tensor([0.0, 1.0]))  # training mean, std

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, L), got {tuple(x.shape)}")
        emb = self.embed(t)  # (B, embed_dim)
        h = self.inp(x)  # (B, W, L)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm(h)))  # (B, 1, L)


class MarketDDPMConfig(ArchConfig):
    """The recipe of the cached market generator (about two minutes on one core)."""

    arch: ReturnDenoiserConfig = Field(ReturnDenoiserConfig(), description="noise predictor")
    length: int = Field(64, ge=16, description="days per window")
    stride: int = Field(4, gt=0, description="days between training windows (overlapping)")
    split_date: str = Field(SPLIT_DATE, description="train on the days before this date")
    schedule: str = Field("cosine", description="'linear' or 'cosine'")
    steps: int = Field(1500, gt=0, description="optimizer steps")
    batch_size: int = Field(64, gt=0, description="windows per step")
    lr: float = Field(2e-3, gt=0, description="peak AdamW learning rate (one-cycle)")
    ema: float = Field(0.995, ge=0, lt=1, description="decay of the weights' moving average")
    seed: int = Field(0, ge=0, description="seeds initialisation and data order")


def diffusion_for(config: MarketDDPMConfig) -> Diffusion:
    """The forward process the market model was trained on."""
    return Diffusion(make_schedule(config.schedule, config.arch.time_steps))


def training_windows(config: MarketDDPMConfig) -> tuple[torch.Tensor, float, float]:
    """Standardised training windows (M, 1, L) and the training mean and std they used."""
    split = load_market_split(config.split_date)
    windows = make_windows(split.train, config.length, config.stride)  # (M, L)
    x = torch.tensor((windows - split.mean) / split.std, dtype=torch.float32)
    return x.unsqueeze(1), split.mean, split.std


def train_market_ddpm(model: ReturnDenoiser, config: MarketDDPMConfig) -> dict[str, float]:
    """Train ``model`` in place with the DDPM loss; the weights end as their moving average."""
    data, mean, std = training_windows(config)
    model.scale.copy_(torch.tensor([mean, std]))
    diffusion = diffusion_for(config)
    losses = train_with_ema(model, diffusion, data, steps=config.steps,
                            batch_size=config.batch_size, lr=config.lr, ema=config.ema,
                            generator=torch.Generator().manual_seed(config.seed),
                            desc="market DDPM")
    return {**loss_summary(losses), "windows": float(len(data))}


def market_ddpm(config: MarketDDPMConfig | None = None) -> TrainedModel[ReturnDenoiser]:
    """Return the project's market generator (trained on first use, then cached)."""
    return cached_model("market-ddpm", config or MarketDDPMConfig(),
                        lambda c: ReturnDenoiser(c.arch), train_market_ddpm)


@torch.no_grad()
def sample_returns(model: ReturnDenoiser, diffusion: Diffusion, windows: int, length: int,
                   steps: int = 25, seed: int = 0, clip: float = 10.0) -> np.ndarray:
    """Draw ``windows`` synthetic windows (windows, length) of daily log returns in percent.

    Sampling is DDIM with ``eta = 1`` (stochastic, like DDPM) on ``steps`` of the model's steps;
    ``clip`` bounds the clean estimate at that many training standard deviations.
    """
    if windows < 1 or length < 1:
        raise ValueError(f"windows and length must be positive, got {windows}, {length}")
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    x = ddim_sample(model, diffusion, (windows, 1, length), steps, eta=1.0, generator=gen,
                    clip=clip)[:, 0]  # (windows, L), standardised
    mean, std = model.scale.tolist()
    return x.double().numpy() * std + mean

"""Latent diffusion (Rombach et al., 2022): a DDPM in the latent space of the book's VAE.

Introduced in lesson 7.2 (``m07-l02``). Stable Diffusion does not diffuse pixels: a pretrained
autoencoder compresses each image into a much smaller latent, a diffusion model learns the
distribution of those latents, and the decoder turns a sampled latent back into an image. Here
the autoencoder is the 16-D MNIST VAE of :mod:`~neuralarch.generative.vae` (784 pixels -> 16
numbers), the diffusion process is lesson 7.1's shape-agnostic
:class:`~neuralarch.generative.ddpm.Diffusion`, and the
denoiser is a small MLP instead of a U-Net. Each training step and each sampling step therefore
costs a tiny fraction of a pixel model's, which is the whole point of the design. The latents
are the posterior means of the training images, divided by their overall standard deviation
(Stable Diffusion's "scale factor") so that they match the unit-variance noise. The model is
class-conditional; the null class ``num_classes`` trains the unconditional model that
classifier-free guidance (lesson 7.4) needs.
"""

from __future__ import annotations

import math
import time

import torch
from pydantic import Field
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import load_mnist
from neuralarch.generative.ddim import ClassifierFreeGuidance, ddim_sample
from neuralarch.generative.ddpm import Diffusion, loss_summary, train_with_ema
from neuralarch.generative.mnist_ddpm import MnistDDPMConfig, mnist_ddpm, to_pixels
from neuralarch.generative.mnist_ddpm import diffusion_for as pixel_diffusion
from neuralarch.generative.noise_schedules import make_schedule
from neuralarch.generative.vae import VAE, VAERecipe, mnist_vae
from neuralarch.repro import derive_seed, make_generator
from neuralarch.train.artefacts import TrainedModel, cached_model


def step_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features (B, dim) of integer diffusion steps t (B,), as in the transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)  # (half,)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class LatentDenoiserConfig(ArchConfig):
    """Shape of the latent denoiser: latent size, classes, width, depth and diffusion steps."""

    latent_dim: int = Field(16, gt=0, description="size of the VAE's latent code")
    num_classes: int = Field(10, ge=0, description="classes; 0 makes it unconditional")
    hidden: int = Field(256, gt=0, description="width of every hidden layer")
    depth: int = Field(3, gt=0, description="residual MLP blocks")
    time_steps: int = Field(200, gt=1, description="T, the number of diffusion steps")


class LatentDenoiser(nn.Module):
    """eps_theta(z_t, t, y): an MLP of residual blocks conditioned on step and class embeddings."""

    def __init__(self, config: LatentDenoiserConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or LatentDenoiserConfig()
        self.inp = nn.Linear(c.latent_dim, c.hidden)
        self.time = nn.Sequential(nn.Linear(c.hidden, c.hidden), nn.SiLU(),
                                  nn.Linear(c.hidden, c.hidden))
        self.label = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(c.hidden), nn.Linear(c.hidden, 2 * c.hidden), nn.SiLU(),
                          nn.Linear(2 * c.hidden, c.hidden)) for _ in range(c.depth))
        self.out = nn.Sequential(nn.LayerNorm(c.hidden), nn.Linear(c.hidden, c.latent_dim))
        # the latents' scale factor, fitted on the training latents and saved with the weights
        self.register_buffer("scale", torch.ones(()))

    def forward(self, z: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(z) + self.time(step_embedding(t, self.config.hidden))  # (B, hidden)
        if self.label is not None:
            if y is None:
                y = torch.full_like(t, self.config.num_classes)  # the null class
            h = h + self.label(y)
        for block in self.blocks:
            h = h + block(h)  # (B, hidden)
        return self.out(h)  # (B, latent): the predicted noise


class LatentDiffusionRecipe(ArchConfig):
    """How the book's latent diffusion model is trained (the VAE is the cached one)."""

    arch: LatentDenoiserConfig = Field(LatentDenoiserConfig(), description="the denoiser")
    vae: VAERecipe = Field(VAERecipe(), description="the autoencoder whose latents it models")
    schedule: str = Field("cosine", description="'linear' or 'cosine'")
    steps: int = Field(4000, gt=0, description="optimizer steps")
    batch_size: int = Field(256, gt=0, description="latents per step")
    lr: float = Field(1e-3, gt=0, description="AdamW's peak learning rate (one-cycle)")
    p_uncond: float = Field(0.1, ge=0, lt=1, description="share of labels replaced by null")
    ema: float = Field(0.995, ge=0, lt=1, description="decay of the weights' moving average")
    seed: int = Field(0, ge=0, description="seeds initialisation and data order")


@torch.no_grad()
def encode_latents(vae: VAE, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The posterior means (N, latent) of grey-value images: the data latent diffusion models."""
    return torch.cat([vae.encode(batch)[0] for batch in images.split(batch_size)])


def diffusion_for(recipe: LatentDiffusionRecipe) -> Diffusion:
    """The forward process the latent model was trained on."""
    return Diffusion(make_schedule(recipe.schedule, recipe.arch.time_steps))


def train_latent_diffusion(model: LatentDenoiser, config: LatentDiffusionRecipe,
                           progress: bool = False) -> dict[str, float]:
    """Train ``model`` in place on the VAE latents of the training split; return the losses.

    The returned ``seconds`` is the denoiser's training time only (the VAE is trained once and
    shared); ``first_loss``/``final_loss`` are the mean losses of the first and last 10 %.
    """
    train = load_mnist("train")
    latents = encode_latents(mnist_vae(config.vae).model, train.images)  # (8000, latent)
    model.scale.fill_(latents.std().item())
    data, labels = latents / model.scale, train.labels
    diffusion = diffusion_for(config)
    started = time.perf_counter()
    losses = train_with_ema(model, diffusion, data, steps=config.steps,
                            batch_size=config.batch_size, lr=config.lr, ema=config.ema,
                            generator=make_generator(derive_seed(config.seed, "latent-diffusion")),
                            labels=labels, null_class=config.arch.num_classes or None,
                            p_uncond=config.p_uncond, desc="latent DDPM", progress=progress)
    return {**loss_summary(losses), "seconds": time.perf_counter() - started}


def latent_ddpm(config: LatentDiffusionRecipe | None = None) -> TrainedModel[LatentDenoiser]:
    """Return the book's class-conditional latent diffusion model (trained once, cached)."""
    return cached_model("mnist-latent-ddpm", config or LatentDiffusionRecipe(),
                        lambda c: LatentDenoiser(c.arch), train_latent_diffusion)


@torch.no_grad()
def sample_images(model: LatentDenoiser, vae: VAE, diffusion: Diffusion,
                  labels: torch.Tensor | None = None, n: int | None = None,
                  generator: torch.Generator | None = None,
                  guidance: float = 0.0) -> torch.Tensor:
    """Sample latents by ancestral DDPM sampling, then decode them: pixels (N, 1, 28, 28).

    Pass ``labels`` (N,) for class-conditional samples, or ``n`` for unconditional ones.
    ``guidance`` is the classifier-free guidance scale w (lesson 7.4; conditional only).
    """
    if (labels is None) == (n is None):
        raise ValueError("pass exactly one of labels (conditional) or n (unconditional)")
    if guidance and labels is None:
        raise ValueError("guidance needs labels: it pushes samples towards a requested class")
    count = len(labels) if labels is not None else n
    denoiser = (ClassifierFreeGuidance(model, guidance, model.config.num_classes)
                if guidance else model)
    z = diffusion.sample(denoiser, (count, model.config.latent_dim), labels, generator)
    return torch.sigmoid(vae.decode(z * model.scale))


class PixelSamplesConfig(ArchConfig):
    """Which samples of the pixel diffusion model (lesson 7.1) to draw once for the module table."""

    ddpm: MnistDDPMConfig = Field(MnistDDPMConfig(), description="the pixel model to sample")
    n: int = Field(1000, gt=0, description="images per sampler: the yardstick's sample size")
    ddim_steps: tuple[int, ...] = Field((5, 10, 20, 50), description="DDIM (eta = 0) step counts")
    guidance: float = Field(3.0, ge=0, description="classifier-free guidance scale w, every row")
    clip: float = Field(1.0, gt=0, description="x0_hat is clamped to [-clip, clip] (data range)")
    batch_size: int = Field(250, gt=0, description="images per sampling batch")
    ddpm_fingerprint: str = Field("", description="the pixel model's weights (set on loading)")
    seed: int = Field(0, ge=0, description="seeds the starting noise")


class SampleBank(nn.Module):
    """Generated images kept as a buffer (uint8 pixels), so that a cached file can hold them."""

    def __init__(self, config: PixelSamplesConfig) -> None:
        super().__init__()
        rows = len(config.ddim_steps)  # one row of samples per DDIM step count
        self.register_buffer("images", torch.zeros(rows, config.n, 1, 28, 28, dtype=torch.uint8))
        self.register_buffer("labels", torch.arange(config.n) % 10)  # the requested digits

    def pixels(self, row: int) -> torch.Tensor:
        """Row ``row``'s images as pixels in [0, 1], (n, 1, 28, 28)."""
        return self.images[row].float() / 255


def draw_pixel_samples(bank: SampleBank, config: PixelSamplesConfig) -> dict[str, float]:
    """Sample the cached pixel DDPM with DDIM at each step count; return seconds per row.

    Every row uses the same guidance scale and clamps x0_hat to the data's range (lesson 7.4).
    Lesson 7.1's model costs two U-Net calls per step and image with guidance, so even 1,000
    digits in a few steps take a minute on a CPU: the module's index loads them from here
    instead of sampling in the page (lesson 7.4 compares the full ancestral chain on fewer).
    """
    trained = mnist_ddpm(config.ddpm)
    diffusion = pixel_diffusion(trained.config)
    unet = ClassifierFreeGuidance(trained.model, config.guidance, trained.config.arch.num_classes)
    gen = make_generator(derive_seed(config.seed, "pixel-samples"))
    metrics: dict[str, float] = {"T": float(diffusion.steps)}
    for row, steps in enumerate(config.ddim_steps):
        started = time.perf_counter()
        for start in range(0, config.n, config.batch_size):
            y = bank.labels[start:start + config.batch_size]
            with torch.no_grad():
                x = ddim_sample(unet, diffusion, (len(y), 1, 28, 28), steps, y=y, generator=gen,
                                clip=config.clip)
            bank.images[row, start:start + len(y)] = (to_pixels(x) * 255).round().to(torch.uint8)
        metrics[f"ddim-{steps}/seconds"] = time.perf_counter() - started
    return metrics


def pixel_diffusion_samples(config: PixelSamplesConfig | None = None
                            ) -> TrainedModel[SampleBank]:
    """Return 1,000 digits per DDIM step count of the pixel DDPM, drawn once per build, cached.

    The cache key includes the fingerprint of the pixel model's weights, so retraining that
    model (a change to its code or recipe) draws new samples instead of loading stale ones.
    """
    config = config or PixelSamplesConfig()
    weights = mnist_ddpm(config.ddpm).fingerprint
    return cached_model("mnist-ddpm-samples", config.model_copy(
        update={"ddpm_fingerprint": weights}), SampleBank, draw_pixel_samples)

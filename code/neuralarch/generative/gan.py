"""Generative adversarial networks (Goodfellow et al., 2014): losses, an MNIST DCGAN, a toy ring.

Introduced in lesson 7.3 (``m07-l03``). The discriminator D is a binary classifier (logits,
real = 1); the generator G maps noise to samples. The *saturating* generator loss is the
minimax game's own, ``E log(1 - D(G(z)))``; the *non-saturating* one, ``-E log D(G(z))``, has
the same fixed point but strong gradients exactly when D confidently rejects the samples, which
is the situation at the start of training. The MNIST generator is a small DCGAN (Radford et
al., 2016); the toy experiment trains MLPs on a ring of 8 Gaussians and measures mode coverage,
with and without *packing* (PacGAN, Lin et al., 2018): D judges several samples at once, so a
generator that puts them all in one place gives itself away.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from tqdm import tqdm

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import load_mnist
from neuralarch.progress import progress_disabled
from neuralarch.repro import derive_seed, make_generator
from neuralarch.train.artefacts import TrainedModel, cached_model

GeneratorLoss = Literal["saturating", "non-saturating"]


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E log D(x) - E log(1 - D(G(z)))``: binary cross-entropy with real = 1, fake = 0."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: GeneratorLoss = "non-saturating"
                   ) -> torch.Tensor:
    """The generator's loss on D's logits for its samples: saturating or non-saturating.

    With ``D = sigmoid(l)``: ``log(1 - D) = -softplus(l)`` (minimised: saturating) and
    ``-log D = softplus(-l)`` (non-saturating).
    """
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"kind must be 'saturating' or 'non-saturating', got {kind!r}")


# --- the MNIST DCGAN -----------------------------------------------------------------------------

class DCGANConfig(ArchConfig):
    """Widths of the MNIST DCGAN: noise size and the channels of G and D."""

    noise_dim: int = Field(64, gt=0, description="dimensions of the generator's input noise")
    width: int = Field(16, gt=0, description="channels at 14x14; 7x7 layers have twice as many")


class DCGANGenerator(nn.Module):
    """Noise (B, noise) -> 7x7 -> 14x14 -> 28x28 with transposed convolutions; tanh output."""

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DCGANConfig()
        w = config.width
        self.project = nn.Sequential(nn.Linear(config.noise_dim, 2 * w * 7 * 7, bias=False),
                                     nn.BatchNorm1d(2 * w * 7 * 7), nn.ReLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(len(z), 2 * self.config.width, 7, 7)  # (B, 2w, 7, 7)
        return self.upsample(h)  # (B, 1, 28, 28) in [-1, 1]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images as pixels in [0, 1], (n, 1, 28, 28); the model must be in eval mode."""
        z = torch.randn(n, self.config.noise_dim, generator=generator)
        return (self(z) + 1) / 2


class DCGANDiscriminator(nn.Module):
    """28x28 -> 14x14 -> 7x7 with strided convolutions and LeakyReLU, then one logit."""

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        w = (config or DCGANConfig()).width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B,) logits, real = positive


class GANPair(nn.Module):
    """Generator and discriminator in one module, so one cached file holds both."""

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        self.generator = DCGANGenerator(config)
        self.discriminator = DCGANDiscriminator(config)


class GANRecipe(ArchConfig):
    """How the book's MNIST GAN is trained: the networks, steps, batch, Adam and seed."""

    arch: DCGANConfig = Field(DCGANConfig(), description="the two networks")
    steps: int = Field(3000, gt=0, description="alternating D and G updates")
    batch_size: int = Field(64, gt=0, description="real and fake images per update")
    lr: float = Field(2e-4, gt=0, description="Adam's learning rate for both networks")
    loss: GeneratorLoss = Field("non-saturating", description="the generator's loss")
    log_every: int = Field(50, gt=0, description="record the mean losses every N steps")
    seed: int = Field(0, ge=0, description="seeds initialisation, data order and noise")


def train_gan(pair: GANPair, config: GANRecipe, progress: bool = False) -> dict[str, float]:
    """Train ``pair`` in place on the 8,000 training images; return losses and D's outputs.

    Returns ``seconds`` and, every ``log_every`` steps, ``d_loss_<step>``, ``g_loss_<step>`` and
    ``d_real_<step>``/``d_fake_<step>`` (D's mean probability on real and fake images).
    """
    data = load_mnist("train").images * 2 - 1  # (8000, 1, 28, 28) in [-1, 1], like tanh
    gen = make_generator(derive_seed(config.seed, "gan-train"))
    g, d = pair.generator, pair.discriminator
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=(0.5, 0.999))
    metrics: dict[str, float] = {}
    window: dict[str, list[float]] = {"d_loss": [], "g_loss": [], "d_real": [], "d_fake": []}
    started = time.perf_counter()
    pair.train()
    for step in tqdm(range(1, config.steps + 1), desc="GAN",
                     disable=not progress or progress_disabled()):
        real = data[torch.randint(len(data), (config.batch_size,), generator=gen)]
        fake = g(torch.randn(config.batch_size, config.arch.noise_dim, generator=gen))
        real_logits, fake_logits = d(real), d(fake.detach())  # D step: G's output is a constant
        d_loss = discriminator_loss(real_logits, fake_logits)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = generator_loss(d(fake), config.loss)  # G step: through the updated D
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        for name, value in (("d_loss", d_loss), ("g_loss", g_loss),
                            ("d_real", torch.sigmoid(real_logits).mean()),
                            ("d_fake", torch.sigmoid(fake_logits).mean())):
            window[name].append(value.item())
        if step % config.log_every == 0:
            for name, values in window.items():
                metrics[f"{name}_{step}"] = sum(values) / len(values)
                values.clear()
    metrics["seconds"] = time.perf_counter() - started
    return metrics


def mnist_gan(config: GANRecipe | None = None) -> TrainedModel[GANPair]:
    """Return the book's trained MNIST DCGAN (generator and discriminator), cached."""
    return cached_model("mnist-gan", config or GANRecipe(), lambda c: GANPair(c.arch), train_gan)


def logged(metrics: dict[str, float], name: str) -> tuple[list[int], list[float]]:
    """The steps and values of one logged series, e.g. ``"d_loss"``, from training metrics."""
    steps = sorted(int(k.rsplit("_", 1)[1]) for k in metrics if k.rsplit("_", 1)[0] == name)
    return steps, [metrics[f"{name}_{s}"] for s in steps]


# --- the ring of 8 Gaussians ---------------------------------------------------------------------

def ring_modes(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The centres (modes, 2) of a ring of Gaussians, evenly spaced on a circle."""
    angles = torch.arange(modes) * 2 * math.pi / modes
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def sample_ring(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.02,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` points (n, 2) from an equal mixture of Gaussians on a ring."""
    which = torch.randint(modes, (n,), generator=generator)
    return ring_modes(modes, radius)[which] + std * torch.randn(n, 2, generator=generator)


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, std: float,
                  min_share: float = 0.01) -> dict[str, float]:
    """How well 2-D samples cover the modes of a mixture (Metz et al., 2017; Srivastava et al.).

    A sample is *high quality* if it lies within 3 standard deviations of its nearest mode; a
    mode is *hit* if at least ``min_share`` of all samples are high-quality samples of it.
    Returns ``modes_hit``, ``high_quality`` (share of samples) and ``largest_mode`` (share of the
    high-quality samples in the most popular mode: 1/modes is perfect balance).
    """
    distances = torch.cdist(samples, modes)  # (N, modes)
    nearest, which = distances.min(dim=1)
    good = nearest < 3 * std
    counts = torch.bincount(which[good], minlength=len(modes)).float()  # (modes,)
    return {"modes_hit": int((counts >= min_share * len(samples)).sum()),
            "high_quality": good.float().mean().item(),
            "largest_mode": (counts.max() / counts.sum().clamp(min=1)).item()}


class ToyGANConfig(ArchConfig):
    """GAN runs on the ring (one per seed, trained side by side): loss, remedy, optimisation."""

    loss: GeneratorLoss = Field("non-saturating", description="the generator's loss")
    pack: int = Field(1, gt=0, description="D judges this many samples at once (PacGAN); 1: off")
    hidden: int = Field(128, gt=0, description="width of both MLPs' two hidden layers")
    noise_dim: int = Field(16, gt=0, description="dimensions of the generator's noise")
    steps: int = Field(2000, gt=0, description="alternating D and G updates")
    batch_size: int = Field(256, gt=0, description="real and fake points per update and run")
    lr: float = Field(1e-3, gt=0, description="Adam's learning rate for both networks")
    std: float = Field(0.02, gt=0, description="standard deviation of each Gaussian")
    seeds: tuple[int, ...] = Field((0, 1, 2, 3), description="one independent run per seed")

    @model_validator(mode="after")
    def _pack_divides_batch(self) -> ToyGANConfig:
        if self.batch_size % self.pack or not self.seeds:
            raise ValueError(f"pack ({self.pack}) must divide batch_size ({self.batch_size}), "
                             f"and seeds must not be empty (got {self.seeds})")
        return self


class BatchedMLP(nn.Module):
    """``runs`` independent MLPs evaluated at once: x (R, B, in) -> (R, B, out) with bmm.

    Each run has its own weights, initialised like ``nn.Linear`` from its own seed, and the
    loss is a sum over runs, so gradients (and Adam, which is elementwise) never mix runs:
    training R networks this way equals training each alone, for the cost of one.
    """

    def __init__(self, sizes: tuple[int, ...], seeds: tuple[int, ...],
                 activation: nn.Module) -> None:
        super().__init__()
        weights, biases = [], []
        for n_in, n_out in itertools.pairwise(sizes):
            w, b = [], []
            for seed in seeds:
                torch.manual_seed(derive_seed(seed, f"layer-{len(weights)}-{n_in}-{n_out}"))
                layer = nn.Linear(n_in, n_out)
                w.append(layer.weight.detach().T)  # (in, out)
                b.append(layer.bias.detach()[None])  # (1, out)
            weights.append(nn.Parameter(torch.stack(w)))  # (R, in, out)
            biases.append(nn.Parameter(torch.stack(b)))  # (R, 1, out)
        self.weights, self.biases = nn.ParameterList(weights), nn.ParameterList(biases)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)  # (R, B, out)
            if i < len(self.weights) - 1:
                x = self.activation(x)
        return x


def train_toy_gans(config: ToyGANConfig, snapshots: tuple[int, ...] = (),
                   eval_samples: int = 2000) -> dict[str, object]:
    """Train one GAN per seed on the ring, side by side; return samples and coverage per run.

    Returns ``samples`` (R, eval_samples, 2), ``coverage`` (a list of :func:`mode_coverage`
    dicts, one per seed), ``snapshots`` (step -> (R, eval_samples, 2)) and ``seconds``.
    """
    h, runs, pack = config.hidden, len(config.seeds), config.pack
    g = BatchedMLP((config.noise_dim, h, h, 2), config.seeds, nn.ReLU())
    d = BatchedMLP((2 * pack, h, h, 1), config.seeds, nn.LeakyReLU(0.2))
    gen = make_generator(derive_seed(config.seeds[0], f"ring-{runs}"))
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=(0.5, 0.999))
    fixed_noise = torch.randn(runs, eval_samples, config.noise_dim, generator=gen)
    b = config.batch_size

    def judge(points: torch.Tensor) -> torch.Tensor:  # (R, B, 2) -> (R, B / pack) logits
        return d(points.reshape(runs, b // pack, 2 * pack)).squeeze(-1)

    shots: dict[int, torch.Tensor] = {}
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        real = sample_ring(runs * b, std=config.std, generator=gen).view(runs, b, 2)
        fake = g(torch.randn(runs, b, config.noise_dim, generator=gen))  # (R, B, 2)
        # losses are means over each run's batch, summed over runs: the runs stay independent
        d_loss = runs * discriminator_loss(judge(real), judge(fake.detach()))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = runs * generator_loss(judge(fake), config.loss)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if step in snapshots:
            with torch.no_grad():
                shots[step] = g(fixed_noise)
    with torch.no_grad():
        samples = g(fixed_noise)  # (R, N, 2)
    return {"samples": samples, "snapshots": shots, "seconds": time.perf_counter() - started,
            "coverage": [mode_coverage(s, ring_modes(), config.std) for s in samples]}


class RingSweepConfig(ArchConfig):
    """The mode-collapse experiment: three variants of the ring GAN, several seeds each."""

    base: ToyGANConfig = Field(ToyGANConfig(seeds=(0, 1, 2, 3, 4, 5)),
                               description="networks, optimisation and seeds of every run")
    pack: int = Field(2, gt=1, description="samples D judges at once in the packed variant")
    snapshots: tuple[int, ...] = Field((250, 500, 1000, 2000), description="steps to record")
    eval_samples: int = Field(1000, gt=0, description="samples per run for the coverage")
    seed: int = Field(0, ge=0, description="unused by training (each run has its own seed)")


# name -> (generator loss, pack): the minimax loss, the non-saturating loss, and packing on top
RING_VARIANTS: dict[str, tuple[GeneratorLoss, bool]] = {
    "saturating": ("saturating", False),
    "non-saturating": ("non-saturating", False),
    "non-saturating + packing": ("non-saturating", True),
}


class RingSweep(nn.Module):
    """The sweep's results as buffers, so that one cached file holds them: samples per run."""

    def __init__(self, config: RingSweepConfig) -> None:
        super().__init__()
        v, r = len(RING_VARIANTS), len(config.base.seeds)
        n, s = config.eval_samples, len(config.snapshots)
        self.register_buffer("samples", torch.zeros(v, r, n, 2))  # final samples
        self.register_buffer("snapshots", torch.zeros(v, s, r, n, 2))  # during training

    def coverage(self, std: float) -> dict[str, list[dict[str, float]]]:
        """:func:`mode_coverage` of every run's final samples, by variant."""
        return {name: [mode_coverage(run, ring_modes(), std) for run in self.samples[i]]
                for i, name in enumerate(RING_VARIANTS)}


def run_ring_sweep(sweep: RingSweep, config: RingSweepConfig) -> dict[str, float]:
    """Train every variant on every seed; store the samples; return coverage and seconds."""
    metrics: dict[str, float] = {}
    for i, (name, (loss, packed)) in enumerate(RING_VARIANTS.items()):
        run = config.base.model_copy(update={"loss": loss,
                                             "pack": config.pack if packed else 1})
        result = train_toy_gans(run, config.snapshots, config.eval_samples)
        sweep.samples[i] = result["samples"]
        for j, step in enumerate(config.snapshots):
            sweep.snapshots[i, j] = result["snapshots"][step]
        coverage = result["coverage"]
        metrics[f"{name}/modes_hit"] = sum(c["modes_hit"] for c in coverage) / len(coverage)
        metrics[f"{name}/high_quality"] = sum(c["high_quality"] for c in coverage) / len(coverage)
        metrics[f"{name}/seconds"] = result["seconds"]
    return metrics


def ring_sweep(config: RingSweepConfig | None = None) -> TrainedModel[RingSweep]:
    """Return the mode-collapse experiment of lesson 7.3 (run once per build, then cached)."""
    return cached_model("gan-ring-sweep", config or RingSweepConfig(), RingSweep, run_ring_sweep)

"""A variational autoencoder (Kingma & Welling, 2014) for binarised MNIST, and its ELBO.

Introduced in lesson 7.2 (``m07-l02``); week 10 (``w10``) asks students to rebuild it, and
lesson 7.3's latent diffusion trains in its latent space. The encoder maps an image to the mean
and log-variance of a diagonal Gaussian posterior q(z|x); the **reparameterisation**
``z = mu + sigma * eps`` makes a sample of it differentiable; the decoder maps z to one logit per
pixel. The likelihood is **Bernoulli**: every pixel is black or white, which fits digits (ink or
no ink) and makes the ELBO a bound on the probability of a *binary* image, reported in nats.
MNIST's grey values are therefore binarised: a fresh random binarisation (pixel value =
probability of ink) at every training step, one fixed binarisation for evaluation.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from tqdm import tqdm

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import load_mnist
from neuralarch.progress import progress_disabled
from neuralarch.repro import derive_seed, make_generator
from neuralarch.train.artefacts import TrainedModel, cached_model

PIXELS = 28 * 28


class VAEConfig(ArchConfig):
    """Shape of a :class:`VAE`: hidden widths of the MLP encoder (mirrored by the decoder)."""

    latent_dim: int = Field(16, gt=0, description="dimensions of the latent code z")
    hidden: tuple[int, ...] = Field((512, 256), description="encoder widths, decoder reversed")

    @field_validator("hidden")
    @classmethod
    def _positive(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if not hidden or min(hidden) <= 0:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {hidden}")
        return hidden


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no nonlinearity after the last layer


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z = mu + sigma * eps``, ``eps ~ N(0, I)``: a sample that gradients flow through."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps  # (N, latent)


class VAE(nn.Module):
    """MLP encoder to (mu, log sigma^2), reparameterised sample, MLP decoder to pixel logits."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VAEConfig()
        self.encoder = nn.Sequential(nn.Flatten(),
                                     _mlp((PIXELS, *config.hidden, 2 * config.latent_dim)))
        self.decoder = _mlp((config.latent_dim, *reversed(config.hidden), PIXELS))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior's mean and log-variance, each (N, latent), for images x."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (N, latent) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return the Bernoulli logits (N, 1, 28, 28) of every pixel given codes z (N, latent)."""
        return self.decoder(z).view(-1, 1, 28, 28)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (pixel logits, mu, logvar) for images x, decoding one reparameterised z."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator)), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` codes from the prior N(0, I); return pixel probabilities (n, 1, 28, 28)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        return torch.sigmoid(self.decode(z))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag exp(logvar)) || N(0, I) ) in nats, summed over dimensions: (N,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of binary pixels x under Bernoulli(sigmoid(logits)), summed per image: (N,)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


@dataclass
class ELBO:
    """The evidence lower bound of each image and its two terms, all (N,) in nats."""

    elbo: torch.Tensor  # reconstruction - beta * kl
    reconstruction: torch.Tensor  # E_q[log p(x|z)], estimated with one z
    kl: torch.Tensor  # KL(q(z|x) || p(z)), exact


def elbo(model: VAE, x: torch.Tensor, beta: float = 1.0,
         generator: torch.Generator | None = None) -> ELBO:
    """One-sample ELBO of binary images x: ``E_q[log p(x|z)] - beta * KL(q(z|x) || N(0, I))``."""
    logits, mu, logvar = model(x, generator)
    reconstruction, kl = bernoulli_log_likelihood(logits, x), gaussian_kl(mu, logvar)
    return ELBO(reconstruction - beta * kl, reconstruction, kl)


def binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw black/white images: each pixel is 1 with probability equal to its grey value."""
    return torch.bernoulli(images, generator=generator)


@torch.no_grad()
def evaluate_elbo(model: VAE, binary: torch.Tensor, samples: int = 1, seed: int = 0,
                  batch_size: int = 1000) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL per image (nats) of binary images; ``samples`` z each."""
    generator = make_generator(seed)
    totals = {"elbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
    model.eval()
    for _ in range(samples):
        for batch in binary.split(batch_size):
            terms = elbo(model, batch, generator=generator)
            for name in totals:
                totals[name] += getattr(terms, name).sum().item()
    return {name: value / (samples * len(binary)) for name, value in totals.items()}


@torch.no_grad()
def importance_log_likelihood(model: VAE, binary: torch.Tensor, k: int = 64, seed: int = 0,
                              batch_size: int = 250) -> float:
    """Mean importance-sampled estimate of log p(x) (nats per image) with ``k`` posterior draws.

    ``log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)`` with ``z_i ~ q(z|x)`` is a lower bound on
    log p(x) that tightens as ``k`` grows (Burda et al., 2016); ``k = 1`` is the ELBO.
    """
    generator = make_generator(seed)
    model.eval()
    total = 0.0
    prior = torch.distributions.Normal(0.0, 1.0)
    for batch in binary.split(batch_size):
        mu, logvar = model.encode(batch)  # (B, latent)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn((k, *mu.shape), generator=generator)  # (k, B, latent)
        logits = model.decode(z.flatten(0, 1)).view(k, len(batch), 1, 28, 28)
        log_px = bernoulli_log_likelihood(logits.flatten(0, 1),
                                          batch.expand(k, *batch.shape).flatten(0, 1))
        log_w = (log_px.view(k, -1) + prior.log_prob(z).sum(-1)
                 - torch.distributions.Normal(mu, std).log_prob(z).sum(-1))  # (k, B)
        total += (torch.logsumexp(log_w, dim=0) - math.log(k)).sum().item()
    return total / len(binary)


@torch.no_grad()
def active_units(model: VAE, images: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across images (variance > threshold).

    A dimension whose mean is the same for every image carries no information about x: the
    posterior has collapsed onto the prior there (Burda et al., 2016).
    """
    mu, _ = model.encode(images)
    return int((mu.var(dim=0) > threshold).sum())


def nats_to_bits_per_dim(nats_per_image: float) -> float:
    """Convert a per-image negative log-likelihood in nats to bits per pixel."""
    return nats_per_image / (PIXELS * math.log(2))


class VAERecipe(ArchConfig):
    """How the book's MNIST VAE is trained: network, epochs, batches, Adam, beta and seed."""

    arch: VAEConfig = Field(VAEConfig(), description="the network")
    epochs: int = Field(30, gt=0, description="passes over the 8,000 training images")
    batch_size: int = Field(128, gt=0, description="images per optimizer step")
    lr: float = Field(1e-3, gt=0, description="Adam's learning rate")
    beta: float = Field(1.0, ge=0, description="weight of the KL term (1 = the true ELBO)")
    seed: int = Field(0, ge=0, description="seeds initialisation, data order and binarisation")


def fixed_binary_split(split: str, seed: int = 0) -> torch.Tensor:
    """One split of MNIST binarised once with a seed: the images every ELBO is reported on."""
    return binarize(load_mnist(split).images, make_generator(derive_seed(seed, split)))


def train_vae(model: VAE, config: VAERecipe, progress: bool = False) -> dict[str, float]:
    """Train ``model`` in place on the training split; return val/test ELBO terms and history.

    Returns ``val_elbo``, ``test_elbo``, ``test_reconstruction``, ``test_kl`` (nats per image,
    on the fixed binarisations of the 1,000-image splits), ``seconds`` and per-epoch
    ``train_elbo_<epoch>`` values.
    """
    train = load_mnist("train").images  # (8000, 1, 28, 28) grey values in [0, 1]
    generator = make_generator(derive_seed(config.seed, "vae-train"))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    metrics: dict[str, float] = {}
    started = time.perf_counter()
    epochs = tqdm(range(config.epochs), desc="VAE", disable=not progress or progress_disabled())
    for epoch in epochs:
        model.train()
        total = 0.0
        for index in torch.randperm(len(train), generator=generator).split(config.batch_size):
            x = binarize(train[index], generator)  # a new binarisation every time
            terms = elbo(model, x, config.beta, generator)
            loss = -terms.elbo.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += terms.elbo.sum().item()
        metrics[f"train_elbo_{epoch + 1}"] = total / len(train)
        epochs.set_postfix(elbo=f"{total / len(train):.1f}")
    metrics["seconds"] = time.perf_counter() - started
    for split in ("val", "test"):
        scores = evaluate_elbo(model, fixed_binary_split(split), samples=10)
        metrics.update({f"{split}_{name}": value for name, value in scores.items()})
    return metrics


def mnist_vae(config: VAERecipe | None = None) -> TrainedModel[VAE]:
    """Return the book's trained MNIST VAE (16-D latent), trained once and cached."""
    return cached_model("mnist-vae", config or VAERecipe(), lambda c: VAE(c.arch), train_vae)


# The 2-D VAE of the latent-space map: the same recipe with two latent dimensions.
VAE_2D = VAERecipe(arch=VAEConfig(latent_dim=2))


def mnist_vae_2d() -> TrainedModel[VAE]:
    """Return the book's MNIST VAE with a 2-D latent space (for the latent map), cached."""
    return mnist_vae(VAE_2D)


def latent_grid(model: VAE, steps: int = 15, extent: float = 0.95) -> torch.Tensor:
    """Decode a ``steps x steps`` grid of a 2-D latent space; return (steps, steps, 28, 28).

    The grid is evenly spaced in the prior's *probability* (Gaussian quantiles from
    ``1 - extent`` to ``extent``), so each cell covers the same prior mass, as in Kingma and
    Welling's figure; row 0 is the top of the map (largest z_2).
    """
    if model.config.latent_dim != 2:
        raise ValueError(f"a latent map needs a 2-D latent space, got latent_dim="
                         f"{model.config.latent_dim}")
    if not 0.5 < extent < 1 or steps < 2:
        raise ValueError(f"need steps >= 2 and extent in (0.5, 1), got {steps}, {extent}")
    normal = torch.distributions.Normal(0.0, 1.0)
    values = normal.icdf(torch.linspace(1 - extent, extent, steps))  # (steps,)
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    with torch.no_grad():
        probs = torch.sigmoid(model.decode(torch.stack([z1, z2], dim=-1).view(-1, 2)))
    return probs.view(steps, steps, 28, 28)

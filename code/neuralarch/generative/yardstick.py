"""One yardstick for every generator of Module 7: a Fréchet distance on the book's MNIST CNN.

Introduced in lesson 7.2 (``m07-l02``) and used by every lesson of Module 7 and its index table.
The Fréchet Inception Distance (FID, Heusel et al. 2017) fits a Gaussian to the Inception-v3
features of real and of generated images and measures the Fréchet (2-Wasserstein) distance
between the two Gaussians. Inception-v3 cannot be downloaded here and knows nothing about
digits, so the book uses the *penultimate layer of its own MNIST CNN* (``mnist_cnn()``, lesson
4.1: 64 average-pooled features) instead. The numbers are therefore **not FIDs** and cannot be
compared with any published FID; they compare the book's generators with each other.

The Fréchet distance of a finite sample is biased upwards, and the bias grows as the sample
shrinks, so every generator is judged on the same number of images (``n``, 1,000 by default)
and next to the **real-vs-real floor**: the distance between two disjoint sets of ``n`` real
held-out images, which is what a perfect generator would score. Generated images are pixels in
``[0, 1]``, shape (N, 1, 28, 28); the yardstick standardises them as the CNN expects.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from neuralarch.data.mnist import load_mnist, standardize
from neuralarch.vision.model_zoo import mnist_cnn


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Return the mean (D,) and unbiased covariance (D, D) of ``features`` (N, D), in float64."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got {tuple(features.shape)}")
    x = features.double().cpu().numpy()
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` of two Gaussians.

    ``Tr (S1 S2)^(1/2)`` is the sum of the square roots of the eigenvalues of ``S1 S2``, which
    equal those of the symmetric ``S1^(1/2) S2 S1^(1/2)``; computing them from that symmetric
    matrix with ``eigh`` avoids the complex round-off of a general matrix square root.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = len(mu1)
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"expected means of shape ({d},) and covariances ({d}, {d}), got "
                         f"{mu1.shape}, {mu2.shape}, {sigma1.shape}, {sigma2.shape}")
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # S1^(1/2)
    middle = root1 @ sigma2 @ root1  # symmetric PSD, same eigenvalues as S1 S2
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


class Yardstick:
    """Judge generated MNIST digits: Fréchet distance on CNN features, floor, class accuracy.

    ``real_images`` (pixels in [0, 1]) must hold at least ``2 * n`` held-out images: the first
    ``n`` are the reference every generator is compared with, the next ``n`` give the floor.
    """

    def __init__(self, cnn: nn.Module, real_images: torch.Tensor, n: int = 1000,
                 batch_size: int = 500) -> None:
        if n < 2 or len(real_images) < 2 * n:
            raise ValueError(f"need at least 2 * n = {2 * n} real images (n >= 2) for the "
                             f"reference and the floor, got {len(real_images)}")
        self.cnn = cnn.eval()
        self.n, self.batch_size = n, batch_size
        self._check(real_images, "real_images")
        self.reference = gaussian_stats(self.features(real_images[:n]))
        self.holdout = real_images[n:2 * n]

    @staticmethod
    def _check(images: torch.Tensor, name: str) -> None:
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
            raise ValueError(f"{name} must be (N, 1, 28, 28), got {tuple(images.shape)}")
        low, high = images.min().item(), images.max().item()
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"{name} must be pixels in [0, 1] (the yardstick standardises them "
                             f"itself), got values in [{low:.2f}, {high:.2f}]")

    @torch.no_grad()
    def _run(self, images: torch.Tensor, head: bool) -> torch.Tensor:
        outputs = []
        for batch in images.split(self.batch_size):
            x = standardize(batch.float().clamp(0, 1))
            outputs.append(self.cnn(x) if head else self.cnn.embed(x))
        return torch.cat(outputs)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The CNN's penultimate-layer features (N, D) of pixel images (N, 1, 28, 28)."""
        self._check(images, "images")
        return self._run(images, head=False)

    def frechet(self, images: torch.Tensor) -> float:
        """Fréchet distance of ``n`` images to the reference (the first ``n`` are used)."""
        if len(images) < self.n:
            raise ValueError(f"the yardstick compares exactly n = {self.n} images (the distance "
                             f"is biased by the sample size), got {len(images)}")
        return frechet_distance(*gaussian_stats(self.features(images[:self.n])), *self.reference)

    def floor(self) -> float:
        """The real-vs-real floor: the distance of ``n`` other real images to the reference."""
        return self.frechet(self.holdout)

    def class_accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of ``images`` that the CNN classifies as the requested ``labels``."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self._check(images, "images")
        return (self._run(images, head=True).argmax(-1) == labels).float().mean().item()

    def row(self, name: str, images: torch.Tensor, labels: torch.Tensor | None = None,
            **extra: float) -> dict[str, object]:
        """One row of the module's table: name, Fréchet distance, floor, class accuracy, extras."""
        accuracy = None if labels is None else self.class_accuracy(images[:self.n],
                                                                   labels[:self.n])
        return {"model": name, "frechet": self.frechet(images), "floor": self.floor(),
                "class_accuracy": accuracy, "n": self.n, **extra}


def mnist_yardstick(n: int = 1000) -> Yardstick:
    """The book's yardstick: the cached MNIST CNN, test split as reference, validation as floor.

    The generators train on the 8,000-image training split; the reference is the first ``n``
    images of the 1,000-image test split and the floor compares the first ``n`` validation
    images with them.
    """
    if not 2 <= n <= 1000:
        raise ValueError(f"n must be in [2, 1000] (the test and validation splits have 1,000 "
                         f"images each), got {n}")
    real = torch.cat([load_mnist("test").images[:n], load_mnist("val").images[:n]])
    return Yardstick(mnist_cnn().model, real, n=n)

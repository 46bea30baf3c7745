"""The Fréchet-distance yardstick of Module 7 against SciPy and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from randomised import generator
from torch import nn

from neuralarch.data.mnist import load_mnist
from neuralarch.generative.yardstick import (
    Yardstick,
    frechet_distance,
    gaussian_stats,
    mnist_yardstick,
)


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The textbook formula with SciPy's general matrix square root (as in the FID code)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def random_cov(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


@pytest.mark.parametrize("d, seed", [(1, 0), (3, 1), (8, 2), (64, 3)])
def test_frechet_equals_scipy_sqrtm(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_cov(d, rng), random_cov(d, rng)
    expected = scipy_frechet(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("d", [1, 5, 32])
def test_frechet_closed_form_for_diagonal_covariances(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed, rel=1e-9)


def test_frechet_is_zero_for_equal_gaussians_and_symmetric():
    rng = np.random.default_rng(7)
    mu, s = rng.normal(size=6), random_cov(6, rng)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    mu2, s2 = rng.normal(size=6), random_cov(6, rng)
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s))


def test_gaussian_stats_and_shape_errors():
    x = torch.randn(50, 4, generator=generator())
    mu, cov = gaussian_stats(x)
    np.testing.assert_allclose(mu, x.double().mean(0).numpy())
    np.testing.assert_allclose(cov, torch.cov(x.double().T).numpy())
    with pytest.raises(ValueError, match="expected means"):
        frechet_distance(mu, cov, mu[:3], cov)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        gaussian_stats(torch.zeros(1, 4))


class Embedder(nn.Module):
    """A stand-in CNN: fixed random features of the pixels and a 10-way head."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(784, 8)
        self.head = nn.Linear(8, 10)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_yardstick_floor_is_small_and_noise_is_far():
    torch.manual_seed(0)
    cnn = Embedder()
    base = torch.rand(1, 1, 28, 28, generator=generator(1))
    real = (base + 0.1 * torch.rand(400, 1, 28, 28, generator=generator(2))).clamp(0, 1)
    stick = Yardstick(cnn, real, n=200)
    noise = torch.rand(200, 1, 28, 28, generator=generator(3))
    assert stick.floor() < 0.2 * stick.frechet(noise)
    assert stick.frechet(real[:200]) < 1e-9  # the reference itself
    row = stick.row("noise", noise, torch.zeros(200, dtype=torch.long), seconds=1.0)
    assert row["model"] == "noise" and row["n"] == 200 and row["seconds"] == 1.0
    assert 0.0 <= row["class_accuracy"] <= 1.0 and row["floor"] == stick.floor()


@pytest.mark.parametrize("images, message", [
    (torch.rand(10, 1, 28, 28), "exactly n"),
    (torch.rand(200, 28, 28), r"\(N, 1, 28, 28\)"),
    (2 * torch.rand(200, 1, 28, 28) - 1, r"pixels in \[0, 1\]"),
])
def test_yardstick_rejects_bad_images(images, message):
    stick = Yardstick(Embedder(), torch.rand(400, 1, 28, 28), n=200)
    with pytest.raises(ValueError, match=message):
        stick.frechet(images)


def test_yardstick_needs_two_n_real_images():
    with pytest.raises(ValueError, match="at least 2 \\* n"):
        Yardstick(Embedder(), torch.rand(300, 1, 28, 28), n=200)


def test_mnist_yardstick_class_accuracy_of_real_digits():
    stick = mnist_yardstick(n=200)
    train = load_mnist("train", limit=200)
    assert stick.class_accuracy(train.images, train.labels) > 0.95
    assert stick.frechet(train.images) < 3 * stick.floor() + 1.0
    blank = torch.zeros(200, 1, 28, 28)
    assert stick.frechet(blank) > 10 * stick.floor()

"""The small-data experiment: a small CNN trained on n MNIST images, with and without augmentation.

Introduced in lesson 4.5 (``m04-l05``). :func:`train_small` trains the LeNet of lesson 4.1 on the
first ``n_train`` images of the book's 8,000-image train split for a fixed number of optimizer
steps (so every run gets the same compute, whatever ``n_train``) and scores it on the
1,000-image test split. :func:`make_augmentation` builds the batch transform: augmentations
work on pixels in [0, 1], where the zero fill of a warp is the black background, and the batch
is standardised afterwards. :func:`transformed_accuracy` measures how a trained model copes
with rotated or shifted test images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import MNISTSplit, load_mnist, standardize
from neuralarch.train.loop import History, TrainConfig, accuracy, evaluate, fit
from neuralarch.vision.augment import affine_matrices, cutmix, mixup, random_affine, warp
from neuralarch.vision.lenet import LeNet, LeNetConfig

Augmentation = Literal["none", "affine", "affine+mixup", "affine+cutmix"]
AUGMENTATIONS: tuple[str, ...] = ("none", "affine", "affine+mixup", "affine+cutmix")
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SmallDataConfig(ArchConfig):
    """One run of the small-data experiment: data size, augmentation, optimiser, budget, seed."""

    n_train: int = Field(250, ge=10, le=8000, description="training images (first n of train)")
    augmentation: Augmentation = Field("none", description="which augmentation to train with")
    steps: int = Field(200, gt=0, description="optimizer steps, the same for every n_train")
    batch_size: int = Field(32, gt=0, description="images per optimizer step")
    lr: float = Field(3e-3, gt=0, description="peak learning rate of the one-cycle schedule")
    weight_decay: float = Field(5e-4, ge=0, description="AdamW's decoupled weight decay")
    max_degrees: float = Field(15.0, ge=0, description="random rotation range, degrees")
    max_shift: float = Field(3.0, ge=0, description="random shift range, pixels")
    max_scale: float = Field(0.1, ge=0, lt=1, description="random zoom in [1 - s, 1 + s]")
    mix_alpha: float = Field(0.4, gt=0, description="Beta(alpha, alpha) of mixup / cutmix")
    seed: int = Field(0, ge=0, description="seeds initialisation, data order and augmentation")
    model: LeNetConfig = Field(LeNetConfig(), description="the network (LeNet, lesson 4.1)")


def make_augmentation(config: SmallDataConfig) -> BatchTransform:
    """Return the ``batch_transform`` for ``fit``: augment pixels in [0, 1], then standardise."""
    num_classes = config.model.num_classes
    scale = (1 - config.max_scale, 1 + config.max_scale)

    def transform(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if config.augmentation != "none":
            x = random_affine(x, config.max_degrees, config.max_shift, scale)  # (N, 1, 28, 28)
        if config.augmentation == "affine+mixup":
            x, y = mixup(x, y, num_classes, config.mix_alpha)  # y becomes (N, K) soft targets
        elif config.augmentation == "affine+cutmix":
            x, y = cutmix(x, y, num_classes, config.mix_alpha)
        return standardize(x), y

    return transform


@dataclass
class SmallDataRun:
    """What one run returns: the trained model and its scores on train and test images."""

    config: SmallDataConfig
    model: nn.Module  # in eval mode
    train_acc: float  # on the n_train clean (un-augmented) training images
    test_acc: float  # on the 1,000-image test split
    test_loss: float
    history: History
    seconds: float


def train_small(config: SmallDataConfig, test: MNISTSplit | None = None) -> SmallDataRun:
    """Train a fresh LeNet on ``config.n_train`` images for ``config.steps`` steps; score it."""
    train = load_mnist("train", limit=config.n_train)
    test = test if test is not None else load_mnist("test")
    torch.manual_seed(config.seed)  # the initial weights
    model = LeNet(config.model)
    steps_per_epoch = -(-config.n_train // config.batch_size)
    started = time.perf_counter()
    history = fit(
        model, train.dataset(normalize=False), None, F.cross_entropy,
        lambda params: torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay),
        TrainConfig(epochs=-(-config.steps // steps_per_epoch), max_steps=config.steps,
                    batch_size=config.batch_size, seed=config.seed, device="cpu"),
        scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, config.lr,
                                                                  total_steps=config.steps),
        batch_transform=make_augmentation(config), progress=False)
    seconds = time.perf_counter() - started
    model.eval()
    scores = evaluate(model, test.dataset(), F.cross_entropy, {"acc": accuracy})
    train_acc = evaluate(model, train.dataset(), F.cross_entropy, {"acc": accuracy})["acc"]
    return SmallDataRun(config, model, train_acc, scores["acc"], scores["loss"], history,
                        seconds)


def sweep(sizes: Sequence[int], augmentations: Sequence[str], seeds: Sequence[int],
          base: SmallDataConfig | None = None) -> list[SmallDataRun]:
    """Run :func:`train_small` for every (n_train, augmentation, seed); ``base`` sets the rest."""
    base = base or SmallDataConfig()
    unknown = sorted(set(augmentations) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; choose from {list(AUGMENTATIONS)}")
    if not sizes or not augmentations or not seeds:
        raise ValueError(f"sizes, augmentations and seeds must each be non-empty, got "
                         f"{list(sizes)}, {list(augmentations)}, {list(seeds)}")
    test = load_mnist("test")
    settings = base.model_dump()
    return [train_small(SmallDataConfig(**{**settings, "n_train": n, "augmentation": aug,
                                           "seed": seed}), test)
            for n in sizes for aug in augmentations for seed in seeds]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Return the predicted classes (N,) for pixel images (N, C, H, W) in [0, 1], in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(standardize(chunk)).argmax(dim=1)
                         for chunk in images.split(batch_size)])
    model.train(was_training)
    return out


def transformed_accuracy(model: nn.Module, split: MNISTSplit, degrees: float = 0.0,
                         shift: tuple[float, float] = (0.0, 0.0)) -> float:
    """Accuracy on ``split`` after rotating every image by ``degrees`` and shifting it (px)."""
    n, _, h, w = split.images.shape
    theta = affine_matrices(torch.full((n,), float(degrees)), torch.tensor([shift] * n,
                                                                            dtype=torch.float32),
                            torch.ones(n), h, w)
    moved = warp(split.images, theta)  # pixels in [0, 1]: the zero fill is background
    return (predict(model, moved) == split.labels).float().mean().item()

"""The book's shared trained vision models: trained once, cached, and loaded by every page.

Introduced in lesson 4.1 (``m04-l01``). :func:`mnist_cnn` returns the book's MNIST ResNet (the
default config reaches about 99 % on the held-out test split); lessons 4.2, 4.3, the week 03–05
assignments and the interpretability lesson load it instead of training their own. A config
with ``classes`` set to a subset of the digits trains a source model for transfer learning.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import MNISTSplit, load_mnist, standardize
from neuralarch.train.artefacts import TrainedModel, cached_model
from neuralarch.train.loop import TrainConfig, accuracy, evaluate, fit
from neuralarch.vision.augment import random_affine
from neuralarch.vision.resnet import ResNet, ResNetConfig
from neuralarch.vision.vit import ViT, ViTConfig


class MnistRecipe(ArchConfig):
    """How a cached MNIST model is trained: data, augmentation, optimiser, schedule and seed."""

    classes: tuple[int, ...] = Field(tuple(range(10)), description="digits to train on")
    epochs: int = Field(15, gt=0, description="passes over the 8,000 training images")
    batch_size: int = Field(128, gt=0, description="images per optimizer step")
    lr: float = Field(3e-3, gt=0, description="peak learning rate of the one-cycle schedule")
    weight_decay: float = Field(5e-4, ge=0, description="AdamW's decoupled weight decay")
    max_degrees: float = Field(10.0, ge=0, description="random rotation range, degrees")
    max_shift: float = Field(2.0, ge=0, description="random shift range, pixels")
    max_scale: float = Field(0.1, ge=0, lt=1, description="random zoom in [1 - s, 1 + s]")
    seed: int = Field(0, ge=0, description="seeds initialisation, data order and augmentation")

    @field_validator("classes")
    @classmethod
    def _digits(cls, classes: tuple[int, ...]) -> tuple[int, ...]:
        if len(classes) < 2 or len(set(classes)) != len(classes) or \
                not all(0 <= c <= 9 for c in classes):
            raise ValueError(f"classes must be at least two distinct digits 0-9, got {classes}")
        return classes


class MnistCNNConfig(MnistRecipe):
    """The book's MNIST CNN: a small ResNet plus the recipe that trains it."""

    arch: ResNetConfig = Field(
        ResNetConfig(widths=(16, 32, 64), blocks=(2, 2, 2), strides=(2, 2, 2)),
        description="the network; num_classes must equal len(classes)",
    )

    @model_validator(mode="after")
    def _head_matches_classes(self) -> MnistCNNConfig:
        if self.arch.num_classes != len(self.classes) or self.arch.in_channels != 1:
            raise ValueError(f"arch must have in_channels=1 and num_classes={len(self.classes)} "
                             f"(one per class in {self.classes}), got "
                             f"{self.arch.in_channels} and {self.arch.num_classes}")
        return self


class Standardize(nn.Module):
    """Map raw MNIST pixels in [0, 1] to the standardised inputs the book's models train on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return standardize(x)


def in_pixel_units(model: nn.Module) -> nn.Sequential:
    """Return ``model`` (in eval mode) behind :class:`Standardize`, taking pixels in [0, 1].

    Attribution methods explain the input they are given; in pixel units 0 means a black pixel,
    which makes baselines and pixel deletion mean what they say.
    """
    return nn.Sequential(OrderedDict(standardize=Standardize(), cnn=model)).eval()


def mnist_subset(split: str, classes: tuple[int, ...]) -> MNISTSplit:
    """Return one split restricted to ``classes``, with labels renumbered 0..len(classes)-1."""
    data = load_mnist(split)
    keep = torch.isin(data.labels, torch.tensor(classes))
    lookup = torch.full((10,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    return MNISTSplit(data.images[keep], lookup[data.labels[keep]], f"{split}{list(classes)}")


def train_on_mnist(model: nn.Module, config: MnistRecipe) -> dict[str, float]:
    """Train ``model`` in place with the recipe; return val/test loss and accuracy.

    Any image classifier works (the ResNet here, the ViT of lesson 4.4): the same data,
    augmentation, AdamW and one-cycle schedule make their results comparable.
    """
    train = mnist_subset("train", config.classes).dataset(normalize=False)  # raw pixels
    val, test = (mnist_subset(s, config.classes).dataset() for s in ("val", "test"))
    model.to(memory_format=torch.channels_last)  # ~1.6x faster convolutions on CPU

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # warp raw pixels, so that what moves in from outside is black background, then
        # standardise like the validation and test images
        x = random_affine(x, config.max_degrees, config.max_shift,
                          (1 - config.max_scale, 1 + config.max_scale))
        return standardize(x).contiguous(memory_format=torch.channels_last), y

    steps = config.epochs * -(-len(train) // config.batch_size)
    fit(model, train, val, F.cross_entropy,
        lambda params: torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay),
        TrainConfig(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed),
        scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, config.lr,
                                                                  total_steps=steps),
        batch_transform=augment, progress=False)
    model.to(memory_format=torch.contiguous_format)
    scores = {name: evaluate(model, data, F.cross_entropy, {"acc": accuracy})
              for name, data in (("val", val), ("test", test))}
    return {f"{name}_{metric}": value for name, result in scores.items()
            for metric, value in result.items()}


# The source model of transfer learning (lesson 4.3): the same ResNet and recipe, digits 0-4 only.
TRANSFER_SOURCE = MnistCNNConfig(
    classes=(0, 1, 2, 3, 4),
    arch=ResNetConfig(widths=(16, 32, 64), blocks=(2, 2, 2), strides=(2, 2, 2), num_classes=5))


def mnist_cnn(config: MnistCNNConfig | None = None) -> TrainedModel[ResNet]:
    """Return the book's trained MNIST ResNet (trained on first use, then loaded from the cache).

    ``metrics`` holds ``val_acc``/``test_acc`` and ``val_loss``/``test_loss`` on the book's
    1,000-image validation and test splits (restricted to ``config.classes``).
    """
    return cached_model("mnist-cnn", config or MnistCNNConfig(),
                        lambda c: ResNet(c.arch), train_on_mnist)


class MnistViTConfig(MnistRecipe):
    """The book's MNIST Vision Transformer (lesson 4.4): a small ViT plus the CNN's recipe."""

    arch: ViTConfig = Field(ViTConfig(), description="the network; num_classes = len(classes)")

    @model_validator(mode="after")
    def _fits_mnist(self) -> MnistViTConfig:
        arch = self.arch
        if (arch.num_classes, arch.in_channels, arch.image_size) != (len(self.classes), 1, 28):
            raise ValueError(f"arch must have num_classes={len(self.classes)} (one per class in "
                             f"{self.classes}), in_channels=1 and image_size=28, got "
                             f"{arch.num_classes}, {arch.in_channels} and {arch.image_size}")
        return self


def mnist_vit(config: MnistViTConfig | None = None) -> TrainedModel[ViT]:
    """Return the book's trained MNIST ViT, trained with the same recipe as :func:`mnist_cnn`.

    Same 8,000 training images, augmentation, AdamW, one-cycle schedule and epochs, so its
    ``metrics`` (val/test loss and accuracy) compare directly with the CNN's.
    """
    return cached_model("mnist-vit", config or MnistViTConfig(), lambda c: ViT(c.arch),
                        train_on_mnist)

"""The book's shared MNIST models: recipe validation, class subsets, cached training."""

from __future__ import annotations

import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.data.mnist import TRAIN_MEAN, TRAIN_STD, load_mnist
from neuralarch.train.artefacts import CACHE_ENV
from neuralarch.vision.model_zoo import MnistCNNConfig, in_pixel_units, mnist_cnn, mnist_subset
from neuralarch.vision.resnet import ResNet, ResNetConfig

TINY = ResNetConfig(widths=(4, 8), blocks=(1, 1), strides=(2, 2), num_classes=3)


def test_the_default_recipe_is_the_books_resnet():
    config = MnistCNNConfig()
    assert config.classes == tuple(range(10)) and config.arch.num_classes == 10
    assert config.arch.blocks == (2, 2, 2) and config.seed == 0


@pytest.mark.parametrize("changes, message", [
    ({"classes": (3,)}, "at least two distinct digits"),
    ({"classes": (1, 1)}, "at least two distinct digits"),
    ({"classes": (0, 10)}, "at least two distinct digits"),
    ({"classes": (0, 1)}, "num_classes=2"),
    ({"arch": ResNetConfig(in_channels=3)}, "in_channels=1"),
    ({"epochs": 0}, "epochs"),
])
def test_bad_recipes_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        MnistCNNConfig(**changes)


def test_subsets_keep_only_the_classes_and_renumber_them():
    full = load_mnist("val")
    subset = mnist_subset("val", (7, 2, 9))
    keep = (full.labels == 7) | (full.labels == 2) | (full.labels == 9)
    assert len(subset) == int(keep.sum()) and subset.name == "val[7, 2, 9]"
    torch.testing.assert_close(subset.images, full.images[keep])
    expected = torch.tensor([{7: 0, 2: 1, 9: 2}[int(v)] for v in full.labels[keep]])
    assert torch.equal(subset.labels, expected)


def test_mnist_cnn_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = MnistCNNConfig(arch=TINY, classes=(0, 1, 2), epochs=2, batch_size=64)
    first = mnist_cnn(config)
    assert first.trained_now and isinstance(first.model, ResNet)
    assert set(first.metrics) == {"val_acc", "val_loss", "test_acc", "test_loss"}
    assert first.metrics["test_acc"] > 0.6  # chance is 1/3: it learned from the recipe
    assert first.model.stem[0].weight.is_contiguous()  # back from channels_last
    second = mnist_cnn(config)
    assert not second.trained_now and second.fingerprint == first.fingerprint
    images = mnist_subset("test", (0, 1, 2)).normalized()[:64]
    torch.testing.assert_close(first.model(images), second.model(images))


def test_in_pixel_units_standardises_then_runs_the_model():
    net = ResNet(TINY).eval()
    wrapped = in_pixel_units(net)
    pixels = load_mnist("val", limit=8).images
    torch.testing.assert_close(wrapped(pixels), net((pixels - TRAIN_MEAN) / TRAIN_STD))
    assert wrapped.cnn is net and not wrapped.training

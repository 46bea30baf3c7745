"""The texture network, its pretext data, the sample photos and the cached training."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from neuralarch.config import ConfigError
from neuralarch.repro import seed_everything, state_fingerprint
from neuralarch.train.artefacts import CACHE_ENV
from neuralarch.vision import texture_net as tn
from neuralarch.vision.texture_net import (
    CLASSES,
    PHOTOS,
    TEXTURE_FAMILIES,
    TextureNet,
    TextureNetConfig,
    load_sample_photo,
    photo_crops,
    pretext_dataset,
    procedural_textures,
    texture_net,
    untrained_texture_net,
)

TINY = dict(widths=(4, 6), convs_per_stage=(1, 2), crop_size=8, photo_height=32,
            train_per_class=6, val_per_class=3, epochs=1, batch_size=16)


def test_load_sample_photo_matches_scikit_learn():
    from sklearn.datasets import load_sample_image

    for name in PHOTOS:
        full = load_sample_photo(name, (427, 640))  # same size: the resize is the identity
        reference = torch.from_numpy(load_sample_image(f"{name}.jpg").copy()).permute(2, 0, 1)
        torch.testing.assert_close(full[0], reference.float() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("size", "shape"), [(32, (1, 3, 32, 48)), (100, (1, 3, 100, 150)),
                                             ((20, 30), (1, 3, 20, 30)), ((17, 9), (1, 3, 17, 9))])
def test_load_sample_photo_shapes_and_range(size, shape):
    photo = load_sample_photo("flower", size)
    assert photo.shape == shape and photo.dtype == torch.float32
    assert photo.min().item() >= 0.0 and photo.max().item() <= 1.0
    assert photo.std().item() > 0.05  # a picture, not a blank


def test_load_sample_photo_antialiases():
    photo = load_sample_photo("china", (427, 640))
    small = load_sample_photo("china", 32)
    torch.testing.assert_close(small, F.interpolate(photo, size=(32, 48), mode="bilinear",
                                                    antialias=True).clamp(0, 1))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(name="cat", size=32), r"name must be one of \('china', 'flower'\), got 'cat'"),
    (dict(name="china", size=0), "size must be a positive int"),
    (dict(name="china", size=True), "size must be a positive int"),
    (dict(name="china", size=(3, 4, 5)), "size must be a positive int"),
    (dict(name="china", size=(3, 0)), "size must be a positive int"),
])
def test_load_sample_photo_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_sample_photo(**kwargs)


def test_missing_scikit_learn_is_reported(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install scikit-learn"):
        load_sample_photo("china", 8)


@pytest.mark.parametrize("family", TEXTURE_FAMILIES)
def test_procedural_textures(family):
    images = procedural_textures(family, 5, 12, torch.Generator().manual_seed(0))
    again = procedural_textures(family, 5, 12, torch.Generator().manual_seed(0))
    assert images.shape == (5, 3, 12, 12)
    assert images.min().item() >= 0.0 and images.max().item() <= 1.0
    assert torch.equal(images, again)
    assert images.flatten(1).std(1).min().item() > 0.02  # every texture has contrast
    assert not torch.equal(images[0], images[1])  # random parameters per image


def test_procedural_textures_errors():
    with pytest.raises(ValueError, match="family must be one of"):
        procedural_textures("waves", 2, 8)
    with pytest.raises(ValueError, match="need n >= 1 and size >= 4, got n=0, size=8"):
        procedural_textures("dots", 0, 8)


def test_photo_crops_stay_in_their_columns():
    columns = torch.arange(40, dtype=torch.float32).expand(1, 3, 20, 40)  # value = column index
    crops = photo_crops(columns.clone(), 30, 6, (25, 40), torch.Generator().manual_seed(0))
    assert crops.shape == (30, 3, 6, 6)
    assert crops.min().item() >= 25 and crops.max().item() <= 39
    increasing = crops[:, 0, 0, -1] > crops[:, 0, 0, 0]
    assert increasing.any() and (~increasing).any()  # some crops are flipped, some are not
    with pytest.raises(ValueError, match=r"columns \(30, 35\) must lie inside"):
        photo_crops(columns, 1, 6, (30, 35))
    with pytest.raises(ValueError, match=r"columns \(0, 50\) must lie inside"):
        photo_crops(columns, 1, 6, (0, 50))


def test_config_validation():
    with pytest.raises(ConfigError, match="must be non-empty and of equal length"):
        TextureNetConfig(widths=(4, 8), convs_per_stage=(1,))
    with pytest.raises(ConfigError, match="every width and conv count must be >= 1"):
        TextureNetConfig(widths=(4, 0), convs_per_stage=(1, 1))
    with pytest.raises(ConfigError, match="crop_size = 4"):
        TextureNetConfig(crop_size=4)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        TextureNetConfig(epoch=3)


def test_texture_net_layers_and_shapes():
    net = TextureNet(TextureNetConfig(**TINY))
    names = [name for name, _ in net.features.named_children()]
    assert names == ["normalize", "conv1_1", "relu1_1", "pool1", "conv2_1", "relu2_1",
                     "conv2_2", "relu2_2"]
    x = torch.rand(3, 3, 16, 12)
    assert net.features(x).shape == (3, 6, 8, 6)
    assert net(x).shape == (3, len(CLASSES))
    default = TextureNet(TextureNetConfig())
    assert default.features(x).shape == (3, 128, 2, 1)
    assert isinstance(default.features.pool1, torch.nn.AvgPool2d)
    standardised = net.features.normalize(torch.full((1, 3, 2, 2), 0.75))
    torch.testing.assert_close(standardised, torch.ones(1, 3, 2, 2))  # (0.75 - 0.5) / 0.25


def test_pretext_dataset():
    config = TextureNetConfig(**TINY)
    train, val = pretext_dataset(config, "train"), pretext_dataset(config, "val")
    x, y = train.tensors
    assert x.shape == (len(CLASSES) * 6, 3, 8, 8)
    assert torch.equal(torch.bincount(y), torch.full((len(CLASSES),), 6))
    assert len(val) == len(CLASSES) * 3
    assert torch.equal(x, pretext_dataset(config, "train").tensors[0])  # deterministic
    assert not torch.equal(x[:3], val.tensors[0][:3])  # independent streams per split
    with pytest.raises(ValueError, match="split must be 'train' or 'val', got 'test'"):
        pretext_dataset(config, "test")


def test_cached_training_trains_once_then_loads_identical_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = TextureNetConfig(**TINY)
    before = torch.get_rng_state()
    first = texture_net(config)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
    assert first.trained_now and first.path.parent == tmp_path
    assert set(first.metrics) == {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert 0.0 <= first.metrics["val_acc"] <= 1.0
    mean = first.model.features.normalize.mean
    assert not torch.allclose(mean, torch.full_like(mean, 0.5))  # set from the training data
    second = texture_net(config)
    assert not second.trained_now
    assert second.fingerprint == first.fingerprint
    assert second.metrics == first.metrics

    start = untrained_texture_net(first)
    seed_everything(config.seed)  # what cached_model does before it builds the network
    reference = TextureNet(config)
    for name, param in reference.named_parameters():
        torch.testing.assert_close(start.get_parameter(name), param, rtol=0, atol=0)
    torch.testing.assert_close(start.features.normalize.std, first.model.features.normalize.std)
    assert state_fingerprint(start) != first.fingerprint  # training changed the weights
    assert not start.training


def test_default_recipe_uses_the_cache(monkeypatch, tmp_path):
    calls = []

    def fake_cached_model(name, config, build, train, *, root=None):
        calls.append((name, config, build, train, root))
        return "cached"

    monkeypatch.setattr(tn, "cached_model", fake_cached_model)
    assert texture_net() == "cached"
    name, config, build, train, root = calls[0]
    assert name == "texture-net" and config == TextureNetConfig() and root is None
    assert build is TextureNet and train is tn.train_texture_net

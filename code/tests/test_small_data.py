"""The small-data experiment of lesson 4.5: its batch transform, training runs and robustness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.data.mnist import TRAIN_MEAN, TRAIN_STD, load_mnist, standardize
from neuralarch.repro import state_fingerprint
from neuralarch.train.loop import accuracy, evaluate
from neuralarch.vision.small_data import (
    AUGMENTATIONS,
    SmallDataConfig,
    make_augmentation,
    predict,
    sweep,
    train_small,
    transformed_accuracy,
)

TINY = {"n_train": 20, "steps": 4, "batch_size": 10}


@pytest.fixture(scope="module")
def small_test():
    return load_mnist("test", limit=60)


def test_standardize_uses_the_train_split_statistics(small_test):
    expected = (small_test.images - TRAIN_MEAN) / TRAIN_STD
    torch.testing.assert_close(standardize(small_test.images), expected)
    torch.testing.assert_close(small_test.normalized(), expected)


def test_no_augmentation_only_standardises():
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    out_x, out_y = make_augmentation(SmallDataConfig(augmentation="none"))(x, y)
    assert torch.equal(out_x, (x - TRAIN_MEAN) / TRAIN_STD) and out_y is y


def test_affine_with_zero_ranges_is_the_identity_then_standardises():
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    config = SmallDataConfig(augmentation="affine", max_degrees=0, max_shift=0, max_scale=0)
    out_x, out_y = make_augmentation(config)(x, y)
    torch.testing.assert_close(out_x, standardize(x), atol=1e-5, rtol=0)
    assert out_y is y


def test_the_zero_fill_becomes_background_after_standardising():
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 1.0  # a bright square that reaches near the border
    config = SmallDataConfig(augmentation="affine", max_degrees=45, max_shift=3)
    torch.manual_seed(0)
    out, _ = make_augmentation(config)(x, torch.tensor([0, 1]))
    background = -TRAIN_MEAN / TRAIN_STD
    # corners were rotated in from outside the image: they must read as black, not mean grey
    corners = out[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    torch.testing.assert_close(corners, torch.full_like(corners, background))
    assert out.min().item() == pytest.approx(background)


@pytest.mark.parametrize("augmentation", ["affine+mixup", "affine+cutmix"])
def test_mixing_augmentations_return_soft_targets(augmentation):
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    transform = make_augmentation(SmallDataConfig(augmentation=augmentation, mix_alpha=1.0))
    torch.manual_seed(1)
    out_x, targets = transform(x, y)
    assert out_x.shape == x.shape and targets.shape == (6, 10)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
    assert targets[:, 6:].sum() == 0  # only the classes present in the batch
    torch.manual_seed(1)
    assert torch.equal(transform(x, y)[0], out_x)  # reproducible from the global seed


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="n_train"):
        SmallDataConfig(n_train=5)
    with pytest.raises(ConfigError, match="augmentation"):
        SmallDataConfig(augmentation="flip")
    with pytest.raises(ConfigError, match="max_scale"):
        SmallDataConfig(max_scale=1.0)


def test_train_small_is_deterministic_and_scores_the_model(small_test):
    config = SmallDataConfig(augmentation="affine+cutmix", **TINY)
    first, second = train_small(config, small_test), train_small(config, small_test)
    assert state_fingerprint(first.model) == state_fingerprint(second.model)
    assert first.test_acc == second.test_acc and first.config is config
    assert not first.model.training
    expected = evaluate(first.model, small_test.dataset(), F.cross_entropy, {"acc": accuracy})
    assert first.test_acc == pytest.approx(expected["acc"])
    assert first.test_loss == pytest.approx(expected["loss"])
    assert 0 <= first.train_acc <= 1 and first.seconds > 0
    assert first.history.steps[-1] == config.steps


def test_train_small_learns_its_training_images(small_test):
    run = train_small(SmallDataConfig(n_train=40, steps=60, batch_size=20, lr=1e-2), small_test)
    assert run.history.train_loss[-1] < 0.5 * run.history.train_loss[0]
    assert run.train_acc > 0.9  # 40 images are easy to memorise
    assert run.test_acc > 0.3  # and it generalises better than chance (0.1)


def test_train_small_loads_the_test_split_itself():
    run = train_small(SmallDataConfig(**TINY))
    expected = evaluate(run.model, load_mnist("test").dataset(), F.cross_entropy,
                        {"acc": accuracy})["acc"]
    assert run.test_acc == pytest.approx(expected)


def test_sweep_runs_every_combination_in_order(monkeypatch):
    seen = []

    def fake_train(config, test):
        seen.append((config.n_train, config.augmentation, config.seed, config.steps, len(test)))
        return config

    monkeypatch.setattr("neuralarch.vision.small_data.train_small", fake_train)
    runs = sweep((30, 60), ("none", "affine"), (0, 1), SmallDataConfig(steps=7))
    assert len(runs) == 8 and seen[0] == (30, "none", 0, 7, 1000)
    assert [s[:3] for s in seen] == [(n, a, s) for n in (30, 60) for a in ("none", "affine")
                                     for s in (0, 1)]
    assert set(AUGMENTATIONS) >= {s[1] for s in seen}


def test_sweep_validates_its_arguments():
    with pytest.raises(ValueError, match=r"unknown augmentations \['flip'\]"):
        sweep((30,), ("none", "flip"), (0,))
    with pytest.raises(ValueError, match="must each be non-empty"):
        sweep((30,), ("none",), ())
    with pytest.raises(ConfigError, match="n_train"):
        sweep((5,), ("none",), (0,), SmallDataConfig(**TINY))


def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def test_predict_standardises_and_restores_the_mode(small_test):
    model = _linear_model().train()
    classes = predict(model, small_test.images, batch_size=7)
    assert model.training
    expected = model(small_test.normalized()).argmax(dim=1)
    assert torch.equal(classes, expected)


def test_transformed_accuracy_against_explicit_transforms(small_test):
    model = _linear_model()
    plain = evaluate(model, small_test.dataset(), F.cross_entropy, {"acc": accuracy})["acc"]
    assert transformed_accuracy(model, small_test) == pytest.approx(plain)
    turned = (predict(model, torch.rot90(small_test.images, 1, dims=(2, 3)))
              == small_test.labels).float().mean().item()
    assert transformed_accuracy(model, small_test, degrees=90.0) == pytest.approx(turned,
                                                                                abs=1 / 60)
    shifted = F.pad(small_test.images, (2, 0))[..., :28]  # content 2 px right, zeros come in
    moved = (predict(model, shifted) == small_test.labels).float().mean().item()
    assert transformed_accuracy(model, small_test, shift=(2.0, 0.0)) == pytest.approx(moved,
                                                                                      abs=1 / 60)

"""Transfer learning helpers: freezing, frozen BatchNorm, layer-wise learning rates, features,
linear probes against scikit-learn, few-shot subsets, hub-style loading, and the sklearn digits."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.testing import assert_close
from torch.utils.data import TensorDataset

from neuralarch.data.mirror import serve_folder
from neuralarch.data.sklearn_digits import (
    DIGITS_SPLIT_SIZES,
    load_sklearn_digits,
    upsample_digits,
)
from neuralarch.repro import seed_everything
from neuralarch.vision.resnet import ResNet, ResNetConfig
from neuralarch.vision.transfer import (
    FrozenBatchNorm2d,
    LinearProbe,
    discriminative_param_groups,
    extract_features,
    few_shot_subset,
    fine_tune,
    freeze,
    freeze_batchnorm,
    linear_probe,
    load_pretrained,
    replace_head,
    save_hub_checkpoint,
    trainable_parameters,
    unfreeze,
)

TINY = ResNetConfig(widths=(4, 8), blocks=(1, 1), strides=(1, 2), num_classes=3)


def tiny_resnet(seed: int = 0, config: ResNetConfig = TINY) -> ResNet:
    """A two-stage ResNet with trained-looking BatchNorm statistics and non-zero gains."""
    torch.manual_seed(seed)
    model = ResNet(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def images(n: int = 6, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------- freezing


def test_freeze_unfreeze_and_trainable_parameters():
    model = tiny_resnet()
    total = len(list(model.parameters()))
    freeze(model.stem)
    freeze(model.stages)
    assert trainable_parameters(model) == list(model.head.parameters())
    F.cross_entropy(model(images()), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    assert all(p.grad is None for p in model.stages.parameters())
    assert model.head.weight.grad is not None
    assert len(trainable_parameters(unfreeze(model))) == total


@pytest.mark.parametrize(("shape", "eps", "affine"), [((2, 3, 4, 5), 1e-5, True),
                                                      ((4, 7, 3, 3), 1e-3, True),
                                                      ((1, 2, 6, 2), 1e-5, False)])
def test_frozen_batchnorm_equals_eval_mode_batchnorm(shape, eps, affine):
    gen = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm2d(shape[1], eps=eps, affine=affine)
    with torch.no_grad():
        bn.running_mean.normal_(generator=gen)
        bn.running_var.uniform_(0.5, 2.0, generator=gen)
        if affine:
            bn.weight.normal_(generator=gen)
            bn.bias.normal_(generator=gen)
    frozen = FrozenBatchNorm2d.from_batchnorm(bn).train()  # training mode must not matter
    x = torch.randn(shape, generator=gen)
    assert_close(frozen(x), bn.eval()(x))
    assert list(frozen.parameters()) == []


def test_frozen_batchnorm_needs_running_statistics():
    with pytest.raises(ValueError, match="track_running_stats=False"):
        FrozenBatchNorm2d.from_batchnorm(nn.BatchNorm2d(3, track_running_stats=False))


def test_freeze_batchnorm_keeps_a_model_in_eval_behaviour():
    model = tiny_resnet()
    x = images()
    expected = model.eval()(x)
    frozen = freeze_batchnorm(copy.deepcopy(model)).train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == \
        sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    assert_close(frozen(x), expected)  # train mode, yet the same as eval mode
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert (model.train()(x) - expected).abs().max() > 1e-3  # a plain BatchNorm does change


# ------------------------------------------------------------- heads and learning rates


def test_replace_head_gives_a_fresh_head_and_updates_the_config():
    model = tiny_resnet()
    old_stem = copy.deepcopy(model.stem.state_dict())
    replace_head(model, 7)
    assert model(images()).shape == (6, 7)
    assert model.config.num_classes == 7 and model.head.in_features == 8
    assert all(torch.equal(v, model.stem.state_dict()[k]) for k, v in old_stem.items())
    seq = nn.Sequential(nn.Linear(3, 3))
    seq.head = nn.Linear(3, 2)
    assert replace_head(seq, 4).head.out_features == 4  # any model with a linear head


@pytest.mark.parametrize(("head", "classes", "match"), [
    (nn.Linear(8, 3), 0, "num_classes must be > 0"),
    (nn.Identity(), 3, "must be an nn.Linear"),
])
def test_replace_head_errors(head, classes, match):
    model = tiny_resnet()
    model.head = head
    with pytest.raises(ValueError, match=match):
        replace_head(model, classes)


@pytest.mark.parametrize(("base_lr", "decay"), [(1e-3, 0.5), (0.1, 1.0), (3e-3, 0.3)])
def test_discriminative_param_groups(base_lr, decay):
    config = ResNetConfig(widths=(4, 8, 8), blocks=(1, 2, 1), strides=(1, 2, 2))
    model = tiny_resnet(config=config)
    groups = discriminative_param_groups(model, base_lr, decay)
    assert [g["name"] for g in groups] == ["head", "stages.2", "stages.1", "stages.0", "stem"]
    for depth, group in enumerate(groups):
        assert group["lr"] == pytest.approx(base_lr * decay**depth)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each one exactly once
    optimizer = torch.optim.AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in groups]


def test_discriminative_groups_with_frozen_parts_leave_them_untouched():
    model = tiny_resnet().train()
    freeze(model.stem)
    stem = copy.deepcopy(model.stem.state_dict())
    optimizer = torch.optim.AdamW(discriminative_param_groups(model, 1e-2, 0.5))
    F.cross_entropy(model(images()), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    optimizer.step()
    assert all(torch.equal(v, model.stem.state_dict()[k]) for k, v in stem.items()
               if "running" not in k and "num_batches" not in k)
    assert model.head.weight.grad is not None and model.stem[0].weight.grad is None


def test_discriminative_groups_match_separate_optimizers():
    """One optimizer with groups = one optimizer per part with its own learning rate."""
    model = tiny_resnet().train()
    twin = copy.deepcopy(model)
    grouped = torch.optim.AdamW(discriminative_param_groups(model, 1e-2, 0.1))
    parts = [twin.head, twin.stages[1], twin.stages[0], twin.stem]
    separate = [torch.optim.AdamW(part.parameters(), lr=1e-2 * 0.1**i)
                for i, part in enumerate(parts)]
    for net, optimizers in ((model, [grouped]), (twin, separate)):
        F.cross_entropy(net(images()), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
        for optimizer in optimizers:
            optimizer.step()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert_close(a, b, msg=name)


@pytest.mark.parametrize(("base_lr", "decay", "match"), [(0.0, 0.5, "base_lr must be > 0"),
                                                         (1e-3, 0.0, r"decay must be in"),
                                                         (1e-3, 1.5, r"decay must be in")])
def test_discriminative_groups_bad_values(base_lr, decay, match):
    with pytest.raises(ValueError, match=match):
        discriminative_param_groups(tiny_resnet(), base_lr, decay)


def test_discriminative_groups_need_a_resnet_like_model():
    with pytest.raises(ValueError, match=r"lacks \['stem', 'stages', 'head'\]"):
        discriminative_param_groups(nn.Sequential(), 1e-3, 0.5)
    model = tiny_resnet()
    model.extra = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"outside \.stem, \.stages and \.head"):
        discriminative_param_groups(model, 1e-3, 0.5)


def test_fine_tune_lowers_the_loss_and_respects_frozen_parts():
    torch.manual_seed(0)
    y = torch.arange(24) % 3
    x = images(24, seed=1)
    x = x + 1.5 * (y - 1).float()[:, None, None, None]  # class c is darker or brighter
    data = TensorDataset(x, y)
    model = freeze_batchnorm(tiny_resnet())  # fixed statistics: eval loss = training loss
    freeze(model.stem)
    stem = copy.deepcopy(model.stem[0].weight)
    before = F.cross_entropy(model.eval()(x), y).item()
    calls = []

    def augment(xb, yb):
        calls.append(len(xb))
        return xb, yb

    history = fine_tune(model, data, discriminative_param_groups(model, 3e-2, 0.5), steps=15,
                        batch_size=10, seed=0, augment=augment)
    after = F.cross_entropy(model.eval()(x), y).item()
    assert after < 0.7 * before
    assert torch.equal(model.stem[0].weight, stem)
    assert history.steps[-1] == 15 and len(calls) == 15 and max(calls) == 10
    assert history.lr[-1] == pytest.approx(0.0, abs=1e-12)  # cosine decays to zero
    assert model.stem[0].weight.is_contiguous()  # memory format restored


def test_fine_tune_shrinks_the_batch_to_the_data_and_rejects_bad_budgets():
    data = TensorDataset(images(4), torch.tensor([0, 1, 2, 0]))
    model = tiny_resnet()
    history = fine_tune(model, data, [{"params": list(model.parameters()), "lr": 1e-3}],
                        steps=3, batch_size=64)
    assert history.steps[-1] == 3 and len(history.epochs) == 3  # 3 epochs of one batch of 4
    with pytest.raises(ValueError, match="steps and batch_size must be > 0"):
        fine_tune(model, data, [{"params": list(model.parameters()), "lr": 1e-3}], steps=0)


# --------------------------------------------------------------- features and probes


@pytest.mark.parametrize("batch_size", [1, 4, 500])
def test_extract_features_equals_eval_embed(batch_size):
    model = tiny_resnet().train()
    x = images(9)
    features = extract_features(model, x, batch_size)
    assert model.training  # the mode is restored
    assert not features.requires_grad
    assert_close(features, model.eval().embed(x))


@pytest.mark.parametrize(("x", "batch_size", "match"), [(torch.zeros(3, 12, 12), 5, "N, C, H, W"),
                                                        (torch.zeros(3, 1, 8, 8), 0, "batch_size")])
def test_extract_features_errors(x, batch_size, match):
    with pytest.raises(ValueError, match=match):
        extract_features(tiny_resnet(), x, batch_size)


def probe_data(n: int = 90, d: int = 5, k: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(k, d, generator=gen)
    y = torch.arange(n) % k
    x = centres[y] + 1.5 * torch.randn(n, d, generator=gen)
    x = x * torch.linspace(0.5, 4.0, d) + 3.0  # unequal scales and an offset
    return x, y


@pytest.mark.parametrize(("c", "k", "d", "standardize"), [(1.0, 3, 5, True), (0.1, 4, 7, True),
                                                          (10.0, 5, 3, True), (1.0, 3, 5, False)])
def test_linear_probe_matches_sklearn(c, k, d, standardize):
    x, y = probe_data(d=d, k=k)
    probe = linear_probe(x, y, k, c=c, standardize=standardize)
    reference = LogisticRegression(C=c, tol=1e-9, max_iter=10_000)
    if standardize:
        reference = make_pipeline(StandardScaler(), reference)
    reference.fit(x.double().numpy(), y.numpy())
    ours = F.softmax(probe(x), dim=1)
    theirs = torch.from_numpy(reference.predict_proba(x.double().numpy())).float()
    assert_close(ours, theirs, atol=2e-4, rtol=1e-3)
    x_new, _ = probe_data(seed=1, d=d, k=k)
    assert_close(F.softmax(probe(x_new), 1),
                 torch.from_numpy(reference.predict_proba(x_new.double().numpy())).float(),
                 atol=2e-4, rtol=1e-3)


def test_probe_as_head_folds_the_standardisation():
    x, y = probe_data()
    probe = linear_probe(x, y)
    assert isinstance(probe, LinearProbe)
    head = probe.as_head()
    assert isinstance(head, nn.Linear) and head.weight.shape == (3, 5)
    assert_close(head(x), probe(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("x", "y", "kwargs", "match"), [
    (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), {}, r"features must be \(N, D\)"),
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), {}, r"features must be \(N, D\)"),
    (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), {"c": 0.0}, "c .* must be > 0"),
    (torch.zeros(4, 2), torch.tensor([0, 1, 2, 3]), {"num_classes": 3}, r"labels must lie in"),
    (torch.zeros(4, 2), torch.tensor([0, -1, 1, 1]), {}, r"labels must lie in"),
])
def test_linear_probe_errors(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        linear_probe(x, y, **kwargs)


def test_few_shot_subset_is_balanced_deterministic_and_nested():
    labels = torch.arange(200) % 4  # 50 of each class
    five = few_shot_subset(labels, 5, seed=3)
    assert torch.equal(torch.bincount(labels[five]), torch.full((4,), 5))
    assert len(set(five.tolist())) == 20
    assert torch.equal(five, few_shot_subset(labels, 5, seed=3))
    assert not torch.equal(five, few_shot_subset(labels, 5, seed=4))
    ten = few_shot_subset(labels, 10, seed=3)
    assert set(five.tolist()) <= set(ten.tolist())  # nested for one seed
    some = few_shot_subset(labels, 2, seed=0, classes=[3, 1])
    assert labels[some].tolist() == [3, 3, 1, 1]


@pytest.mark.parametrize(("labels", "k", "match"), [
    (torch.tensor([0, 0, 1, 1, 1]), 3, "class 0 has only 2 examples, fewer than per_class=3"),
    (torch.tensor([0, 1]), 0, "per_class must be > 0"),
    (torch.zeros(2, 2), 1, "labels must be 1-D"),
])
def test_few_shot_subset_errors(labels, k, match):
    with pytest.raises(ValueError, match=match):
        few_shot_subset(labels, k)


# ------------------------------------------------------------------ hub-style loading


def test_hub_round_trip_with_hash_check_and_a_new_head(tmp_path):
    source = tiny_resnet(seed=1)
    path = save_hub_checkpoint(source.state_dict(), tmp_path / "hub", "tiny")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"tiny-{digest[:8]}.pth"
    target = ResNet(TINY.model_copy(update={"num_classes": 5}))
    with serve_folder(path.parent) as url:
        report = load_pretrained(target, url + path.name, tmp_path / "cache")
    assert report.mismatched == ["head.bias", "head.weight"]
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == len(source.state_dict()) - 2
    x = images()
    assert_close(target.eval().embed(x), source.eval().embed(x))  # the backbone arrived intact
    with serve_folder(path.parent) as url:  # same class count: the head is excluded by name
        same = ResNet(TINY)
        report = load_pretrained(same, url + path.name, tmp_path / "cache2", exclude=("head.",))
    assert report.missing == ["head.bias", "head.weight"] and report.mismatched == []
    assert not torch.equal(same.head.weight, source.head.weight)


def test_hub_load_reports_unexpected_keys_and_rejects_a_wrong_hash(tmp_path):
    source = tiny_resnet()
    frozen = freeze_batchnorm(copy.deepcopy(source))  # FrozenBatchNorm2d has no batch counter
    path = save_hub_checkpoint(source.state_dict(), tmp_path, "tiny")
    with serve_folder(tmp_path) as url:
        report = load_pretrained(frozen, url + path.name, tmp_path / "cache")
    assert report.unexpected and all(k.endswith("num_batches_tracked")
                                     for k in report.unexpected)
    forged = tmp_path / "tiny-00000000.pth"
    forged.write_bytes(path.read_bytes())
    with serve_folder(tmp_path) as url, pytest.raises(RuntimeError, match="invalid hash"):
        load_pretrained(frozen, url + forged.name, tmp_path / "cache")


@pytest.mark.parametrize("name", ["", "my-model", "a/b"])
def test_save_hub_checkpoint_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="name must be non-empty"):
        save_hub_checkpoint({}, tmp_path, name)


# ------------------------------------------------------------------ sklearn digits


def test_sklearn_digits_splits_are_disjoint_and_mnist_like():
    from sklearn.datasets import load_digits

    splits = {s: load_sklearn_digits(s) for s in DIGITS_SPLIT_SIZES}
    assert {s: len(d) for s, d in splits.items()} == DIGITS_SPLIT_SIZES
    assert sum(DIGITS_SPLIT_SIZES.values()) == len(load_digits().target)
    flat = torch.cat([d.images.flatten(1) for d in splits.values()])
    assert len(torch.unique(flat, dim=0)) > 0.99 * len(flat)  # (near-)duplicates only by chance
    train = splits["train"]
    assert train.images.shape == (997, 1, 28, 28) and train.labels.dtype == torch.int64
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0
    assert train.images[:, :, :4].abs().max() == 0  # the 4-pixel border of MNIST's 20x20 box
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    assert torch.equal(load_sklearn_digits("test").labels, splits["test"].labels)  # fixed split


def test_upsample_digits_centres_and_scales():
    ones = torch.ones(2, 1, 8, 8)
    out = upsample_digits(ones, size=12, digit_size=7)
    assert out.shape == (2, 1, 12, 12)
    expected = torch.zeros(2, 1, 12, 12)
    expected[:, :, 2:9, 2:9] = 1.0
    assert_close(out, expected)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert_close(upsample_digits(x, size=16, digit_size=16),
                 F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False))


@pytest.mark.parametrize(("x", "kwargs", "match"), [
    (torch.zeros(2, 3, 8, 8), {}, r"images must have shape \(N, 1, H, W\)"),
    (torch.zeros(2, 1, 8, 8), {"size": 10, "digit_size": 12}, "digit_size <= size"),
])
def test_upsample_digits_errors(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        upsample_digits(x, **kwargs)


def test_load_sklearn_digits_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        load_sklearn_digits("validation")


def test_seeded_fine_tune_is_reproducible():
    data = TensorDataset(images(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    weights = []
    for _ in range(2):
        seed_everything(5)
        model = ResNet(TINY)
        fine_tune(model, data, discriminative_param_groups(model, 1e-2, 0.5), steps=4,
                  batch_size=4, seed=2)
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key

"""Project 3: walk-forward folds, causal windows, fold-only statistics, ROC AUC, and no leakage."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import mannwhitneyu
from torch.testing import assert_close

from neuralarch.data.market import generate_market
from neuralarch.projects.market.engine import compute_features
from neuralarch.projects.market.hybrid import HybridConfig, HybridSignalNet
from neuralarch.projects.market.walk_forward import (
    Fold,
    WindowedSeries,
    fold_data,
    roc_auc,
    walk_forward_splits,
)
from neuralarch.repro import state_fingerprint
from neuralarch.train.loop import TrainConfig, fit


def random_series(T: int = 60, C: int = 3, lookback: int = 5, horizon: int = 2,
                  seed: int = 0) -> WindowedSeries:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(T, C, generator=g, dtype=torch.float64)
    targets = (torch.rand(T, generator=g) > 0.5).float()
    return WindowedSeries(features, targets, lookback=lookback, horizon=horizon)


# --------------------------------------------------------------------------- the splits


def test_splits_match_a_hand_made_layout():
    folds = walk_forward_splits(30, train=10, val=3, test=5, embargo=1)
    # fold 0: train 0-9 | gap 10 | val 11-13 | gap 14 | test 15-19; fold 1 is 5 samples later.
    assert folds == [
        Fold(0, range(0, 10), range(11, 14), range(15, 20), 1),
        Fold(1, range(0, 15), range(16, 19), range(20, 25), 1),
        Fold(2, range(0, 20), range(21, 24), range(25, 30), 1),
    ]
    rolling = walk_forward_splits(30, train=10, val=0, test=5, step=7, embargo=2,
                                  expanding=False)
    # a third fold would test samples 26-30, past the end: two folds
    assert [(f.train, f.val, f.test) for f in rolling] == [
        (range(0, 10), range(10, 10), range(12, 17)),
        (range(7, 17), range(17, 17), range(19, 24)),
    ]


@pytest.mark.parametrize("n,train,val,test,step,embargo,expanding", [
    (100, 20, 5, 10, None, 0, True),
    (257, 31, 0, 17, 20, 3, False),
    (500, 100, 25, 50, 75, 5, True),
    (64, 10, 4, 6, 6, 7, False),
])
def test_folds_are_ordered_embargoed_and_tile_the_future(n, train, val, test, step, embargo,
                                                         expanding):
    folds = walk_forward_splits(n, train, val, test, step=step, embargo=embargo,
                                expanding=expanding)
    step = test if step is None else step
    assert len(folds) == (n - train - val - test - embargo * (2 if val else 1)) // step + 1
    for k, fold in enumerate(folds):
        assert fold.index == k and fold.embargo == embargo
        assert len(fold.train) == (train + k * step if expanding else train)
        assert len(fold.val) == val and len(fold.test) == test
        assert fold.test.stop <= n
        # strictly in time order, with at least `embargo` samples between blocks
        assert fold.train.stop + embargo <= (fold.val.start if val else fold.test.start)
        if val:
            assert fold.val.stop + embargo <= fold.test.start
    for earlier, later in itertools.pairwise(folds):
        assert earlier.test.stop <= later.test.start  # test blocks never overlap
        assert later.test.start - earlier.test.start == step
        assert later.train.stop > earlier.train.stop  # each fold trains on more recent data


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_samples=0), "n_samples must be an int >= 1"),
    (dict(train=0), "train must be an int >= 1"),
    (dict(val=-1), "val must be an int >= 0"),
    (dict(test=0), "test must be an int >= 1"),
    (dict(test=2.5), "test must be an int"),
    (dict(embargo=-2), "embargo must be an int >= 0"),
    (dict(embargo=True), "embargo must be an int"),
    (dict(step=3), r"step \(3\) must be >= test \(5\)"),
    (dict(step=0), "step must be an int >= 1"),
    (dict(expanding=1), "expanding must be True or False"),
    (dict(n_samples=18), "= 19 samples do not fit in n_samples=18"),
])
def test_bad_split_arguments_raise(kwargs, match):
    args = dict(n_samples=100, train=10, val=2, test=5, embargo=1) | kwargs
    with pytest.raises(ValueError, match=match):
        walk_forward_splits(**args)


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("T,C,lookback,horizon", [(40, 3, 5, 1), (33, 1, 1, 4), (50, 7, 12, 3)])
def test_windows_equal_explicit_slices(T, C, lookback, horizon):
    series = random_series(T, C, lookback, horizon)
    assert series.n_samples == T - lookback - horizon + 1
    anchors = series.anchor_days
    assert anchors[0] == lookback - 1 and anchors[-1] + horizon == T - 1  # last target: last day
    rows = range(0, series.n_samples)
    x, y = series.inputs(rows), series.labels(rows)
    expected_x = torch.stack([series.features[t - lookback + 1:t + 1] for t in anchors.tolist()])
    expected_y = torch.stack([series.targets[t + horizon] for t in anchors.tolist()])
    assert x.shape == (series.n_samples, lookback, C)
    assert torch.equal(x, expected_x) and torch.equal(y, expected_y)
    mean, std = torch.randn(C, dtype=torch.float64), torch.rand(C, dtype=torch.float64) + 0.5
    assert_close(series.inputs(range(2, 6), mean, std), (expected_x[2:6] - mean) / std)


@pytest.mark.parametrize("features,targets,lookback,horizon,match", [
    (torch.randn(10), torch.zeros(10), 2, 1, "features must be a floating"),
    (torch.ones(10, 2, dtype=torch.int64), torch.zeros(10), 2, 1, "features must be a floating"),
    (torch.randn(10, 2), torch.zeros(9), 2, 1, r"targets must be a \(T,\) tensor with T=10"),
    (torch.randn(10, 2), [0.0] * 10, 2, 1, "targets must be a"),
    (torch.tensor([[1.0], [float("nan")], [0.0]]), torch.zeros(3), 1, 1, "must be finite"),
    (torch.randn(10, 2), torch.zeros(10), 0, 1, "lookback must be an int >= 1"),
    (torch.randn(10, 2), torch.zeros(10), 2, 0, "horizon must be an int >= 1"),
    (torch.randn(10, 2), torch.zeros(10), 8, 3, "no sample fits"),
])
def test_bad_series_raise(features, targets, lookback, horizon, match):
    with pytest.raises(ValueError, match=match):
        WindowedSeries(features, targets, lookback=lookback, horizon=horizon)


@pytest.mark.parametrize("rows", [range(0, 10, 2), range(-1, 3), range(5, 60), [0, 1]])
def test_bad_rows_raise(rows):
    series = random_series(T=40, lookback=5, horizon=2)  # 34 samples
    with pytest.raises(ValueError, match=r"rows must be a range with step 1 inside \[0, 34\]"):
        series.inputs(rows)
    with pytest.raises(ValueError, match="rows must be a range"):
        series.labels(rows)


@pytest.mark.parametrize("expanding", [True, False])
def test_fold_statistics_come_from_the_training_rows_only(expanding):
    series = random_series(T=120, C=4, lookback=6, horizon=2)
    fold = walk_forward_splits(series.n_samples, 40, 10, 20, embargo=2, expanding=expanding)[1]
    data = fold_data(series, fold)
    anchors = series.anchor_days.numpy()
    first, last = anchors[fold.train.start] - 5, anchors[fold.train.stop - 1]
    rows = series.features.numpy()[first:last + 1]  # every day a training input touches
    assert data.stats_days == range(first, last + 1)
    assert_close(data.mean, torch.from_numpy(rows.mean(0)))
    assert_close(data.std, torch.from_numpy(rows.std(0, ddof=1)))
    x, y = data.train.tensors
    assert_close(x, (series.inputs(fold.train) - data.mean) / data.std)
    assert torch.equal(y, series.labels(fold.train))
    assert len(data.val) == 10 and len(data.test) == 20
    assert torch.equal(data.test_days, series.anchor_days[fold.test.start:fold.test.stop])
    # the statistics never reach past the last training anchor, while val and test do
    assert last < anchors[fold.val.start] < anchors[fold.test.start]


def test_constant_channel_and_no_validation_block():
    features = torch.cat([torch.randn(50, 1), torch.full((50, 1), 3.0)], dim=1)
    series = WindowedSeries(features, torch.zeros(50), lookback=4, horizon=1)
    fold = walk_forward_splits(series.n_samples, 20, 0, 10, embargo=1)[0]
    data = fold_data(series, fold)
    assert data.val is None and data.std[1] == 1.0
    assert torch.equal(data.train.tensors[0][..., 1], torch.zeros(20, 4))


def test_fold_data_rejects_short_embargo_and_foreign_folds():
    series = random_series(T=80, lookback=5, horizon=3)
    short = walk_forward_splits(series.n_samples, 30, 5, 10, embargo=2)[0]
    with pytest.raises(ValueError, match=r"embargo \(2\) must be >= horizon \(3\)"):
        fold_data(series, short)
    too_long = walk_forward_splits(500, 30, 5, 100, embargo=3)[0]
    with pytest.raises(ValueError, match="the series has 73 samples"):
        fold_data(series, too_long)


def test_an_embargo_of_horizon_keeps_training_targets_before_the_next_block():
    series = random_series(T=200, lookback=10, horizon=5)
    for fold in walk_forward_splits(series.n_samples, 60, 15, 30, embargo=5):
        anchors = series.anchor_days
        last_train_target = anchors[fold.train.stop - 1] + series.horizon
        assert last_train_target < anchors[fold.val.start]  # a purged, embargoed boundary
        assert anchors[fold.val.stop - 1] + series.horizon < anchors[fold.test.start]
    leaky = walk_forward_splits(series.n_samples, 60, 0, 30, embargo=0)[0]
    overlap = series.anchor_days[leaky.train.stop - 1] + series.horizon
    assert overlap >= series.anchor_days[leaky.test.start]  # why embargo=0 is refused


# --------------------------------------------------------------------------- no look-ahead


def market_series(prices: torch.Tensor, regimes: torch.Tensor) -> tuple[WindowedSeries, int]:
    """The page's pipeline: engine features -> cross-asset summary -> windows of 20 days."""
    features = compute_features(prices, window=20)
    summary = torch.cat([features.values.mean(0), features.values.std(0)], dim=-1).float()
    series = WindowedSeries(summary, regimes[features.days].float(), lookback=20, horizon=1)
    return series, int(features.days[0])  # the original day of feature row 0


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], y)


def test_no_look_ahead_leakage_anywhere_in_the_pipeline():
    data = generate_market(n_assets=5, n_days=320, seed=4, dtype=torch.float64)
    series, offset = market_series(data.prices, data.regimes)
    fold = walk_forward_splits(series.n_samples, 150, 20, 40, embargo=1)[0]
    cut_row = int(series.anchor_days[fold.test.start]) + 15  # a day inside the test block
    cut_day = cut_row + offset  # the same day on the original time axis
    # Rewrite the future: every price after cut_day and every regime after it.
    g = torch.Generator().manual_seed(1)
    prices = data.prices.clone()
    prices[:, cut_day + 1:] *= torch.exp(0.3 * torch.randn(prices[:, cut_day + 1:].shape,
                                                           generator=g, dtype=prices.dtype))
    regimes = data.regimes.clone()
    regimes[cut_day + 1:] = 1 - regimes[cut_day + 1:]
    changed, _ = market_series(prices, regimes)
    a, b = fold_data(series, fold), fold_data(changed, fold)

    # 1. training inputs and targets, validation blocks, and the statistics are bit-identical
    for x, y in zip(a.train.tensors + a.val.tensors, b.train.tensors + b.val.tensors,
                    strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    assert a.stats_days.stop <= cut_row  # the statistics stop before the cut
    # 2. a model trained on the fold is bit-identical
    models = []
    for fd in (a, b):
        torch.manual_seed(0)
        model = HybridSignalNet(HybridConfig(conv_channels=4, hidden=4, mlp_hidden=4))
        fit(model, fd.train, fd.val, bce, lambda p: torch.optim.Adam(p, lr=1e-2),
            TrainConfig(epochs=2, batch_size=32, device="cpu"), progress=False)
        models.append(model.eval())
    assert state_fingerprint(models[0]) == state_fingerprint(models[1])
    # 3. its test predictions for anchor days <= cut are identical; later ones do change
    with torch.no_grad():
        pa, pb = (m(fd.test.tensors[0])[:, 0] for m, fd in zip(models, (a, b), strict=True))
    past = a.test_days <= cut_row
    assert past.sum() == 16 and torch.equal(pa[past], pb[past])
    assert not torch.equal(pa[~past], pb[~past])  # the perturbation is real
    assert not torch.equal(a.test.tensors[1], b.test.tensors[1])


def test_full_sample_normalisation_would_leak():
    """The negative control: statistics over all days change when only the future changes."""
    data = generate_market(n_assets=5, n_days=320, seed=4, dtype=torch.float64)
    series, _ = market_series(data.prices, data.regimes)
    future = series.features.clone()
    future[200:] *= 2.0
    leaky = [(f - f.mean(0)) / f.std(0) for f in (series.features, future)]
    assert not torch.equal(leaky[0][:150], leaky[1][:150])  # the past moved with the future
    fold = walk_forward_splits(series.n_samples, 100, 10, 20, embargo=1)[0]
    honest = [fold_data(WindowedSeries(f, series.targets, 20, 1), fold).train.tensors[0]
              for f in (series.features, future)]
    assert torch.equal(honest[0], honest[1])


# --------------------------------------------------------------------------- ROC AUC


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("n,levels,dtype", [(50, None, torch.float32), (200, 5, torch.float64),
                                            (31, 2, torch.float32), (400, None, torch.float64)])
def test_auc_equals_mann_whitney_and_pairwise_counting(n, levels, dtype):
    g = torch.Generator().manual_seed(n)
    labels = (torch.rand(n, generator=g) < 0.3).long()
    labels[:2] = torch.tensor([0, 1])  # both classes present
    scores = labels * 0.7 + torch.randn(n, generator=g)
    if levels is not None:  # many ties
        scores = torch.round(scores * levels / 3)
    scores = scores.to(dtype)
    auc = roc_auc(scores, labels)
    pos, neg = scores[labels == 1].double().numpy(), scores[labels == 0].double().numpy()
    reference = mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))
    assert auc == pytest.approx(reference, abs=1e-12)
    assert auc == pytest.approx(brute_force_auc(scores.double().numpy(), labels.numpy()),
                                abs=1e-12)


def test_auc_edge_values():
    labels = torch.tensor([0, 0, 1, 1, 0, 1.0])
    assert roc_auc(labels, labels) == 1.0
    assert roc_auc(-labels, labels) == 0.0
    assert roc_auc(torch.zeros(6), labels) == 0.5  # a constant score ranks nothing


@pytest.mark.parametrize("scores,labels,match", [
    (torch.zeros(3, 1), torch.zeros(3), "scores must be a 1-D tensor"),
    ([0.1, 0.2], torch.zeros(2), "scores must be a 1-D tensor"),
    (torch.zeros(3), torch.zeros(4), "labels must be a tensor with the shape"),
    (torch.tensor([0.0, float("inf")]), torch.tensor([0, 1]), "scores must be finite"),
    (torch.zeros(3), torch.tensor([0, 2, 1]), "labels must be 0 or 1"),
    (torch.zeros(3), torch.ones(3), "needs both classes; got 3 positives and 0"),
])
def test_auc_bad_inputs(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        roc_auc(scores, labels)

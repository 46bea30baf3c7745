"""Walk-forward validation for time series: causal windows, embargoed folds, fold-only statistics.

Introduced in Project 3 (``m03-l06``). A day-indexed feature matrix is cut into windows whose
input ends on an *anchor* day ``t`` and whose target lies ``horizon`` days later. Folds train on
the past, validate and test on the future, leave an embargo of at least ``horizon`` samples
between blocks so that no training target falls inside a later block, and normalise every block
with statistics of the training rows only. Nothing from after a fold's training period can reach
its training inputs, targets or statistics; ``code/tests/test_walk_forward.py`` proves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from neuralarch.projects.market.engine import rolling_windows


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: sample indices of its train, validation and test blocks."""

    index: int
    train: range
    val: range  # empty when the splits were made with val=0
    test: range
    embargo: int  # samples left out between consecutive blocks


def walk_forward_splits(n_samples: int, train: int, val: int, test: int, step: int | None = None,
                        embargo: int = 0, expanding: bool = True) -> list[Fold]:
    """Return walk-forward folds laid out as ``[train][embargo][val][embargo][test]``.

    Samples are indexed in time order. Fold ``k`` moves the layout ``k * step`` samples forward
    (``step`` defaults to ``test``, so the test blocks tile the future without overlap).
    With ``expanding=True`` every training block starts at sample 0 and grows; otherwise it
    keeps ``train`` samples and rolls forward.
    Folds are made while the test block fits inside ``n_samples``.
    """
    _check_int("n_samples", n_samples, 1)
    _check_int("train", train, 1)
    _check_int("val", val, 0)
    _check_int("test", test, 1)
    _check_int("embargo", embargo, 0)
    step = test if step is None else _check_int("step", step, 1)
    if step < test:
        raise ValueError(f"step ({step}) must be >= test ({test}), otherwise consecutive test "
                         f"blocks overlap and one day is scored twice")
    if not isinstance(expanding, bool):
        raise ValueError(f"expanding must be True or False, got {expanding!r}")
    gaps = embargo * (2 if val else 1)  # one embargo before each later block
    first_length = train + val + test + gaps
    if first_length > n_samples:
        raise ValueError(f"train + val + test + embargoes = {first_length} samples do not fit in "
                         f"n_samples={n_samples}; shorten the blocks or the embargo")
    folds = []
    for k in range((n_samples - first_length) // step + 1):
        train_end = train + k * step
        val_start = train_end + embargo
        test_start = val_start + val + (embargo if val else 0)
        folds.append(Fold(
            index=k,
            train=range(0 if expanding else k * step, train_end),
            val=range(val_start, val_start + val) if val else range(train_end, train_end),
            test=range(test_start, test_start + test),
            embargo=embargo,
        ))
    return folds


@dataclass(frozen=True)
class WindowedSeries:
    """Daily features and targets cut into causal samples: inputs ``t-L+1 .. t``, target ``t+h``.

    Sample ``i`` is anchored on day ``t_i = lookback - 1 + i``; its input is the ``(lookback, C)``
    block of ``features`` ending on ``t_i`` and its target is ``targets[t_i + horizon]``.
    """

    features: torch.Tensor  # (T, C) one row per day, each computed from that day and earlier
    targets: torch.Tensor  # (T,) the quantity to predict, dated on the day it becomes known
    lookback: int  # L: days of history in one input
    horizon: int  # h: days between the last input day and the target's day

    def __post_init__(self) -> None:
        x, y = self.features, self.targets
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
            raise ValueError(f"features must be a floating (T, C) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
        if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
            raise ValueError(f"targets must be a (T,) tensor with T={x.shape[0]} like features, "
                             f"got {tuple(y.shape) if isinstance(y, torch.Tensor) else type(y)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("features must be finite; drop the warm-up rows or fill gaps first")
        _check_int("lookback", self.lookback, 1)
        _check_int("horizon", self.horizon, 1)
        if self.lookback + self.horizon > x.shape[0]:
            raise ValueError(f"lookback + horizon = {self.lookback + self.horizon} exceeds the "
                             f"{x.shape[0]} days of data: no sample fits")

    @property
    def n_samples(self) -> int:
        """How many anchor days have a full input window and a target inside the data."""
        return self.features.shape[0] - self.lookback - self.horizon + 1

    @property
    def anchor_days(self) -> torch.Tensor:
        """(n_samples,) the last input day ``t_i`` of every sample."""
        return torch.arange(self.lookback - 1, self.lookback - 1 + self.n_samples)

    def _check_rows(self, rows: range) -> range:
        if not isinstance(rows, range) or rows.step != 1 or not (
                0 <= rows.start <= rows.stop <= self.n_samples):
            raise ValueError(f"rows must be a range with step 1 inside [0, {self.n_samples}], "
                             f"got {rows!r}")
        return rows

    def inputs(self, rows: range, mean: torch.Tensor | None = None,
               std: torch.Tensor | None = None) -> torch.Tensor:
        """The (len(rows), L, C) input windows of samples ``rows``, optionally standardised."""
        self._check_rows(rows)
        windows = rolling_windows(self.features[None], self.lookback)[0]  # (N, C, L) view
        x = windows[rows.start:rows.stop].transpose(1, 2)  # (n, L, C)
        if mean is not None and std is not None:
            x = (x - mean) / std  # broadcasts (C,) over (n, L, C); makes a copy
        return x

    def labels(self, rows: range) -> torch.Tensor:
        """The (len(rows),) targets of samples ``rows``: ``targets[t_i + horizon]``."""
        self._check_rows(rows)
        days = self.anchor_days[rows.start:rows.stop] + self.horizon
        return self.targets[days]


@dataclass(frozen=True)
class FoldData:
    """One fold, ready for training: standardised datasets and the training-only statistics."""

    fold: Fold
    train: TensorDataset  # (x (n, L, C), y (n,)) pairs
    val: TensorDataset | None
    test: TensorDataset
    mean: torch.Tensor  # (C,) per-channel mean of the training rows
    std: torch.Tensor  # (C,) per-channel standard deviation of the training rows
    stats_days: range  # the feature rows (days) the statistics were computed from
    test_days: torch.Tensor  # (n_test,) anchor day of every test sample


def fold_data(series: WindowedSeries, fold: Fold) -> FoldData:
    """Build a fold's datasets, standardising all of them with statistics of its training rows."""
    if fold.embargo < series.horizon:
        raise ValueError(f"fold.embargo ({fold.embargo}) must be >= horizon ({series.horizon}): "
                         f"otherwise the last training targets are dated inside the next block")
    last = max(fold.train.stop, fold.val.stop, fold.test.stop)
    if len(fold.train) == 0 or last > series.n_samples:
        raise ValueError(f"fold {fold.index} needs samples up to {last} and a non-empty training "
                         f"block, but the series has {series.n_samples} samples")
    anchors = series.anchor_days
    first_day = int(anchors[fold.train.start]) - series.lookback + 1  # first row a train input sees
    last_day = int(anchors[fold.train.stop - 1])  # the last training anchor day
    rows = series.features[first_day:last_day + 1]  # (n_rows, C): the training inputs' days
    mean = rows.mean(0)  # (C,)
    std = rows.std(0)  # (C,)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel becomes all zeros

    def dataset(block: range) -> TensorDataset:
        return TensorDataset(series.inputs(block, mean, std), series.labels(block))

    return FoldData(
        fold=fold,
        train=dataset(fold.train),
        val=dataset(fold.val) if len(fold.val) else None,
        test=dataset(fold.test),
        mean=mean,
        std=std,
        stats_days=range(first_day, last_day + 1),
        test_days=anchors[fold.test.start:fold.test.stop],
    )


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Computed from ranks (the Mann-Whitney U statistic), with ties counted as one half, so a
    constant score gives exactly 0.5.
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
        raise ValueError(f"scores must be a 1-D tensor, got "
                         f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else scores!r}")
    if not isinstance(labels, torch.Tensor) or labels.shape != scores.shape:
        raise ValueError(f"labels must be a tensor with the shape of scores {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores.double()).all()):
        raise ValueError("scores must be finite")
    positive = labels == 1
    if not bool((positive | (labels == 0)).all()):
        raise ValueError("labels must be 0 or 1")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes; got {n_pos} positives and {n_neg} "
                         f"negatives")
    order = scores.double().argsort()
    _, group, counts = torch.unique_consecutive(scores.double()[order], return_inverse=True,
                                                return_counts=True)
    last_rank = counts.cumsum(0).double()  # 1-based rank of the last member of each tie group
    mean_rank = last_rank - (counts - 1) / 2  # average rank of each tie group
    ranks = torch.empty_like(mean_rank[group])
    ranks[order] = mean_rank[group]  # (N,) rank of every score, ties averaged
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2  # pairs where a positive wins
    return float(u / (n_pos * n_neg))

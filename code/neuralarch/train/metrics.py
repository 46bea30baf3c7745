"""Corpus metrics: accumulate batches with ``update``, finalise over all of them with ``compute``.

Introduced alongside the training loop (``neuralarch.train.loop.evaluate``). Averaging a metric
over batches is right only when the metric is a mean over examples *and* every batch counts as
many examples as it holds: accuracy and loss are, once each batch is weighted by its size.
Perplexity, F1, ROC-AUC and average precision are not means of per-batch values. Each metric here
keeps what it needs to compute the corpus value exactly: running sums of sufficient statistics
(NLL and token counts, confusion counts) or, for the ranking metrics, every score seen.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

BatchFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]


class CorpusMetric(ABC):
    """A metric of a whole data set: ``update`` per batch, ``compute`` once, ``reset`` to reuse."""

    def __init__(self) -> None:
        self.reset()

    @abstractmethod
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of model outputs and targets to the accumulated statistics."""

    @abstractmethod
    def compute(self) -> float:
        """Return the metric over every batch seen since the last :meth:`reset`."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every batch seen so far."""

    def _empty_error(self) -> ValueError:
        return ValueError(f"{type(self).__name__}.compute() was called before any update(); "
                          f"pass at least one non-empty batch to update() first")


class Mean(CorpusMetric):
    """Turn a per-batch *mean* ``fn(output, target)`` into its exact corpus mean.

    Each batch is weighted by its number of examples, ``target.shape[0]``, so the result equals
    ``fn`` on all examples at once for metrics that are means over examples (accuracy, a
    mean-reduced loss) however the data are split into batches.
    """

    def __init__(self, fn: BatchFn) -> None:
        if not callable(fn):
            raise ValueError(f"Mean needs a function fn(output, target), got {type(fn).__name__}")
        self.fn = fn
        super().__init__()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if target.dim() == 0:
            raise ValueError("Mean weights a batch by target.shape[0], but the target is a "
                             "0-d tensor; pass a batch of targets with a leading batch dimension")
        value = self.fn(output, target)
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ValueError(f"the metric function must return one number (a batch mean), got "
                             f"a tensor of shape {tuple(value.shape)}")
        n = target.shape[0]
        self.total += float(value) * n
        self.count += n

    def compute(self) -> float:
        if self.count == 0:
            raise self._empty_error()
        return self.total / self.count


class Accuracy(CorpusMetric):
    """Fraction of correct predictions: scores (..., C) are arg-maxed; labels (...) used as is."""

    def reset(self) -> None:
        self.correct, self.count = 0, 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        predicted = _predicted_labels(output, target, "Accuracy")
        self.correct += int((predicted == target).sum())
        self.count += target.numel()

    def compute(self) -> float:
        if self.count == 0:
            raise self._empty_error()
        return self.correct / self.count


class Perplexity(CorpusMetric):
    """Token-weighted perplexity, exp(total NLL / total tokens), skipping ``ignore_index`` tokens.

    ``output`` holds logits (B, T, V) or (N, V); ``target`` holds token ids (B, T) or (N,).
    The mean of per-batch perplexities is *not* this number: it weights a batch of 3 tokens as
    much as one of 3,000, and averages after the (convex) exponential.
    """

    def __init__(self, ignore_index: int = -100) -> None:
        self.ignore_index = ignore_index
        super().__init__()

    def reset(self) -> None:
        self.nll_sum, self.tokens = 0.0, 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if output.dim() not in (2, 3) or output.shape[:-1] != target.shape:
            raise ValueError(f"Perplexity needs logits (B, T, V) with targets (B, T), or (N, V) "
                             f"with (N,); got logits {tuple(output.shape)} and targets "
                             f"{tuple(target.shape)}")
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise ValueError(f"Perplexity needs integer token ids as targets, got {target.dtype}")
        logits = output.reshape(-1, output.shape[-1])  # (N, V)
        tokens = target.reshape(-1)  # (N,)
        nll = F.cross_entropy(logits.float(), tokens, ignore_index=self.ignore_index,
                              reduction="sum")
        self.nll_sum += float(nll)
        self.tokens += int((tokens != self.ignore_index).sum())

    def compute(self) -> float:
        if self.tokens == 0:
            raise ValueError(f"Perplexity has seen no tokens other than ignore_index="
                             f"{self.ignore_index}; call update() with at least one real token")
        return math.exp(self.nll_sum / self.tokens)


class F1(CorpusMetric):
    """F1 from confusion counts summed over batches: binary (of ``pos_label``) or macro.

    ``output`` is scores (N, C) (arg-maxed), integer labels (N,), or for binary F1 one logit per
    example (N,), positive above ``threshold`` (use 0.5 for probabilities). Macro F1 averages
    over the classes that occur in the targets or the predictions, as scikit-learn does by
    default; a class with no true positive, false positive or false negative never enters.
    """

    def __init__(self, average: Literal["binary", "macro"] = "binary", pos_label: int = 1,
                 threshold: float = 0.0) -> None:
        if average not in ("binary", "macro"):
            raise ValueError(f"F1 average must be 'binary' or 'macro', got {average!r}")
        if average == "binary" and pos_label not in (0, 1):
            raise ValueError(f"binary F1 pos_label must be 0 or 1, got {pos_label!r}")
        self.average, self.pos_label, self.threshold = average, pos_label, threshold
        super().__init__()

    def reset(self) -> None:
        # Per-class counts; grown whenever a larger label appears.
        self.tp = torch.zeros(0, dtype=torch.long)
        self.fp = torch.zeros(0, dtype=torch.long)
        self.fn = torch.zeros(0, dtype=torch.long)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if target.dim() != 1:
            raise ValueError(f"F1 needs targets of shape (N,), got {tuple(target.shape)}")
        if output.dim() == 1 and output.dtype.is_floating_point:
            if self.average != "binary":
                raise ValueError("macro F1 needs scores (N, C) or integer labels (N,), got one "
                                 "float score per example")
            predicted = (output > self.threshold).long()
        else:
            predicted = _predicted_labels(output, target, "F1")
        predicted, target = predicted.long().cpu(), target.long().cpu()
        labels = torch.cat([target, predicted])  # (2N,)
        if labels.numel() == 0:
            return
        if int(labels.min()) < 0:
            raise ValueError("F1 labels must be non-negative class indices")
        if self.average == "binary":
            extra = set(labels.unique().tolist()) - {0, 1}
            if extra:
                raise ValueError(f"binary F1 needs labels 0 and 1, got also {sorted(extra)}; "
                                 f"use F1(average='macro') for more classes")
        size = max(len(self.tp), int(labels.max()) + 1)
        hit = predicted == target
        self.tp = _grow(self.tp, size) + torch.bincount(target[hit], minlength=size)
        self.fp = _grow(self.fp, size) + torch.bincount(predicted[~hit], minlength=size)
        self.fn = _grow(self.fn, size) + torch.bincount(target[~hit], minlength=size)

    def compute(self) -> float:
        support = self.tp + self.fp + self.fn  # zero exactly for classes never seen
        if int(support.sum()) == 0:
            raise self._empty_error()
        tp, wrong = self.tp.double(), (self.fp + self.fn).double()
        f1 = 2 * tp / (2 * tp + wrong).clamp(min=1)  # 0 when a class has no true positive
        if self.average == "binary":
            return float(f1[self.pos_label]) if self.pos_label < len(f1) else 0.0
        return float(f1[support > 0].mean())


class _StoredScores(CorpusMetric):
    """Keep every binary score and label; the ranking metrics need them all at once."""

    def reset(self) -> None:
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if output.dim() == 2 and output.shape[1] == 1:
            output = output[:, 0]  # (N, 1) -> (N,)
        if output.dim() != 1 or output.shape != target.shape:
            raise ValueError(f"{type(self).__name__} needs one score per example, (N,) or "
                             f"(N, 1), and targets (N,); got {tuple(output.shape)} and "
                             f"{tuple(target.shape)}")
        if not bool(((target == 0) | (target == 1)).all()):
            raise ValueError(f"{type(self).__name__} needs binary targets (0 or 1)")
        if bool(torch.isnan(output.float()).any()):
            raise ValueError(f"{type(self).__name__} got NaN scores")
        self.scores.append(output.detach().double().cpu())
        self.labels.append(target.detach().double().cpu())

    def _curve_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """True and false positives at each distinct threshold, highest threshold first."""
        if sum(len(s) for s in self.scores) == 0:
            raise self._empty_error()
        scores, labels = torch.cat(self.scores), torch.cat(self.labels)  # (N,) (N,)
        positives = int(labels.sum())
        if positives in (0, len(labels)):
            raise ValueError(f"{type(self).__name__} is undefined when the targets hold only "
                             f"one class ({len(labels)} examples, {positives} positive)")
        order = torch.argsort(scores, descending=True, stable=True)
        scores, labels = scores[order], labels[order]
        # Tied scores form one threshold: keep only the last index of each run of equal scores,
        # so the curve jumps diagonally across a tie instead of ordering tied examples.
        last_of_tie = torch.ones_like(scores, dtype=torch.bool)
        last_of_tie[:-1] = scores[1:] != scores[:-1]
        tps = torch.cumsum(labels, 0)[last_of_tie]  # (K,) K distinct scores
        fps = torch.cumsum(1 - labels, 0)[last_of_tie]  # (K,)
        return tps, fps


class ROCAUC(_StoredScores):
    """Area under the ROC curve of binary scores, ties counted as half (trapezoid rule)."""

    def compute(self) -> float:
        tps, fps = self._curve_counts()
        zero = torch.zeros(1, dtype=tps.dtype)
        tpr = torch.cat([zero, tps / tps[-1]])  # (K+1,) the curve starts at (0, 0)
        fpr = torch.cat([zero, fps / fps[-1]])
        return float(torch.trapezoid(tpr, fpr))


class PRAUC(_StoredScores):
    """Average precision: sum over thresholds of (recall gained) x (precision there).

    A step-wise area under the precision-recall curve without interpolation, the definition of
    scikit-learn's ``average_precision_score``.
    """

    def compute(self) -> float:
        tps, fps = self._curve_counts()
        precision = tps / (tps + fps)  # (K,)
        recall = tps / tps[-1]
        recall_gain = torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype))
        return float((recall_gain * precision).sum())


def as_corpus_metric(metric: CorpusMetric | BatchFn) -> CorpusMetric:
    """Return ``metric`` reset if it is a :class:`CorpusMetric`, else wrap the function in
    :class:`Mean`."""
    if isinstance(metric, CorpusMetric):
        metric.reset()
        return metric
    if callable(metric):
        return Mean(metric)
    raise ValueError(f"a metric must be a CorpusMetric or a function fn(output, target), got "
                     f"{type(metric).__name__}")


def _predicted_labels(output: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """Labels (...) from scores (..., C) by arg-max, or integer labels already shaped like the
    target."""
    if output.shape == target.shape and not output.dtype.is_floating_point:
        return output
    if output.dim() == target.dim() + 1 and output.shape[:-1] == target.shape:
        return output.argmax(dim=-1)
    raise ValueError(f"{name} needs scores (..., C) with targets (...) or integer labels shaped "
                     f"like the targets; got output {tuple(output.shape)} ({output.dtype}) and "
                     f"targets {tuple(target.shape)}")


def _grow(counts: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a per-class count vector with zeros up to ``size`` classes."""
    return F.pad(counts, (0, size - len(counts)))

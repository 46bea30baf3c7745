"""Corpus metrics: any batch split gives the all-at-once value, which matches the references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from torch import nn
from torch.testing import assert_close
from torch.utils.data import TensorDataset

from neuralarch.train.loop import evaluate
from neuralarch.train.metrics import (
    F1,
    PRAUC,
    ROCAUC,
    Accuracy,
    CorpusMetric,
    Mean,
    Perplexity,
    as_corpus_metric,
)

N = 23
SPLITS = {  # batch sizes summing to N: whole, all size 1, very unequal, even-ish
    "whole": [N],
    "ones": [1] * N,
    "1-21-1": [1, 21, 1],
    "5-5-5-8": [5, 5, 5, 8],
    "22-1": [22, 1],
}


def accumulate(metric: CorpusMetric, output: torch.Tensor, target: torch.Tensor,
               sizes: list[int]) -> float:
    """Feed ``output`` and ``target`` to ``metric`` in batches of ``sizes`` along dim 0."""
    metric.reset()
    for out, tgt in zip(output.split(sizes), target.split(sizes), strict=True):
        metric.update(out, tgt)
    return metric.compute()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_mean_weights_batches_by_size(sizes):
    logits, y = torch.randn(N, 4, generator=gen(0)), torch.randint(0, 4, (N,), generator=gen(1))
    loss = accumulate(Mean(F.cross_entropy), logits, y, sizes)
    assert_close(loss, F.cross_entropy(logits, y).item(), rtol=1e-6, atol=1e-7)
    accuracy = accumulate(Mean(lambda o, t: (o.argmax(1) == t).float().mean()), logits, y, sizes)
    assert_close(accuracy, (logits.argmax(1) == y).float().mean().item())


@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_accuracy_from_scores_and_labels(sizes):
    logits = torch.randn(N, 3, 5, generator=gen(2))  # (N, T, C)
    y = torch.randint(0, 5, (N, 3), generator=gen(3))  # (N, T)
    expected = (logits.argmax(-1) == y).double().mean().item()
    assert accumulate(Accuracy(), logits, y, sizes) == pytest.approx(expected, abs=1e-12)
    assert accumulate(Accuracy(), logits.argmax(-1), y, sizes) == pytest.approx(expected, abs=1e-12)


def padded_tokens(seed: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, T, V) and targets (N, T) whose real lengths range from 1 to T tokens."""
    g = gen(seed)
    logits = 2 * torch.randn(N, 12, 7, generator=g)
    target = torch.randint(0, 7, (N, 12), generator=g)
    lengths = torch.randint(1, 13, (N,), generator=g)
    lengths[:3] = torch.tensor([1, 12, 2])
    target[torch.arange(12) >= lengths[:, None]] = ignore_index  # right padding
    return logits, target


@pytest.mark.parametrize("ignore_index", [-100, 0])
@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_perplexity_is_token_weighted(sizes, ignore_index):
    logits, target = padded_tokens(4, ignore_index)
    nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=ignore_index)
    expected = math.exp(nll.item())
    assert_close(accumulate(Perplexity(ignore_index), logits, target, sizes), expected,
                 rtol=1e-5, atol=0)
    flat = Perplexity(ignore_index)  # the (N, V) form gives the same number
    assert_close(accumulate(flat, logits.reshape(-1, 7), target.reshape(-1), [N * 12]),
                 expected, rtol=1e-5, atol=0)


def naive_vs_corpus_perplexity() -> tuple[float, float, float]:
    """One badly predicted token in a batch of its own, then 99 well predicted tokens."""
    vocab = 10
    hard = torch.full((1, 1, vocab), 0.0)
    hard[0, 0, 0] = 5.0  # confident in token 0; the target is token 1
    easy = torch.full((1, 99, vocab), 0.0)
    easy[0, :, 2] = 5.0  # confident and right
    batches = [(hard, torch.tensor([[1]])), (easy, torch.full((1, 99), 2))]
    metric = Perplexity()
    per_batch = []
    for logits, target in batches:
        metric.update(logits, target)
        per_batch.append(math.exp(F.cross_entropy(logits[0], target[0]).item()))
    logits = torch.cat([hard, easy], dim=1)  # (1, 100, V) all tokens at once
    target = torch.cat([b[1] for b in batches], dim=1)
    reference = math.exp(F.cross_entropy(logits[0], target[0]).item())
    return metric.compute(), reference, sum(per_batch) / len(per_batch)


def test_perplexity_differs_from_the_mean_of_batch_perplexities():
    corpus, reference, naive = naive_vs_corpus_perplexity()
    assert_close(corpus, reference, rtol=1e-6, atol=0)
    assert corpus < 1.2  # ~1.115: 99 of the 100 tokens are easy
    assert naive > 50  # ~79.2: the batch of the one hard token (ppl ~158) counts half


BINARY_OUTPUTS = {
    "scores": lambda logits: logits,
    "labels": lambda logits: logits.argmax(1),
    "one-logit": lambda logits: logits[:, 1] - logits[:, 0],
}


@pytest.mark.parametrize("form", BINARY_OUTPUTS.keys())
@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_binary_f1_matches_sklearn(sizes, form):
    logits, y = torch.randn(N, 2, generator=gen(5)), torch.randint(0, 2, (N,), generator=gen(6))
    predicted = logits.argmax(1)
    output = BINARY_OUTPUTS[form](logits)
    for pos_label in (1, 0):
        expected = f1_score(y.numpy(), predicted.numpy(), pos_label=pos_label)
        assert accumulate(F1(pos_label=pos_label), output, y, sizes) == pytest.approx(expected)


@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
def test_macro_f1_matches_sklearn_with_absent_and_never_predicted_classes(sizes):
    y = torch.randint(0, 5, (N,), generator=gen(7))
    y[y == 3] = 4  # class 3 never occurs in the targets
    predicted = y.clone()
    flip = torch.rand(N, generator=gen(8)) < 0.5
    predicted[flip] = torch.randint(0, 4, (N,), generator=gen(9))[flip]  # class 4 never predicted
    predicted[0], y[0] = 6, 1  # class 6 predicted once and never true; class 5 never seen
    expected = f1_score(y.numpy(), predicted.numpy(), average="macro")
    assert accumulate(F1("macro"), predicted, y, sizes) == pytest.approx(expected)
    scores = F.one_hot(predicted, 7).float()  # (N, C) scores give the same predictions
    assert accumulate(F1("macro"), scores, y, sizes) == pytest.approx(expected)


def test_binary_f1_with_no_positive_prediction_or_target_is_zero():
    metric = F1()
    metric.update(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    assert metric.compute() == 0.0
    assert f1_score([0, 0, 0, 0], [0, 0, 0, 0], zero_division=0) == 0.0


def ranking_data(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (N,) and binary labels (N,): continuous, heavily tied, or imbalanced."""
    g = gen(10)
    n = 200
    labels = (torch.rand(n, generator=g) < (0.05 if kind == "imbalanced" else 0.4)).long()
    scores = torch.randn(n, generator=g) + 0.8 * labels
    if kind in ("ties", "imbalanced"):
        scores = (scores * 2).round() / 2  # ~12 distinct values: many ties across classes
    if kind == "imbalanced":
        labels[:2] = 1  # at least two positives
    return scores, labels


RANKING_SPLITS = {"whole": [200], "1-198-1": [1, 198, 1], "ones": [1] * 200,
                  "uneven": [7, 50, 3, 100, 40]}


@pytest.mark.parametrize("kind", ["continuous", "ties", "imbalanced"])
@pytest.mark.parametrize("sizes", RANKING_SPLITS.values(), ids=RANKING_SPLITS.keys())
def test_roc_auc_and_average_precision_match_sklearn(sizes, kind):
    scores, labels = ranking_data(kind)
    if kind != "continuous":
        assert len(scores.unique()) < 20
    assert_close(accumulate(ROCAUC(), scores, labels, sizes),
                 roc_auc_score(labels.numpy(), scores.numpy()), rtol=1e-12, atol=1e-12)
    assert_close(accumulate(PRAUC(), scores[:, None], labels, sizes),  # (N, 1) also accepted
                 average_precision_score(labels.numpy(), scores.numpy()), rtol=1e-12, atol=1e-12)


def test_ties_count_as_half_a_correct_ranking():
    scores, labels = torch.tensor([0.5, 0.5, 0.5, 0.5]), torch.tensor([0, 1, 0, 1])
    metric = ROCAUC()
    metric.update(scores, labels)
    assert metric.compute() == 0.5
    metric = PRAUC()
    metric.update(scores, labels)
    assert metric.compute() == 0.5  # one threshold: precision 1/2 at recall 1


def test_reset_forgets_earlier_batches():
    metric = Accuracy()
    metric.update(torch.tensor([0, 0]), torch.tensor([1, 1]))
    metric.reset()
    metric.update(torch.tensor([1]), torch.tensor([1]))
    assert metric.compute() == 1.0
    assert as_corpus_metric(metric) is metric
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()  # as_corpus_metric reset it


@pytest.mark.parametrize("metric", [Mean(F.cross_entropy), Accuracy(), Perplexity(), F1(),
                                    F1("macro"), ROCAUC(), PRAUC()],
                         ids=lambda m: type(m).__name__)
def test_compute_before_update_raises(metric):
    with pytest.raises(ValueError, match=r"no tokens|before any update"):
        metric.compute()


BAD_INPUTS = [
    (Mean(lambda o, t: o), torch.zeros(3), torch.zeros(3), "must return one number"),
    (Mean(F.cross_entropy), torch.zeros(1, 2), torch.tensor(1), "0-d tensor"),
    (Accuracy(), torch.zeros(3, 4), torch.zeros(4, dtype=torch.long), "needs scores"),
    (Perplexity(), torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), "needs logits"),
    (Perplexity(), torch.zeros(3, 5), torch.zeros(3), "integer token ids"),
    (F1(), torch.tensor([0, 2]), torch.tensor([0, 1]), "binary F1 needs labels 0 and 1"),
    (F1("macro"), torch.tensor([0, -1]), torch.tensor([0, 1]), "non-negative"),
    (F1("macro"), torch.zeros(3), torch.zeros(3, dtype=torch.long), "macro F1 needs scores"),
    (F1(), torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.long), r"targets of shape \(N,\)"),
    (ROCAUC(), torch.zeros(3, 2), torch.zeros(3), "one score per example"),
    (ROCAUC(), torch.zeros(3), torch.tensor([0, 1, 2]), "binary targets"),
    (PRAUC(), torch.tensor([0.0, float("nan")]), torch.tensor([0, 1]), "NaN"),
]


@pytest.mark.parametrize(("metric", "output", "target", "message"), BAD_INPUTS,
                         ids=[b[3] for b in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(metric, output, target, message):
    with pytest.raises(ValueError, match=message):
        metric.update(output, target)


def test_bad_settings_and_undefined_values_raise():
    with pytest.raises(ValueError, match="'binary' or 'macro'"):
        F1("micro")
    with pytest.raises(ValueError, match="pos_label must be 0 or 1"):
        F1(pos_label=2)
    with pytest.raises(ValueError, match="Mean needs a function"):
        Mean(3)
    with pytest.raises(ValueError, match="CorpusMetric or a function"):
        as_corpus_metric(3)
    metric = ROCAUC()
    metric.update(torch.randn(5), torch.ones(5))
    with pytest.raises(ValueError, match="only one class"):
        metric.compute()
    metric = Perplexity()
    metric.update(torch.randn(2, 3), torch.tensor([-100, -100]))
    with pytest.raises(ValueError, match="no tokens"):
        metric.compute()
    metric = F1("macro")  # an empty batch adds nothing
    metric.update(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()


class TinyLM(nn.Module):
    """Embedding -> linear: logits (B, T, V) for token ids (B, T)."""

    def __init__(self, vocab: int = 9) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(vocab, 8), nn.Linear(8, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, T, V)


def test_evaluate_finalises_perplexity_over_the_whole_dataset():
    g = gen(11)
    x = torch.randint(0, 9, (10, 16), generator=g)
    y = torch.randint(0, 9, (10, 16), generator=g)
    lengths = torch.tensor([16, 1, 2, 16, 3, 1, 8, 16, 1, 5])  # very unequal token counts
    y[torch.arange(16) >= lengths[:, None]] = -100
    model = TinyLM()
    loss_fn = lambda out, tgt: F.cross_entropy(out.transpose(1, 2), tgt)  # noqa: E731
    metric = Perplexity()
    scores = evaluate(model, TensorDataset(x, y), loss_fn, {"ppl": metric}, batch_size=3)
    with torch.no_grad():
        expected = math.exp(loss_fn(model(x), y).item())
    assert_close(scores["ppl"], expected, rtol=1e-5, atol=0)
    # The loss, a per-batch token mean weighted by sequences, is not the token mean.
    assert abs(math.exp(scores["loss"]) - expected) > 1e-3
    again = evaluate(model, TensorDataset(x, y), loss_fn, {"ppl": metric}, batch_size=4)
    assert_close(again["ppl"], scores["ppl"], rtol=1e-6, atol=0)  # reset between calls


def test_evaluate_finalises_ranking_and_f1_metrics():
    g = gen(12)
    x = torch.randn(47, 5, generator=g)
    y = (x[:, 0] + torch.randn(47, generator=g) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 1), nn.Flatten(0))  # (B,) one logit per example
    model.train()
    metrics = {"auc": ROCAUC(), "ap": PRAUC(), "f1": F1(), "plain": lambda o, t: o.mean()}
    loss_fn = lambda out, tgt: F.binary_cross_entropy_with_logits(out, tgt.float())  # noqa: E731
    scores = evaluate(model, TensorDataset(x, y), loss_fn, metrics, batch_size=10)
    assert model.training
    with torch.no_grad():
        logits = model(x)
    assert_close(scores["auc"], roc_auc_score(y.numpy(), logits.numpy()), rtol=1e-12, atol=0)
    assert_close(scores["ap"], average_precision_score(y.numpy(), logits.numpy()),
                 rtol=1e-12, atol=0)
    assert scores["f1"] == pytest.approx(f1_score(y.numpy(), (logits > 0).long().numpy()))
    assert_close(scores["plain"], logits.mean().item(), rtol=1e-5, atol=1e-6)
    assert_close(scores["loss"], loss_fn(logits, y).item(), rtol=1e-5, atol=1e-6)


def test_evaluate_restores_mode_when_a_metric_rejects_the_output():
    model = nn.Linear(5, 3)
    model.train()
    data = TensorDataset(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="one score per example"):
        evaluate(model, data, F.cross_entropy, {"auc": ROCAUC()})
    assert model.training

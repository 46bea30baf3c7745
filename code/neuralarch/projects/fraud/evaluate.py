"""Project 9's benchmark: three detectors, a split by time, several seeds, PR-AUC and F1.

Introduced in Project 9 (``m09-l06``). Train on the first 60 % of the period, pick each model's
decision threshold on the next 15 % (validation), and report on the last 25 % (test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, precision_recall_curve

from neuralarch.graphs.transactions import TransactionNetwork
from neuralarch.projects.fraud.features import transaction_features
from neuralarch.projects.fraud.models import EdgeClassifier, train_edge_classifier

MODELS = ("MLP on node features", "GNN (directed SAGE)", "GNN + graph features",
          "boosting on graph features")


@dataclass
class Scores:
    """One model's scores on validation and test transactions, and the metrics they give."""

    model: str
    seed: int
    val_scores: np.ndarray
    test_scores: np.ndarray
    threshold: float
    f1: float  # minority-class F1 on test, at the validation threshold
    precision: float
    recall: float
    pr_auc: float  # average precision on test


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the score threshold that maximises F1 of the positive class."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(thresholds[np.argmax(f1[:-1])])


def score(model: str, seed: int, labels: tuple[np.ndarray, np.ndarray], val: np.ndarray,
          test: np.ndarray) -> Scores:
    """Pick the threshold on validation and compute test F1, precision, recall and PR-AUC."""
    threshold = best_f1_threshold(labels[0], val)
    predicted = test >= threshold
    tp = np.count_nonzero(predicted & labels[1])
    precision = tp / max(predicted.sum(), 1)
    recall = tp / max(labels[1].sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return Scores(model, seed, val, test, threshold, f1, precision, recall,
                  float(average_precision_score(labels[1], test)))


def node_inputs(network: TransactionNetwork) -> torch.Tensor:
    """Account features plus log in/out-degree and log amounts sent/received, standardised."""
    n = network.num_accounts
    ones = torch.ones(network.source.numel())
    log_amount = network.amount.log1p()
    extra = torch.stack([
        torch.zeros(n).index_add_(0, network.source, ones).log1p(),
        torch.zeros(n).index_add_(0, network.target, ones).log1p(),
        torch.zeros(n).index_add_(0, network.source, log_amount).log1p(),
        torch.zeros(n).index_add_(0, network.target, log_amount).log1p()], 1)
    x = torch.cat([network.account_features, extra], 1)
    return (x - x.mean(0)) / x.std(0).clamp(min=1e-6)


def run_benchmark(network: TransactionNetwork, seeds: tuple[int, ...] = (0, 1, 2),
                  epochs: int = 150, features: np.ndarray | None = None) -> list[Scores]:
    """Train and score the four detectors for every seed; returns one :class:`Scores` each."""
    train, val, test = network.time_masks()
    y = network.is_illicit.numpy()
    labels = (y[val.numpy()], y[test.numpy()])
    feats = transaction_features(network) if features is None else features
    x = node_inputs(network)
    log_amount = network.amount.log1p()
    edge_attr = ((log_amount - log_amount.mean()) / log_amount.std()).unsqueeze(1)  # (E, 1)
    hand = torch.from_numpy(feats)
    hand = (hand - hand[train].mean(0)) / hand[train].std(0).clamp(min=1e-6)
    rich_attr = torch.cat([edge_attr, hand], 1)  # (E, 1 + F): the hybrid's edge features
    ids = [torch.nonzero(m).squeeze(1) for m in (train, val, test)]
    results = []
    for seed in seeds:
        for name, layers, attr in ((MODELS[0], 0, edge_attr), (MODELS[1], 2, edge_attr),
                                   (MODELS[2], 2, rich_attr)):
            torch.manual_seed(seed)
            model = EdgeClassifier(x.size(1), attr.size(1), layers=layers)
            train_edge_classifier(model, x, network.edge_index, attr,
                                  network.is_illicit, ids[0], epochs=epochs)
            with torch.no_grad():
                val_s, test_s = (torch.sigmoid(model(x, network.edge_index, attr, i))
                                 .numpy() for i in ids[1:])
            results.append(score(name, seed, labels, val_s, test_s))
        booster = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1,
                                                 class_weight="balanced", random_state=seed)
        booster.fit(feats[train.numpy()], y[train.numpy()])
        val_s, test_s = (booster.predict_proba(feats[m.numpy()])[:, 1] for m in (val, test))
        results.append(score(MODELS[3], seed, labels, val_s, test_s))
    return results


def summarise(results: list[Scores]) -> dict[str, dict[str, tuple[float, float]]]:
    """Return ``{model: {metric: (mean, std over seeds)}}`` for F1, precision, recall, PR-AUC."""
    table = {}
    for model in dict.fromkeys(r.model for r in results):
        rows = [r for r in results if r.model == model]
        table[model] = {m: (float(np.mean([getattr(r, m) for r in rows])),
                            float(np.std([getattr(r, m) for r in rows])))
                        for m in ("f1", "precision", "recall", "pr_auc")}
    return table

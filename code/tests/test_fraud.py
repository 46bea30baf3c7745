"""Tests of neuralarch.projects.fraud: graph features, detectors and the time-split benchmark."""

import numpy as np
import pytest
import torch

from neuralarch.graphs.transactions import TransactionConfig, generate_transactions
from neuralarch.projects.fraud.evaluate import (
    MODELS,
    best_f1_threshold,
    node_inputs,
    run_benchmark,
    summarise,
)
from neuralarch.projects.fraud.features import FEATURE_NAMES, transaction_features
from neuralarch.projects.fraud.models import EdgeClassifier, train_edge_classifier


@pytest.fixture(scope="module")
def network():
    return generate_transactions(TransactionConfig(n_accounts=500, n_transactions=8000,
                                                   illicit_rate=0.02, seed=1))


@pytest.fixture(scope="module")
def features(network):
    return transaction_features(network)


def column(name):
    return FEATURE_NAMES.index(name)


def test_features_see_the_planted_structure(network, features):
    assert features.shape == (8000, len(FEATURE_NAMES)) and np.isfinite(features).all()
    for p in network.patterns:
        rows = features[p.edge_ids]
        if p.typology == "fan_out":
            assert (rows[:, column("payer fan-out in window")] >= len(p.roles["targets"])).all()
        if p.typology == "fan_in":
            assert (rows[:, column("payee fan-in in window")] >= len(p.roles["sources"])).all()
        if p.typology == "cycle":
            assert (rows[:, column("on a money cycle")] == 1).all()
        if p.typology == "scatter_gather":  # every first hop is relayed on by its intermediary
            first = [e for e in p.edge_ids if network.source[e] == p.roles["origin"][0]]
            assert (features[first, column("payee forwards it (count)")] >= 1).all()
    normal = ~network.is_illicit.numpy()
    assert features[normal, column("on a money cycle")].mean() < 0.02


def test_best_f1_threshold_separates_perfect_scores():
    labels = np.array([0, 0, 1, 1, 0])
    threshold = best_f1_threshold(labels, np.array([0.1, 0.2, 0.9, 0.8, 0.3]))
    assert 0.3 < threshold <= 0.8


@pytest.mark.parametrize("layers", [0, 2])
def test_edge_classifier_learns_a_planted_signal(layers):
    torch.manual_seed(0)
    n, e = 50, 400
    edge_index = torch.randint(0, n, (2, e))
    edge_attr = torch.randn(e, 2)
    labels = edge_attr[:, 1] > 1.0  # the label is readable from the edge features
    model = EdgeClassifier(4, 2, hidden=16, layers=layers)
    losses = train_edge_classifier(model, torch.randn(n, 4), edge_index, edge_attr, labels,
                                   torch.arange(e), epochs=150)
    assert losses[-1] < 0.5 * losses[0]


def test_node_inputs_are_standardised(network):
    x = node_inputs(network)
    assert x.shape[0] == 500 and torch.isfinite(x).all()
    torch.testing.assert_close(x.mean(0), torch.zeros(x.size(1)), atol=1e-5, rtol=0)


def test_benchmark_reports_every_model_and_boosting_beats_chance(network, features):
    results = run_benchmark(network, seeds=(0,), epochs=30, features=features)
    table = summarise(results)
    assert list(table) == list(MODELS)
    _, _, test = network.time_masks()
    base_rate = network.is_illicit[test].float().mean().item()
    assert table[MODELS[3]]["pr_auc"][0] > 3 * base_rate  # chance PR-AUC = the base rate
    for row in table.values():
        for mean, _ in row.values():
            assert 0.0 <= mean <= 1.0

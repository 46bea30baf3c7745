"""Tests of neuralarch.graphs.transactions and .typologies: planted patterns have structure."""

import collections

import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.graphs.transactions import TransactionConfig, generate_transactions
from neuralarch.graphs.typologies import TYPOLOGIES, verify_pattern

SMALL = TransactionConfig(n_accounts=500, n_transactions=8000, seed=3)


@pytest.fixture(scope="module")
def network():
    return generate_transactions(SMALL)


def test_every_typology_is_planted_and_has_its_structure(network):
    kinds = collections.Counter(p.typology for p in network.patterns)
    assert set(kinds) == set(TYPOLOGIES)
    for pattern in network.patterns:
        assert verify_pattern(network, pattern) == [], (pattern.typology, pattern.roles)


def test_a_broken_pattern_fails_verification(network):
    by_kind = {p.typology: p for p in network.patterns}
    cycle = by_kind["cycle"]
    cycle.edge_ids, removed = cycle.edge_ids[:-1], cycle.edge_ids[-1]  # no longer returns home
    try:
        assert any("structure" in p for p in verify_pattern(network, cycle))
    finally:
        cycle.edge_ids.append(removed)
    fan = by_kind["fan_out"]
    original = network.target[fan.edge_ids[0]].item()
    network.target[fan.edge_ids[0]] = network.target[fan.edge_ids[1]]  # a repeated target
    try:
        assert verify_pattern(network, fan)
    finally:
        network.target[fan.edge_ids[0]] = original


@pytest.mark.parametrize("rate", [0.002, 0.01])
def test_illicit_rate_is_as_configured(rate):
    cfg = SMALL.replace(illicit_rate=rate, n_transactions=20_000)
    net = generate_transactions(cfg)
    assert net.source.numel() == cfg.n_transactions
    assert abs(net.illicit_rate() - rate) <= 1 / cfg.n_transactions
    assert net.is_illicit.sum() == sum(len(p.edge_ids) for p in net.patterns)


def test_labels_times_and_features_are_consistent(network):
    assert (network.time[1:] >= network.time[:-1]).all()  # sorted by time
    assert torch.equal(network.is_illicit, network.pattern_id >= 0)
    assert (network.source != network.target).all()
    assert (network.amount > 0).all()
    assert network.account_features.shape == (500, len(network.feature_names))
    degree = torch.bincount(network.source, minlength=500)
    assert degree.max() > 5 * degree.float().median()  # skewed activity: a few busy accounts
    # legitimate fan-outs exist (payroll), so fan-out size alone cannot be the label
    normal = ~network.is_illicit
    days = (network.time[normal] // 24).tolist()
    payroll = collections.Counter(zip(network.source[normal].tolist(), days, strict=True))
    assert max(payroll.values()) >= 4


def test_same_seed_same_network_and_other_seed_differs():
    a, b = generate_transactions(SMALL), generate_transactions(SMALL)
    c = generate_transactions(SMALL.replace(seed=4))
    assert torch.equal(a.source, b.source) and torch.equal(a.amount, b.amount)
    assert not torch.equal(a.source, c.source)


@pytest.mark.parametrize("changes, match", [
    ({"illicit_rate": 0.2}, "illicit_rate"),
    ({"min_pattern_size": 9}, "min_pattern_size"),
    ({"typologies": ("fan_out", "smurfing")}, "smurfing"),
    ({"window_hours": 1000.0}, "window_hours"),
])
def test_config_rejects_bad_values(changes, match):
    with pytest.raises(ConfigError, match=match):
        SMALL.replace(**changes)


def test_time_split_masks_partition_the_transactions(network):
    train, val, test = network.time_masks()
    assert (train.int() + val.int() + test.int() == 1).all()
    assert network.time[train].max() < network.time[val].min() < network.time[test].min()

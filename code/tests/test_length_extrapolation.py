"""Tests for lesson 5.4's length-extrapolation experiment (``sequence.length_extrapolation``)."""

import math

import pytest
import torch
from torch.testing import assert_close

from neuralarch.config import ConfigError
from neuralarch.sequence.length_extrapolation import (
    ENCODINGS,
    IGNORE,
    ExtrapolationConfig,
    PositionalTransformer,
    accuracy_at_lengths,
    accuracy_by_position,
    lag_copy_data,
    sequence_loss,
    train_extrapolation_model,
)

SMALL = dict(train_len=8, max_len=32, dim=16, heads=2, layers=1, steps=4, batch_size=4)


@pytest.mark.parametrize(("n", "length", "lag"), [(3, 10, 2), (1, 5, 1), (4, 6, 5)])
def test_lag_copy_targets_are_the_tokens_lag_steps_back(n, length, lag):
    x, y = lag_copy_data(n, length, 7, lag, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (n, length)
    assert (y[:, :lag] == IGNORE).all()
    assert torch.equal(y[:, lag:], x[:, :length - lag])
    assert x.min() >= 0 and x.max() < 7


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_gives_logits_and_the_learned_one_stops_at_l(encoding):
    torch.manual_seed(0)
    config = ExtrapolationConfig(encoding=encoding, **SMALL)
    model = PositionalTransformer(config)
    for length in (8, 32):
        tokens = torch.randint(config.vocab_size, (2, length))
        if encoding == "learned" and length > config.train_len:
            assert model.max_len == config.train_len
            with pytest.raises(ValueError, match="max_len=8"):
                model(tokens)
            continue
        assert model(tokens).shape == (2, length, config.vocab_size)
    expected = {"learned": 8, "sinusoidal": 32}.get(encoding)
    assert model.max_len == expected


@pytest.mark.parametrize("encoding", ["none", "rope", "alibi"])
def test_relative_and_no_encodings_read_any_length(encoding):
    config = ExtrapolationConfig(encoding=encoding, **SMALL)
    model = PositionalTransformer(config)
    assert model.max_len is None
    assert model(torch.zeros(1, 100, dtype=torch.long)).shape == (1, 100, config.vocab_size)


def test_models_are_causal():
    """Changing a future token must not change any earlier prediction."""
    torch.manual_seed(1)
    for encoding in ENCODINGS:
        model = PositionalTransformer(ExtrapolationConfig(encoding=encoding, **SMALL)).eval()
        tokens = torch.randint(16, (1, 8))
        changed = tokens.clone()
        changed[0, 5] = (tokens[0, 5] + 1) % 16
        with torch.no_grad():
            assert_close(model(changed)[:, :5], model(tokens)[:, :5])
            assert not torch.allclose(model(changed)[:, 5], model(tokens)[:, 5])


def test_config_is_validated():
    with pytest.raises(ConfigError, match="encoding"):
        ExtrapolationConfig(encoding="relative")
    with pytest.raises(ConfigError, match="lag"):
        ExtrapolationConfig(lag=0)
    with pytest.raises(ValueError, match="multiple of heads"):
        PositionalTransformer(ExtrapolationConfig(dim=30, heads=4))


def test_sequence_loss_ignores_positions_without_a_target():
    logits = torch.randn(2, 5, 4)
    targets = torch.tensor([[IGNORE, IGNORE, 1, 2, 3], [IGNORE, IGNORE, 0, 0, 1]])
    expected = torch.nn.functional.cross_entropy(logits[:, 2:].flatten(0, 1),
                                                 targets[:, 2:].flatten())
    assert_close(sequence_loss(logits, targets), expected)


def test_accuracy_helpers_report_nan_before_lag_and_none_past_the_learned_table():
    config = ExtrapolationConfig(encoding="learned", **SMALL)
    model = PositionalTransformer(config).eval()
    per_position = accuracy_by_position(model, config, 8, n=4)
    assert per_position.shape == (8,)
    assert math.isnan(per_position[0]) and math.isnan(per_position[1])
    assert ((per_position[2:] >= 0) & (per_position[2:] <= 1)).all()
    results = accuracy_at_lengths(model, config, factors=(1, 2), tokens=64)
    assert results[2] is None and 0.0 <= results[1] <= 1.0


def test_training_is_reproducible():
    config = ExtrapolationConfig(encoding="rope", **SMALL)
    a = train_extrapolation_model(config, progress=False)
    b = train_extrapolation_model(config, progress=False)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(a.history.train_loss) == 0 or a.history.train_loss == b.history.train_loss


def test_rope_learns_the_task_and_the_control_does_not():
    """A short run: with RoPE the lag-copy task is solved at the training length, without
    positions it is not (the causal mask alone gives only a little positional signal)."""
    common = dict(train_len=16, steps=150, seed=0)
    rope = train_extrapolation_model(ExtrapolationConfig(encoding="rope", **common),
                                     progress=False)
    none = train_extrapolation_model(ExtrapolationConfig(encoding="none", **common),
                                     progress=False)
    rope_acc = accuracy_at_lengths(rope.model, rope.config, factors=(1,), tokens=2048)[1]
    none_acc = accuracy_at_lengths(none.model, none.config, factors=(1,), tokens=2048)[1]
    assert rope_acc > 0.9
    assert none_acc < 0.6
    assert rope.history.train_loss[-1] < rope.history.train_loss[0] / 5


def test_attention_maps_are_causal_distributions():
    config = ExtrapolationConfig(encoding="alibi", **SMALL)
    model = PositionalTransformer(config).eval()
    with torch.no_grad():
        logits, maps = model.forward_with_attention(torch.randint(16, (3, 12)))
    assert logits.shape == (3, 12, 16) and len(maps) == config.layers
    for weights in maps:
        assert weights.shape == (3, config.heads, 12, 12)
        assert_close(weights.sum(-1), torch.ones(3, config.heads, 12))
        assert (weights.triu(1) == 0).all()

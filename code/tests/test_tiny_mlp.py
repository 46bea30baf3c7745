"""Tests for neuralarch.train.tiny_mlp: one seed fixes the whole run, and the loss goes down."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from neuralarch.data.noisy_dataset import NoisyDataset
from neuralarch.layers.mlp import MLPConfig, build_mlp
from neuralarch.repro import derive_seed, make_generator, state_fingerprint
from neuralarch.train.tiny_mlp import TINY_MLP, TrainRun, train_tiny_mlp


def _toy_dataset(n: int = 96, features: int = 8, seed: int = 0) -> TensorDataset:
    """Two linearly separable classes, as images of shape (1, 2, features // 2)."""
    g = make_generator(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x.reshape(n, 1, 2, features // 2), y)


def _toy_mlp(hidden: int, dropout: float = 0.1) -> MLPConfig:
    return MLPConfig(in_features=8, hidden_sizes=(hidden,), out_features=2, dropout=dropout,
                     flatten=True)


def test_default_model_is_the_lessons_784_64_10_mlp_with_dropout():
    assert TINY_MLP.layer_sizes == (784, 64, 10)
    assert TINY_MLP.dropout == 0.1 and TINY_MLP.flatten


def test_train_tiny_mlp_equals_the_hand_written_loop():
    data = _toy_dataset()
    run = train_tiny_mlp(data, seed=2, mlp=_toy_mlp(6, dropout=0.2), epochs=2, batch_size=16,
                         lr=0.1)
    # The same run written out by hand, from the documented derivation of the two streams.
    torch.manual_seed(derive_seed(2, "model"))
    model = build_mlp(_toy_mlp(6, dropout=0.2))
    loader = DataLoader(data, batch_size=16, shuffle=True,
                        generator=make_generator(derive_seed(2, "data")))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(2):
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert_close(torch.tensor(run.losses), torch.tensor(losses), rtol=0, atol=0)
    assert run.fingerprint == state_fingerprint(model)
    assert not run.model.training


def test_train_tiny_mlp_is_reproducible_and_learns():
    data = NoisyDataset(_toy_dataset(128), std=0.1, seed=0)
    kwargs = dict(mlp=_toy_mlp(8), epochs=3, batch_size=16, lr=0.1)
    torch.manual_seed(123)
    a = train_tiny_mlp(data, seed=0, **kwargs)
    after = torch.rand(1)
    b = train_tiny_mlp(data, seed=0, **kwargs)
    c = train_tiny_mlp(data, seed=1, **kwargs)
    assert isinstance(a, TrainRun) and len(a.losses) == 3 * 8
    assert a.fingerprint == b.fingerprint and a.losses == b.losses
    assert a.fingerprint != c.fingerprint
    assert np.mean(a.losses[-8:]) < 0.6 * np.mean(a.losses[:8])  # loss goes down
    torch.manual_seed(123)
    assert_close(torch.rand(1), after)  # the caller's global stream was not disturbed


def test_train_tiny_mlp_with_workers_is_reproducible():
    data = NoisyDataset(_toy_dataset(64), std=0.1, seed=0)
    kwargs = dict(mlp=_toy_mlp(4), batch_size=16, num_workers=2)
    a = train_tiny_mlp(data, seed=5, **kwargs)
    b = train_tiny_mlp(data, seed=5, **kwargs)
    zero = train_tiny_mlp(data, seed=5, **{**kwargs, "num_workers": 0})
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != zero.fingerprint  # num_workers changes the augmentation stream


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, "epochs must be an int >= 1"),
    ({"epochs": True}, "epochs must be an int >= 1"),
    ({"lr": 0.0}, "lr must be a number > 0"),
    ({"seed": 2**32}, "seed must be an int"),
    ({"batch_size": -4}, "batch_size must be an int >= 1"),
])
def test_train_tiny_mlp_rejects_bad_arguments(kwargs, message):
    args = {"seed": 0, "mlp": _toy_mlp(4), **kwargs}
    with pytest.raises(ValueError, match=message):
        train_tiny_mlp(_toy_dataset(8), **args)

"""Tests for neuralarch.layers.mlp: the one MLP builder, checked against hand-built references."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from neuralarch.config import ConfigError
from neuralarch.layers.mlp import MLPConfig, build_mlp


def test_mlp_layer_sizes_and_validation():
    assert MLPConfig().layer_sizes == (784, 128, 10)
    assert MLPConfig(hidden_sizes=[64, 32]).hidden_sizes == (64, 32)  # JSON lists become tuples
    with pytest.raises(ConfigError, match=r"bad \(index, width\): \[\(1, 0\), \(2, -2\)\]"):
        MLPConfig(hidden_sizes=(64, 0, -2))
    with pytest.raises(ConfigError, match=r"activation = 'swish': Input should be 'relu'"):
        MLPConfig(activation="swish")


@pytest.mark.parametrize("field,value,message", [
    ("in_features", 0, "in_features = 0: Input should be greater than 0"),
    ("out_features", -3, "out_features = -3: Input should be greater than 0"),
    ("dropout", 1.0, "dropout = 1.0: Input should be less than 1"),
    ("flatten", "yes", "flatten = 'yes': a string is not allowed here"),
])
def test_mlp_config_names_the_bad_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        MLPConfig(**{field: value})


ACT = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@pytest.mark.parametrize(
    "config",
    [MLPConfig(), MLPConfig(in_features=5, hidden_sizes=(), out_features=3),
     MLPConfig(in_features=7, hidden_sizes=(16, 9), out_features=2, activation="gelu",
               bias=False),
     MLPConfig(in_features=6, hidden_sizes=(11,), out_features=4, activation="tanh",
               dropout=0.3),
     MLPConfig(in_features=3, hidden_sizes=(8, 8, 8), out_features=1, activation="silu")],
)
def test_build_mlp_matches_hand_built_torch_reference(config):
    torch.manual_seed(1)
    model = build_mlp(config).eval()
    sizes = config.layer_sizes
    reference_layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        reference_layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=config.bias))
        if i < len(sizes) - 2:
            reference_layers += [ACT[config.activation](), nn.Dropout(config.dropout)]
    reference = nn.Sequential(*reference_layers).eval()
    reference.load_state_dict(model.state_dict())  # same keys and shapes, or this raises
    x = torch.randn(4, config.in_features, dtype=torch.float64)
    assert_close(model.double()(x), reference.double()(x))
    expected = sum((n_in + int(config.bias)) * n_out for n_in, n_out in itertools.pairwise(sizes))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_build_mlp_adds_dropout_only_between_hidden_layers():
    model = build_mlp(MLPConfig(hidden_sizes=(32, 16), dropout=0.2))
    dropouts = [m for m in model if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.2, 0.2]
    assert isinstance(model[-1], nn.Linear)


def test_parameter_names_do_not_depend_on_the_dropout_rate():
    names = [list(build_mlp(MLPConfig(hidden_sizes=(8, 4), dropout=p)).state_dict())
             for p in (0.0, 0.5)]
    assert names[0] == names[1] == ["0.weight", "0.bias", "3.weight", "3.bias",
                                    "6.weight", "6.bias"]


def test_dropout_at_zero_is_the_identity_and_draws_no_random_numbers():
    model = build_mlp(MLPConfig(in_features=6, hidden_sizes=(5,), out_features=2)).train()
    x = torch.randn(3, 6)
    torch.manual_seed(0)
    out = model(x)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert_close(torch.rand(1), after, rtol=0, atol=0)  # the global stream did not move
    assert_close(out, model.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("in_features,hidden,n_classes", [(8, 5, 2), (12, 16, 3)])
def test_flatten_takes_image_batches_as_they_are(in_features, hidden, n_classes):
    torch.manual_seed(1)
    config = MLPConfig(in_features=in_features, hidden_sizes=(hidden,), out_features=n_classes,
                       dropout=0.3, flatten=True)
    mlp = build_mlp(config).eval()
    assert isinstance(mlp[0], nn.Flatten) and list(mlp.state_dict())[-1] == "4.bias"
    x = torch.randn(4, 1, 2, in_features // 2)  # (B, 1, 2, F/2)
    first, last = mlp[1], mlp[4]
    flat = x.reshape(4, -1)  # (B, F)
    reference = torch.relu(flat @ first.weight.T + first.bias) @ last.weight.T + last.bias
    assert_close(mlp(x), reference)
    assert mlp(x).shape == (4, n_classes)

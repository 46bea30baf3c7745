"""LeNet-5: parameter counts by hand and from the config, shapes, a functional reference, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.vision.lenet import (
    LeNet,
    LeNetConfig,
    count_parameters,
    lenet_parameters,
    parameter_table,
)

CONFIGS = [
    {},
    {"activation": "tanh", "pooling": "avg"},
    {"in_channels": 3, "image_size": 32, "input_padding": 0, "num_classes": 7},
    {"channels": (4, 8, 12), "kernel_size": 3, "input_padding": 1, "hidden": (32,)},
    {"channels": (5,), "hidden": (), "pool_size": 3, "activation": "sigmoid"},
]


@pytest.mark.parametrize("preset", ["lenet5-1998", "modern"])
def test_classic_lenet5_has_61706_parameters(preset):
    # conv1 6*(1*25+1) + conv2 16*(6*25+1) + fc 400*120+120 + 120*84+84 + 84*10+10
    by_hand = 156 + 2416 + 48120 + 10164 + 850
    assert by_hand == 61706
    config = LeNetConfig.preset(preset)
    model = LeNet(config)
    assert count_parameters(model) == lenet_parameters(config)["total"] == by_hand
    assert lenet_parameters(config) == {"conv": 2572, "dense": 59134, "total": 61706}
    assert [row.parameters for row in parameter_table(model)] == [156, 2416, 48120, 10164, 850]
    assert [row.kind for row in parameter_table(model)] == ["Conv2d"] * 2 + ["Linear"] * 3


def test_presets_set_the_nonlinearity_and_pooling():
    old, new = LeNetConfig.preset("lenet5-1998"), LeNetConfig.preset("modern")
    assert (old.activation, old.pooling) == ("tanh", "avg")
    assert (new.activation, new.pooling) == ("relu", "max")
    kinds = {type(m) for m in LeNet(old).modules()}
    assert nn.Tanh in kinds and nn.AvgPool2d in kinds and nn.ReLU not in kinds
    with pytest.raises(ConfigError, match="unknown preset 'alexnet'"):
        LeNetConfig.preset("alexnet")


@pytest.mark.parametrize("options", CONFIGS)
def test_parameter_formula_and_shapes(options):
    config = LeNetConfig(**options)
    model = LeNet(config)
    assert count_parameters(model) == lenet_parameters(config)["total"]
    assert sum(row.parameters for row in parameter_table(model)) == count_parameters(model)
    x = torch.randn(3, config.in_channels, config.image_size, config.image_size)
    assert model(x).shape == (3, config.num_classes)
    pooled = model.features(x)  # (N, C_last, s, s)
    assert pooled.shape == (3, config.channels[-1], config.feature_size, config.feature_size)
    assert config.flat_features == pooled[0].numel()
    maps = model.feature_maps(x)
    assert [m.shape[1] for m in maps] == list(config.channels)
    assert maps[0].shape[-1] == config.image_size + 2 * config.input_padding \
        - config.kernel_size + 1


def test_feature_maps_of_classic_lenet():
    model = LeNet()
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    maps = model.feature_maps(torch.zeros(2, 1, 28, 28))
    assert [tuple(m.shape) for m in maps] == [(2, 6, 28, 28), (2, 16, 10, 10)]
    assert LeNetConfig().feature_size == 5 and LeNetConfig().flat_features == 400


def _functional_lenet(model: LeNet, x: torch.Tensor) -> torch.Tensor:
    """The same network written with torch.nn.functional calls, reading the model's weights."""
    c = model.config
    act = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[c.activation]
    pool = {"max": F.max_pool2d, "avg": F.avg_pool2d}[c.pooling]
    for i, (conv, _, _) in enumerate(model.features):
        x = F.conv2d(x, conv.weight, conv.bias, padding=c.input_padding if i == 0 else 0)
        x = pool(act(x), c.pool_size)
    x = x.flatten(1)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for linear in linears[:-1]:
        x = act(F.linear(x, linear.weight, linear.bias))
    return F.linear(x, linears[-1].weight, linears[-1].bias)


@pytest.mark.parametrize("options", CONFIGS)
def test_forward_equals_functional_reference(options):
    torch.manual_seed(0)
    model = LeNet(LeNetConfig(**options))
    c = model.config
    x = torch.randn(4, c.in_channels, c.image_size, c.image_size)
    torch.testing.assert_close(model(x), _functional_lenet(model, x))


def test_count_parameters_can_skip_frozen_ones():
    model = LeNet()
    model.features.requires_grad_(False)
    assert count_parameters(model) == 61706 - 2572
    assert count_parameters(model, trainable_only=False) == 61706


@pytest.mark.parametrize(("options", "message"), [
    ({"channels": ()}, "channels must be a non-empty tuple"),
    ({"channels": (6, 0)}, "channels must be a non-empty tuple"),
    ({"hidden": (120, -1)}, "every hidden width must be > 0"),
    ({"image_size": 8}, "image_size=8 is too small for 2 stages"),
    ({"image_size": 10}, "nothing is left after stage 2"),
    ({"image_size": 4, "input_padding": 0}, "nothing is left after stage 1"),
    ({"channels": (6, 16, 32)}, "nothing is left after stage 3"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"activation": "gelu"}, "activation"),
    ({"pooling": "min"}, "pooling"),
    ({"num_classes": True}, "a bool is not allowed"),
    ({"widths": (6, 16)}, "unknown field"),
])
def test_bad_configs_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        LeNetConfig(**options)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28)])
def test_wrong_input_shape_is_rejected(shape):
    model = LeNet()
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        model(torch.zeros(shape))
    with pytest.raises(ValueError, match="set in_channels and image_size"):
        model.feature_maps(torch.zeros(shape))

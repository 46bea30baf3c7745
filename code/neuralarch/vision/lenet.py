"""LeNet-5 (LeCun et al., 1998) in modern PyTorch, sized by a config, plus parameter counting.

Introduced in lesson 4.1 (``m04-l01``). The network is two convolution stages (5x5 convolution,
nonlinearity, 2x2 pooling) followed by three fully connected layers. ``activation="tanh"`` with
``pooling="avg"`` is the 1998 design; ``"relu"`` with ``"max"`` is how it is usually built
today. Both have the same 61,706 parameters for MNIST (10 classes). Two simplifications of the
paper are standard in reimplementations and used here: the subsampling layers have no trainable
coefficients, and every second-stage map reads all first-stage maps (the paper's C3 layer used a
sparse connection table).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig, ConfigError
from neuralarch.layers.conv import conv_output_size

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU,
                                            "sigmoid": nn.Sigmoid}
_POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNetConfig(ArchConfig):
    """Shape of a :class:`LeNet`: convolution stages, dense layers, nonlinearity and pooling."""

    in_channels: int = Field(1, gt=0, description="image channels, 1 for MNIST")
    image_size: int = Field(28, gt=0, description="height and width of the (square) input")
    num_classes: int = Field(10, gt=0, description="outputs of the last layer")
    channels: tuple[int, ...] = Field((6, 16), description="output channels of each conv stage")
    kernel_size: int = Field(5, gt=0, description="side of every convolution kernel")
    input_padding: int = Field(
        2, ge=0, description="zero padding of the first convolution; 2 turns 28x28 into the "
                             "paper's 32x32")
    pool_size: int = Field(2, gt=0, description="side and stride of every pooling window")
    hidden: tuple[int, ...] = Field((120, 84), description="widths of the hidden dense layers")
    activation: Literal["tanh", "relu", "sigmoid"] = Field(
        "relu", description="nonlinearity after every convolution and hidden dense layer")
    pooling: Literal["avg", "max"] = Field("max", description="average or max pooling")

    @model_validator(mode="after")
    def _shapes_fit(self) -> LeNetConfig:
        if not self.channels or min(self.channels) <= 0:
            raise ValueError(f"channels must be a non-empty tuple of positive ints (one per "
                             f"conv stage), got {self.channels}")
        if self.hidden and min(self.hidden) <= 0:
            raise ValueError(f"every hidden width must be > 0, got hidden={self.hidden}")
        self._pooled_size()  # raises a ValueError if the image is too small
        return self

    @property
    def feature_size(self) -> int:
        """Height (= width) of the last stage's pooled feature maps."""
        return self._pooled_size()

    def _pooled_size(self) -> int:
        size = self.image_size
        for stage in range(len(self.channels)):
            padding = self.input_padding if stage == 0 else 0
            try:
                size = conv_output_size(size, self.kernel_size, 1, padding)
            except ValueError:
                size = 0  # the kernel no longer fits
            size //= self.pool_size  # pooling with stride = window, remainder dropped
            if size < 1:
                raise ValueError(
                    f"image_size={self.image_size} is too small for {len(self.channels)} stages "
                    f"of {self.kernel_size}x{self.kernel_size} convolutions (input_padding="
                    f"{self.input_padding}) and {self.pool_size}x{self.pool_size} pooling: "
                    f"nothing is left after stage {stage + 1}; use fewer stages, a smaller "
                    f"kernel or pool, or more padding")
        return size

    @property
    def flat_features(self) -> int:
        """Number of inputs of the first dense layer (channels x height x width)."""
        return self.channels[-1] * self.feature_size ** 2

    @classmethod
    def preset(cls, name: str) -> LeNetConfig:
        """Return ``"lenet5-1998"`` (tanh, average pooling) or ``"modern"`` (ReLU, max pooling)."""
        presets = {"lenet5-1998": dict(activation="tanh", pooling="avg"),
                   "modern": dict(activation="relu", pooling="max")}
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return cls(**presets[name])


class LeNet(nn.Module):
    """Conv stages (conv, nonlinearity, pool), then flatten and dense layers to the logits."""

    def __init__(self, config: LeNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LeNetConfig()
        act, pool = _ACTIVATIONS[config.activation], _POOLS[config.pooling]
        stages, width = [], config.in_channels
        for stage, out_width in enumerate(config.channels):
            padding = config.input_padding if stage == 0 else 0
            stages.append(nn.Sequential(
                nn.Conv2d(width, out_width, config.kernel_size, padding=padding),
                act(),
                pool(config.pool_size),
            ))
            width = out_width
        self.features = nn.Sequential(*stages)
        dense: list[nn.Module] = [nn.Flatten()]
        sizes = (config.flat_features, *config.hidden)
        for n_in, n_out in itertools.pairwise(sizes):
            dense += [nn.Linear(n_in, n_out), act()]
        dense.append(nn.Linear(sizes[-1], config.num_classes))
        self.classifier = nn.Sequential(*dense)

    def _check_input(self, x: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"expected images of shape (N, {c}, {s}, {s}), got "
                             f"{tuple(x.shape)}; set in_channels and image_size in LeNetConfig "
                             f"to match your data")

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return each stage's activations after its nonlinearity, before pooling."""
        self._check_input(x)
        maps = []
        for conv, act, pool in self.features:
            x = act(conv(x))  # (N, C_stage, H_stage, W_stage)
            maps.append(x)
            x = pool(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.classifier(self.features(x))  # (N, num_classes)


def lenet_parameters(config: LeNetConfig) -> dict[str, int]:
    """Count a :class:`LeNet`'s parameters from its config alone: weights plus biases."""
    k2, conv = config.kernel_size ** 2, 0
    widths = (config.in_channels, *config.channels)
    for c_in, c_out in itertools.pairwise(widths):
        conv += c_out * (c_in * k2 + 1)  # one k x k x C_in kernel and one bias per output map
    sizes = (config.flat_features, *config.hidden, config.num_classes)
    dense = sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(sizes))
    return {"conv": conv, "dense": dense, "total": conv + dense}


@dataclass(frozen=True)
class ParameterRow:
    """One row of a :func:`parameter_table`: a module's name, its type and its parameter count."""

    name: str
    kind: str
    parameters: int


def parameter_table(model: nn.Module) -> list[ParameterRow]:
    """List every module that owns parameters directly, in order, with its parameter count."""
    rows = []
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own:
            rows.append(ParameterRow(name, type(module).__name__, own))
    return rows


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Return the number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

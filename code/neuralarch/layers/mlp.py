"""A multilayer perceptron and the validated config that shapes it: the book's one MLP builder.

Introduced in lesson 1.4 (``m01-l04``) as the second model built from an
:class:`~neuralarch.config.ArchConfig`; lesson 1.5 (``m01-l05``) trains it reproducibly, and
later lessons use it whenever they need a small model for flattened images.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, field_validator
from torch import nn

from neuralarch.config import ArchConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
}


class MLPConfig(ArchConfig):
    """Shape of a multilayer perceptron; defaults fit flattened MNIST (784 inputs, 10 classes)."""

    in_features: int = Field(784, gt=0, description="input width, e.g. 28 * 28 pixels")
    hidden_sizes: tuple[int, ...] = Field(
        (128,), description="hidden layer widths in order; () gives a linear model"
    )
    out_features: int = Field(10, gt=0, description="output width, e.g. number of classes")
    activation: Literal["relu", "gelu", "tanh", "silu"] = Field(
        "relu", description="nonlinearity between layers"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each activation")
    bias: bool = Field(True, description="use bias vectors in the Linear layers")
    flatten: bool = Field(
        False, description="start with nn.Flatten, so image batches (B, 1, H, W) go in as they are"
    )

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_widths(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        bad = [(i, s) for i, s in enumerate(sizes) if s <= 0]
        if bad:
            raise ValueError(f"every hidden width must be > 0; bad (index, width): {bad}")
        return sizes

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. ``(784, 128, 10)``."""
        return (self.in_features, *self.hidden_sizes, self.out_features)


def build_mlp(config: MLPConfig) -> nn.Sequential:
    """Build the ``nn.Sequential`` MLP that an :class:`MLPConfig` describes."""
    sizes = config.layer_sizes
    layers: list[nn.Module] = [nn.Flatten()] if config.flatten else []  # (B, 1, H, W) -> (B, H*W)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out, bias=config.bias))
        if i < len(sizes) - 2:  # no activation or dropout after the output layer
            # Dropout even when p = 0: parameter names then do not depend on the dropout rate.
            layers += [_ACTIVATIONS[config.activation](), nn.Dropout(config.dropout)]
    return nn.Sequential(*layers)

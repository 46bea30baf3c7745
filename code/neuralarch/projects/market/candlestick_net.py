"""A LeNet-style CNN for chart images whose last feature map has one column per candle.

Introduced in Project 4 (``m04-l06``). Each stage is a padded 3x3 convolution, BatchNorm and
ReLU, followed by 2x2 max pooling in every stage but the last. Padding keeps the geometry exact:
with two poolings the last feature map has stride 4, so on charts drawn with 4-pixel candle cells
(:class:`neuralarch.projects.market.candlestick_render.ChartStyle` defaults) column ``j`` of
``ChartCNN.features``' output sits on candle ``j``, which makes Grad-CAM maps readable candle
by candle. The head flattens the map instead of averaging it, so the classifier knows *where*
a feature is: a hammer at the last candle is a signal, the same shape mid-chart is not.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig


class ChartCNNConfig(ArchConfig):
    """Shape of a :class:`ChartCNN`: input size, channels per stage, hidden width, classes."""

    in_channels: int = Field(1, gt=0, description="image channels (1 or 3 for chart images)")
    height: int = Field(32, gt=0, description="image rows")
    width: int = Field(32, gt=0, description="image columns")
    channels: tuple[int, ...] = Field((8, 16, 32), description="output channels of each stage")
    hidden: int = Field(64, gt=0, description="width of the hidden dense layer")
    num_classes: int = Field(6, gt=0, description="outputs of the classifier")

    @model_validator(mode="after")
    def _sizes_divide(self) -> ChartCNNConfig:
        if not self.channels or min(self.channels) <= 0:
            raise ValueError(f"channels must be a non-empty tuple of positive ints (one per "
                             f"stage), got {self.channels}")
        factor = self.stride
        if self.height % factor or self.width % factor:
            raise ValueError(f"height ({self.height}) and width ({self.width}) must be divisible "
                             f"by 2 ** (len(channels) - 1) = {factor}, one halving per pooling")
        return self

    @property
    def stride(self) -> int:
        """Input pixels per column (and row) of the last feature map."""
        return 2 ** (len(self.channels) - 1)

    @property
    def flat_features(self) -> int:
        """Number of inputs of the first dense layer (channels x rows x columns of the map)."""
        return self.channels[-1] * (self.height // self.stride) * (self.width // self.stride)


class ChartCNN(nn.Module):
    """Padded conv stages (conv, BatchNorm, ReLU, pool), then flatten and two dense layers."""

    def __init__(self, config: ChartCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ChartCNNConfig()
        stages, width = [], config.in_channels
        for i, out_width in enumerate(config.channels):
            layers: list[nn.Module] = [nn.Conv2d(width, out_width, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(out_width), nn.ReLU()]
            if i < len(config.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
            width = out_width
        self.features = nn.Sequential(*stages)  # Grad-CAM's target layer
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(config.flat_features, config.hidden),
                                  nn.ReLU(), nn.Linear(config.hidden, config.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_channels, c.height, c.width):
            raise ValueError(f"expected images of shape (N, {c.in_channels}, {c.height}, "
                             f"{c.width}), got {tuple(x.shape)}; set in_channels, height and "
                             f"width in ChartCNNConfig to match the chart style")
        return self.head(self.features(x))  # (N, num_classes)

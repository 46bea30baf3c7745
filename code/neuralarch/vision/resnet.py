"""A residual network (He et al., 2016) with basic blocks, sized by a config.

Introduced in lesson 4.1 (``m04-l01``). ``residual=False`` builds the same network without its
skip connections (a "plain" net), which is how the lesson shows why depth needs skips. The
network exposes :meth:`ResNet.features` (the last feature map, for Grad-CAM) and
:meth:`ResNet.embed` (the pooled feature vector, for linear probes and transfer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig


class ResNetConfig(ArchConfig):
    """Shape of a :class:`ResNet`: one stage per width, each with a number of basic blocks."""

    in_channels: int = Field(1, gt=0, description="image channels, 1 for MNIST, 3 for RGB")
    num_classes: int = Field(10, gt=0, description="outputs of the classifier head")
    widths: tuple[int, ...] = Field((16, 32, 64), description="channels of each stage")
    blocks: tuple[int, ...] = Field((1, 1, 1), description="basic blocks in each stage")
    strides: tuple[int, ...] = Field(
        (1, 2, 2), description="stride of each stage's first block (2 halves the resolution)"
    )
    residual: bool = Field(True, description="False removes every skip connection (plain net)")
    zero_init_residual: bool = Field(
        True, description="start each block's last BatchNorm at gain 0, so blocks start as identity"
    )

    @model_validator(mode="after")
    def _stages_match(self) -> ResNetConfig:
        if not self.widths or not len(self.widths) == len(self.blocks) == len(self.strides):
            raise ValueError(f"widths {self.widths}, blocks {self.blocks} and strides "
                             f"{self.strides} must be non-empty and of equal length (one entry "
                             f"per stage)")
        if min(self.widths) <= 0 or min(self.blocks) <= 0 or min(self.strides) <= 0:
            raise ValueError(f"every width, block count and stride must be > 0, got widths "
                             f"{self.widths}, blocks {self.blocks}, strides {self.strides}")
        return self


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, plus the input: ``relu(F(x) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.residual = residual
        self.shortcut: nn.Module = nn.Identity()
        if residual and (stride != 1 or in_channels != out_channels):
            # a 1x1 projection matches the shapes when the block downsamples or widens
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (N, C_out, H / stride, W / stride)
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """Stem, stages of basic blocks (each may downsample by its stride), pooling, head."""

    def __init__(self, config: ResNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ResNetConfig()
        width = config.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        stages = []
        for out_width, count, stride in zip(config.widths, config.blocks, config.strides,
                                            strict=True):
            blocks = []
            for block in range(count):
                blocks.append(BasicBlock(width, out_width, stride if block == 0 else 1,
                                         config.residual))
                width = out_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(width, config.num_classes)
        self._init_weights(config.zero_init_residual and config.residual)

    def _init_weights(self, zero_last_gain: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if zero_last_gain:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's feature map, (N, C, H', W')."""
        return self.stages(self.stem(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the globally average-pooled features, (N, C): the input to the head."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images of shape (N, {self.config.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return self.head(self.embed(x))  # (N, num_classes)

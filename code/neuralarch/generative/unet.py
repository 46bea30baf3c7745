"""A small U-Net noise predictor for images (Ronneberger et al., 2015; Ho et al., 2020).

Introduced in lesson 7.1 (``m07-l01``). The network maps a noisy image x_t, its step t and an
optional class y to a noise estimate of the same shape. The step enters through sinusoidal
embeddings (the transformer's position table), the class through a learned embedding with one
extra *null* class for classifier-free guidance. Residual conv blocks halve the resolution per
level, self-attention (the book's :class:`~neuralarch.layers.attention.MultiHeadAttention`) mixes
the lowest resolution, and the decoder mirrors the encoder with skip connections. ``forward``
also takes optional residuals added to the skips, the hook of the ControlNet-style adapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.attention import MultiHeadAttention
from neuralarch.sequence.positional import sinusoidal_table


class UNetConfig(ArchConfig):
    """Sizes of the U-Net: CPU-sized defaults for 28 x 28 MNIST."""

    in_channels: int = Field(1, gt=0, description="image channels")
    channels: tuple[int, ...] = Field((32, 64), description="width of each resolution level")
    time_steps: int = Field(200, gt=0, description="T: the number of diffusion steps embedded")
    embed_dim: int = Field(128, gt=0, description="width of the step + class embedding")
    num_classes: int | None = Field(10, description="classes (None: unconditional)")
    heads: int = Field(4, gt=0, description="attention heads at the lowest resolution")
    groups: int = Field(8, gt=0, description="GroupNorm groups")
    patch: int = Field(2, gt=0, description="space-to-depth factor of the stem (1: none)")

    @model_validator(mode="after")
    def _sizes(self) -> UNetConfig:
        if not self.channels or any(c <= 0 or c % self.groups for c in self.channels):
            raise ValueError(f"channels must be positive multiples of groups={self.groups}, "
                             f"got {self.channels}")
        if self.channels[-1] % self.heads or self.embed_dim % 2:
            raise ValueError(f"channels[-1]={self.channels[-1]} must divide by heads="
                             f"{self.heads} and embed_dim={self.embed_dim} must be even")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {self.num_classes}")
        return self


class StepEmbedding(nn.Module):
    """Step t (and class y) -> one vector: a sinusoidal row through a 2-layer MLP, plus y's."""

    def __init__(self, time_steps: int, dim: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(time_steps, dim), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        # index num_classes is the null class: "no condition", for classifier-free guidance
        self.classes = None if num_classes is None else nn.Embedding(num_classes + 1, dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.mlp(self.table[t])  # (B, dim)
        if self.classes is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes)  # unconditional
            emb = emb + self.classes(y)
        return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the step embedding added in between, plus a skip path."""

    def __init__(self, cin: int, cout: int, embed_dim: int, groups: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.norm1, self.conv1 = nn.GroupNorm(min(groups, cin), cin), conv(cin, cout, 3, padding=1)
        self.emb = nn.Linear(embed_dim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), conv(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else conv(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, cout, *spatial)
        shift = self.emb(emb)  # (B, cout)
        h = h + shift.view(*shift.shape, *([1] * (x.ndim - 2)))  # per-channel shift
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = MultiHeadAttention(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C): one token per pixel
        out, _ = self.attn(tokens)
        return x + out.transpose(1, 2).reshape(x.shape)


class UNet(nn.Module):
    """Noise predictor ``eps_theta(x_t, t, y)`` for images (B, C, H, W), H and W divisible by
    2^(levels - 1)."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or UNetConfig()
        ch, e, g = c.channels, c.embed_dim, c.groups
        self.embed = StepEmbedding(c.time_steps, e, c.num_classes)
        # space-to-depth: each p x p patch becomes p^2 channels, so the network works at
        # (H / p, W / p), p^2 times cheaper, and the head puts the pixels back (PixelShuffle)
        self.stem = nn.Sequential(nn.PixelUnshuffle(c.patch),
                                  nn.Conv2d(c.in_channels * c.patch**2, ch[0], 3, padding=1))
        self.down = nn.ModuleList()  # level i: a ResBlock to ch[i]; its output is skip i
        self.downsample = nn.ModuleList()
        prev = ch[0]
        for i, width in enumerate(ch):
            self.down.append(ResBlock(prev, width, e, g))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            prev = width
        self.mid = ResBlock(prev, prev, e, g)
        self.mid_attn = AttentionBlock(prev, c.heads, g)
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            self.up.append(ResBlock(prev + ch[i], ch[i], e, g))  # the skip is concatenated
            prev = ch[i]
        self.out_norm = nn.GroupNorm(g, ch[0])
        self.out = nn.Sequential(nn.Conv2d(ch[0], c.in_channels * c.patch**2, 3, padding=1),
                                 nn.PixelShuffle(c.patch))

    def encode(self, x: torch.Tensor, emb: torch.Tensor,
               hint: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The contracting path: the skips (one per level) and the bottleneck features.

        ``hint`` (B, channels[0], H / p, W / p), if given, is added after the stem: the
        ControlNet-style adapter's way in.
        """
        h = self.stem(x)  # (B, ch0, H / p, W / p)
        if hint is not None:
            h = h + hint
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)  # level i: (B, ch[i], H / 2^i, W / 2^i)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid_attn(self.mid(h, emb))  # (B, ch[-1], h, w): attention at the bottom
        return skips, h

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Predict the noise in ``x`` (B, C, H, W) at steps ``t`` (B,) for classes ``y`` (B,).

        ``residuals`` (one per skip, then one for the bottleneck) are added before decoding.
        """
        emb = self.embed(t, y)  # (B, embed_dim)
        skips, h = self.encode(x, emb)
        if residuals is not None:
            if len(residuals) != len(skips) + 1:
                raise ValueError(f"need {len(skips) + 1} residuals (skips + bottleneck), "
                                 f"got {len(residuals)}")
            skips = [s + r for s, r in zip(skips, residuals[:-1], strict=True)]
            h = h + residuals[-1]
        for i, block in enumerate(self.up):
            skip = skips[-1 - i]
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")  # up one level
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))

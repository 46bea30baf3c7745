"""A Vision Transformer (Dosovitskiy et al., 2021): an image as a sequence of patch tokens.

Introduced in lesson 4.4 (``m04-l04``). The image is cut into non-overlapping patches; each
patch is flattened and linearly projected to a token (:class:`PatchEmbedding`), a learned class
token is prepended, position embeddings are added (learned, fixed 2-D sine-cosine, or none),
and pre-norm transformer blocks (:class:`~neuralarch.layers.transformer.TransformerBlock`, the
book's one attention, from lessons 5.2-5.3) mix the tokens with multi-head self-attention. The
class token's final state is the image's representation.
:meth:`ViT.attention_maps` and :func:`attention_rollout` show where the class token looks.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.transformer import TransformerBlock


class ViTConfig(ArchConfig):
    """Shape of a :class:`ViT`; the defaults are a CPU-sized model for 28x28 MNIST digits."""

    image_size: int = Field(28, gt=0, description="height = width of the input images, pixels")
    patch_size: int = Field(7, gt=0, description="side of one square patch; must divide image")
    in_channels: int = Field(1, gt=0, description="image channels, 1 for MNIST, 3 for RGB")
    num_classes: int = Field(10, gt=0, description="outputs of the classifier head")
    dim: int = Field(64, gt=0, description="width of every token (the residual stream)")
    depth: int = Field(4, gt=0, description="number of encoder blocks")
    heads: int = Field(4, gt=0, description="attention heads; must divide dim")
    mlp_ratio: float = Field(2.0, gt=0, description="MLP hidden width = mlp_ratio * dim")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability")
    pos_embedding: Literal["learned", "sincos", "none"] = Field(
        "learned", description="learned, fixed 2-D sine-cosine (dim divisible by 4), or none")

    @model_validator(mode="after")
    def _shapes_fit(self) -> ViTConfig:
        if self.image_size % self.patch_size:
            divisors = [p for p in range(1, self.image_size + 1) if self.image_size % p == 0]
            raise ValueError(f"image_size ({self.image_size}) must be divisible by patch_size "
                             f"({self.patch_size}); allowed patch sizes: {divisors}")
        if self.dim % self.heads:
            divisors = [h for h in range(1, self.dim + 1) if self.dim % h == 0]
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads}); "
                             f"allowed heads for this dim include {divisors[:8]}")
        if self.pos_embedding == "sincos" and self.dim % 4:
            raise ValueError(f"pos_embedding='sincos' needs dim divisible by 4, got dim={self.dim}")
        return self

    @property
    def grid_size(self) -> int:
        """Patches along each side of the image."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (the class token not included)."""
        return self.grid_size ** 2

    @property
    def mlp_dim(self) -> int:
        """Hidden width of each block's MLP."""
        return int(self.mlp_ratio * self.dim)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images (N, C, H, W) into flattened patches (N, L, C * p * p), row by row."""
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    p = patch_size
    if p <= 0 or h % p or w % p:
        raise ValueError(f"patch_size must be > 0 and divide H={h} and W={w}, got {p}")
    x = x.reshape(n, c, h // p, p, w // p, p)  # (N, C, H/p, p, W/p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p): patch row, patch column first
    return x.reshape(n, (h // p) * (w // p), c * p * p)  # (N, L, C * p * p)


class PatchEmbedding(nn.Module):
    """Project each p x p patch to a ``dim`` vector: a convolution with kernel = stride = p."""

    def __init__(self, in_channels: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        # one linear map applied to every patch, i.e. a conv that never overlaps its windows
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to patch tokens (N, L, dim), L = (H / p) * (W / p)."""
        x = self.proj(x)  # (N, dim, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (N, L, dim)


def sincos_position_embedding(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embeddings (grid_size**2, dim): half for the row, half the column."""
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 (sin and cos of row and column), got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    parts = []
    for pos in (rows.flatten(), cols.flatten()):  # (L,) each
        angles = pos[:, None] * freqs[None, :]  # (L, D/4)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()  # (L, D)


class ViT(nn.Module):
    """Patch embedding, class token, position embeddings, encoder blocks, norm, linear head."""

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ViTConfig()
        self.patch_embed = PatchEmbedding(config.in_channels, config.patch_size, config.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        tokens = config.num_patches + 1  # the class token takes position 0
        if config.pos_embedding == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, config.dim))
        else:  # fixed: a buffer that moves with the model but is never trained
            pos = torch.zeros(1, tokens, config.dim)
            if config.pos_embedding == "sincos":
                pos[0, 1:] = sincos_position_embedding(config.grid_size, config.dim)
            self.register_buffer("pos_embed", pos, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(  # pre-norm encoder blocks, the book's one implementation
            TransformerBlock(config.dim, config.heads, config.mlp_dim, dropout=config.dropout,
                             activation="gelu", norm_first=True)
            for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # small normal weights cut at two standard deviations, as in the reference ViT code
        def small(tensor: torch.Tensor) -> None:
            nn.init.trunc_normal_(tensor, std=0.02, a=-0.04, b=0.04)  # a, b are absolute values

        for module in self.modules():
            if isinstance(module, nn.Linear):
                small(module.weight)
                nn.init.zeros_(module.bias)
        small(self.cls_token)
        if isinstance(self.pos_embed, nn.Parameter):
            small(self.pos_embed)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Return the input sequence (N, 1 + L, D): class token, patch tokens, plus positions."""
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"expected images of shape (N, {c}, {s}, {s}), got {tuple(x.shape)}")
        patches = self.patch_embed(x)  # (N, L, D)
        cls = self.cls_token.expand(len(x), -1, -1)  # (N, 1, D), one copy per image
        return self.drop(torch.cat([cls, patches], dim=1) + self.pos_embed)  # (N, 1 + L, D)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class token's final, normalised state (N, D): the input to the head."""
        h = self.tokens(x)
        for block in self.blocks:
            h = block(h)  # (N, 1 + L, D)
        return self.norm(h[:, 0])  # (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (N, num_classes)

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return every block's attention weights, a list of depth tensors (N, heads, T, T)."""
        h, maps = self.tokens(x), []
        for block in self.blocks:
            h, weights = block.forward_with_attention(h)
            maps.append(weights)
        return maps


def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar and Zuidema, 2020): how much each token draws on each input.

    Each layer's head-averaged weights are mixed half-and-half with the identity (the residual
    path) and the layers are multiplied: ``R = A_L ... A_1``. Returns (N, T, T); row 0 is the
    class token's attribution over the input tokens.
    """
    if not maps or any(m.ndim != 4 or m.shape != maps[0].shape for m in maps):
        raise ValueError(f"maps must be a non-empty list of equal (N, heads, T, T) tensors, got "
                         f"shapes {[tuple(m.shape) for m in maps]}")
    n, _, t, _ = maps[0].shape
    eye = torch.eye(t, dtype=maps[0].dtype, device=maps[0].device)
    rollout = eye.expand(n, t, t)
    for weights in maps:
        mixed = 0.5 * weights.mean(dim=1) + 0.5 * eye  # (N, T, T), rows still sum to 1
        rollout = mixed @ rollout  # later layers act on what earlier layers produced
    return rollout

"""Positional encodings: sinusoidal, learned, rotary (RoPE) and ALiBi.

Introduced in lesson 5.4 (``m05-l04``). Attention is permutation-equivariant, so a transformer
needs to be told where each token is. Two families do this:

* *absolute* encodings added to the token embeddings before the first block:
  :func:`sinusoidal_table` / :class:`SinusoidalPositionalEncoding` (Vaswani et al., 2017) and
  :class:`LearnedPositionalEncoding` (Gehring et al., 2017);
* *relative* encodings applied inside attention: :class:`RotaryEmbedding` (Su et al., 2021)
  rotates queries and keys (pass it as ``rotary=`` to
  :class:`~neuralarch.layers.attention.MultiHeadAttention` or
  :class:`~neuralarch.layers.transformer.TransformerBlock`), and :func:`alibi_bias`
  (Press et al., 2022) adds a distance penalty to the scores (pass it as ``attn_mask=``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """The (max_len, dim) table ``PE[p, 2i] = sin(p / 10000^(2i/dim))``, cos at ``2i + 1``."""
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if dim <= 0 or dim % 2:
        raise ValueError(f"dim must be a positive even number (sin/cos pairs), got {dim}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim / 2,)
    angles = pos * inv_freq  # (max_len, dim / 2): column i turns at frequency inv_freq[i]
    table = torch.empty(max_len, dim, dtype=torch.float64)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles.cos()
    return table.float()


def _check_length(x: torch.Tensor, dim: int, offset: int, max_len: int, name: str) -> int:
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"{name} expects x of shape (B, T, {dim}), got {tuple(x.shape)}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    t = x.shape[1]
    if offset + t > max_len:
        raise ValueError(f"{name} has positions 0..{max_len - 1} (max_len={max_len}) but the "
                         f"input needs positions up to {offset + t - 1}; build it with a larger "
                         "max_len")
    return t


class SinusoidalPositionalEncoding(nn.Module):
    """Add the fixed sinusoidal table to token embeddings: ``x + PE[offset : offset + T]``."""

    def __init__(self, dim: int, max_len: int = 1024) -> None:
        super().__init__()
        self.dim, self.max_len = dim, max_len
        # A buffer, not a parameter (nothing to learn), and not saved: it is rebuilt on init.
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Map (B, T, D) to (B, T, D); ``offset`` is the position of the first token."""
        t = _check_length(x, self.dim, offset, self.max_len, type(self).__name__)
        return x + self.table[offset:offset + t].to(x.dtype)  # (T, D) broadcasts over B


class LearnedPositionalEncoding(nn.Module):
    """Add one trained vector per position (an ``nn.Embedding`` of ``max_len`` rows)."""

    def __init__(self, dim: int, max_len: int = 1024, init_std: float = 0.02) -> None:
        super().__init__()
        if dim <= 0 or max_len <= 0:
            raise ValueError(f"dim and max_len must be positive, got {dim} and {max_len}")
        self.dim, self.max_len = dim, max_len
        self.embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)  # small, as in GPT-2

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Map (B, T, D) to (B, T, D); positions >= max_len have no row and raise."""
        t = _check_length(x, self.dim, offset, self.max_len, type(self).__name__)
        pos = torch.arange(offset, offset + t, device=x.device)  # (T,)
        return x + self.embedding(pos).to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Map the halves ``(x1, x2)`` of the last axis to ``(-x2, x1)``: a 90-degree turn per pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE, Su et al., 2021) for queries and keys of width ``d``.

    Dimension ``i`` and ``i + d/2`` form a pair (the "rotate half" convention of GPT-NeoX and
    Llama, not the interleaved ``(2i, 2i+1)`` pairs of the RoFormer paper; the two differ only by
    a fixed permutation of the dimensions). The pair is turned by the angle ``p * theta_i`` with
    ``theta_i = base^(-2i/d)`` at position ``p``, so ``q_m . k_n`` depends on ``m - n`` only.
    Angles are computed for any length: nothing limits the positions it can encode.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim <= 0 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even number, got {head_dim}")
        if base <= 1.0:
            raise ValueError(f"base must be > 1, got {base}")
        self.head_dim, self.base = head_dim, base
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (d / 2,)

    def cos_sin(self, t: int, offset: int = 0, device: torch.device | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (T, d) cosines and sines for positions ``offset .. offset + T - 1``."""
        pos = torch.arange(offset, offset + t, dtype=torch.float32, device=device)  # (T,)
        angles = torch.outer(pos, self.inv_freq.to(device))  # (T, d / 2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, d): pair (i, i + d/2) shares an angle
        return angles.cos(), angles.sin()

    def rotate(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate x (..., T, d) as if its first row sat at position ``offset``."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"RotaryEmbedding(head_dim={self.head_dim}) got last axis "
                             f"{x.shape[-1]}; x must be (..., T, {self.head_dim})")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        cos, sin = self.cos_sin(x.shape[-2], offset, x.device)  # (T, d) each
        rotated = x.float() * cos + rotate_half(x.float()) * sin  # in float32 for accuracy
        return rotated.to(x.dtype)

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q (B, heads, T, d) and k (B, heads, S, d); both start at ``offset``."""
        return self.rotate(q, offset), self.rotate(k, offset)


def alibi_slopes(heads: int) -> torch.Tensor:
    """The (heads,) ALiBi slopes of Press et al. (2022): ``2^(-8/n), 2^(-16/n), ...``.

    For ``heads`` not a power of two, the official recipe: the slopes of the largest power of
    two ``n < heads``, then every other slope of ``2n`` until there are ``heads`` slopes.
    """
    if heads <= 0:
        raise ValueError(f"heads must be positive, got {heads}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)  # the ratio of the geometric sequence equals its start
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        slopes = power_of_two(heads)
    else:
        n = 2 ** math.floor(math.log2(heads))
        slopes = power_of_two(n) + alibi_slopes(2 * n).tolist()[0::2][:heads - n]
    return torch.tensor(slopes, dtype=torch.float64).float()


def alibi_bias(heads: int, t: int, s: int | None = None, *, offset: int = 0,
               symmetric: bool = False) -> torch.Tensor:
    """The (heads, T, S) additive ALiBi bias ``-slope_h * (i - j)`` for query i and key j.

    Query ``i`` sits at position ``offset + i``, key ``j`` at ``j``. The bias is meant for
    causal attention (combine it with ``causal=True``; above the diagonal it is positive and
    must be masked). ``symmetric=True`` uses ``-slope * |i - j|`` for encoders that look both
    ways, a common variant that is not in the paper.
    """
    s = t if s is None else s
    if t <= 0 or s <= 0:
        raise ValueError(f"t and s must be positive, got t={t}, s={s}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    query_pos = torch.arange(offset, offset + t, dtype=torch.float32)[:, None]  # (T, 1)
    key_pos = torch.arange(s, dtype=torch.float32)[None, :]  # (1, S)
    distance = query_pos - key_pos  # (T, S): how far back key j is from query i
    if symmetric:
        distance = distance.abs()
    return -alibi_slopes(heads)[:, None, None] * distance  # (heads, T, S)

"""Attention, written once for the whole book: the scaled dot-product and multi-head attention.

Introduced in lessons 5.2 and 5.3 (``m05-l02``, ``m05-l03``) and used by every model that
attends: the vision transformer of lesson 4.4, project 3's hybrid network, the encoder-decoder
of lesson 5.5 and the language models after it. :func:`attention` is the one function that
computes ``softmax(Q K^T / sqrt(d) + mask) V``; :class:`MultiHeadAttention` wraps it with
named projections (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``) for self- and
cross-attention. The transformer block built from it is in :mod:`neuralarch.layers.transformer`.

Mask conventions (the same as ``F.scaled_dot_product_attention``): a boolean ``mask`` is
``True`` where a query *may* attend to a key; a float ``mask`` is added to the scores (``-inf``
forbids, an ALiBi bias tilts). ``key_padding_mask`` is ``True`` at padding keys, as in
``nn.MultiheadAttention``, because the name says what it marks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Rotary position embeddings hook in here: (q, k) of shape (B, heads, T, d) -> rotated (q, k).
Rotary = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def causal_mask(t: int, s: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (T, S) mask, True where query ``i`` may see key ``j <= i`` (top-left aligned)."""
    s = t if s is None else s
    return torch.ones(t, s, dtype=torch.bool, device=device).tril()


def combine_masks(*masks: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Merge boolean and additive masks into one additive float mask (or None if all are None)."""
    total = None
    for mask in masks:
        if mask is None:
            continue
        if mask.dtype == torch.bool:  # allowed -> 0, forbidden -> -inf
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                ~mask, float("-inf"))
        total = mask.to(dtype) if total is None else total + mask.to(dtype)
    return total


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None, *, is_causal: bool = False,
              dropout_p: float = 0.0, training: bool = False,
              scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``softmax(Q K^T * scale + mask) V`` and the weights, for (..., T, d) queries.

    ``q`` is (..., T, d), ``k`` (..., S, d), ``v`` (..., S, d_v); ``mask`` broadcasts to
    (..., T, S). Returns the output (..., T, d_v) and the weights (..., T, S), each row summing
    to 1. A query row whose keys are all masked has no defined softmax: its output is NaN.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"need q (..., T, d), k (..., S, d), v (..., S, d_v); got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (..., T, S): how well query t matches key s
    if is_causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], q.device),
                                    float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask  # an additive bias: -inf forbids, finite values tilt
    weights = scores.softmax(dim=-1)  # (..., T, S)
    return F.dropout(weights, dropout_p, training) @ v, weights  # (..., T, d_v), (..., T, S)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017): ``heads`` attentions of width dim / heads.

    Self-attention when called with one sequence, cross-attention with ``key``/``value`` from
    another (for example an encoder's memory, of width ``kdim``). ``causal=True`` lets query
    ``t`` see keys ``<= t`` only. ``rotary`` (optional) rotates queries and keys by position.
    """

    def __init__(self, dim: int, heads: int, *, kdim: int | None = None, vdim: int | None = None,
                 bias: bool = True, dropout: float = 0.0, causal: bool = False,
                 rotary: Rotary | None = None) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0 or dim % heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of heads ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.dropout, self.causal, self.rotary = dropout, causal, rotary
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kdim or dim, dim, bias=bias)
        self.v_proj = nn.Linear(vdim or dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, D) -> (B, heads, T, D / heads): heads become a batch axis
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, *, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                average_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (B, T, D) to ``key``/``value`` (B, S, ·); default: itself.

        ``attn_mask`` broadcasts to (B, heads, T, S) (for example (T, S) or an ALiBi bias
        (heads, T, S)); ``key_padding_mask`` (B, S) is True at padding. Returns (B, T, D) and,
        if ``need_weights``, the weights (B, T, S) averaged over heads or (B, heads, T, S).
        """
        key = query if key is None else key
        value = key if value is None else value
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3 or key.shape[:2] != value.shape[:2]:
            raise ValueError(f"need query (B, T, D), key and value (B, S, ·); got "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        b, t, s = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = (self._split(proj(x)) for proj, x in
                   ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
        if self.rotary is not None:
            q, k = self.rotary(q, k)  # positions enter as rotations of q and k (RoPE)
        padding = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, s):
                raise ValueError(f"key_padding_mask must be (B, S) = {(b, s)}, "
                                 f"got {tuple(key_padding_mask.shape)}")
            padding = ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S), True = a key
        mask = attn_mask
        if padding is not None:
            mask = padding if mask is None else combine_masks(mask, padding, dtype=q.dtype)
        out, weights = attention(q, k, v, mask, is_causal=self.causal, dropout_p=self.dropout,
                                 training=self.training)  # (B, heads, T, D / heads)
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, self.dim))  # heads side by side
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_weights else weights

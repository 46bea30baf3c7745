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

Lesson 6.1 (``m06-l01``) added grouped-query attention (``kv_heads``: fewer key/value heads
than query heads, Ainslie et al., 2023) and lesson 6.4 (``m06-l04``) the key-value cache
(:class:`KVCache`) that lets a decoder generate one token at a time without recomputing the
keys and values of the prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Rotary position embeddings hook in here: (q, k) of shape (B, heads, T, d) -> rotated (q, k).
Rotary = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def causal_mask(t: int, s: int | None = None, device: torch.device | None = None,
                offset: int = 0) -> torch.Tensor:
    """Boolean (T, S) mask, True where query ``i`` may see key ``j <= i + offset``.

    ``offset=0`` is top-left aligned (as ``is_causal`` in SDPA); with a cache of ``P`` earlier
    keys, ``offset=P`` aligns it bottom-right: query ``i`` sits at absolute position ``P + i``.
    """
    s = t if s is None else s
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=offset)


class KVCache:
    """The keys and values a decoder has already computed, one slot per layer (lesson 6.4).

    Each layer's attention calls :meth:`update` with the keys and values (B, kv_heads, T, d) of
    its new tokens and gets back those of the whole sequence so far. With ``max_len`` the
    storage is allocated once, at the first update, for ``max_len`` positions (no copies while
    generating); without it the tensors grow by concatenation. Keys are stored after the rotary
    rotation and before grouped-query heads are repeated, so the cache holds ``kv_heads`` heads.
    """

    def __init__(self, n_layers: int, max_len: int | None = None) -> None:
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be an int >= 1, got {n_layers!r}")
        if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len must be None or an int >= 1, got {max_len!r}")
        self.n_layers, self.max_len = n_layers, max_len
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.lengths = [0] * n_layers

    def length(self, layer: int = 0) -> int:
        """How many positions layer ``layer`` holds (the next token's absolute position)."""
        return self.lengths[layer]

    @property
    def offset(self) -> int:
        """Positions already cached by the first layer, where the next forward pass starts."""
        return self.lengths[0]

    def reset(self) -> None:
        """Forget everything (keep preallocated storage for reuse)."""
        self.lengths = [0] * self.n_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, kv_heads, T, d) to layer ``layer``; return all (B, kv_heads, P+T, d)."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer must be in [0, {self.n_layers}), got {layer}")
        start, t = self.lengths[layer], k.shape[-2]
        if self.max_len is None:
            old_k, old_v = self.k[layer], self.v[layer]
            if start == 0 or old_k is None or old_v is None:
                self.k[layer], self.v[layer] = k, v
            else:  # a copy of the whole prefix per step: preallocate (max_len) to avoid it
                self.k[layer] = torch.cat([old_k[..., :start, :], k], dim=-2)
                self.v[layer] = torch.cat([old_v[..., :start, :], v], dim=-2)
        else:
            if start + t > self.max_len:
                raise ValueError(f"KVCache(max_len={self.max_len}) is full: it holds {start} "
                                 f"positions and got {t} more; build it with a larger max_len")
            store_k = self.k[layer]
            if store_k is None or store_k.shape[:2] != k.shape[:2] or store_k.dtype != k.dtype:
                shape = (*k.shape[:2], self.max_len, k.shape[-1])  # (B, kv_heads, max_len, d)
                self.k[layer] = k.new_empty(shape)
                self.v[layer] = v.new_empty((*v.shape[:2], self.max_len, v.shape[-1]))
            self.k[layer][..., start:start + t, :] = k
            self.v[layer][..., start:start + t, :] = v
        end = self.lengths[layer] = start + t
        full_k, full_v = self.k[layer], self.v[layer]
        assert full_k is not None and full_v is not None
        return full_k[..., :end, :], full_v[..., :end, :]


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
    ``t`` see keys ``<= t`` only. ``rotary`` (optional) rotates queries and keys by position;
    with a cache it is called as ``rotary(q, k, offset=P)``, as
    :class:`~neuralarch.sequence.positional.RotaryEmbedding` accepts. ``kv_heads`` (default
    ``heads``) is the number of key/value heads: each is shared by ``heads // kv_heads`` query
    heads (grouped-query attention; ``kv_heads=1`` is multi-query attention). ``layer_idx`` is
    this attention's slot in a :class:`KVCache`. ``fused=True`` computes the same function with
    PyTorch's fused kernel ``F.scaled_dot_product_attention`` instead of :func:`attention`
    whenever the weights are not asked for: faster, and equal up to rounding (a test).
    """

    def __init__(self, dim: int, heads: int, *, kdim: int | None = None, vdim: int | None = None,
                 bias: bool = True, dropout: float = 0.0, causal: bool = False,
                 rotary: Rotary | None = None, kv_heads: int | None = None,
                 layer_idx: int = 0, fused: bool = False) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0 or dim % heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of heads ({heads})")
        kv_heads = heads if kv_heads is None else kv_heads
        if not isinstance(kv_heads, int) or kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"kv_heads ({kv_heads}) must be a positive divisor of heads "
                             f"({heads}): each key/value head serves heads // kv_heads queries")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.kv_heads, self.layer_idx = kv_heads, layer_idx
        self.dropout, self.causal, self.rotary, self.fused = dropout, causal, rotary, fused
        kv_dim = kv_heads * self.head_dim  # narrower than dim under grouped-query attention
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kdim or dim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(vdim or dim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _split(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, D) -> (B, heads, T, D / heads): heads become a batch axis
        return x.view(b, t, heads or self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, *, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                average_weights: bool = True, cache: KVCache | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (B, T, D) to ``key``/``value`` (B, S, ·); default: itself.

        ``attn_mask`` broadcasts to (B, heads, T, S) (for example (T, S) or an ALiBi bias
        (heads, T, S)); ``key_padding_mask`` (B, S) is True at padding. Returns (B, T, D) and,
        if ``need_weights``, the weights (B, T, S) averaged over heads or (B, heads, T, S).
        With a ``cache`` (self-attention only) the T new tokens sit at positions P .. P + T - 1
        after the P cached ones; they attend to all P + T keys, so masks cover S = P + T keys.
        """
        if cache is not None and key is not None:
            raise ValueError("a KVCache is for self-attention: call with the query only")
        key = query if key is None else key
        value = key if value is None else value
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3 or key.shape[:2] != value.shape[:2]:
            raise ValueError(f"need query (B, T, D), key and value (B, S, ·); got "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        b, t = query.shape[0], query.shape[1]
        q = self._split(self.q_proj(query))  # (B, heads, T, d)
        k = self._split(self.k_proj(key), self.kv_heads)  # (B, kv_heads, S, d)
        v = self._split(self.v_proj(value), self.kv_heads)
        past = 0 if cache is None else cache.length(self.layer_idx)
        if self.rotary is not None:  # positions enter as rotations of q and k (RoPE)
            q, k = self.rotary(q, k) if past == 0 else self.rotary(q, k, offset=past)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, kv_heads, P + T, d)
        if self.kv_heads != self.heads:  # query head h reads key/value head h // group
            group = self.heads // self.kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        s = k.shape[-2]
        causal = self.causal
        if causal and past > 0 and t == 1:  # one new token sees every key: nothing to mask
            causal = False
        elif causal and past > 0:  # bottom-right aligned: query i is at absolute position P + i
            bottom_right = causal_mask(t, s, q.device, offset=past)
            attn_mask = bottom_right if attn_mask is None else combine_masks(
                attn_mask, bottom_right, dtype=q.dtype)
            causal = False
        padding = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, s):
                raise ValueError(f"key_padding_mask must be (B, S) = {(b, s)}, "
                                 f"got {tuple(key_padding_mask.shape)}")
            padding = ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S), True = a key
        mask = attn_mask
        if padding is not None:
            mask = padding if mask is None else combine_masks(mask, padding, dtype=q.dtype)
        if self.fused and not need_weights:  # one kernel; the (T, S) weights are never stored
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal,
                dropout_p=self.dropout if self.training else 0.0)  # (B, heads, T, D / heads)
            weights = None
        else:
            out, weights = attention(q, k, v, mask, is_causal=causal, dropout_p=self.dropout,
                                     training=self.training)  # (B, heads, T, D / heads)
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, self.dim))  # heads side by side
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_weights else weights

"""The transformer block, built on :mod:`neuralarch.layers.attention`, and its map to torch.

Introduced in lesson 4.4 (the ViT's encoder blocks) and lesson 5.5 (the encoder-decoder). One
:class:`TransformerBlock` serves as an encoder block (self-attention + feed-forward), a causal
decoder block, or an encoder-decoder block (with ``cross_attention=True``), pre-norm or
post-norm. :func:`to_torch_state` / :func:`load_torch_state` are the one place that knows how
our named projections map onto ``nn.MultiheadAttention`` and ``nn.Transformer*Layer``, whose
query, key and value weights are stacked in one matrix; tests and pages both use them.
:class:`SwiGLU`, the gated feed-forward of Llama-style decoders, was added in lesson 6.1
(``m06-l01``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.layers.attention import MultiHeadAttention, Rotary

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class FeedForward(nn.Module):
    """The position-wise MLP of a transformer block: ``down(dropout(act(up(x))))``."""

    def __init__(self, dim: int, hidden: int, activation: Literal["relu", "gelu"] = "gelu",
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.up = nn.Linear(dim, hidden, bias=bias)  # (.., D) -> (.., hidden)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.down = nn.Linear(hidden, dim, bias=bias)  # back to the residual width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.drop(self.act(self.up(x))))


class SwiGLU(nn.Module):
    """The gated feed-forward of Shazeer (2020): ``down(silu(gate(x)) * up(x))``.

    Two input projections of width ``hidden``: ``gate_proj`` passes through SiLU (Swish) and
    multiplies ``up_proj`` element by element, so the network learns which features to let
    through. With three matrices instead of two, ``hidden`` is usually about 8/3 of ``dim``
    (instead of 4x) to keep the parameter count of a plain MLP.
    """

    def __init__(self, dim: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        if dim <= 0 or hidden <= 0:
            raise ValueError(f"dim and hidden must be positive, got {dim} and {hidden}")
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)  # (.., D) -> (.., hidden)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)  # back to the residual width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (.., D) to (.., D)."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (.., hidden) gated


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention to a memory, and a feed-forward network.

    ``norm_first=True`` (pre-norm, as in GPT-2 and ViT) computes ``x + f(norm(x))`` for each
    sub-layer; ``False`` (post-norm, the 2017 original) computes ``norm(x + f(x))``.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, *, dropout: float = 0.0,
                 activation: Literal["relu", "gelu"] = "gelu", norm_first: bool = True,
                 causal: bool = False, cross_attention: bool = False, bias: bool = True,
                 layer_norm_eps: float = 1e-5, rotary: Rotary | None = None) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(dim, heads, bias=bias, dropout=dropout,
                                            causal=causal, rotary=rotary)
        self.attn_norm = nn.LayerNorm(dim, eps=layer_norm_eps, bias=bias)
        self.cross_attn = (MultiHeadAttention(dim, heads, bias=bias, dropout=dropout)
                           if cross_attention else None)
        self.cross_norm = nn.LayerNorm(dim, eps=layer_norm_eps, bias=bias) if cross_attention \
            else None
        self.ffn = FeedForward(dim, ffn_dim, activation, dropout, bias)
        self.ffn_norm = nn.LayerNorm(dim, eps=layer_norm_eps, bias=bias)
        self.drop = nn.Dropout(dropout)  # on each sub-layer's output, before the residual sum

    def _sublayer(self, x: torch.Tensor, norm: nn.LayerNorm, fn) -> tuple[torch.Tensor, object]:
        out, extra = fn(norm(x) if self.norm_first else x)
        x = x + self.drop(out)
        return (x if self.norm_first else norm(x)), extra

    def forward_with_attention(
            self, x: torch.Tensor, memory: torch.Tensor | None = None, *,
            attn_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
            memory_key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the block's output (B, T, D) and its self-attention weights (B, heads, T, T)."""
        x, weights = self._sublayer(x, self.attn_norm, lambda h: self.self_attn(
            h, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=True,
            average_weights=False))
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this block has cross-attention: pass the encoder's memory")
            x, _ = self._sublayer(x, self.cross_norm, lambda h: self.cross_attn(
                h, memory, key_padding_mask=memory_key_padding_mask))
        elif memory is not None:
            raise ValueError("memory given to a block without cross_attention=True")
        x, _ = self._sublayer(x, self.ffn_norm, lambda h: (self.ffn(h), None))
        return x, weights

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                **masks: torch.Tensor | None) -> torch.Tensor:
        """Map (B, T, D) to (B, T, D); masks as in :meth:`forward_with_attention`."""
        return self.forward_with_attention(x, memory, **masks)[0]


# --- the map to and from torch's weights ----------------------------------------------------

def _attention_pairs(ours: MultiHeadAttention) -> list[tuple[list[str], str]]:
    """(our names, torch's name) pairs; several of ours stack into one of torch's."""
    qkv = ["q_proj", "k_proj", "v_proj"]
    same_width = all(getattr(ours, p).in_features == ours.dim for p in qkv)
    pairs = ([([f"{p}.weight" for p in qkv], "in_proj_weight")] if same_width else
             [([f"{p}.weight"], f"{p}_weight") for p in qkv])
    if ours.q_proj.bias is not None:
        pairs += [([f"{p}.bias" for p in qkv], "in_proj_bias"),
                  (["out_proj.bias"], "out_proj.bias")]
    return [*pairs, (["out_proj.weight"], "out_proj.weight")]


def _pairs(ours: nn.Module) -> list[tuple[list[str], str]]:
    if isinstance(ours, MultiHeadAttention):
        return _attention_pairs(ours)
    if not isinstance(ours, TransformerBlock):
        raise TypeError(f"no torch equivalent for {type(ours).__name__}; expected a "
                        "MultiHeadAttention or a TransformerBlock")
    parts = [("self_attn", "self_attn"), ("ffn.up", "linear1"), ("ffn.down", "linear2"),
             ("attn_norm", "norm1")]
    if ours.cross_attn is not None:  # torch's decoder layer: norm2 before cross-attention
        parts += [("cross_attn", "multihead_attn"), ("cross_norm", "norm2"), ("ffn_norm", "norm3")]
    else:
        parts += [("ffn_norm", "norm2")]
    pairs = []
    for our_name, torch_name in parts:
        sub = ours.get_submodule(our_name)
        inner = (_attention_pairs(sub) if isinstance(sub, MultiHeadAttention) else
                 [([n], n) for n, _ in sub.named_parameters()])
        pairs += [([f"{our_name}.{n}" for n in names], f"{torch_name}.{t}") for names, t in inner]
    return pairs


def to_torch_state(ours: nn.Module) -> dict[str, torch.Tensor]:
    """Our attention or block's weights as a state dict for torch's equivalent module."""
    state = dict(ours.named_parameters())
    return {t: torch.cat([state[n].detach() for n in names]) for names, t in _pairs(ours)}


@torch.no_grad()
def load_torch_state(ours: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a torch module's state dict (``to_torch_state``'s layout) into ours, in place."""
    params = dict(ours.named_parameters())
    for names, t in _pairs(ours):
        if t not in state:
            raise KeyError(f"torch state has no {t!r}; has {sorted(state)[:6]}...")
        sizes = [params[n].shape[0] for n in names]
        for name, part in zip(names, state[t].split(sizes), strict=True):
            params[name].copy_(part)


def torch_layer(block: TransformerBlock) -> nn.Module:
    """Torch's encoder (or decoder) layer of the same shape holding a copy of the weights."""
    attn, up = block.self_attn, block.ffn.up
    kwargs = dict(d_model=attn.dim, nhead=attn.heads, dim_feedforward=up.out_features,
                  dropout=block.drop.p, batch_first=True, norm_first=block.norm_first,
                  layer_norm_eps=block.attn_norm.eps, bias=up.bias is not None,
                  activation="gelu" if isinstance(block.ffn.act, nn.GELU) else "relu")
    layer = (nn.TransformerDecoderLayer if block.cross_attn is not None
             else nn.TransformerEncoderLayer)(**kwargs)
    layer.load_state_dict(to_torch_state(block))
    return layer

"""A GPT-style decoder built from ``torch.nn`` layers, and the validated config that shapes it.

Introduced in lesson 1.4 (``m01-l04``) as the first model built from an
:class:`~neuralarch.config.ArchConfig`: :class:`TransformerConfig` rejects impossible shapes at
construction, :func:`count_parameters` counts the model from its config alone, and
:class:`TorchDecoder` is the model itself, assembled from ``nn.TransformerEncoderLayer`` blocks.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig, ConfigError


class TransformerConfig(ArchConfig):
    """Shape of a decoder-only transformer; CPU-sized defaults, larger presets by name."""

    vocab_size: int = Field(256, gt=0, description="number of distinct token ids")
    context_length: int = Field(128, gt=0, description="maximum sequence length in tokens")
    d_model: int = Field(128, gt=0, description="width of the residual stream")
    n_heads: int = Field(4, gt=0, description="attention heads; must divide d_model")
    n_layers: int = Field(4, gt=0, description="number of transformer blocks")
    d_ff: int | None = Field(None, gt=0, description="MLP hidden width; default 4 * d_model")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability")
    bias: bool = Field(False, description="use bias vectors in Linear and norm layers")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                f"allowed n_heads for this d_model include {divisors[:8]}"
            )
        return self

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP hidden layer."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    @classmethod
    def preset(cls, name: str) -> TransformerConfig:
        """Return a named preset: ``"tiny"`` (tests), ``"small"`` (CPU book pages), ``"gpt2"``."""
        presets = {
            "tiny": dict(vocab_size=64, context_length=32, d_model=32, n_heads=2, n_layers=2),
            "small": {},
            "gpt2": dict(vocab_size=50257, context_length=1024, d_model=768, n_heads=12,
                         n_layers=12, dropout=0.1, bias=True),
        }
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return cls(**presets[name])


def count_parameters(config: TransformerConfig) -> dict[str, int]:
    """Count the parameters of :class:`TorchDecoder` from its config alone, part by part."""
    d, f, n_layers = config.d_model, config.hidden_dim, config.n_layers
    b = int(config.bias)
    embedding = (config.vocab_size + config.context_length) * d  # tokens + positions; head is tied
    attention = n_layers * (4 * d * d + 4 * d * b)  # Q, K, V, output projections
    mlp = n_layers * (2 * d * f + (f + d) * b)  # up and down projections
    norm = (2 * n_layers + 1) * d * (1 + b)  # two LayerNorms per block + the final one
    total = embedding + attention + mlp + norm
    return {
        "embedding": embedding,
        "attention": attention,
        "mlp": mlp,
        "norm": norm,
        "non_embedding": total - embedding,
        "total": total,
    }


class TorchDecoder(nn.Module):
    """A GPT-style decoder assembled from ``torch.nn`` layers, shaped entirely by its config."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.d_model, config.n_heads, config.hidden_dim, config.dropout,
                activation="gelu", batch_first=True, norm_first=True, bias=config.bias,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model, bias=config.bias)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying, as in GPT-2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Map token ids ``(B, T)`` to next-token logits ``(B, T, vocab_size)``."""
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        T, limit = idx.shape[1], self.config.context_length
        if limit < T:
            raise ValueError(f"sequence length {T} exceeds context_length={limit}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)  # (T, T)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)  # (B, T, C)
        return self.head(self.norm(x))  # (B, T, vocab_size)

"""nanoGPT's CPU recipe: a character-level GPT-2-style model, the honest baseline of Project 6.

Introduced in lesson 6.6 (``m06-l06``). Karpathy's nanoGPT trains "baby GPT" on tiny
Shakespeare; its README gives a CPU recipe: 4 layers, 128 wide, 4 heads, a context of 64
characters, batch 12, no dropout, AdamW at lr 1e-3 with warmup and a cosine decay. The model is
GPT-2's: learned token and position embeddings, pre-norm LayerNorm blocks with GELU MLPs (the
book's :class:`~neuralarch.layers.transformer.TransformerBlock`, causal), a final LayerNorm and
an output layer tied to the token embedding. Micro-Gemini must beat it in the same time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.transformer import TransformerBlock


class CharTokenizer:
    """One token per character of a fixed alphabet (nanoGPT's ``shakespeare_char``)."""

    def __init__(self, alphabet: Sequence[str]) -> None:
        if len(set(alphabet)) != len(alphabet) or any(len(c) != 1 for c in alphabet):
            raise ValueError("alphabet must be distinct single characters")
        self.alphabet = list(alphabet)
        self.index = {c: i for i, c in enumerate(self.alphabet)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """Return the tokenizer whose alphabet is the sorted set of characters of ``text``."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens."""
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        """Return one id per character; unknown characters raise ``ValueError``."""
        try:
            return [self.index[c] for c in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the alphabet") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``."""
        return "".join(self.alphabet[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable state."""
        return {"kind": "char", "alphabet": "".join(self.alphabet)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> CharTokenizer:
        """Rebuild a tokenizer saved with :meth:`to_dict`."""
        return cls(list(state["alphabet"]))


class GPTConfig(ArchConfig):
    """The baseline's shape; the defaults are nanoGPT's CPU recipe (vocabulary 65 characters)."""

    vocab_size: int = Field(65, gt=0, description="tokens (characters)")
    context: int = Field(64, gt=0, description="maximum sequence length (learned positions)")
    dim: int = Field(128, gt=0, description="residual width")
    n_layers: int = Field(4, gt=0, description="transformer blocks")
    n_heads: int = Field(4, gt=0, description="attention heads")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in attention, MLP and residual")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> GPTConfig:
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        return self


class CharGPT(nn.Module):
    """GPT-2 in miniature: token + position embeddings, pre-norm causal blocks, tied output."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.pos = nn.Embedding(config.context, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.n_heads, 4 * config.dim, dropout=config.dropout,
                             activation="gelu", norm_first=True, causal=True)
            for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # weight tying, as in GPT-2 and nanoGPT
        self.apply(self._init)
        for name, param in self.named_parameters():  # GPT-2: scale the residual projections
            if name.endswith(("out_proj.weight", "ffn.down.weight")):
                nn.init.normal_(param, 0.0, 0.02 / (2 * config.n_layers) ** 0.5)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return next-token logits (B, T, V) for token ids (B, T), T <= context."""
        t = tokens.shape[1]
        if t > self.config.context:
            raise ValueError(f"sequence length {t} exceeds the context {self.config.context}")
        positions = torch.arange(t, device=tokens.device)  # (T,)
        x = self.drop(self.embed(tokens) + self.pos(positions))  # (B, T, D)
        for block in self.blocks:
            x = block(x)  # (B, T, D)
        return self.lm_head(self.norm(x))  # (B, T, V)


def count_gpt_parameters(config: GPTConfig) -> int:
    """Closed-form parameter count of :class:`CharGPT` (tied output layer counted once)."""
    d, v = config.dim, config.vocab_size
    block = 4 * (d * d + d) + 2 * (4 * d * d) + 4 * d + d + 2 * 2 * d  # attn, MLP, 2 norms
    return v * d + config.context * d + config.n_layers * block + 2 * d

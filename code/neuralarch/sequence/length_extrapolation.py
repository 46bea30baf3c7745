"""The length-extrapolation experiment: train at one length, test at longer ones.

Introduced in lesson 5.4 (``m05-l04``). A tiny causal transformer built from
:class:`~neuralarch.layers.transformer.TransformerBlock` learns the *lag-copy* task: read random
tokens and output, at every position ``t``, the token seen ``lag`` steps earlier. The task needs
relative position and nothing else, and it is equally hard at every position and every length,
so any loss of accuracy on sequences longer than the training length comes from the positional
encoding (one of ``ENCODINGS``), not from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

from neuralarch.config import ArchConfig
from neuralarch.layers.transformer import TransformerBlock
from neuralarch.repro import derive_seed
from neuralarch.sequence.positional import (
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
)
from neuralarch.train.artefacts import single_thread
from neuralarch.train.loop import History, TrainConfig, fit

Encoding = Literal["none", "sinusoidal", "learned", "rope", "alibi"]
ENCODINGS: tuple[Encoding, ...] = ("none", "sinusoidal", "learned", "rope", "alibi")
IGNORE = -100  # target at positions t < lag, which have no token `lag` steps back


class ExtrapolationConfig(ArchConfig):
    """One run of the experiment: the task, the tiny transformer and its training."""

    encoding: Encoding = Field("rope", description="how the model is told positions")
    vocab_size: int = Field(16, ge=2, description="distinct random tokens")
    lag: int = Field(2, ge=1, description="output at t the input token at t - lag")
    train_len: int = Field(32, gt=0, description="sequence length L used in training")
    max_len: int = Field(256, gt=0, description="longest test length (sinusoidal table size)")
    dim: int = Field(32, gt=0, description="model width")
    heads: int = Field(4, gt=0, description="attention heads per block")
    layers: int = Field(2, gt=0, description="transformer blocks")
    steps: int = Field(300, gt=0, description="optimizer steps, each on a fresh batch")
    batch_size: int = Field(32, gt=0, description="sequences per step")
    lr: float = Field(1e-2, gt=0, description="AdamW learning rate")
    seed: int = Field(0, ge=0, description="seeds the data and the initial weights")


def lag_copy_data(n: int, length: int, vocab_size: int, lag: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random token sequences (n, length) and targets ``y[:, t] = x[:, t - lag]``."""
    x = torch.randint(vocab_size, (n, length), generator=generator)  # (N, T)
    y = torch.full_like(x, IGNORE)
    y[:, lag:] = x[:, :-lag]  # (N, T): the token `lag` steps back, IGNORE where there is none
    return x, y


class PositionalTransformer(nn.Module):
    """Token embedding, one positional encoding, causal blocks, a norm and a linear read-out."""

    def __init__(self, config: ExtrapolationConfig) -> None:
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"dim ({config.dim}) must be a multiple of heads ({config.heads})")
        self.encoding, self.heads = config.encoding, config.heads
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.position: nn.Module | None = None  # the absolute encodings, added once
        if config.encoding == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(config.dim, config.max_len)
        elif config.encoding == "learned":  # one row per *training* position, no more
            self.position = LearnedPositionalEncoding(config.dim, config.train_len)
        rotary = RotaryEmbedding(config.dim // config.heads) if config.encoding == "rope" else None
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, 4 * config.dim, causal=True, rotary=rotary)
            for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    @property
    def max_len(self) -> int | None:
        """Longest input length the model accepts; None when any length works."""
        return getattr(self.position, "max_len", None)

    def forward_with_attention(self, tokens: torch.Tensor,
                               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, T, vocab_size) and each block's attention weights (B, heads, T, T)."""
        h = self.embed(tokens)  # (B, T, D)
        if self.position is not None:
            h = self.position(h)  # raises past max_len, which the learned table cannot index
        bias = (alibi_bias(self.heads, tokens.shape[1]).to(h.device)
                if self.encoding == "alibi" else None)  # (heads, T, T), added to the scores
        maps = []
        for block in self.blocks:
            h, weights = block.forward_with_attention(h, attn_mask=bias)
            maps.append(weights)
        return self.head(self.norm(h)), maps  # (B, T, V)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map tokens (B, T) to logits (B, T, vocab_size)."""
        return self.forward_with_attention(tokens)[0]


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position with a target (B, T, V) vs (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@dataclass
class ExtrapolationRun:
    """A trained model, its config and its training history."""

    model: PositionalTransformer
    config: ExtrapolationConfig
    history: History


def train_extrapolation_model(config: ExtrapolationConfig,
                              progress: bool = True) -> ExtrapolationRun:
    """Train a :class:`PositionalTransformer` on fresh lag-copy sequences of length L.

    Training runs on one CPU thread: for a model this small that is as fast as two, and the
    fixed order of its sums makes every build give the same weights.
    """
    data = torch.Generator().manual_seed(derive_seed(config.seed, "train-data"))
    x, y = lag_copy_data(config.steps * config.batch_size, config.train_len,
                         config.vocab_size, config.lag, data)
    torch.manual_seed(derive_seed(config.seed, "init"))
    model = PositionalTransformer(config)
    train = TrainConfig(epochs=1, batch_size=config.batch_size, seed=config.seed,
                        log_every=10, device="cpu")
    with single_thread():
        history = fit(model, TensorDataset(x, y), None, sequence_loss,
                      lambda params: torch.optim.AdamW(params, lr=config.lr), train,
                      progress=progress)
    model.eval()
    return ExtrapolationRun(model, config, history)


@torch.no_grad()
def accuracy_by_position(model: PositionalTransformer, config: ExtrapolationConfig,
                         length: int, n: int = 64, seed: int = 1) -> torch.Tensor:
    """Accuracy at each position (length,) over ``n`` fresh test sequences; NaN where t < lag."""
    generator = torch.Generator().manual_seed(derive_seed(seed, f"test-{length}"))
    x, y = lag_copy_data(n, length, config.vocab_size, config.lag, generator)
    correct = (model(x).argmax(dim=-1) == y).float()  # (n, T)
    return correct.mean(dim=0).masked_fill(y[0] == IGNORE, float("nan"))


def accuracy_at_lengths(model: PositionalTransformer, config: ExtrapolationConfig,
                        factors: tuple[int, ...] = (1, 2, 4, 8), tokens: int = 8192,
                        seed: int = 1) -> dict[int, float | None]:
    """Test accuracy at lengths ``factor * L`` on ``tokens`` fresh tokens each (None: cannot)."""
    results: dict[int, float | None] = {}
    for factor in factors:
        length = factor * config.train_len
        if model.max_len is not None and length > model.max_len:
            results[factor] = None  # e.g. a learned table has no row for these positions
            continue
        per_position = accuracy_by_position(model, config, length, max(tokens // length, 1), seed)
        results[factor] = per_position.nanmean().item()
    return results

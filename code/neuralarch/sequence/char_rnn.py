"""A character-level language model: embedding -> LSTM or GRU -> linear, with truncated BPTT.

Introduced in week 07 (``week07``), the course track's language-modelling week. The recurrent
layer is torch's ``nn.LSTM`` or ``nn.GRU`` for speed; lesson 5.1 (``m05-l01``) builds the same
cells from scratch in ``neuralarch.sequence.recurrent`` and shows that they match torch's.
The text is one long stream of characters. :func:`batchify` cuts it into ``B`` contiguous rows,
and training walks along the rows in windows of ``T`` characters, carrying the recurrent state
from one window to the next and detaching it, so that gradients flow back at most ``T`` steps
(truncated backpropagation through time). :func:`bits_per_char` evaluates on a held-out split,
and :func:`generate` samples new text with a temperature.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm import tqdm

from neuralarch.config import ArchConfig
from neuralarch.progress import progress_disabled
from neuralarch.repro import make_generator

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU: h; LSTM: (h, c), (L, B, H) each


class CharVocab:
    """The characters of a text, numbered in sorted order; encodes strings to id tensors."""

    def __init__(self, chars: Sequence[str]) -> None:
        if not chars or any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be a non-empty sequence of distinct single characters")
        self.itos: list[str] = list(chars)
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The sorted set of characters that occur in ``text``."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """Map a string to a (N,) int64 tensor of ids; unknown characters raise a ValueError."""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown[:10]}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Map ids back to a string."""
        return "".join(self.itos[int(i)] for i in ids)


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split a corpus into its first ``1 - val_fraction`` (train) and the rest (validation)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1.0 - val_fraction))
    return text[:cut], text[cut:]


class CharRNNConfig(ArchConfig):
    """Sizes of a :class:`CharRNN`; the defaults train to a useful model in seconds on a CPU."""

    vocab_size: int = Field(..., gt=1, description="number of distinct characters")
    embed_dim: int = Field(32, gt=0, description="size of a character embedding")
    hidden_size: int = Field(128, gt=0, description="size of the recurrent state h")
    num_layers: int = Field(1, gt=0, description="stacked recurrent layers")
    cell: Literal["lstm", "gru"] = Field("lstm", description="the recurrent cell")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between stacked layers")


class CharRNN(nn.Module):
    """Embedding -> LSTM/GRU -> linear: logits for the next character at every position."""

    def __init__(self, config: CharRNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn(config.embed_dim, config.hidden_size, config.num_layers, batch_first=True,
                       dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, ids: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """Map ids (B, T) and an optional state to logits (B, T, V) and the final state."""
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a (B, T) int64 tensor, got {tuple(ids.shape)} "
                             f"{ids.dtype}")
        hidden, state = self.rnn(self.embed(ids), state)  # (B, T, H)
        return self.head(hidden), state  # (B, T, V)


def detach_state(state: State) -> State:
    """Cut the graph behind a recurrent state, keeping its values (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a (N,) id stream into (B, N // B): row b is the b-th contiguous piece of the text."""
    if ids.dim() != 1:
        raise ValueError(f"ids must be one stream of shape (N,), got {tuple(ids.shape)}")
    if not 0 < batch_size <= len(ids) // 2:
        raise ValueError(f"batch_size must be in [1, {len(ids) // 2}] for {len(ids)} ids, "
                         f"got {batch_size}")
    columns = len(ids) // batch_size
    return ids[: batch_size * columns].view(batch_size, columns)  # drops the last N mod B ids


def bptt_windows(rows: torch.Tensor, seq_len: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (inputs, targets) windows (B, T) along the rows; targets are inputs shifted by 1."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    for start in range(0, rows.shape[1] - 1, seq_len):
        end = min(start + seq_len, rows.shape[1] - 1)  # the last window may be shorter
        yield rows[:, start:end], rows[:, start + 1:end + 1]


@torch.no_grad()
def bits_per_char(model: CharRNN, ids: torch.Tensor, batch_size: int = 16,
                  seq_len: int = 256) -> float:
    """Mean negative log2-likelihood per predicted character of a (N,) stream, state carried."""
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    for x, y in bptt_windows(batchify(ids, batch_size), seq_len):
        logits, state = model(x, state)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count / math.log(2)  # nats -> bits


def unigram_bits_per_char(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int,
                          smoothing: float = 1.0) -> float:
    """Bits per character on ``eval_ids`` of character frequencies counted on ``train_ids``."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + smoothing  # add-k
    log2_p = torch.log2(counts / counts.sum())  # (V,)
    return -log2_p[eval_ids].mean().item()


class CharTrainConfig(ArchConfig):
    """How :func:`train_char_rnn` trains: steps, window shape, learning rate, evaluation."""

    steps: int = Field(600, gt=0, description="optimizer steps (one window each)")
    batch_size: int = Field(32, gt=0, description="rows of the text read in parallel")
    seq_len: int = Field(64, gt=0, description="window length T: how far gradients flow back")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate (high: the model is small)")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the global gradient norm")
    eval_every: int = Field(200, gt=0, description="evaluate on the validation ids every N steps")
    log_every: int = Field(20, gt=0, description="record the mean training loss every N steps")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds the initial weights")


@dataclass
class CharRNNHistory:
    """What :func:`train_char_rnn` returns: training and validation bits per character."""

    steps: list[int] = field(default_factory=list)  # step ending each logged window
    train_bpc: list[float] = field(default_factory=list)  # mean training bits/char of it
    val_steps: list[int] = field(default_factory=list)
    val_bpc: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_char_rnn(model: CharRNN, train_ids: torch.Tensor, val_ids: torch.Tensor | None,
                   config: CharTrainConfig | None = None, progress: bool = True
                   ) -> CharRNNHistory:
    """Train ``model`` in place with Adam and truncated BPTT; return the history."""
    config = config or CharTrainConfig()
    rows = batchify(train_ids, config.batch_size)  # (B, N / B)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history, window_losses = CharRNNHistory(), []
    start = time.perf_counter()
    model.train()
    windows: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())
    state: State | None = None
    bar = tqdm(range(1, config.steps + 1), desc="char-RNN", leave=False,
               disable=not progress or progress_disabled())
    for step in bar:
        batch = next(windows, None)
        if batch is None:  # start (again) at the beginning of the rows, from a zero state
            windows, state = bptt_windows(rows, config.seq_len), None
            batch = next(windows)
        x, y = batch  # (B, T) each
        logits, state = model(x, state)
        state = detach_state(state)  # keep the values, drop the graph of earlier windows
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        window_losses.append(loss.item() / math.log(2))
        if step % config.log_every == 0 or step == config.steps:
            history.steps.append(step)
            history.train_bpc.append(sum(window_losses) / len(window_losses))
            bar.set_postfix(bpc=f"{history.train_bpc[-1]:.3f}")
            window_losses = []
        if val_ids is not None and (step % config.eval_every == 0 or step == config.steps):
            history.val_steps.append(step)
            history.val_bpc.append(bits_per_char(model, val_ids))
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


def sample_next(logits: torch.Tensor, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one id per row of logits (B, V) from softmax(logits / temperature); 0 is argmax."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B,) the limit of temperature -> 0
    probs = torch.softmax(logits.double() / temperature, dim=-1)  # double: tiny temperatures
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)


@torch.no_grad()
def generate(model: CharRNN, vocab: CharVocab, prompt: str, length: int,
             temperature: float = 1.0, generator: torch.Generator | int | None = None) -> str:
    """Continue ``prompt`` by ``length`` sampled characters; return only the continuation."""
    if not prompt:
        raise ValueError("prompt must hold at least one character")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if isinstance(generator, int):
        generator = make_generator(generator)
    was_training = model.training
    model.eval()
    logits, state = model(vocab.encode(prompt)[None], None)  # read the prompt: (1, P, V)
    out = []
    for _ in range(length):
        next_id = sample_next(logits[:, -1], temperature, generator)  # (1,)
        out.append(int(next_id))
        logits, state = model(next_id[:, None], state)  # (1, 1, V)
    model.train(was_training)
    return vocab.decode(out)

"""Kim's (2014) convolutional network for sentence classification.

Introduced in the text-convolutions lesson (``extra-text-convolutions``) and used in week 6.
Words become vectors (optionally the word2vec vectors of ``extra-word-embeddings``); parallel
1-D convolutions of several widths detect n-grams; max-over-time pooling keeps each filter's
strongest match anywhere in the sentence; dropout and a linear layer classify.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.text.vocab import Vocabulary
from neuralarch.text.word2vec import WordVectors


class TextCNNConfig(ArchConfig):
    """Sizes of a text CNN: vocabulary, embedding, filter widths and counts, dropout, classes."""

    vocab_size: int = Field(gt=1, description="rows of the embedding table, padding included")
    embed_dim: int = Field(50, gt=0, description="size of each word vector")
    widths: tuple[int, ...] = Field((3, 4, 5), description="n-gram widths of the filter banks")
    filters: int = Field(50, gt=0, description="filters per width (Kim: 100)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the pooled features")
    num_classes: int = Field(2, gt=1, description="output classes")
    pad_id: int = Field(0, ge=0, description="id of the padding token (its vector stays zero)")
    freeze_embeddings: bool = Field(False, description="keep the word vectors fixed")

    @field_validator("widths")
    @classmethod
    def _widths(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if not widths or min(widths) < 1 or len(set(widths)) != len(widths):
            raise ValueError(f"widths must be distinct integers >= 1, at least one, got {widths}")
        return widths


@dataclass
class Pooled:
    """Max-over-time features and where each filter found its maximum."""

    features: torch.Tensor  # (B, F * len(widths)) after ReLU, before dropout
    starts: torch.Tensor  # (B, F * len(widths)) first token of the winning window (may be < 0)
    widths: torch.Tensor  # (F * len(widths),) the n-gram width of each feature


class TextCNN(nn.Module):
    """Embedding -> parallel Conv1d n-gram filters -> ReLU -> max over time -> dropout -> linear."""

    def __init__(self, config: TextCNNConfig):
        super().__init__()
        if config.pad_id >= config.vocab_size:
            raise ValueError(f"pad_id {config.pad_id} must be < vocab_size {config.vocab_size}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim,
                                      padding_idx=config.pad_id)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.convs = nn.ModuleList(nn.Conv1d(config.embed_dim, config.filters, w)
                                   for w in config.widths)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.filters * len(config.widths), config.num_classes)

    def feature_maps(self, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per width: ReLU'd filter responses (B, F, T_w) and which windows are real (B, T_w).

        Sentences are padded by ``max(widths) - 1`` pad tokens on both sides, as in Kim's code,
        so that every n-gram touching a word, even a short sentence's, is scored. A window made
        only of padding is not real: pooling ignores it, so more padding changes nothing.
        """
        if ids.ndim != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a (B, L) tensor of token ids (int64), got shape "
                             f"{tuple(ids.shape)} and dtype {ids.dtype}")
        margin = max(self.config.widths) - 1
        ids = F.pad(ids, (margin, margin), value=self.config.pad_id)  # (B, L + 2 * margin)
        words = ids.ne(self.config.pad_id).float().unsqueeze(1)  # (B, 1, L') 1 at real tokens
        if not words.any(-1).all():
            raise ValueError("every sentence needs at least one non-padding token")
        x = self.embedding(ids).transpose(1, 2)  # (B, E, L'): Conv1d wants channels first
        maps = []
        for w, conv in zip(self.config.widths, self.convs, strict=True):
            real = F.max_pool1d(words, w, stride=1).squeeze(1).bool()  # (B, L' - w + 1)
            maps.append((F.relu(conv(x)), real))  # (B, F, L' - w + 1)
        return maps

    def pool(self, ids: torch.Tensor) -> Pooled:
        """Max-over-time pooling of every filter, with the position of each maximum."""
        margin = max(self.config.widths) - 1
        values, starts, widths = [], [], []
        for w, (response, real) in zip(self.config.widths, self.feature_maps(ids), strict=True):
            top = response.masked_fill(~real.unsqueeze(1), -1.0).max(dim=-1)  # ReLU >= 0 > -1
            values.append(top.values)  # (B, F)
            starts.append(top.indices - margin)  # in the unpadded sentence's positions
            widths.append(torch.full((self.config.filters,), w))
        return Pooled(torch.cat(values, 1), torch.cat(starts, 1), torch.cat(widths))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) for padded token ids (B, L)."""
        return self.head(self.dropout(self.pool(ids).features))

    def load_word_vectors(self, vocab: Vocabulary, vectors: WordVectors) -> int:
        """Copy pretrained vectors into the rows of the words they know; return how many.

        As in Kim (2014), the other words get uniform random vectors with the variance of the
        pretrained ones, so that known and unknown words start on the same scale; the padding
        row stays zero.
        """
        if len(vocab) != self.config.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} tokens, the model {self.config.vocab_size}")
        if vectors.vectors.shape[1] != self.config.embed_dim:
            raise ValueError(f"vectors have size {vectors.vectors.shape[1]}, the model's "
                             f"embeddings {self.config.embed_dim}")
        rows = [(i, vectors.index[w]) for i, w in enumerate(vocab.itos) if w in vectors]
        if not rows:
            return 0
        ours, theirs = (torch.tensor(r) for r in zip(*rows, strict=True))
        known = vectors.vectors[theirs].to(self.embedding.weight)  # (n, E)
        bound = 3**0.5 * known.std().item()  # U[-a, a] has variance a^2 / 3
        with torch.no_grad():
            self.embedding.weight.uniform_(-bound, bound)
            self.embedding.weight[ours] = known
            self.embedding.weight[self.config.pad_id] = 0.0
        return len(rows)


def top_ngrams(model: TextCNN, ids: torch.Tensor, vocab: Vocabulary, feature: int,
               k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` n-grams of the sentences ``ids`` (B, L) that excite one pooled feature most.

    Each sentence contributes its own best window (the one max-pooling picked); padding
    inside a window is shown as ``_``.
    """
    with torch.no_grad():
        pooled = model.pool(ids)
    width = int(pooled.widths[feature])
    best = pooled.features[:, feature].topk(min(k, len(ids)))
    out = []
    for value, row in zip(best.values.tolist(), best.indices.tolist(), strict=True):
        start = int(pooled.starts[row, feature])
        words = [vocab.itos[int(ids[row, t])] if 0 <= t < ids.shape[1] else "_"
                 for t in range(start, start + width)]
        out.append((" ".join("_" if w == vocab.itos[model.config.pad_id] else w for w in words),
                    value))
    return out

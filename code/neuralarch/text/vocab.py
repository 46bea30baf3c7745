"""Tokenising text into words and mapping tokens to integer ids: the book's one vocabulary.

Introduced in the word-embeddings lesson (``extra-word-embeddings``) and used by every model that
reads words: word2vec, the text CNN, the seq2seq translators of Module 5. :func:`tokenize` splits
lower-cased text into words, numbers and punctuation; :class:`Vocabulary` numbers the tokens by
frequency, keeps special tokens (padding, unknown, begin and end of sequence) at fixed ids, and
encodes and pads batches.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

# words (with inner apostrophes), numbers (with inner , or .), or any other single non-space
TOKEN_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+(?:[.,]\d+)*|[^\sa-z\d]")
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words, numbers and punctuation marks."""
    return TOKEN_PATTERN.findall(text.lower())


class Vocabulary:
    """A token <-> id table: specials first (``<pad>`` = 0), then tokens by falling frequency."""

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = (PAD, UNK, BOS, EOS)):
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens must be unique")
        if set(tokens) & set(specials):
            raise ValueError(f"tokens and specials overlap: {sorted(set(tokens) & set(specials))}")
        self.itos: list[str] = [*specials, *tokens]  # id -> token
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        self.specials = tuple(specials)
        self.counts: dict[str, int] = {}  # corpus frequencies, filled by ``build``

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1,
              max_size: int | None = None,
              specials: Sequence[str] = (PAD, UNK, BOS, EOS)) -> Vocabulary:
        """Count the tokens of tokenised ``sentences``; keep those seen ``min_count`` times."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(token for sentence in sentences for token in sentence)
        # ties broken alphabetically, so the same corpus always gives the same ids
        ranked = sorted((t for t, c in counts.items() if c >= min_count and t not in specials),
                        key=lambda t: (-counts[t], t))
        vocab = cls(ranked[:max_size] if max_size is not None else ranked, specials)
        vocab.counts = {t: counts[t] for t in vocab.itos if t in counts}
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def id(self, token: str) -> int:
        """The id of ``token``; unknown tokens map to ``<unk>`` (an error if there is none)."""
        if token in self.stoi:
            return self.stoi[token]
        if UNK not in self.stoi:
            raise KeyError(f"{token!r} is not in the vocabulary, which has no {UNK} token")
        return self.stoi[UNK]

    @property
    def pad_id(self) -> int:
        """Id of the padding token."""
        return self.stoi[PAD]

    def encode(self, tokens: Sequence[str], add_bos: bool = False,
               add_eos: bool = False) -> list[int]:
        """Map tokens to ids, optionally framed by ``<bos>`` and ``<eos>``."""
        ids = [self.id(t) for t in tokens]
        return ([self.stoi[BOS]] if add_bos else []) + ids + ([self.stoi[EOS]] if add_eos else [])

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Map ids back to tokens; stop at ``<eos>`` and drop the specials unless told not to."""
        tokens = []
        for i in ids:
            token = self.itos[int(i)]
            if strip_specials and token == EOS:
                break
            if not (strip_specials and token in self.specials):
                tokens.append(token)
        return tokens

    def pad_batch(self, sequences: Sequence[Sequence[int]],
                  length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists to a (B, L) tensor; also return the padding mask (True = pad)."""
        if not sequences:
            raise ValueError("need at least one sequence to pad")
        longest = max(len(s) for s in sequences)
        length = longest if length is None else length
        if length < longest:
            raise ValueError(f"length {length} is shorter than the longest sequence ({longest})")
        batch = torch.full((len(sequences), length), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            batch[row, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        return batch, batch.eq(self.pad_id)  # (B, L), (B, L)

"""Tokens for Project 5: words whole, numbers one character at a time, spacing kept exactly.

Introduced in lesson 5.6 (``m05-l06``). A word-level vocabulary would give every amount its own
token, so an amount never seen in training would be ``<unk>`` and could never be copied. Here
every digit, point, comma, sign and symbol is its own token, so ``4.2`` is ``4 ##. ##2`` and an
unseen amount is a new *sequence* of seen tokens. The ``##`` prefix (as in WordPiece) marks a
token written with no space before it, which makes :func:`detokenize` the exact inverse of
:func:`tokenize` for text with single spaces. Case is kept: ``ACME`` is a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from neuralarch.text.vocab import Vocabulary

PIECES = re.compile(r"[A-Za-z]+|\d|\S")  # a run of letters, one digit, or one other character
GLUE = "##"  # prefix of a token that follows the previous one without a space


def tokenize(text: str) -> list[str]:
    """Split ``text`` into letter runs, single digits and single symbols, marking glued ones."""
    tokens, end = [], None
    for match in PIECES.finditer(text):
        glued = end is not None and match.start() == end
        tokens.append(GLUE + match.group() if glued else match.group())
        end = match.end()
    return tokens


def detokenize(tokens: Iterable[str]) -> str:
    """Join tokens back into text: glued tokens attach to the previous one, others get a space."""
    out = ""
    for token in tokens:
        if token.startswith(GLUE) and len(token) > len(GLUE):
            out += token[len(GLUE):]
        else:
            out += (" " if out else "") + token
    return out


def build_vocab(sentences: Iterable[str]) -> Vocabulary:
    """One vocabulary for both languages (digits share ids, which helps copying)."""
    return Vocabulary.build(tokenize(s) for s in sentences)


def encode_batch(vocab: Vocabulary, sentences: Sequence[str], add_bos: bool = False,
                 add_eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise, map to ids and right-pad: ids (B, L) and the padding mask (B, L), True = pad."""
    return vocab.pad_batch([vocab.encode(tokenize(s), add_bos=add_bos, add_eos=add_eos)
                            for s in sentences])


def decode_ids(vocab: Vocabulary, ids: Iterable[int]) -> str:
    """Ids (without specials, or stopping at ``<eos>``) back to a detokenised sentence."""
    return detokenize(vocab.decode(ids))

"""WordPiece (BERT's subword tokenizer): greedy longest-match encoding and likelihood training.

Introduced in lesson 6.2 (``m06-l02``). ``WordPiece.encode`` equals the ``tokenizers``
library's ``WordPiece`` model behind a ``BertPreTokenizer`` (no normalizer). The trainer follows
the likelihood criterion of Schuster & Nakajima and Wu et al.: merge the pair of units whose
merge most increases the likelihood of the training words under a unigram model of the units
(to first order, ``count(ab) * log(N count(ab) / (count(a) count(b)))``). The library's
``WordPieceTrainer`` instead runs frequency-based BPE and adds the ``##`` prefixes.
"""

from __future__ import annotations

import heapq
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import pairwise

# Rust's char::is_whitespace (Unicode White_Space), which the library splits on; Python's
# str.isspace also counts U+001C..U+001F, which the library keeps inside words.
WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                       "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def is_bert_punctuation(char: str) -> bool:
    """True for ASCII punctuation (incl. symbols such as '$', '+') and Unicode categories P*."""
    return char in ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def bert_pretokenize(text: str) -> list[str]:
    """Split on whitespace and isolate every punctuation character, as BERT does."""
    words: list[str] = []
    current: list[str] = []
    for char in text:
        if char in WHITESPACE or is_bert_punctuation(char):
            if current:
                words.append("".join(current))
                current = []
            if char not in WHITESPACE:
                words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


class WordPiece:
    """A WordPiece tokenizer: a vocabulary of word starts and ``##``-prefixed continuations.

    Each word is cut greedily from the left into the longest piece in the vocabulary; a word
    with a piece that cannot be matched, or longer than ``max_input_chars_per_word``, becomes
    the single unknown token.
    """

    def __init__(self, vocab: Iterable[str], unk_token: str = "[UNK]", prefix: str = "##",
                 max_input_chars_per_word: int = 100) -> None:
        self.vocab: list[str] = list(dict.fromkeys(vocab))  # id -> token, duplicates dropped
        self.token_id = {t: i for i, t in enumerate(self.vocab)}
        if unk_token not in self.token_id:
            raise ValueError(f"the vocabulary must contain the unknown token {unk_token!r}")
        if not prefix:
            raise ValueError("prefix must be a non-empty string such as '##'")
        if max_input_chars_per_word < 1:
            raise ValueError(f"max_input_chars_per_word must be >= 1, "
                             f"got {max_input_chars_per_word}")
        self.unk_token, self.prefix = unk_token, prefix
        self.max_input_chars_per_word = max_input_chars_per_word

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self.vocab)

    def tokenize_word(self, word: str) -> list[str]:
        """Greedy longest-match-first pieces of one word, or ``[unk_token]``."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):  # longest candidate first
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.token_id:
                    pieces.append(piece)
                    start = end
                    break
            else:  # no prefix of the rest is in the vocabulary: the whole word is unknown
                return [self.unk_token]
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` (BERT pre-tokenisation, then each word)."""
        return [piece for word in bert_pretokenize(text) for piece in self.tokenize_word(word)]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return [self.token_id[piece] for piece in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of token ids joined by spaces, continuation pieces glued to their word."""
        out: list[str] = []
        for position, i in enumerate(ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is not in [0, {self.vocab_size})")
            token = self.vocab[i]
            if token.startswith(self.prefix) and position > 0:
                out.append(token[len(self.prefix):])
            else:
                out.append(token if position == 0 else " " + token)
        return "".join(out)

    @classmethod
    def train(cls, text: str, vocab_size: int, unk_token: str = "[UNK]",
              prefix: str = "##") -> WordPiece:
        """Learn a vocabulary on ``text`` by likelihood-scored merges (``train_wordpiece``)."""
        return cls(train_wordpiece(Counter(bert_pretokenize(text)), vocab_size, unk_token,
                                   prefix), unk_token, prefix)

    def __repr__(self) -> str:
        return f"WordPiece(vocab_size={self.vocab_size})"


def likelihood_gain(count_ab: int, count_a: int, count_b: int, total: int) -> float:
    """First-order gain in unigram log-likelihood from merging a, b: c_ab log(N c_ab / c_a c_b)."""
    return count_ab * math.log(total * count_ab / (count_a * count_b))


def train_wordpiece(counts: dict[str, int], vocab_size: int, unk_token: str = "[UNK]",
                    prefix: str = "##",
                    gain: Callable[[int, int, int, int], float] = likelihood_gain) -> list[str]:
    """A WordPiece vocabulary learned from word counts by likelihood-scored merges.

    Start from every character that begins a word and every ``prefix`` + character that
    continues one; then repeatedly merge the adjacent pair with the largest
    ``gain(count_ab, count_a, count_b, N)`` (ties: the alphabetically smallest pair), with ``N``
    the initial number of units, until the vocabulary (with ``unk_token``) has ``vocab_size``
    entries or no pair is left.
    """
    words = [[w[0]] + [prefix + c for c in w[1:]] for w in counts]
    freq = list(counts.values())
    vocab = [unk_token, *sorted({unit for word in words for unit in word})]
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the alphabet plus "
                         f"{unk_token!r} ({len(vocab)} tokens)")
    unit_counts: Counter[str] = Counter()
    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    pairs_of: dict[str, set[tuple[str, str]]] = {}
    for w, (word, f) in enumerate(zip(words, freq, strict=True)):
        for unit in word:
            unit_counts[unit] += f
        for pair in pairwise(word):
            pair_counts[pair] += f
            where.setdefault(pair, set()).add(w)
            pairs_of.setdefault(pair[0], set()).add(pair)
            pairs_of.setdefault(pair[1], set()).add(pair)
    total = sum(unit_counts.values())

    def score(p: tuple[str, str]) -> float:
        return gain(pair_counts[p], unit_counts[p[0]], unit_counts[p[1]], total)

    # Max-heap on score, lazily validated: an entry is used only if its score is still current.
    heap = [(-score(p), p) for p in pair_counts]
    heapq.heapify(heap)
    known = set(vocab)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts[pair] <= 0 or -neg != score(pair):
            continue  # merged away or stale; the current score was pushed when it changed
        a, b = pair
        new = a + b[len(prefix):]
        if new not in known:
            known.add(new)
            vocab.append(new)
        for w in list(where.pop(pair)):
            word, f, out, i = words[w], freq[w], [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            for old_pair in pairwise(word):
                pair_counts[old_pair] -= f
            for unit in word:
                unit_counts[unit] -= f
            for unit in out:
                unit_counts[unit] += f
            for new_pair in pairwise(out):
                pair_counts[new_pair] += f
                where.setdefault(new_pair, set()).add(w)
                pairs_of.setdefault(new_pair[0], set()).add(new_pair)
                pairs_of.setdefault(new_pair[1], set()).add(new_pair)
            words[w] = out
        # The counts of a, b and new changed, so every pair that uses them has a new score.
        for unit in {a, b, new}:
            for p in pairs_of.get(unit, ()):
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-score(p), p))
    return vocab

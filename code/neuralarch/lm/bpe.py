"""Byte-level byte-pair encoding (GPT-2 style), trained from scratch.

Introduced in lesson 6.2 (``m06-l02``). The trainer reproduces the merge list of the
``tokenizers`` library's ``BpeTrainer`` with a ``ByteLevel`` pre-tokenizer: the same
pre-tokenisation regex, the same numbering of the 256 byte symbols, the same tie-breaking
(equal counts: the smaller pair of ids wins) and the same lazily updated priority queue.
"""

from __future__ import annotations

import heapq
import json
import random
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import pairwise

import regex
import tiktoken
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

# GPT-2's pre-tokenisation pattern, also used by ``tokenizers``' ByteLevel and tiktoken's r50k:
# contractions, letters, digits and other symbols (each with an optional leading space), and
# whitespace; "\s+(?!\S)" leaves the last space of a run to start the next word.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (the library's byte-level alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(others)})
    return mapping


BYTE_TO_CHAR = bytes_to_unicode()
# Token id i <-> byte BYTE_ORDER[i]: printable bytes first, the order of the library's sorted
# alphabet, so that our ids (and hence our tie-breaking) equal the library's.
BYTE_ORDER = sorted(range(256), key=lambda b: ord(BYTE_TO_CHAR[b]))
BYTE_TO_ID = {b: i for i, b in enumerate(BYTE_ORDER)}


def pretokenize(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """Split text into the pieces BPE merges within (merges never cross a piece boundary)."""
    return regex.findall(pattern, text)


def word_counts(text: str, pattern: str = GPT2_PATTERN) -> Counter[bytes]:
    """Count the UTF-8 bytes of every distinct pre-token of ``text``."""
    return Counter(piece.encode("utf-8") for piece in pretokenize(text, pattern))


def _merge_word(symbols: list[int], a: int, b: int, new: int,
                changes: list[tuple[tuple[int, int], int]]) -> list[int]:
    """Replace each (a, b) in ``symbols`` (left to right, no overlap) by ``new``, logging the
    neighbouring pairs that disappear (-1) and appear (+1)."""
    out: list[int] = []
    i, n = 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == a and symbols[i + 1] == b:
            if out:  # a symbol before the pair: (prev, a) goes, (prev, new) comes
                changes.append(((out[-1], a), -1))
                changes.append(((out[-1], new), 1))
            if i + 2 < n:  # a symbol after the pair: (b, next) goes, (new, next) comes
                changes.append(((b, symbols[i + 2]), -1))
                changes.append(((new, symbols[i + 2]), 1))
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def train_merges(counts: dict[bytes, int], vocab_size: int,
                 min_frequency: int = 0) -> tuple[list[tuple[int, int]], list[int]]:
    """Learn BPE merges (pairs of token ids, in order) and their counts from pre-token byte
    strings and their counts.

    Each step merges the most frequent adjacent pair, summed over words weighted by their
    counts; ties go to the smaller (left id, right id). Pair counts are updated incrementally
    from the words that contain the merged pair, and the priority queue is updated lazily: an
    entry whose count is stale is corrected and pushed back when it reaches the top.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}")
    if min_frequency < 0:
        raise ValueError(f"min_frequency must be >= 0, got {min_frequency}")
    words = [[BYTE_TO_ID[b] for b in word] for word in counts]
    freq = list(counts.values())
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for w, (symbols, f) in enumerate(zip(words, freq, strict=True)):
        for pair in pairwise(symbols):
            pair_counts[pair] += f
            where.setdefault(pair, set()).add(w)
    # Heap entries: (-count, pair, push number, words that may contain the pair).
    heap = [(-pair_counts[p], p, k, pos) for k, (p, pos) in enumerate(where.items())]
    heapq.heapify(heap)
    pushes = len(heap)
    tokens = [bytes([b]) for b in BYTE_ORDER]  # id -> bytes
    token_id = {t: i for i, t in enumerate(tokens)}
    merges: list[tuple[int, int]] = []
    merge_counts: list[int] = []  # occurrences of each pair when it was merged
    while len(tokens) < vocab_size and heap:
        neg, pair, _, pos = heapq.heappop(heap)
        if -neg != pair_counts[pair]:  # stale: correct the count and try again later
            heapq.heappush(heap, (-pair_counts[pair], pair, pushes, pos))
            pushes += 1
            continue
        if -neg < 1 or min_frequency > -neg:
            break
        a, b = pair
        merged = tokens[a] + tokens[b]
        new = token_id.get(merged)  # two merges may spell the same string: reuse its id
        if new is None:
            new = len(tokens)
            tokens.append(merged)
            token_id[merged] = new
        merges.append(pair)
        merge_counts.append(-neg)
        changes: list[tuple[tuple[int, int], int]] = []
        touched: dict[tuple[int, int], set[int]] = {}
        for w in pos:
            start = len(changes)
            words[w] = _merge_word(words[w], a, b, new, changes)
            for changed, sign in changes[start:]:
                pair_counts[changed] += sign * freq[w]
                if sign > 0:
                    touched.setdefault(changed, set()).add(w)
        for changed, where_now in touched.items():
            if pair_counts[changed] > 0:
                heapq.heappush(heap, (-pair_counts[changed], changed, pushes, where_now))
                pushes += 1
    return merges, merge_counts


class ByteLevelBPE:
    """A byte-level BPE tokenizer: 256 byte tokens plus one token per learned merge.

    ``encode`` splits text with the pre-tokenisation pattern, turns each piece into its UTF-8
    bytes and applies the merges in the order they were learned; ``decode`` concatenates the
    tokens' bytes. Every string can be encoded, so there is no unknown token.
    """

    def __init__(self, merges: Iterable[tuple[int, int]], pattern: str = GPT2_PATTERN) -> None:
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self.tokens: list[bytes] = [bytes([b]) for b in BYTE_ORDER]  # id -> bytes
        token_id = {t: i for i, t in enumerate(self.tokens)}
        self.merges: list[tuple[int, int]] = []
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}  # pair -> (rank, new id)
        for rank, (a, b) in enumerate(merges):
            if not (0 <= a < len(self.tokens) and 0 <= b < len(self.tokens)):
                raise ValueError(f"merge {rank} ({a}, {b}) uses an id that does not exist yet")
            merged = self.tokens[a] + self.tokens[b]
            if merged not in token_id:
                token_id[merged] = len(self.tokens)
                self.tokens.append(merged)
            self.merges.append((a, b))
            self.ranks.setdefault((a, b), (rank, token_id[merged]))
        self.merge_counts: list[int] | None = None  # set by ``train``
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, min_frequency: int = 0,
              pattern: str = GPT2_PATTERN) -> ByteLevelBPE:
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` tokens."""
        merges, counts = train_merges(word_counts(text, pattern), vocab_size, min_frequency)
        bpe = cls(merges, pattern)
        bpe.merge_counts = counts
        return bpe

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens (256 bytes + merges that made a new string)."""
        return len(self.tokens)

    def _encode_piece(self, piece: str) -> list[int]:
        """Apply the merges to one pre-token: always the lowest-ranked pair, leftmost first."""
        ids = [BYTE_TO_ID[b] for b in piece.encode("utf-8")]
        ranks, never = self.ranks, (len(self.merges), 0)  # 'never' ranks after every merge
        while len(ids) > 1:
            best = min(pairwise(ids), key=lambda p: ranks.get(p, never)[0])
            if best not in ranks:
                break
            new, out, i = ranks[best][1], [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        out: list[int] = []
        cache = self._cache  # pre-tokens repeat: each distinct one is merged once
        for piece in self._regex.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = cache[piece] = self._encode_piece(piece)
            out.extend(ids)
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes spelled by token ids."""
        try:
            return b"".join(self.tokens[i] for i in ids)
        except (IndexError, TypeError) as error:
            raise ValueError(f"token ids must be ints in [0, {self.vocab_size})") from error

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of token ids; a sequence that splits a character's bytes decodes to U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_str(self, token: int) -> str:
        """A token in the library's byte-level spelling (a space shows as 'Ġ', a newline 'Ċ')."""
        return "".join(BYTE_TO_CHAR[b] for b in self.tokens[token])

    def merges_as_strings(self) -> list[tuple[str, str]]:
        """The merge list in the byte-level spelling used by ``tokenizers``' JSON files."""
        return [(self.token_str(a), self.token_str(b)) for a, b in self.merges]

    def to_tiktoken_ranks(self) -> dict[bytes, int]:
        """Token bytes -> id, the ``mergeable_ranks`` of a ``tiktoken.Encoding``."""
        return {token: i for i, token in enumerate(self.tokens)}

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable description (the pattern and the merges)."""
        return {"kind": "byte-level-bpe", "pattern": self.pattern,
                "merges": [[a, b] for a, b in self.merges]}

    @classmethod
    def from_dict(cls, state: dict[str, object]) -> ByteLevelBPE:
        """Rebuild a tokenizer saved by ``to_dict``."""
        if state.get("kind") != "byte-level-bpe":
            raise ValueError(f"not a byte-level BPE state: kind={state.get('kind')!r}")
        merges = [(int(a), int(b)) for a, b in state["merges"]]  # type: ignore[union-attr]
        return cls(merges, str(state["pattern"]))

    def __repr__(self) -> str:
        return f"ByteLevelBPE(vocab_size={self.vocab_size}, merges={len(self.merges)})"


# --- the libraries with matched settings, random text and a benchmark --------------------------

def library_bpe(text: str, vocab_size: int, min_frequency: int = 0) -> Tokenizer:
    """The ``tokenizers`` library's byte-level BPE trained with the settings ours matches."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


def library_merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """The merge list of a ``tokenizers`` BPE model, as pairs of byte-level strings."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def to_tiktoken(bpe: ByteLevelBPE, name: str = "neuralarch-bpe") -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` with our pattern and token ranks (built offline)."""
    return tiktoken.Encoding(name, pat_str=bpe.pattern, mergeable_ranks=bpe.to_tiktoken_ranks(),
                             special_tokens={})


POOLS = ("abcdefghijklmnopqrstuvwxyz", "ABCXYZ", "0123456789", " ", "\n", "\t", ".,;:!?'\"-()",
         "éèàçñüßÆ", "αβγδεΩ", "жизньЯ", "你好世界中文字", "こんにちはカタカナ", "😀🎉👍🏽❤️🇫🇷",
         "e\u0301a\u0308o\u0327", "\u00a0\u2003\u3000", "'s 're 'll 've 'd 't 'm")


def random_unicode_text(n_chars: int, seed: int = 0, assigned_only: bool = True) -> str:
    """Seeded random text: runs from mixed scripts, emoji, combining marks and spaces, plus
    random code points (never surrogates, so it is always valid UTF-8).

    With ``assigned_only`` the random code points are ones assigned in Python's Unicode
    database: the libraries' regex engines use older Unicode tables than ``regex`` for newer
    characters, and would split those differently.
    """
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n_chars:
        if rng.random() < 0.15:
            code = rng.randrange(0x110000)
            if 0xD800 <= code < 0xE000 or (
                    assigned_only and unicodedata.category(chr(code)) == "Cn"):
                continue
            out.append(chr(code))
        else:
            pool = rng.choice(POOLS)
            start = rng.randrange(len(pool))
            out.append(pool[start:start + rng.randint(1, 6)])
    return "".join(out)


def tokenizer_report(text: str, encoders: dict[str, Callable[[str], list[int]]],
                     repeat: int = 3) -> list[dict[str, float | str]]:
    """Tokens, characters and bytes per token, and speed (MB/s, best of ``repeat``) of each
    named encoder on ``text``."""
    n_bytes = len(text.encode("utf-8"))
    rows: list[dict[str, float | str]] = []
    for name, encode in encoders.items():
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            n_tokens = len(encode(text))
            seconds.append(time.perf_counter() - start)
        rows.append({"tokenizer": name, "tokens": n_tokens,
                     "chars_per_token": len(text) / n_tokens,
                     "bytes_per_token": n_bytes / n_tokens,
                     "mb_per_s": n_bytes / 1e6 / min(seconds)})
    return rows

"""Byte-level BPE of lesson 6.2 against the ``tokenizers`` library and ``tiktoken``."""

from __future__ import annotations

import functools
import json
from collections import Counter
from itertools import pairwise

import pytest

from neuralarch.data.text import load_tiny_shakespeare
from neuralarch.lm.bpe import (
    BYTE_ORDER,
    BYTE_TO_CHAR,
    ByteLevelBPE,
    library_bpe,
    library_merges,
    pretokenize,
    random_unicode_text,
    to_tiktoken,
    tokenizer_report,
    train_merges,
    word_counts,
)


@functools.cache
def shakespeare() -> str:
    return load_tiny_shakespeare()


@functools.cache
def trained(n_chars: int, vocab_size: int) -> ByteLevelBPE:
    return ByteLevelBPE.train(shakespeare()[:n_chars], vocab_size)


# --- the byte alphabet and the pre-tokenizer -----------------------------------------------

def test_byte_alphabet_is_the_librarys_sorted_alphabet():
    assert sorted(BYTE_ORDER) == list(range(256))
    chars = [BYTE_TO_CHAR[b] for b in BYTE_ORDER]
    assert chars == sorted(__import__("tokenizers").pre_tokenizers.ByteLevel.alphabet())
    assert BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[ord("\n")] == "Ċ"


@pytest.mark.parametrize("text", ["Hello world!  It's 2024.\n\nOK", "  leading and trailing  ",
                                  "they'll we've I'm 'tis", random_unicode_text(3000, seed=5)])
def test_pretokenizer_equals_librarys_byte_level(text):
    byte_level = library_bpe("x", 256).pre_tokenizer
    expected = [piece for piece, _ in byte_level.pre_tokenize_str(text)]
    ours = ["".join(BYTE_TO_CHAR[b] for b in p.encode("utf-8")) for p in pretokenize(text)]
    assert ours == expected
    assert "".join(pretokenize(text)) == text  # the pieces cover the text


# --- training ------------------------------------------------------------------------------

@pytest.mark.parametrize("n_chars, vocab_size, min_frequency", [
    (20_000, 300, 0), (100_000, 700, 0), (60_000, 900, 4), (5_000, 2_000, 0)])
def test_merge_list_equals_tokenizers_on_shakespeare(n_chars, vocab_size, min_frequency):
    text = shakespeare()[:n_chars]
    ours = ByteLevelBPE.train(text, vocab_size, min_frequency=min_frequency)
    library = library_bpe(text, vocab_size, min_frequency=min_frequency)
    assert ours.merges_as_strings() == library_merges(library)
    assert ours.vocab_size == library.get_vocab_size() <= vocab_size
    vocab = library.get_vocab()
    assert all(vocab[ours.token_str(i)] == i for i in range(ours.vocab_size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_list_equals_tokenizers_on_random_unicode(seed):
    text = random_unicode_text(15_000, seed=seed)
    ours = ByteLevelBPE.train(text, 600)
    assert len(ours.merges) > 200  # enough merges to exercise ties between rare pairs
    assert ours.merges_as_strings() == library_merges(library_bpe(text, 600))


def naive_merges(text: str, n_merges: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Textbook BPE: recount every pair before each merge (slow, but obviously right)."""
    words = [[BYTE_ORDER.index(b) for b in word] for word in word_counts(text)]
    freq = list(word_counts(text).values())
    merges, merge_counts, next_id = [], [], 256
    for _ in range(n_merges):
        counts = Counter()
        for word, f in zip(words, freq, strict=True):
            for pair in pairwise(word):
                counts[pair] += f
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest ids
        merges.append(best)
        merge_counts.append(counts[best])
        for w, word in enumerate(words):
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(next_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[w] = out
        next_id += 1
    return merges, merge_counts


@pytest.mark.parametrize("text", ["aaaa aaa aaab abab ab ab", shakespeare()[:3000]])
def test_incremental_counts_equal_a_full_recount(text):
    merges, counts = train_merges(word_counts(text), 256 + 60)
    assert (merges, counts) == naive_merges(text, 60)


def test_worked_example_merges_the_most_frequent_pair_first():
    bpe = ByteLevelBPE.train("ab ab ab cd", 259)
    assert bpe.merges_as_strings() == [("a", "b"), ("Ġ", "ab"), ("c", "d")]
    assert bpe.merge_counts == [3, 2, 1]
    assert bpe.encode("ab ab cd") == [256, 257, BYTE_ORDER.index(ord(" ")), 258]


def test_training_stops_when_no_pair_is_left():
    bpe = ByteLevelBPE.train("ab", 1_000)
    assert bpe.vocab_size == 257 and bpe.merges_as_strings() == [("a", "b")]


# --- encoding and decoding -----------------------------------------------------------------

def test_round_trip_on_all_of_tiny_shakespeare():
    text = shakespeare()
    bpe = trained(200_000, 512)
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert len(ids) < len(text) / 1.7  # and it compresses
    assert max(ids) < bpe.vocab_size


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_round_trip_on_random_unicode_including_unassigned_code_points(seed):
    bpe = ByteLevelBPE.train(random_unicode_text(5_000, seed=100 + seed, assigned_only=False), 400)
    text = random_unicode_text(20_000, seed=seed, assigned_only=False)
    assert bpe.decode(bpe.encode(text)) == text


@pytest.mark.parametrize("text_source", ["shakespeare", "unicode"])
def test_encoding_equals_tiktoken_and_tokenizers(text_source):
    if text_source == "shakespeare":
        train, test = shakespeare()[:100_000], shakespeare()[-100_000:]
    else:
        train, test = random_unicode_text(10_000, seed=7), random_unicode_text(10_000, seed=8)
    bpe = ByteLevelBPE.train(train, 800)
    ids = bpe.encode(test)
    assert ids == to_tiktoken(bpe).encode_ordinary(test)
    assert ids == library_bpe(train, 800).encode(test).ids


def test_repeated_and_duplicate_merges_keep_ids_and_ranks():
    a, b, c, d, e = (BYTE_ORDER.index(ord(ch)) for ch in "abcde")
    repeated = ByteLevelBPE([(a, b), (a, b), (c, d)])  # the library can repeat a pair
    assert repeated.vocab_size == 258
    assert repeated.encode("ecd") == [e, 257]  # the pair (e, c) is no merge and must not win
    spelled_twice = ByteLevelBPE([(a, b), (256, c), (b, c), (a, 258)])  # ab + c, then a + bc
    assert spelled_twice.vocab_size == 259 and spelled_twice.tokens[257] == b"abc"
    assert spelled_twice.encode("abc") == [257] and spelled_twice.encode("bcbc") == [258, 258]


def test_decode_of_a_split_character_gives_the_replacement_character():
    bpe = ByteLevelBPE([])
    ids = bpe.encode("é")  # two bytes, two tokens
    assert len(ids) == 2 and bpe.decode(ids[:1]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        bpe.decode(ids[:1], errors="strict")


def test_serialisation_round_trip_through_json():
    bpe = trained(50_000, 400)
    again = ByteLevelBPE.from_dict(json.loads(json.dumps(bpe.to_dict())))
    text = shakespeare()[-5_000:]
    assert again.merges == bpe.merges and again.encode(text) == bpe.encode(text)
    assert repr(again) == "ByteLevelBPE(vocab_size=400, merges=144)"


def test_report_counts_tokens_and_speed():
    bpe = trained(50_000, 400)
    text = shakespeare()[:20_000]
    rows = tokenizer_report(text, {"ours": bpe.encode, "chars": list}, repeat=1)
    assert [r["tokenizer"] for r in rows] == ["ours", "chars"]
    assert rows[1]["chars_per_token"] == 1.0 and rows[0]["chars_per_token"] > 1.5
    assert rows[0]["tokens"] == len(bpe.encode(text)) and rows[0]["mb_per_s"] > 0


# --- errors --------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="vocab_size must be >= 256"):
        ByteLevelBPE.train("abc", 255)
    with pytest.raises(ValueError, match="min_frequency"):
        ByteLevelBPE.train("abc", 300, min_frequency=-1)
    with pytest.raises(ValueError, match="does not exist yet"):
        ByteLevelBPE([(0, 300)])
    bpe = ByteLevelBPE([])
    with pytest.raises(TypeError, match="expects a str"):
        bpe.encode(b"bytes")
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        bpe.decode([256])
    with pytest.raises(ValueError, match="not a byte-level BPE"):
        ByteLevelBPE.from_dict({"kind": "wordpiece"})

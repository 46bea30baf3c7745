"""WordPiece of lesson 6.2 against the ``tokenizers`` library's WordPiece model."""

from __future__ import annotations

import functools
import math
from collections import Counter
from itertools import pairwise

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from neuralarch.data.text import load_tiny_shakespeare
from neuralarch.lm.bpe import random_unicode_text
from neuralarch.lm.wordpiece import WordPiece, bert_pretokenize, likelihood_gain, train_wordpiece


@functools.cache
def shakespeare() -> str:
    return load_tiny_shakespeare()


@functools.cache
def trained(vocab_size: int) -> WordPiece:
    return WordPiece.train(shakespeare()[:300_000], vocab_size)


def library_wordpiece(wp: WordPiece, max_chars: int = 100) -> Tokenizer:
    """The library's WordPiece model and BERT pre-tokenizer with our vocabulary."""
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(wp.vocab)},
                                           unk_token=wp.unk_token,
                                           max_input_chars_per_word=max_chars))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix=wp.prefix, cleanup=False)
    return tokenizer


@pytest.mark.parametrize("text", ["Hello, world! It's $5+3=8 (ok)?", "  a\tb\u3000c\u00a0d  ",
                                  "«quoted» — dash… ¿qué? 你好。", "x\x1cy",
                                  random_unicode_text(3000, seed=3)])
def test_pretokenizer_equals_bert_pre_tokenizer(text):
    expected = [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(text)]
    assert bert_pretokenize(text) == expected


def test_greedy_longest_match_on_a_hand_made_vocabulary():
    wp = WordPiece(["[UNK]", "un", "##aff", "##able", "##a", "a", "##ff", "b"])
    assert wp.tokenize("unaffable") == ["un", "##aff", "##able"]  # longest match, not "##a"
    assert wp.tokenize("unaffablex b") == ["[UNK]", "b"]  # one unknown piece: whole word
    assert wp.decode(wp.encode("unaffable b")) == "unaffable b"


@pytest.mark.parametrize("vocab_size", [300, 1_000, 3_000])
def test_encoding_equals_tokenizers_wordpiece_on_shakespeare(vocab_size):
    wp = trained(vocab_size)
    text = shakespeare()[-200_000:]  # text the vocabulary was not trained on
    library = library_wordpiece(wp)
    ids = wp.encode(text)
    assert ids == library.encode(text).ids
    assert wp.decode(ids) == library.decode(ids)


@pytest.mark.parametrize("max_chars", [4, 12])
def test_encoding_equals_tokenizers_on_unicode_with_unknown_words(max_chars):
    wp = WordPiece.train(random_unicode_text(20_000, seed=1), 1_500)
    wp.max_input_chars_per_word = max_chars
    text = random_unicode_text(20_000, seed=2)  # unseen characters: [UNK] words
    ids = wp.encode(text)
    assert ids.count(0) > 10  # unknown words occur, so the comparison covers them
    assert ids == library_wordpiece(wp, max_chars).encode(text).ids


def naive_wordpiece(counts: Counter, n_merges: int) -> list[str]:
    """Likelihood merges with every score recomputed from scratch before each merge."""
    words = [[w[0]] + ["##" + c for c in w[1:]] for w in counts]
    freq = list(counts.values())
    vocab = ["[UNK]", *sorted({u for word in words for u in word})]
    total = sum(len(word) * f for word, f in zip(words, freq, strict=True))
    for _ in range(n_merges):
        units, pairs = Counter(), Counter()
        for word, f in zip(words, freq, strict=True):
            units.update({u: f * word.count(u) for u in set(word)})
            for pair in pairwise(word):
                pairs[pair] += f
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-likelihood_gain(pairs[p], units[p[0]], units[p[1]],
                                                            total), p))
        new = a + b[2:]
        if new not in vocab:
            vocab.append(new)
        for w, word in enumerate(words):
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == (a, b):
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[w] = out
    return vocab


@pytest.mark.parametrize("text", ["the that hat it hit quit quit the thee", shakespeare()[:4000]])
def test_trainer_equals_a_full_rescoring_each_step(text):
    counts = Counter(bert_pretokenize(text))
    expected = naive_wordpiece(counts, 80)
    assert train_wordpiece(counts, len(expected)) == expected


def test_likelihood_gain_prefers_association_to_frequency():
    # "q u" is rarer than "e ##s" but q is always followed by u; e and s are everywhere.
    assert likelihood_gain(10, 10, 10, 10_000) > likelihood_gain(40, 2_000, 2_000, 10_000)
    assert likelihood_gain(5, 10, 50, 100) == pytest.approx(5 * math.log(100 * 5 / 500))
    counts = Counter({"quit": 5, "the": 10, "that": 10, "hat": 10, "it": 10, "hit": 10})
    n_alphabet = 11  # [UNK], q t h i, ##u ##i ##t ##h ##e ##a
    assert train_wordpiece(counts, n_alphabet + 1)[-1] == "th"  # frequent and associated

    def ratio(count_ab, count_a, count_b, total):
        return count_ab / (count_a * count_b)

    assert train_wordpiece(counts, n_alphabet + 1, gain=ratio)[-1] == "qu"  # rare but certain


def test_trained_vocabulary_has_the_requested_size_and_continuations():
    wp = trained(1_000)
    assert wp.vocab_size == 1_000 and wp.vocab[0] == "[UNK]"
    assert sum(t.startswith("##") for t in wp.vocab) > 100
    assert wp.encode(shakespeare()[-10_000:]).count(0) == 0  # every character was seen


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown token"):
        WordPiece(["a", "##b"])
    with pytest.raises(ValueError, match="max_input_chars_per_word"):
        WordPiece(["[UNK]"], max_input_chars_per_word=0)
    with pytest.raises(ValueError, match="smaller than the alphabet"):
        WordPiece.train("abc def", 3)
    wp = WordPiece(["[UNK]", "a"])
    with pytest.raises(ValueError, match=r"not in \[0, 2\)"):
        wp.decode([2])
    with pytest.raises(TypeError, match="expects a str"):
        wp.encode(None)

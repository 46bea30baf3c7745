"""Corpus BLEU and chrF written from scratch equal sacreBLEU's on generated corpora."""

from __future__ import annotations

import random

import pytest
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from neuralarch.train.text_metrics import BLEU, ChrF, corpus_bleu, corpus_chrf, tokenize_13a

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "The", "it's", "3.5", "1-2",
         "well-known", "A&amp;B", "x&lt;y", "end.", "U.S.", "(note)", '"quoted"', "$10,000"]
PUNCT = [",", ".", "!", "?", ";", ":", "-", "'", "..."]


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    words = [w + rng.choice(PUNCT) if rng.random() < 0.15 else w for w in words]
    return " ".join(words)


def perturb(rng: random.Random, ref: str) -> str:
    """A hypothesis near the reference: words dropped, replaced, swapped or added."""
    words = ref.split()
    out = []
    for word in words:
        r = rng.random()
        if r < 0.1:
            continue
        out.append(rng.choice(WORDS) if r < 0.25 else word)
        if rng.random() < 0.05:
            out.append(rng.choice(WORDS))
    if len(out) > 2 and rng.random() < 0.3:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


def random_corpus(seed: int, n: int, low: int, high: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [sentence(rng, low, high) for _ in range(n)]
    return [perturb(rng, ref) for ref in refs], refs


def reversed_words(refs: list[str]) -> list[str]:
    return [" ".join(reversed(ref.split())) for ref in refs]


def no_four_gram(refs: list[str]) -> list[str]:
    """Replace every fourth token: 3-grams can still match, 4-grams cannot."""
    return [" ".join("zz" if i % 4 == 3 else w for i, w in enumerate(tokenize_13a(ref)))
            for ref in refs]


DISTINCT = ["alpha beta gamma delta epsilon", "one two three four five six",
            "red green blue yellow"]  # no repeated word, so reversal kills every 2-gram match
CORPORA = {
    "random-short": random_corpus(0, 40, 1, 6),
    "random-long": random_corpus(1, 30, 8, 30),
    "random-mixed": random_corpus(2, 60, 0, 25),
    "perfect": (random_corpus(3, 20, 3, 15)[1],) * 2,
    "truncated": ([r[: len(r) // 2] for r in random_corpus(4, 20, 5, 15)[1]],
                  random_corpus(4, 20, 5, 15)[1]),
    "no-4gram-match": (no_four_gram(random_corpus(5, 20, 6, 12)[1]),
                       random_corpus(5, 20, 6, 12)[1]),
    "unigrams-only": (reversed_words(DISTINCT), DISTINCT),
    "all-hyps-under-4-tokens": (["the cat", "a", "dog ran"], ["the cat sat", "a mat", "dog"]),
    "no-match": (["xx yy zz ww"], ["aa bb cc dd"]),
    "empty-hyps": (["", ""], ["some words here", "ok"]),
    "short-refs-for-chrf": (["abcdefgh", "ab", "a b c d e f g"], ["abc", "abcdefg", "a"]),
}
SPLITS = [[1], [2, 1], [1, 5, 2]]  # batch sizes, repeated as needed to cover the corpus


def batches(hyps: list[str], refs: list[str], sizes: list[int]):
    start, i = 0, 0
    while start < len(hyps):
        size = sizes[i % len(sizes)]
        yield hyps[start:start + size], refs[start:start + size]
        start, i = start + size, i + 1


@pytest.mark.parametrize("name", CORPORA.keys())
def test_corpus_bleu_and_chrf_match_sacrebleu(name):
    hyps, refs = CORPORA[name]
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    assert corpus_bleu(hyps, refs) == pytest.approx(bleu, rel=1e-9, abs=1e-9)
    assert corpus_chrf(hyps, refs) == pytest.approx(chrf, rel=1e-9, abs=1e-9)
    for sizes in SPLITS:
        bleu_metric, chrf_metric = BLEU(), ChrF()
        for hyp_batch, ref_batch in batches(hyps, refs, sizes):
            bleu_metric.update(hyp_batch, ref_batch)
            chrf_metric.update(hyp_batch, ref_batch)
        assert bleu_metric.compute() == pytest.approx(bleu, rel=1e-9, abs=1e-9)
        assert chrf_metric.compute() == pytest.approx(chrf, rel=1e-9, abs=1e-9)


def test_the_special_corpora_test_what_their_names_say():
    assert corpus_bleu(*CORPORA["perfect"]) == pytest.approx(100.0)
    assert corpus_chrf(*CORPORA["perfect"]) == pytest.approx(100.0)
    stats = BLEU()
    stats.update(*CORPORA["no-4gram-match"])
    assert stats.matches[3] == 0 and stats.matches[2] > 0 and stats.totals[3] > 0
    assert 0 < stats.compute() < 100
    stats = BLEU()
    stats.update(*CORPORA["unigrams-only"])
    assert stats.matches[0] > 0 and stats.matches[1:] == [0, 0, 0]
    assert stats.compute() > 0  # exp smoothing keeps it above zero
    for name in ("all-hyps-under-4-tokens", "no-match", "empty-hyps"):
        assert corpus_bleu(*CORPORA[name]) == 0.0
    stats = BLEU()
    stats.update(*CORPORA["truncated"])
    assert stats.hyp_len < stats.ref_len  # the brevity penalty applies


def test_sentence_order_and_corpus_level_pooling():
    hyps, refs = CORPORA["random-mixed"]
    sentence_mean = sum(corpus_bleu([h], [r]) for h, r in zip(hyps, refs, strict=True)) / len(hyps)
    assert abs(sentence_mean - corpus_bleu(hyps, refs)) > 1.0  # corpus BLEU is not a mean


@pytest.mark.parametrize("seed", range(3))
def test_lowercase_and_other_orders_match_sacrebleu(seed):
    hyps, refs = random_corpus(10 + seed, 25, 2, 20)
    metric = BLEU(lowercase=True)
    metric.update(hyps, refs)
    assert metric.compute() == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score, rel=1e-9, abs=1e-9)
    metric = ChrF(char_order=4, beta=1)
    metric.update(hyps, refs)
    expected = sacrebleu.corpus_chrf(hyps, [refs], char_order=4, beta=1).score
    assert metric.compute() == pytest.approx(expected, rel=1e-9, abs=1e-9)


TRICKY = ["Hello, world!", "It costs $1,000.50 - or 3.5%.", "a.b,c 1.5 1,5 x.y 9-8 a-b",
          "  trailing spaces   ", 'He said "hi" (loudly) [twice] {ok} <tag>', "U.S.A. end...",
          "&quot;quoted&quot; &amp;amp; &lt;&gt;", "line-\nbreak\nhere", "<skipped> word",
          "don't ~ @user #tag ^ _ ` | \\ /", "", "1.000,5-2"]


@pytest.mark.parametrize("line", TRICKY)
def test_13a_tokeniser_matches_sacrebleu(line):
    assert " ".join(tokenize_13a(line)) == Tokenizer13a()(line.rstrip())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        BLEU().update(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="refs as a list of strings"):
        ChrF().update(["a"], [["a", "b"]])
    with pytest.raises(ValueError, match="hyps as a list of strings"):
        BLEU().update("a b", ["a"])
    for metric in (BLEU(), ChrF()):
        with pytest.raises(ValueError, match="before any update"):
            metric.compute()
    with pytest.raises(ValueError, match="max_order must be at least 1"):
        BLEU(max_order=0)
    with pytest.raises(ValueError, match="beta > 0"):
        ChrF(beta=0)


def test_reset_starts_a_new_corpus():
    metric = ChrF()
    metric.update(["completely different"], ["nothing alike at all"])
    metric.reset()
    metric.update(["same text"], ["same text"])
    assert metric.compute() == pytest.approx(100.0)

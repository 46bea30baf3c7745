"""Corpus BLEU and chrF for generated text, with the ``update`` / ``compute`` interface.

Both are *corpus* metrics: BLEU sums n-gram matches and lengths over every sentence before it
takes precisions and the brevity penalty, and chrF sums character n-gram counts before it takes
precision, recall and their F-score. The mean of sentence scores is a different (and noisier)
number. The defaults follow sacreBLEU's ``corpus_bleu`` (13a tokenisation, 4-grams, exponential
smoothing, mixed case) and ``corpus_chrf`` (chrF2: character 6-grams, beta 2, spaces removed),
so the scores are comparable with published ones; one reference per hypothesis.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from neuralarch.train.metrics import CorpusMetric

# ASCII punctuation that 13a always splits off as its own token. Left out: the apostrophe, the
# hyphen (split only after a digit), and the period and comma (split unless between digits).
_ALWAYS_SPLIT = re.compile("([" + re.escape("!\"#$%&()*+/:;<=>?@[\\]^_`{|}~") + "])")
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([.,])")  # "end." -> "end . "
_PERIOD_COMMA_BEFORE = re.compile(r"([.,])([^0-9])")  # ".5" stays, ". x" -> " . x"
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")  # "1-2" -> "1 - 2"
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


def tokenize_13a(line: str) -> list[str]:
    """Split a detokenised sentence into tokens the way mteval-v13a (and sacreBLEU) does."""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES:  # the order matters: "&amp;lt;" becomes "&lt;", not "<"
        line = line.replace(entity, char)
    line = _ALWAYS_SPLIT.sub(r" \1 ", f" {line} ")
    line = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", line)
    line = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", line)
    line = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", line)
    return line.split()


def _ngrams(items: Sequence[str] | str, n: int) -> Counter:
    """Count the n-grams (tuples or substrings) of a token list or a string."""
    return Counter(items[i:i + n] if isinstance(items, str) else tuple(items[i:i + n])
                   for i in range(len(items) - n + 1))


def _check_pairs(hyps: Sequence[str], refs: Sequence[str], name: str) -> None:
    for what, lines in (("hyps", hyps), ("refs", refs)):
        if isinstance(lines, str) or not all(isinstance(line, str) for line in lines):
            raise ValueError(f"{name}.update needs {what} as a list of strings (one reference "
                             f"string per hypothesis), got {type(lines).__name__} holding "
                             f"{sorted({type(x).__name__ for x in lines})}")
    if len(hyps) != len(refs):
        raise ValueError(f"{name}.update got {len(hyps)} hypotheses but {len(refs)} references; "
                         f"pass exactly one reference per hypothesis")


class BLEU(CorpusMetric):
    """Corpus BLEU on the 0-100 scale: geometric mean of 1..4-gram precisions x brevity penalty.

    An n-gram order with no match at all gets precision 100 / (2^k x total n-grams), where k
    counts the orders without matches so far (sacreBLEU's ``exp`` smoothing, from mteval).
    """

    def __init__(self, max_order: int = 4, lowercase: bool = False) -> None:
        if max_order < 1:
            raise ValueError(f"BLEU max_order must be at least 1, got {max_order}")
        self.max_order, self.lowercase = max_order, lowercase
        super().__init__()

    def reset(self) -> None:
        self.sentences = 0
        self.hyp_len, self.ref_len = 0, 0  # tokens, summed over the corpus
        self.matches = [0] * self.max_order  # clipped n-gram matches per order
        self.totals = [0] * self.max_order  # hypothesis n-grams per order

    def update(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        _check_pairs(hyps, refs, "BLEU")
        for hyp, ref in zip(hyps, refs, strict=True):
            if self.lowercase:
                hyp, ref = hyp.lower(), ref.lower()
            hyp_tokens, ref_tokens = tokenize_13a(hyp), tokenize_13a(ref)
            self.hyp_len += len(hyp_tokens)
            self.ref_len += len(ref_tokens)
            for n in range(1, self.max_order + 1):
                hyp_ngrams, ref_ngrams = _ngrams(hyp_tokens, n), _ngrams(ref_tokens, n)
                # Clipping: an n-gram matches at most as often as the reference holds it.
                self.matches[n - 1] += sum((hyp_ngrams & ref_ngrams).values())
                self.totals[n - 1] += sum(hyp_ngrams.values())
        self.sentences += len(hyps)

    def compute(self) -> float:
        if self.sentences == 0:
            raise self._empty_error()
        if not any(self.matches) or not all(self.totals):
            return 0.0  # no match at all, or an order with no hypothesis n-gram: log 0
        log_precision, halvings = 0.0, 1
        for matched, total in zip(self.matches, self.totals, strict=True):
            if matched == 0:
                halvings *= 2
                precision = 100.0 / (halvings * total)
            else:
                precision = 100.0 * matched / total
            log_precision += math.log(precision)
        # Too-short output is penalised; hyp_len > 0 here, since some n-gram matched.
        short = self.hyp_len < self.ref_len
        brevity = math.exp(1 - self.ref_len / self.hyp_len) if short else 1.0
        return brevity * math.exp(log_precision / self.max_order)


class ChrF(CorpusMetric):
    """Corpus chrF on the 0-100 scale: F-beta of character 1..6-gram precision and recall.

    Spaces are removed first; precision and recall are averaged over the n-gram orders that
    occur in both hypotheses and references, then combined with recall weighted ``beta`` times
    as much as precision.
    """

    def __init__(self, char_order: int = 6, beta: float = 2.0) -> None:
        if char_order < 1 or beta <= 0:
            raise ValueError(f"ChrF needs char_order >= 1 and beta > 0, got char_order="
                             f"{char_order}, beta={beta}")
        self.char_order, self.beta = char_order, beta
        super().__init__()

    def reset(self) -> None:
        self.sentences = 0
        self.hyp_counts = [0] * self.char_order  # hypothesis n-grams per order
        self.ref_counts = [0] * self.char_order  # reference n-grams per order
        self.matches = [0] * self.char_order  # clipped matches per order

    def update(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        _check_pairs(hyps, refs, "ChrF")
        for hyp, ref in zip(hyps, refs, strict=True):
            hyp_chars, ref_chars = "".join(hyp.split()), "".join(ref.split())
            for n in range(1, self.char_order + 1):
                hyp_ngrams, ref_ngrams = _ngrams(hyp_chars, n), _ngrams(ref_chars, n)
                # As sacreBLEU: a sentence whose reference is too short for n-grams of this
                # order adds no hypothesis n-grams either (it cannot lower the precision).
                self.hyp_counts[n - 1] += sum(hyp_ngrams.values()) if ref_ngrams else 0
                self.ref_counts[n - 1] += sum(ref_ngrams.values())
                self.matches[n - 1] += sum((hyp_ngrams & ref_ngrams).values())
        self.sentences += len(hyps)

    def compute(self) -> float:
        if self.sentences == 0:
            raise self._empty_error()
        precision, recall, orders = 0.0, 0.0, 0
        for n_hyp, n_ref, n_match in zip(self.hyp_counts, self.ref_counts, self.matches,
                                         strict=True):
            if n_hyp > 0 and n_ref > 0:
                precision += n_match / n_hyp
                recall += n_match / n_ref
                orders += 1
        if orders == 0 or precision + recall == 0:
            return 0.0
        precision, recall = precision / orders, recall / orders
        factor = self.beta ** 2
        return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """BLEU (0-100) of hypotheses against one reference each, with sacreBLEU's defaults."""
    metric = BLEU()
    metric.update(hyps, refs)
    return metric.compute()


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """chrF2 (0-100) of hypotheses against one reference each, with sacreBLEU's defaults."""
    metric = ChrF()
    metric.update(hyps, refs)
    return metric.compute()

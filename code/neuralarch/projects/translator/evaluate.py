"""Scoring Project 5's translations: BLEU, chrF, number fidelity and a failure taxonomy.

Introduced in lesson 5.6 (``m05-l06``). BLEU and chrF come from sacreBLEU (the book's own
:mod:`neuralarch.train.text_metrics` gives the same numbers; a test checks it). They reward
overlap, so a sentence with one wrong digit still scores well. *Number fidelity* measures what
matters most in finance: the share of the reference's number spans (amounts with their unit,
percentages, dates, other numbers) that the output reproduces exactly, and how many number spans
the output invents (hallucinations). :func:`classify_error` sorts a wrong output into the first
of: ``number``, ``direction``, ``entity``, ``wording``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import sacrebleu

from neuralarch.projects.translator.grammar import (
    BANKS,
    COMPANIES,
    CURRENCY_NAMES,
    INDICES,
    MONTHS,
    QUARTER_WORDS,
)

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"  # 4 | 4.2 | 26,622.45 (a trailing comma or period is not in)
_UNITS = "dollars|euros|pounds|yen|Swiss francs|Australian dollars"
NUMBER_SPAN = re.compile(
    rf"(?P<date>\b\d{{1,2}} (?:{'|'.join(MONTHS)}) \d{{4}}\b"
    rf"|\b(?:{'|'.join(QUARTER_WORDS)}) quarter of \d{{4}}\b)"
    rf"|(?P<amount>\b{_NUM} (?:million |billion )?(?:{_UNITS})\b)"
    rf"|(?P<percentage>\b{_NUM}%)"
    rf"|(?P<number>\b{_NUM}\b)")
KINDS = ("amount", "percentage", "date", "number")
_NAMES = sorted({*COMPANIES, *(plain.removeprefix("the ") for _, plain in INDICES + BANKS),
                 *(name.removeprefix("the ") for name in CURRENCY_NAMES.values())},
                key=len, reverse=True)  # longest first: "Australian dollar" before "dollar"
ENTITY_NAME = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in _NAMES) + r")\b")
# words that say which way something went: an output whose sequence of these differs from the
# reference's has the meaning backwards
UP_WORDS = frozenset({"rose", "raised", "more", "higher", "buy", "up", "rises", "raises",
                      "beat", "above", "grew", "stronger", "hike", "better"})
DOWN_WORDS = frozenset({"fell", "lowered", "cut", "less", "lower", "sell", "down", "falls",
                        "lowers", "missed", "below", "shrank", "weaker", "sale", "cuts",
                        "worse"})


def number_spans(text: str) -> list[tuple[str, str]]:
    """The (kind, span) of every number in a plain-English sentence, left to right.

    Kinds: ``amount`` (with its scale and currency: ``1.2 billion dollars``), ``percentage``
    (``4.2%``), ``date`` (``12 March 2023``, ``the third quarter of 2024``) and ``number`` (any
    other: basis points, index levels, years, the 500 of S&P 500).
    """
    return [(match.lastgroup, match.group()) for match in NUMBER_SPAN.finditer(text)]


@dataclass
class NumberFidelity:
    """Counts behind number fidelity, overall and per kind of span."""

    reference: int = 0  # number spans in the references
    matched: int = 0  # of those, reproduced exactly by the hypothesis (as a multiset)
    hypothesis: int = 0  # number spans in the hypotheses
    hallucinated: int = 0  # hypothesis spans that the reference does not have
    sentences_all_correct: int = 0  # sentences whose number spans all match, none invented
    sentences: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=lambda: {k: [0, 0] for k in KINDS})

    @property
    def fidelity(self) -> float:
        """Share of the reference's number spans reproduced exactly (1.0 if there are none)."""
        return self.matched / self.reference if self.reference else 1.0

    @property
    def hallucination_rate(self) -> float:
        """Share of the hypothesis's number spans that are not in the reference."""
        return self.hallucinated / self.hypothesis if self.hypothesis else 0.0

    def kind_fidelity(self, kind: str) -> float:
        """Fidelity restricted to one kind of span (``amount``, ``percentage``...)."""
        matched, total = self.by_kind[kind]
        return matched / total if total else 1.0


def number_fidelity(hyps: Sequence[str], refs: Sequence[str]) -> NumberFidelity:
    """Compare the number spans of each hypothesis with its reference's (multiset matching)."""
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} references")
    result = NumberFidelity()
    for hyp, ref in zip(hyps, refs, strict=True):
        ref_spans, hyp_spans = Counter(number_spans(ref)), Counter(number_spans(hyp))
        common = ref_spans & hyp_spans
        result.reference += sum(ref_spans.values())
        result.matched += sum(common.values())
        result.hypothesis += sum(hyp_spans.values())
        result.hallucinated += sum((hyp_spans - ref_spans).values())
        result.sentences_all_correct += ref_spans == hyp_spans
        result.sentences += 1
        for (kind, _), count in ref_spans.items():
            result.by_kind[kind][1] += count
        for (kind, _), count in common.items():
            result.by_kind[kind][0] += count
    return result


def translation_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """BLEU, chrF (sacreBLEU, 0-100), exact-match rate, number fidelity and hallucination rate."""
    numbers = number_fidelity(hyps, refs)
    return {"bleu": sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score,
            "chrf": sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score,
            "exact": sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs),
            "fidelity": numbers.fidelity, "hallucination": numbers.hallucination_rate}


def _polarity(text: str) -> list[str]:
    """The directions a sentence states, in order: ``["up", "down"]`` for a beat then a drop."""
    words = re.findall(r"[a-z]+", text.lower().replace("up to", ""))  # "up to" is a limit
    return ["up" if w in UP_WORDS else "down" for w in words if w in UP_WORDS | DOWN_WORDS]


def classify_error(hyp: str, ref: str) -> str:
    """``correct`` or the first error kind that applies: number, direction, entity, wording.

    ``number``: the number spans differ; ``direction``: the words that say up or down differ
    in order or sense; ``entity``: the names of companies, indices, banks or currencies
    differ; ``wording``: the rest.
    """
    if hyp == ref:
        return "correct"
    if Counter(number_spans(hyp)) != Counter(number_spans(ref)):
        return "number"
    if _polarity(hyp) != _polarity(ref):
        return "direction"
    if Counter(ENTITY_NAME.findall(hyp)) != Counter(ENTITY_NAME.findall(ref)):
        return "entity"
    return "wording"

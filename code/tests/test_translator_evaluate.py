"""Project 5's evaluation and baseline: number spans, fidelity, error kinds, BLEU/chrF."""

import pytest
import sacrebleu

from neuralarch.projects.translator.baseline import phrase_substitution
from neuralarch.projects.translator.corpus import CorpusConfig, build_corpus
from neuralarch.projects.translator.evaluate import (
    classify_error,
    number_fidelity,
    number_spans,
    translation_scores,
)
from neuralarch.train.text_metrics import corpus_bleu, corpus_chrf

REF = ("Hooli's revenue in the third quarter of 2023 was 63.3 billion yen, 7.3% higher than a "
       "year earlier; its shares rose 11.8% during the trading day.")


def test_number_spans_have_kinds_and_units():
    assert number_spans(REF) == [("date", "third quarter of 2023"),
                                 ("amount", "63.3 billion yen"), ("percentage", "7.3%"),
                                 ("percentage", "11.8%")]
    assert number_spans("On 2 May 2023, the S&P 500 index rose 0.7% to 27,861.30 points.") == [
        ("date", "2 May 2023"), ("number", "500"), ("percentage", "0.7%"),
        ("number", "27,861.30")]
    assert number_spans("to 1.1157 dollars per euro.") == [("amount", "1.1157 dollars")]
    assert number_spans("no numbers here.") == []


def test_number_fidelity_on_hand_made_examples():
    hyps = [REF,  # all four spans right
            REF.replace("63.3 billion", "63.3 million"),  # a wrong scale: a different amount
            # one wrong, one dropped
            REF.replace("11.8%", "11.9%").replace("7.3% higher", "higher"),
            ]
    result = number_fidelity(hyps, [REF] * 3)
    assert (result.reference, result.matched) == (12, 4 + 3 + 2)
    assert (result.hypothesis, result.hallucinated) == (4 + 4 + 3, 0 + 1 + 1)
    assert result.fidelity == pytest.approx(9 / 12)
    assert result.sentences_all_correct == 1
    assert result.kind_fidelity("amount") == pytest.approx(2 / 3)
    assert result.kind_fidelity("percentage") == pytest.approx(4 / 6)
    # a repeated number must be produced as often as the reference has it
    assert number_fidelity(["rose 5.0%, then 5.0%"], ["rose 5.0%, then 5.0%"]).fidelity == 1.0
    assert number_fidelity(["rose 5.0%"], ["rose 5.0%, then 5.0%"]).fidelity == 0.5
    with pytest.raises(ValueError, match="hypotheses"):
        number_fidelity(["a"], [])


@pytest.mark.parametrize("hyp, kind", [
    (REF, "correct"),
    (REF.replace("7.3%", "7.8%"), "number"),
    (REF.replace("higher", "lower"), "direction"),
    (REF.replace("Hooli", "Globex"), "entity"),
    (REF.replace("during the trading day", "before the market opened"), "wording"),
])
def test_classify_error(hyp, kind):
    assert classify_error(hyp, REF) == kind


def test_scores_agree_with_the_books_own_bleu_and_chrf():
    corpus = build_corpus(CorpusConfig(n_train=50, n_val=60, n_test=10))
    refs = [p.target for p in corpus["val"]]
    hyps = [phrase_substitution(p.source) for p in corpus["val"]]
    scores = translation_scores(hyps, refs)
    assert scores["bleu"] == pytest.approx(corpus_bleu(hyps, refs), abs=1e-6)
    assert scores["chrf"] == pytest.approx(corpus_chrf(hyps, refs), abs=1e-6)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    perfect = translation_scores(refs, refs)
    assert perfect["bleu"] == pytest.approx(100) and perfect["fidelity"] == 1.0
    assert perfect["exact"] == 1.0 and perfect["hallucination"] == 0.0


@pytest.mark.parametrize("source, expected", [
    ("Fed hiked by 25bps to 5.50% on 2023-03-07",
     "The US Federal Reserve raised rates by 25 basis points to 5.50% on 7 March 2023."),
    ("Globex Q3 2024 rev. $1.2bn (+4.2% y/y)",
     "Globex the third quarter of 2024 revenue 1.2 billion dollars (up 4.2% from a year "
     "earlier)."),
    ("Hooli shares -3.1% pre-market", "Hooli shares down 3.1% before the market opened."),
    ("EUR/USD +0.4% to 1.0842", "The euro against the US dollar up 0.4% to 1.0842."),
])
def test_baseline_rewrites_phrases_and_copies_numbers(source, expected):
    assert phrase_substitution(source) == expected


def test_baseline_keeps_numbers_but_not_word_order():
    corpus = build_corpus(CorpusConfig(n_train=50, n_val=200, n_test=10))
    refs = [p.target for p in corpus["val"]]
    hyps = [phrase_substitution(p.source) for p in corpus["val"]]
    scores = translation_scores(hyps, refs)
    assert scores["fidelity"] > 0.9  # numbers pass through the rules...
    assert scores["exact"] < 0.05 and scores["bleu"] < 60  # ... but the sentences stay jargon

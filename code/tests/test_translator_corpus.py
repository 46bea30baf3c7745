"""Project 5's corpus: determinism, the four splits' disjointness, and the number tokens."""

import re
from functools import lru_cache

import pytest

from neuralarch.config import ConfigError
from neuralarch.projects.translator.corpus import (
    SPLITS,
    CorpusConfig,
    all_combos,
    build_corpus,
    held_out_combos,
    is_held_out_amount,
)
from neuralarch.projects.translator.grammar import INTENTS, pick_direction
from neuralarch.projects.translator.tokens import build_vocab, detokenize, encode_batch, tokenize

SMALL = CorpusConfig(n_train=1500, n_val=100, n_test=100, seed=3)


@lru_cache
def corpus(config: CorpusConfig = SMALL):
    return build_corpus(config)


def test_same_seed_same_corpus_other_seed_other_corpus():
    again = build_corpus(SMALL)
    assert again == corpus()
    other = build_corpus(SMALL.replace(seed=4))
    assert [p.source for p in other["train"][:50]] != [p.source for p in corpus()["train"][:50]]


def test_split_sizes_and_unique_sources():
    c = corpus()
    assert [len(c[s]) for s in SPLITS] == [1500, 100, 100, 100]
    sources = [p.source for s in SPLITS for p in c[s]]
    assert len(sources) == len(set(sources)), "a source sentence occurs in two splits"


def test_unseen_combinations_never_occur_in_training():
    c, held = corpus(), held_out_combos(SMALL)
    train_combos = {p.combo for p in c["train"]} | {p.combo for p in c["val"]}
    assert not train_combos & held
    assert all(p.combo in held for p in c["test_combos"])
    # ... yet each part of a held-out combination is seen in training with other partners
    for intent, template, entity, direction in {p.combo for p in c["test_combos"]}:
        assert any(p.intent == intent and p.template == template for p in c["train"])
        assert any(p.entity == entity for p in c["train"])
        assert any(p.intent == intent and p.direction == direction for p in c["train"])


def test_unseen_amounts_never_occur_in_training():
    c = corpus()
    train_amounts = {a for s in ("train", "val", "test_combos") for p in c[s] for a in p.amounts}
    test_amounts = {a for p in c["test_amounts"] for a in p.amounts}
    assert test_amounts and not train_amounts & test_amounts
    assert all(is_held_out_amount(a, SMALL) for a in test_amounts)
    # in the text too: no held-out amount with a decimal point appears in any training sentence
    train_text = " ".join(p.source + " " + p.target for p in c["train"])
    numbers_in_train = set(re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", train_text))
    assert not {a for a in test_amounts if "." in a} & numbers_in_train


def test_amounts_are_recorded_and_appear_in_both_sentences():
    for pair in corpus()["val"]:
        assert pair.amounts
        for amount in pair.amounts:
            assert amount in pair.source and amount in pair.target, (amount, pair)


def test_holdout_shares_are_close_to_the_config():
    combos = all_combos()
    share = len(held_out_combos(SMALL)) / len(combos)
    assert 0.1 < share < 0.2
    values = [f"{i / 10:.1f}" for i in range(1, 1000)]
    assert 0.15 < sum(is_held_out_amount(v, SMALL) for v in values) / len(values) < 0.25


def test_every_template_fills_and_resolves_directions():
    assert pick_direction("shares [rose|fell] {pct}%", "down") == "shares fell {pct}%"
    with pytest.raises(ValueError, match="direction"):
        pick_direction("[a|b]", "sideways")
    seen = {(p.intent, p.template) for p in corpus()["train"]}
    assert seen == {(i.name, t) for i in INTENTS for t in range(len(i.sources))}
    assert all("{" not in p.source + p.target and "[" not in p.target for p in corpus()["train"])


def test_config_is_validated():
    with pytest.raises(ConfigError, match="combo_holdout"):
        CorpusConfig(combo_holdout=1.5)


@pytest.mark.parametrize("text, tokens", [
    ("shares +4.2% pre-market", ["shares", "+", "##4", "##.", "##2", "##%", "pre", "##-",
                                 "##market"]),
    ("$1.2bn", ["$", "##1", "##.", "##2", "##bn"]),
    ("ACME Corp's", ["ACME", "Corp", "##'", "##s"]),
])
def test_numbers_split_into_characters(text, tokens):
    assert tokenize(text) == tokens
    assert detokenize(tokens) == text


def test_tokenize_round_trips_every_sentence_and_unseen_amounts_use_seen_tokens():
    c = corpus()
    for split in SPLITS:
        for pair in c[split]:
            assert detokenize(tokenize(pair.source)) == pair.source
            assert detokenize(tokenize(pair.target)) == pair.target
    vocab = build_vocab(s for p in c["train"] for s in (p.source, p.target))
    unknown = {t for p in c["test_amounts"] for t in tokenize(p.source + " " + p.target)
               if t not in vocab}
    assert not unknown, f"unseen amounts should be made of seen tokens, got {unknown}"
    ids, mask = encode_batch(vocab, ["Fed cut", "Fed cut by 25bps"], add_eos=True)
    assert ids.shape == (2, 7) and mask[0].tolist() == [False] * 3 + [True] * 4

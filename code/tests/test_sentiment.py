"""The sentiment experiment (text-convolutions lesson): splits, baseline, CNN, intervals."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from neuralarch.data.text import load_sentiment
from neuralarch.text.sentiment import (
    CNNRecipe,
    compare_over_seeds,
    encode,
    length_batches,
    sentiment_vocabulary,
    split_sentiment,
    t_interval,
    tfidf_baseline,
    train_text_cnn,
)
from neuralarch.text.word2vec import WordVectors


@pytest.fixture(scope="module")
def sentences():
    return load_sentiment()


@pytest.fixture(scope="module")
def split(sentences):
    return split_sentiment(sentences, seed=0)


def test_split_sizes_disjoint_and_stratified(sentences, split):
    sizes = split.sizes()
    assert sum(sizes.values()) == 3000
    assert abs(sizes["test"] - 600) <= 3 and abs(sizes["val"] - 300) <= 3
    texts = [{s.text for s in getattr(split, p)} for p in ("train", "val", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2]), \
        "a repeated sentence must not be both in training and in evaluation"
    assert texts[0] | texts[1] | texts[2] == {s.text for s in sentences}
    for part, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        groups = Counter((s.source, s.label) for s in getattr(split, part))
        assert len(groups) == 6
        assert all(abs(n - share * 500) <= 3 for n in groups.values()), groups


def test_split_depends_on_the_seed_only(sentences, split):
    assert split_sentiment(sentences, seed=0).test == split.test
    assert split_sentiment(sentences, seed=1).test != split.test
    with pytest.raises(ValueError, match="val \\+ test < 1"):
        split_sentiment(sentences, val=0.5, test=0.5)


def test_tfidf_baseline_is_strong_and_uses_training_idf(split):
    result = tfidf_baseline(split)
    assert result.test_acc > 0.75 and result.val_acc > 0.75
    assert result.C in (0.3, 1.0, 3.0, 10.0, 30.0)
    tfidf = result.pipeline.steps[0][1]
    train_words = {w for s in split.train for w in tfidf.build_analyzer()(s.text)}
    assert set(tfidf.vocabulary_) == train_words  # nothing learned from validation or test


def test_t_interval_matches_scipy():
    values = [0.71, 0.74, 0.69, 0.77, 0.73]
    mean, low, high = t_interval(values)
    expected = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([0.5])


def test_length_batches_partition_the_data_with_little_padding():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (1000,), generator=gen)
    batches = length_batches(lengths, 32, gen)
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 32
    waste = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    shuffled = torch.randperm(1000, generator=gen).split(32)  # plain random batches
    naive = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in shuffled)
    assert waste < 0.3 * naive


def test_encode_uses_the_training_vocabulary(split):
    vocab = sentiment_vocabulary(split.train)
    ids, labels = encode(split.test[:5], vocab)
    assert ids.shape[0] == 5 and labels.tolist() == [s.label for s in split.test[:5]]
    assert vocab.itos[:2] == ["<pad>", "<unk>"]


SMALL = CNNRecipe(embed_dim=16, filters=8, epochs=4, lr=5e-3, seed=0)


@pytest.fixture(scope="module")
def small_split(sentences):
    return split_sentiment(sentences[::3], seed=0)  # 1,000 sentences


def test_train_text_cnn_keeps_the_best_epoch(split):
    result = train_text_cnn(split, SMALL)
    assert len(result.history) == SMALL.epochs
    vals = [h["val_acc"] for h in result.history]
    assert result.val_acc == max(vals) and result.history[result.best_epoch - 1]["val_acc"] == max(
        vals)
    assert result.test_acc > 0.62  # clearly better than chance after four short epochs
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert not result.model.training


def test_train_text_cnn_is_repeatable_and_uses_vectors(small_split):
    a = train_text_cnn(small_split, SMALL.replace(epochs=1))
    b = train_text_cnn(small_split, SMALL.replace(epochs=1))
    assert a.test_acc == b.test_acc and a.history == b.history
    words = ["good", "great", "bad", "terrible", "not-in-reviews"]
    vectors = WordVectors(words, torch.randn(5, 16, generator=torch.Generator().manual_seed(0)))
    frozen = train_text_cnn(small_split, SMALL.replace(epochs=1, freeze_embeddings=True), vectors)
    assert frozen.pretrained_words == sum(w in frozen.vocab for w in words[:4])
    torch.testing.assert_close(frozen.model.embedding.weight[frozen.vocab.id("good")],
                               vectors["good"])


def test_compare_over_seeds_pairs_the_methods(sentences):
    vectors = WordVectors(["good", "bad"], torch.randn(2, 16))
    runs = compare_over_seeds((0, 1), SMALL.replace(epochs=1), {"rand": None, "w2v": vectors},
                              sentences=sentences[::5])
    assert [r.seed for r in runs] == [0, 1]
    for run in runs:
        scores = run.test_accuracies()
        assert set(scores) == {"tfidf", "rand", "w2v"}
        assert all(0.3 < v <= 1 for v in scores.values())
        assert run.cnns["w2v"].pretrained_words == 2 and run.cnns["rand"].pretrained_words == 0
    assert runs[0].split.test != runs[1].split.test  # a new split per seed

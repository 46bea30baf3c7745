"""Skip-gram with negative sampling (word-embeddings lesson) against formulas and gensim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralarch.config import ConfigError
from neuralarch.text.word2vec import (
    SkipGramNS,
    Word2VecConfig,
    WordVectors,
    keep_probabilities,
    negative_table,
    neighbour_overlap,
    shakespeare_sentences,
    similarity_correlation,
    skipgram_pairs,
    train_gensim,
    train_word2vec,
    word_sentences,
)

# --- sampling ---------------------------------------------------------------------------------


def test_keep_probabilities_match_the_formulas():
    counts = torch.tensor([5000, 1000, 100, 10, 1])
    z = counts.double() / counts.sum()
    s = 1e-3
    expected = (((z / s).sqrt() + 1) * s / z).clamp(max=1)
    torch.testing.assert_close(keep_probabilities(counts, s), expected)
    torch.testing.assert_close(keep_probabilities(counts, s, "paper"),
                               (s / z).sqrt().clamp(max=1))
    assert keep_probabilities(counts, s)[0] < 0.1  # the most frequent word is mostly dropped
    assert keep_probabilities(counts, s)[-1] == 1.0  # rare words are always kept
    assert (keep_probabilities(counts, 0.0) == 1).all()


def test_keep_probabilities_match_gensim():
    from gensim.models import Word2Vec

    sentences = [["a", "b", "a", "c", "a", "b", "d", "e", "a"]] * 40
    model = Word2Vec(vector_size=4, min_count=1, sample=0.05, sg=1, workers=1)
    model.build_vocab(sentences)
    words = model.wv.index_to_key
    counts = torch.tensor([model.wv.get_vecattr(w, "count") for w in words])
    theirs = torch.tensor([model.wv.get_vecattr(w, "sample_int") / 2**32 for w in words])
    torch.testing.assert_close(keep_probabilities(counts, 0.05), theirs.double(), atol=1e-8,
                               rtol=0)


@pytest.mark.parametrize("bad, message", [(torch.tensor([3, 0]), "positive"),
                                          (torch.ones(2, 2), "1-D")])
def test_sampling_rejects_bad_counts(bad, message):
    with pytest.raises(ValueError, match=message):
        keep_probabilities(bad, 1e-3)
    with pytest.raises(ValueError, match=message):
        negative_table(bad)


@pytest.mark.parametrize("exponent, size", [(0.75, 10_000), (1.0, 5_000), (0.5, 20_001)])
def test_negative_table_shares_follow_smoothed_unigrams(exponent, size):
    counts = torch.tensor([900, 300, 50, 7, 1, 1])
    table = negative_table(counts, exponent, size)
    shares = torch.bincount(table, minlength=len(counts)).double() / size
    expected = counts.double() ** exponent / (counts.double() ** exponent).sum()
    torch.testing.assert_close(shares, expected, atol=1.0 / size, rtol=0)
    assert table.shape == (size,) and table.min() >= 0 and table.max() < len(counts)


def test_negative_table_matches_gensims_cumulative_table():
    from gensim.models import Word2Vec

    sentences = [["x", "y", "x", "z", "x", "y", "w"]] * 30
    model = Word2Vec(vector_size=4, min_count=1, sg=1, workers=1)
    model.build_vocab(sentences)
    counts = torch.tensor([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key])
    size = 100_000
    table = negative_table(counts, 0.75, size)
    ours = torch.bincount(table, minlength=len(counts)).cumsum(0).double() / size
    theirs = torch.from_numpy(model.cum_table).double() / model.cum_table[-1]
    torch.testing.assert_close(ours, theirs, atol=2.0 / size, rtol=0)


# --- pairs ------------------------------------------------------------------------------------


def naive_pairs(ids, sentence, reach):
    pairs = []
    for i in range(len(ids)):
        for j in range(len(ids)):
            if i != j and sentence[i] == sentence[j] and abs(i - j) <= reach[i]:
                pairs.append((int(ids[i]), int(ids[j])))
    return sorted(pairs)


@pytest.mark.parametrize("n, window, seed", [(12, 2, 0), (40, 5, 1), (7, 10, 2), (1, 3, 3)])
def test_skipgram_pairs_equal_a_direct_loop(n, window, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 9, n)
    sentence = np.sort(rng.integers(0, 3, n))  # a few sentences of random lengths
    reach = rng.integers(1, window + 1, n)
    centres, contexts = skipgram_pairs(ids, sentence, reach)
    assert sorted(zip(centres.tolist(), contexts.tolist(), strict=True)) == naive_pairs(
        ids, sentence, reach)


def test_skipgram_pairs_stay_inside_sentences():
    ids = np.arange(6)
    sentence = np.array([0, 0, 0, 1, 1, 1])
    centres, contexts = skipgram_pairs(ids, sentence, np.full(6, 5))
    assert len(centres) == 12  # 3 * 2 ordered pairs per sentence
    assert all((c < 3) == (o < 3) for c, o in zip(centres, contexts, strict=True))
    with pytest.raises(ValueError, match="same length"):
        skipgram_pairs(ids, sentence[:5], np.ones(6, dtype=int))


def test_word_sentences_split_passages_and_drop_punctuation():
    text = "KING:\nO, my lord! 'tis done.\n\nQUEEN:\nWhat's done?\n\n\n"
    assert word_sentences(text) == [["king", "o", "my", "lord", "tis", "done"],
                                    ["queen", "what's", "done"]]


# --- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, k, dim", [(1, 1, 3), (6, 5, 8), (4, 15, 2)])
def test_loss_equals_the_negative_sampling_formula(batch, k, dim):
    torch.manual_seed(0)
    model = SkipGramNS(20, dim)
    with torch.no_grad():  # the output vectors start at zero: give them values
        model.out_embed.weight.normal_()
        model.in_embed.weight.normal_()
    centre = torch.randint(20, (batch,))
    context = torch.randint(20, (batch,))
    negatives = torch.randint(20, (batch, k))
    negatives[0, 0] = context[0]  # a negative that hits the context is skipped
    v, u = model.in_embed.weight, model.out_embed.weight
    expected = []
    for b in range(batch):
        loss = -torch.log(torch.sigmoid(u[context[b]] @ v[centre[b]]))
        for n in negatives[b]:
            if n != context[b]:
                loss = loss - torch.log(torch.sigmoid(-(u[n] @ v[centre[b]])))
        expected.append(loss)
    torch.testing.assert_close(model(centre, context, negatives), torch.stack(expected))


def test_one_sgd_step_is_the_c_tools_update():
    torch.manual_seed(1)
    dim, lr = 6, 0.05
    model = SkipGramNS(10, dim)
    with torch.no_grad():
        model.out_embed.weight.normal_()
    v0, u0 = model.in_embed.weight.detach().clone(), model.out_embed.weight.detach().clone()
    centre, context, negatives = torch.tensor([2]), torch.tensor([5]), torch.tensor([[7, 1]])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model(centre, context, negatives).sum().backward()
    optimizer.step()
    # word2vec.c: g = (label - sigmoid(f)) * alpha; neu1e += g * syn1neg; syn1neg += g * syn0
    neu1e = torch.zeros(dim)
    u_new = u0.clone()
    for target, label in ((5, 1.0), (7, 0.0), (1, 0.0)):
        g = (label - torch.sigmoid(u0[target] @ v0[2])) * lr
        neu1e += g * u0[target]
        u_new[target] += g * v0[2]
    torch.testing.assert_close(model.out_embed.weight.detach(), u_new)
    torch.testing.assert_close(model.in_embed.weight.detach()[2], v0[2] + neu1e)


def test_word_vectors_queries():
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    wv = WordVectors(["a", "b", "c", "d"], vectors)
    assert [w for w, _ in wv.most_similar("a", 3)] == ["b", "c", "d"]
    assert wv.similarity("a", "d") == pytest.approx(-1.0)
    assert wv.similarity("a", "c") == pytest.approx(wv.similarity("c", "a"))
    assert wv.restrict(["c", "a"]).words == ["c", "a"]
    with pytest.raises(KeyError, match="not in the vocabulary"):
        wv.most_similar("zebra")
    with pytest.raises(ValueError, match="one row per word"):
        WordVectors(["a"], vectors)


def test_similarity_helpers():
    gen = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(30)]
    a = WordVectors(words, torch.randn(30, 8, generator=gen))
    b = WordVectors(words[::-1], a.vectors.flip(0) * 3.0)  # same directions, other order
    pairs = [(words[i], words[i + 1]) for i in range(29)]
    assert similarity_correlation(a, b, pairs) == pytest.approx(1.0)
    assert neighbour_overlap(a, b, words[:10], k=5) == 1.0
    c = WordVectors(words, torch.randn(30, 8, generator=gen))
    assert neighbour_overlap(a, c, words, k=5) < 0.6


def test_config_is_validated():
    with pytest.raises(ConfigError, match="min_lr"):
        Word2VecConfig(lr=0.01, min_lr=0.1)
    with pytest.raises(ConfigError, match="window"):
        Word2VecConfig(window=0)
    with pytest.raises(ConfigError, match="did you mean 'dim'"):
        Word2VecConfig(dimm=10)


# --- training, against gensim -----------------------------------------------------------------

SLICE = Word2VecConfig(dim=32, epochs=10, min_count=5, batch_size=256)


@pytest.fixture(scope="module")
def corpus():
    return shakespeare_sentences()[:1500]  # about 39,000 words


@pytest.fixture(scope="module")
def ours(corpus):
    return train_word2vec(corpus, SLICE, progress=False)


def test_training_lowers_the_loss_and_is_repeatable(corpus, ours):
    losses = [record["loss"] for record in ours.history]
    assert losses[-1] < 0.9 * losses[0]
    assert ours.history[-1]["lr"] == pytest.approx(SLICE.min_lr, rel=0.2)
    again = train_word2vec(corpus[:300], SLICE.replace(epochs=1), progress=False)
    twice = train_word2vec(corpus[:300], SLICE.replace(epochs=1), progress=False)
    assert torch.equal(again.vectors.vectors, twice.vectors.vectors)


def test_agrees_with_gensim_far_above_chance(ours, corpus):
    gensim_vectors, gensim_speed = train_gensim(corpus, SLICE)
    assert set(gensim_vectors.words) == set(ours.vocab.itos)  # the same vocabulary
    queries = ours.vocab.itos[:50]
    overlap = neighbour_overlap(ours.vectors, gensim_vectors, queries, k=10)
    gen = torch.Generator().manual_seed(0)
    noise = WordVectors(ours.vectors.words, torch.randn(len(ours.vectors), 32, generator=gen))
    chance = neighbour_overlap(noise, gensim_vectors, queries, k=10)
    assert overlap > 0.15 and overlap > 5 * chance, (overlap, chance)
    rng = np.random.default_rng(0)
    words = ours.vocab.itos[:300]
    pairs = [(words[i], words[j]) for i, j in rng.integers(0, 300, (2000, 2)) if i != j]
    assert similarity_correlation(ours.vectors, gensim_vectors, pairs) > 0.6
    assert similarity_correlation(noise, gensim_vectors, pairs) < 0.2
    assert gensim_speed > 0 and ours.words_per_second > 0


def test_train_checks_model_shape(corpus):
    with pytest.raises(ValueError, match="embeddings"):
        train_word2vec(corpus[:50], SLICE.replace(min_count=1), model=SkipGramNS(3, 32),
                       progress=False)
    with pytest.raises(ValueError, match="lower min_count"):
        train_word2vec([["a", "b"]], SLICE, progress=False)


def test_logsigmoid_is_stable():  # the reason the loss uses F.logsigmoid, not log(sigmoid)
    big = torch.tensor([-200.0])
    assert torch.isfinite(F.logsigmoid(big)).all()
    assert not torch.isfinite(torch.log(torch.sigmoid(big))).all()

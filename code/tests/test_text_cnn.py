"""Kim's text CNN (text-convolutions lesson): shapes, padding, n-gram maths, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuralarch.config import ConfigError
from neuralarch.text.text_cnn import TextCNN, TextCNNConfig, top_ngrams
from neuralarch.text.vocab import PAD, UNK, Vocabulary
from neuralarch.text.word2vec import WordVectors


def make_model(seed: int = 0, **overrides) -> TextCNN:
    torch.manual_seed(seed)
    config = TextCNNConfig(**{"vocab_size": 30, "embed_dim": 6, "filters": 4, **overrides})
    return TextCNN(config).eval()


def random_batch(batch: int, lengths: list[int], vocab_size: int = 30,
                 seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, max(lengths), dtype=torch.long)  # 0 = padding
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, vocab_size, (n,), generator=gen)
    return ids


@pytest.mark.parametrize("widths, lengths, classes", [((3, 4, 5), [7, 2, 11], 2),
                                                      ((2,), [1, 5], 3),
                                                      ((1, 6), [4, 4, 4, 9], 5)])
def test_shapes(widths, lengths, classes):
    model = make_model(widths=widths, num_classes=classes)
    ids = random_batch(len(lengths), lengths)
    assert model(ids).shape == (len(lengths), classes)
    pooled = model.pool(ids)
    assert pooled.features.shape == pooled.starts.shape == (len(lengths), 4 * len(widths))
    assert pooled.widths.tolist() == [w for w in widths for _ in range(4)]
    margin = max(widths) - 1
    for (response, real), w in zip(model.feature_maps(ids), widths, strict=True):
        assert response.shape == (len(lengths), 4, max(lengths) + 2 * margin - w + 1)
        assert real.shape == (len(lengths), response.shape[-1])


@pytest.mark.parametrize("extra", [1, 4, 17])
def test_more_padding_changes_nothing(extra):
    model = make_model(seed=1)
    ids = random_batch(3, [6, 1, 3])
    padded = F.pad(ids, (0, extra), value=0)
    torch.testing.assert_close(model(padded), model(ids), rtol=0, atol=0)
    alone = model(ids[1:2, :1])  # the one-word sentence on its own, no padding at all
    torch.testing.assert_close(model(ids)[1:2], alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("width", [1, 3, 5])
def test_convolution_is_an_ngram_dot_product(width):
    model = make_model(seed=2, widths=(width, 5) if width != 5 else (5,))
    ids = random_batch(2, [5, 3], seed=3)
    response, real = model.feature_maps(ids)[0]
    conv = model.convs[0]
    margin = 4
    padded = F.pad(ids, (margin, margin), value=0)
    e = model.embedding(padded)  # (B, L', E)
    for b in range(2):
        for t in range(response.shape[-1]):
            window = e[b, t:t + width]  # (w, E): the n-gram starting at position t
            score = conv.bias + torch.einsum("fej,je->f", conv.weight, window)
            torch.testing.assert_close(response[b, :, t], F.relu(score), rtol=1e-5, atol=1e-6)
            touches = padded[b, t:t + width].ne(0).any()  # the window covers a real word
            assert bool(real[b, t]) == bool(touches)


def test_pooling_is_the_max_over_real_windows_and_reports_where():
    model = make_model(seed=4, widths=(2, 3))
    ids = random_batch(2, [4, 2], seed=5)
    pooled = model.pool(ids)
    for i, (response, real) in enumerate(model.feature_maps(ids)):
        width = (2, 3)[i]
        for b in range(2):
            for f in range(4):
                values = response[b, f][real[b]]
                column = i * 4 + f
                assert pooled.features[b, column] == values.max()
                start = int(pooled.starts[b, column]) + 2  # back to padded positions
                assert response[b, f, start] == values.max()
                assert -(width - 1) <= int(pooled.starts[b, column]) < [4, 2][b]


def test_rejects_bad_input():
    model = make_model()
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one non-padding"):
        model(torch.tensor([[3, 4], [0, 0]]))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        model(torch.tensor([3, 4]))


@pytest.mark.parametrize("field, value, message", [
    ("widths", (), "at least one"), ("widths", (3, 3), "distinct"), ("widths", (0, 2), ">= 1"),
    ("dropout", 1.0, "less than 1"), ("vocab_size", 1, "greater than 1"),
    ("filters", 0, "greater than 0"),
])
def test_config_is_validated(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TextCNNConfig(**{"vocab_size": 10, field: value})
    with pytest.raises(ValueError, match="pad_id"):
        TextCNN(TextCNNConfig(vocab_size=5, pad_id=5))


def test_word_vectors_initialise_known_words_and_can_be_frozen():
    vocab = Vocabulary(["good", "bad", "meh"], specials=(PAD, UNK))
    vectors = WordVectors(["bad", "good", "other"], torch.arange(12.0).view(3, 4))
    model = TextCNN(TextCNNConfig(vocab_size=len(vocab), embed_dim=4, filters=2,
                                  freeze_embeddings=True))
    assert model.load_word_vectors(vocab, vectors) == 2
    table = model.embedding.weight
    torch.testing.assert_close(table[vocab.id("good")], vectors["good"])
    torch.testing.assert_close(table[vocab.id("bad")], vectors["bad"])
    assert table[vocab.pad_id].abs().sum() == 0
    bound = 3**0.5 * vectors.vectors[[1, 0]].std()
    assert table[vocab.id("meh")].abs().max() <= bound  # unknown words: U[-a, a]
    model.train()
    F.cross_entropy(model(torch.tensor([[2, 3, 4]])), torch.tensor([1])).backward()
    assert table.grad is None and model.convs[0].weight.grad is not None
    with pytest.raises(ValueError, match="size 4"):
        TextCNN(TextCNNConfig(vocab_size=len(vocab), embed_dim=3)).load_word_vectors(vocab,
                                                                                     vectors)


def test_learns_a_separable_toy_task_and_finds_the_cue():
    # label 1 iff the sentence holds the bigram "not bad" or "good"; filler words elsewhere
    words = ["good", "not", "bad"] + [f"w{i}" for i in range(20)]
    vocab = Vocabulary(words, specials=(PAD, UNK))
    gen = torch.Generator().manual_seed(0)
    sentences, labels = [], []
    for i in range(400):
        filler = [f"w{int(j)}" for j in torch.randint(20, (6,), generator=gen)]
        cue = [["good"], ["not", "bad"], ["bad"], ["not"]][i % 4]
        at = int(torch.randint(len(filler), (1,), generator=gen))
        sentences.append(vocab.encode(filler[:at] + cue + filler[at:]))
        labels.append(int(i % 4 < 2))
    ids, _ = vocab.pad_batch(sentences)
    y = torch.tensor(labels)
    torch.manual_seed(0)
    model = TextCNN(TextCNNConfig(vocab_size=len(vocab), embed_dim=8, widths=(2,), filters=8,
                                  dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(ids), y).backward()
        optimizer.step()
    model.eval()
    assert (model(ids).argmax(-1) == y).float().mean() > 0.97
    weight = model.head.weight[1] - model.head.weight[0]  # evidence for "positive"
    best = int(weight.argmax())
    top = top_ngrams(model, ids[y == 1], vocab, best, k=5)
    assert all(len(ngram.split()) == 2 for ngram, _ in top)
    assert all("good" in ngram or "not bad" in ngram for ngram, _ in top), top

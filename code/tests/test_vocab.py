"""The tokeniser and the vocabulary of the NLP lessons."""

from __future__ import annotations

import pytest
import torch

from neuralarch.text.vocab import BOS, EOS, PAD, UNK, Vocabulary, tokenize


@pytest.mark.parametrize("text, tokens", [
    ("The film wasn't good!", ["the", "film", "wasn't", "good", "!"]),
    ("Revenue rose 12.5% to $1,200.", ["revenue", "rose", "12.5", "%", "to", "$", "1,200", "."]),
    ("  ", []),
    ("A-B", ["a", "-", "b"]),
])
def test_tokenize_splits_words_numbers_and_punctuation(text, tokens):
    assert tokenize(text) == tokens


def test_vocabulary_orders_by_frequency_then_alphabet_after_the_specials():
    vocab = Vocabulary.build([["b", "a", "c"], ["a", "b"], ["a", "d"]])
    assert vocab.itos == [PAD, UNK, BOS, EOS, "a", "b", "c", "d"]
    assert vocab.pad_id == 0 and len(vocab) == 8 and "c" in vocab
    assert vocab.counts["a"] == 3


def test_min_count_and_max_size_drop_rare_tokens_to_unk():
    vocab = Vocabulary.build([["a", "a", "b", "c", "c", "c"]], min_count=2)
    assert vocab.itos[4:] == ["c", "a"]
    assert vocab.encode(["b", "a"]) == [vocab.stoi[UNK], vocab.stoi["a"]]
    assert Vocabulary.build([["a", "a", "b", "c", "c", "c"]], max_size=1).itos[4:] == ["c"]
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        Vocabulary.build([["a"]], min_count=0)


def test_encode_decode_round_trip_with_bos_and_eos():
    vocab = Vocabulary.build([["x", "y", "z"]])
    ids = vocab.encode(["y", "z"], add_bos=True, add_eos=True)
    assert ids[0] == vocab.stoi[BOS] and ids[-1] == vocab.stoi[EOS]
    assert vocab.decode(ids) == ["y", "z"]
    assert vocab.decode([*ids, vocab.stoi["x"]]) == ["y", "z"]  # stops at <eos>
    assert vocab.decode(ids, strip_specials=False) == [BOS, "y", "z", EOS]


def test_unknown_tokens_need_an_unk_entry():
    vocab = Vocabulary(["a"], specials=(PAD,))
    with pytest.raises(KeyError, match="has no <unk>"):
        vocab.id("b")
    with pytest.raises(ValueError, match="overlap"):
        Vocabulary(["a", PAD])
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


def test_pad_batch_pads_right_and_marks_padding():
    vocab = Vocabulary.build([["a", "b"]])
    batch, mask = vocab.pad_batch([[4, 5, 4], [5]])
    assert batch.tolist() == [[4, 5, 4], [5, 0, 0]]
    assert mask.tolist() == [[False, False, False], [False, True, True]]
    assert vocab.pad_batch([[4]], length=3)[0].shape == torch.Size([1, 3])
    with pytest.raises(ValueError, match="shorter than the longest"):
        vocab.pad_batch([[4, 5]], length=1)
    with pytest.raises(ValueError, match="at least one"):
        vocab.pad_batch([])

"""The character-level language model of week 07: shapes, truncated BPTT, metrics, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.sequence.char_rnn import (
    CharRNN,
    CharRNNConfig,
    CharTrainConfig,
    CharVocab,
    batchify,
    bits_per_char,
    bptt_windows,
    detach_state,
    generate,
    sample_next,
    split_text,
    train_char_rnn,
    unigram_bits_per_char,
)

TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat.\n" * 40)


def tiny_model(cell: str = "lstm", num_layers: int = 1, seed: int = 0, vocab_size: int = 11
               ) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(CharRNNConfig(vocab_size=vocab_size, embed_dim=8, hidden_size=12,
                                 num_layers=num_layers, cell=cell)).eval()


def random_ids(shape: tuple[int, ...], vocab_size: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randint(vocab_size, shape, generator=torch.Generator().manual_seed(seed))


# --- vocabulary and data ----------------------------------------------------------------------

def test_vocab_round_trip_and_unknown_characters():
    vocab = CharVocab.from_text("hello world")
    assert vocab.itos == sorted(set("hello world")) and len(vocab) == 8
    ids = vocab.encode("low hell")
    assert ids.dtype == torch.long and ids.shape == (8,)
    assert vocab.decode(ids) == "low hell"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("help")
    with pytest.raises(ValueError, match="distinct"):
        CharVocab(["a", "a"])


def test_split_text_holds_out_the_last_fraction():
    text = "abcdefghij" * 10
    train, val = split_text(text, 0.1)
    assert train + val == text and len(val) == 10 and val == text[-10:]
    with pytest.raises(ValueError, match="val_fraction"):
        split_text(text, 1.0)


def test_batchify_makes_contiguous_rows():
    ids = torch.arange(23)
    rows = batchify(ids, 4)  # 23 // 4 = 5 columns, the last 3 ids dropped
    assert rows.shape == (4, 5)
    torch.testing.assert_close(rows[1], torch.arange(5, 10))
    with pytest.raises(ValueError, match="batch_size"):
        batchify(ids, 20)
    with pytest.raises(ValueError, match="one stream"):
        batchify(ids.view(1, -1), 1)


@pytest.mark.parametrize("seq_len", [1, 3, 4, 10])
def test_bptt_windows_shift_targets_and_cover_every_position_once(seq_len):
    rows = torch.arange(30).view(3, 10)
    windows = list(bptt_windows(rows, seq_len))
    inputs = torch.cat([x for x, _ in windows], dim=1)
    targets = torch.cat([y for _, y in windows], dim=1)
    torch.testing.assert_close(inputs, rows[:, :-1])  # every input once, in order
    torch.testing.assert_close(targets, rows[:, 1:])  # the next character of each input
    assert all(x.shape[1] <= seq_len for x, _ in windows)


# --- the model --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_shapes(cell, num_layers):
    model = tiny_model(cell, num_layers)
    logits, state = model(random_ids((3, 7)))
    assert logits.shape == (3, 7, 11)
    states = state if cell == "lstm" else (state,)
    assert all(s.shape == (num_layers, 3, 12) for s in states)


def test_config_and_input_are_validated():
    with pytest.raises(ConfigError, match="cell"):
        CharRNNConfig(vocab_size=10, cell="rnn")
    with pytest.raises(ConfigError, match="vocab_size"):
        CharRNNConfig(vocab_size=1)
    with pytest.raises(ValueError, match=r"\(B, T\) int64"):
        tiny_model()(torch.zeros(7, dtype=torch.long))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_equals_one_long_pass(cell):
    model, ids = tiny_model(cell, 2), random_ids((2, 12))
    whole, _ = model(ids)
    first, state = model(ids[:, :5])
    second, _ = model(ids[:, 5:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_detach_state_keeps_values_and_drops_the_graph(cell):
    model = tiny_model(cell).train()
    _, state = model(random_ids((2, 5)))
    states = state if cell == "lstm" else (state,)
    assert all(s.grad_fn is not None for s in states)
    detached = detach_state(state)
    detached = detached if cell == "lstm" else (detached,)
    for before, after in zip(states, detached, strict=True):
        assert after.grad_fn is None and not after.requires_grad
        torch.testing.assert_close(after, before.detach())


# --- metrics ----------------------------------------------------------------------------------

def test_uniform_model_scores_log2_of_the_vocabulary():
    model = tiny_model(vocab_size=11)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()  # equal logits: every character has probability 1 / V
    assert bits_per_char(model, random_ids((200,)), batch_size=4, seq_len=9) == pytest.approx(
        math.log2(11), abs=1e-5)


def test_bits_per_char_does_not_depend_on_the_window_length():
    model, ids = tiny_model("gru"), random_ids((300,))
    short = bits_per_char(model, ids, batch_size=3, seq_len=7)
    long = bits_per_char(model, ids, batch_size=3, seq_len=1000)  # one window per row
    assert short == pytest.approx(long, abs=1e-5)  # the state is carried between windows
    assert not model.training


def test_unigram_baseline():
    train, evaluation = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1])
    expected = -(math.log2(4 / 6) + math.log2(2 / 6)) / 2  # add-one counts (4, 2) over 6
    assert unigram_bits_per_char(train, evaluation, 2) == pytest.approx(expected)
    flat = unigram_bits_per_char(torch.arange(5), torch.arange(5), 5, smoothing=0.0)
    assert flat == pytest.approx(math.log2(5))


# --- training ---------------------------------------------------------------------------------

class RecordingRNN(CharRNN):
    """A CharRNN that remembers the state it was given and the state it returned."""

    def forward(self, ids, state=None):
        self.given = [*getattr(self, "given", []), state]
        logits, out = super().forward(ids, state)
        self.returned = [*getattr(self, "returned", []), out]
        return logits, out


def test_training_carries_and_detaches_the_state():
    torch.manual_seed(0)
    vocab = CharVocab.from_text(TEXT)
    model = RecordingRNN(CharRNNConfig(vocab_size=len(vocab), embed_dim=8, hidden_size=12))
    rows_per_epoch = len(list(bptt_windows(batchify(vocab.encode(TEXT), 4), 16)))
    config = CharTrainConfig(steps=rows_per_epoch + 2, batch_size=4, seq_len=16)
    train_char_rnn(model, vocab.encode(TEXT), None, config, progress=False)
    given, returned = model.given, model.returned
    assert given[0] is None and given[rows_per_epoch] is None  # each pass over the rows restarts
    for step in (1, 2, rows_per_epoch - 1, rows_per_epoch + 1):
        for passed, previous in zip(given[step], returned[step - 1], strict=True):
            assert passed.grad_fn is None and not passed.requires_grad  # detached
            torch.testing.assert_close(passed, previous.detach())  # carried


def test_short_training_lowers_validation_loss():
    vocab = CharVocab.from_text(TEXT)
    train, val = split_text(TEXT)
    train_ids, val_ids = vocab.encode(train), vocab.encode(val)
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(vocab_size=len(vocab), hidden_size=32))
    before = bits_per_char(model, val_ids, batch_size=4)
    history = train_char_rnn(model, train_ids, val_ids, CharTrainConfig(
        steps=80, batch_size=8, seq_len=32, eval_every=40, log_every=10), progress=False)
    assert history.val_steps == [40, 80] and len(history.train_bpc) == 8
    assert history.val_bpc[-1] < before - 1.0  # from about log2(V) to well below
    assert history.train_bpc[-1] < history.train_bpc[0]
    assert not model.training


# --- sampling ---------------------------------------------------------------------------------

def test_temperature_zero_is_argmax_and_tiny_temperatures_agree():
    logits = torch.randn(6, 11, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample_next(logits, 0.0), logits.argmax(-1))
    for seed in range(5):
        torch.testing.assert_close(sample_next(logits, 1e-4, torch.Generator().manual_seed(seed)),
                                   logits.argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)


def test_high_temperature_flattens_the_distribution():
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0]]).expand(4000, 4)
    gen = torch.Generator().manual_seed(0)
    cold = sample_next(logits, 0.5, gen).eq(0).float().mean()
    hot = sample_next(logits, 50.0, gen).eq(0).float().mean()
    assert cold > 0.95 and 0.2 < hot < 0.3  # softmax(4 / 50) gives the first id about 0.27


def test_generate_greedy_equals_a_manual_argmax_loop():
    vocab = CharVocab.from_text(TEXT)
    model = tiny_model("gru", vocab_size=len(vocab))
    text = generate(model, vocab, "the ", 15, temperature=0.0)
    context = vocab.encode("the ").tolist()
    with torch.no_grad():
        for _ in range(15):
            logits, _ = model(torch.tensor([context]))  # re-read everything: no state reuse
            context.append(int(logits[0, -1].argmax()))
    assert len(text) == 15 and text == vocab.decode(context[4:])


def test_generate_is_reproducible_with_a_generator():
    vocab = CharVocab.from_text(TEXT)
    model = tiny_model(vocab_size=len(vocab)).train()
    a = generate(model, vocab, "a", 40, 1.0, torch.Generator().manual_seed(3))
    b = generate(model, vocab, "a", 40, 1.0, 3)  # an int seeds a private generator
    c = generate(model, vocab, "a", 40, 1.0, torch.Generator().manual_seed(4))
    assert a == b and a != c
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match="prompt"):
        generate(model, vocab, "", 5)


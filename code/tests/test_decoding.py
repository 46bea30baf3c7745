"""Greedy, beam and sampled decoding (lesson 5.5) against brute force and against each other."""

from __future__ import annotations

import itertools
from collections import namedtuple

import pytest
import torch

from neuralarch.sequence.decoding import (
    beam_search,
    gnmt_length_penalty,
    greedy_decode,
    sample,
    select_memory,
    sequence_log_probs,
)
from neuralarch.sequence.seq2seq import Seq2SeqConfig, Seq2SeqModel, Seq2SeqTransformer

PAD, BOS, EOS = 0, 1, 2


def random_model(seed: int, tgt_vocab: int = 5, sharpness: float = 2.0) -> Seq2SeqTransformer:
    """A small untrained transformer whose next-token distributions are neither flat nor peaked."""
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(Seq2SeqConfig(src_vocab=7, tgt_vocab=tgt_vocab, dim=16, heads=2,
                                             encoder_layers=1, decoder_layers=2, ffn_dim=32,
                                             dropout=0.0))
    with torch.no_grad():
        model.out_proj.weight.mul_(sharpness)
    return model


def sources(seed: int, b: int = 3, s: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.randint(3, 7, (b, s), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(b, s, dtype=torch.bool)
    mask[0, 3:] = True  # the first source is shorter
    return src.masked_fill(mask, PAD), mask


class BigramModel:
    """A protocol model (not an nn.Module) whose next token depends on the last token only."""

    def __init__(self, probs: dict[int, dict[int, float]], vocab: int) -> None:
        self.table = torch.full((vocab, vocab), -1e9)  # log-probs, row = previous token
        for prev, row in probs.items():
            for token, p in row.items():
                self.table[prev, token] = torch.tensor(p).log()

    def encode(self, src, src_padding_mask=None):
        return src.float()[..., None]  # (B, S, 1): unused, but it has a batch axis

    def decode(self, tgt_in, memory, src_padding_mask=None):
        assert memory.shape[0] == tgt_in.shape[0]  # beam search expanded the memory
        return self.table[tgt_in]  # (B, T, V)

    def forward(self, src, tgt_in, src_padding_mask=None):
        return self.decode(tgt_in, self.encode(src), src_padding_mask)

    __call__ = forward


class RandomTreeModel:
    """A protocol model giving every (source, prefix) its own random next-token distribution."""

    def __init__(self, vocab: int, seed: int, scale: float = 1.5) -> None:
        self.vocab, self.seed, self.scale = vocab, seed, scale

    def encode(self, src, src_padding_mask=None):
        return src

    def decode(self, tgt_in, memory, src_padding_mask=None):
        b, t = tgt_in.shape
        logits = torch.empty(b, t, self.vocab)
        for row in range(b):
            source = tuple(memory[row].tolist())
            for pos in range(t):
                key = hash((self.seed, source, tuple(tgt_in[row, : pos + 1].tolist())))
                gen = torch.Generator().manual_seed(key % 2**62)
                logits[row, pos] = self.scale * torch.randn(self.vocab, generator=gen)
        return logits

    def forward(self, src, tgt_in, src_padding_mask=None):
        return self.decode(tgt_in, self.encode(src), src_padding_mask)

    __call__ = forward


# A trap for greedy decoding: A is the likelier first token, but every continuation of A is
# unlikely, while B is almost surely followed by eos.  p(A ...) <= 0.55 / 3, p(B eos) = 0.43.
TRAP = {BOS: {3: 0.55, 4: 0.45}, 3: {3: 1 / 3, 4: 1 / 3, EOS: 1 / 3}, 4: {EOS: 0.95, 3: 0.05}}


def brute_force_best(model, src, mask, vocab: int, max_len: int, alpha: float):
    """Score every possible output (eos-terminated up to max_len, or cut at max_len)."""
    words = [t for t in range(vocab) if t != EOS]
    outputs = [(list(seq), True) for n in range(max_len)
               for seq in itertools.product(words, repeat=n)]
    outputs += [(list(seq), False) for seq in itertools.product(words, repeat=max_len)]
    best = []
    for i in range(src.shape[0]):
        n = len(outputs)
        logp = sequence_log_probs(model, src[i:i + 1].expand(n, -1), mask[i:i + 1].expand(n, -1),
                                  [o for o, _ in outputs], BOS, EOS,
                                  add_eos=[f for _, f in outputs])
        scores = [lp / gnmt_length_penalty(len(o) + f, alpha)
                  for lp, (o, f) in zip(logp.tolist(), outputs, strict=True)]
        j = max(range(n), key=scores.__getitem__)
        best.append((outputs[j][0], scores[j]))
    return best


# --- greedy and beam ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_is_greedy(seed):
    model = random_model(seed, tgt_vocab=6)
    src, mask = sources(seed)
    greedy = greedy_decode(model, src, mask, BOS, EOS, max_len=6)
    beam = beam_search(model, src, mask, BOS, EOS, max_len=6, beam_size=1, length_penalty=0.0)
    assert beam.tokens == greedy.tokens
    assert beam.finished == greedy.finished
    torch.testing.assert_close(torch.tensor(beam.log_probs), torch.tensor(greedy.log_probs))


def test_beam_size_one_ignores_an_eos_that_greedy_would_not_take():
    # eos is the runner-up at the first step (0.4) and beats greedy's whole output (0.6 * 0.5);
    # only an eos among the beam_size best candidates may finish, so beam 1 stays greedy.
    model = BigramModel({BOS: {3: 0.6, EOS: 0.4}, 3: {4: 0.5, EOS: 0.3, 3: 0.2},
                         4: {EOS: 1.0}}, vocab=5)
    src = torch.ones(1, 2, dtype=torch.long)
    greedy = greedy_decode(model, src, None, BOS, EOS, max_len=5)
    beam = beam_search(model, src, None, BOS, EOS, max_len=5, beam_size=1, length_penalty=0.0)
    assert greedy.tokens == beam.tokens == [[3, 4]]
    wide = beam_search(model, src, None, BOS, EOS, max_len=5, beam_size=2, length_penalty=0.0)
    assert wide.tokens == [[]]  # a beam of 2 keeps the eos and finds the better output


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
@pytest.mark.parametrize("kind", ["transformer", "tree-1", "tree-2"])
def test_wide_beam_finds_the_brute_force_optimum(alpha, kind):
    vocab, max_len = 4, 4
    if kind == "transformer":
        model = random_model(3, tgt_vocab=vocab, sharpness=1.0)
        with torch.no_grad():
            model.out_proj.bias[EOS] -= 1.5  # so that stopping at once is not always best
    else:
        model = RandomTreeModel(vocab, seed=int(kind[-1]))
    src, mask = sources(3)
    beam = beam_search(model, src, mask, BOS, EOS, max_len, beam_size=vocab ** max_len,
                       length_penalty=alpha)
    best = brute_force_best(model, src, mask, vocab, max_len, alpha)
    assert beam.tokens == [tokens for tokens, _ in best]
    torch.testing.assert_close(torch.tensor(beam.scores), torch.tensor([s for _, s in best]))


def test_beam_search_beats_greedy_on_a_trap():
    model = BigramModel(TRAP, vocab=5)
    src = torch.ones(2, 3, dtype=torch.long)
    greedy = greedy_decode(model, src, None, BOS, EOS, max_len=5)
    beam = beam_search(model, src, None, BOS, EOS, max_len=5, beam_size=2, length_penalty=0.0)
    assert greedy.tokens[0][0] == 3 and beam.tokens == [[4], [4]]
    assert beam.log_probs[0] == pytest.approx(float(torch.tensor(0.45 * 0.95).log()), abs=1e-5)
    assert beam.log_probs[0] > greedy.log_probs[0] + 0.5


def test_nbest_lists_are_sorted_and_scored():
    model = random_model(4)
    src, mask = sources(4)
    beam = beam_search(model, src, mask, BOS, EOS, max_len=5, beam_size=3, length_penalty=0.6)
    for pool in beam.nbest:
        assert len(pool) == 3
        assert [h.score for h in pool] == sorted((h.score for h in pool), reverse=True)
        for h in pool:
            assert h.score == pytest.approx(
                h.log_prob / gnmt_length_penalty(len(h.tokens) + h.finished, 0.6))
    first = [pool[0] for pool in beam.nbest]
    rescored = sequence_log_probs(model, src, mask, [h.tokens for h in first], BOS, EOS,
                                  add_eos=[h.finished for h in first])
    torch.testing.assert_close(rescored, torch.tensor(beam.log_probs))


def test_greedy_log_probs_equal_a_teacher_forced_rescoring():
    model = random_model(5, tgt_vocab=6)
    src, mask = sources(5, b=4)
    out = greedy_decode(model, src, mask, BOS, EOS, max_len=7)
    rescored = sequence_log_probs(model, src, mask, out.tokens, BOS, EOS, add_eos=out.finished)
    torch.testing.assert_close(rescored, torch.tensor(out.log_probs))


# --- eos and lengths ------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["greedy", "beam", "sample"])
def test_eos_stops_a_row_and_max_len_cuts_it(decoder):
    # Row-independent bigram: after token 3 comes eos; token 4 repeats forever.
    model = BigramModel({BOS: {3: 1.0}, 3: {EOS: 1.0}, 4: {4: 1.0}, EOS: {EOS: 1.0}}, vocab=5)
    never = BigramModel({BOS: {4: 1.0}, 4: {4: 1.0}}, vocab=5)
    src = torch.ones(2, 3, dtype=torch.long)
    run = {"greedy": lambda m: greedy_decode(m, src, None, BOS, EOS, 4),
           "beam": lambda m: beam_search(m, src, None, BOS, EOS, 4, beam_size=2),
           "sample": lambda m: sample(m, src, None, BOS, EOS, 4,
                                      generator=torch.Generator().manual_seed(0))}[decoder]
    stops, runs_on = run(model), run(never)
    assert stops.tokens == [[3], [3]] and stops.finished == [True, True]
    assert runs_on.tokens == [[4] * 4, [4] * 4] and runs_on.finished == [False, False]


def test_eos_only_model_gives_empty_outputs():
    model = BigramModel({BOS: {EOS: 1.0}}, vocab=4)
    src = torch.ones(3, 2, dtype=torch.long)
    for out in (greedy_decode(model, src, None, BOS, EOS, 5),
                beam_search(model, src, None, BOS, EOS, 5, beam_size=3)):
        assert out.tokens == [[], [], []] and out.finished == [True] * 3
        assert out.log_probs == pytest.approx([0.0] * 3, abs=1e-6)


# --- sampling -------------------------------------------------------------------------------

def test_sampling_at_low_temperature_is_greedy():
    model = random_model(6, tgt_vocab=6)
    src, mask = sources(6, b=4)
    greedy = greedy_decode(model, src, mask, BOS, EOS, 6)
    cold = sample(model, src, mask, BOS, EOS, 6, temperature=1e-4,
                  generator=torch.Generator().manual_seed(0))
    top1 = sample(model, src, mask, BOS, EOS, 6, top_k=1,
                  generator=torch.Generator().manual_seed(1))
    assert cold.tokens == greedy.tokens == top1.tokens


def test_sampling_is_reproducible_with_a_generator():
    model = random_model(7, tgt_vocab=6, sharpness=0.5)
    src, mask = sources(7, b=6)

    def draw(seed):
        return sample(model, src, mask, BOS, EOS, 6, generator=torch.Generator().manual_seed(seed))

    assert draw(0).tokens == draw(0).tokens
    assert draw(0).tokens != draw(1).tokens


def test_sampling_follows_the_model_distribution():
    model = BigramModel(TRAP, vocab=5)
    src = torch.ones(4000, 1, dtype=torch.long)
    first = sample(model, src, None, BOS, EOS, 1, generator=torch.Generator().manual_seed(0))
    share_a = sum(tokens[:1] == [3] for tokens in first.tokens) / 4000
    assert share_a == pytest.approx(0.55, abs=0.03)
    hot = sample(model, src, None, BOS, EOS, 1, temperature=100.0,
                 generator=torch.Generator().manual_seed(0))
    assert sum(t[:1] == [3] for t in hot.tokens) / 4000 == pytest.approx(0.5, abs=0.03)
    only_a = sample(model, src[:50], None, BOS, EOS, 1, top_k=1,
                    generator=torch.Generator().manual_seed(0))
    assert all(t == [3] for t in only_a.tokens)


def test_sampled_log_probs_are_under_the_untempered_model():
    model = random_model(8, tgt_vocab=6, sharpness=0.5)
    src, mask = sources(8)
    out = sample(model, src, mask, BOS, EOS, 5, temperature=2.0,
                 generator=torch.Generator().manual_seed(0))
    rescored = sequence_log_probs(model, src, mask, out.tokens, BOS, EOS, add_eos=out.finished)
    torch.testing.assert_close(rescored, torch.tensor(out.log_probs))


# --- memory, modes and errors ---------------------------------------------------------------

def test_select_memory_handles_nested_memories_and_model_hooks():
    index = torch.tensor([1, 1, 0])
    pair = namedtuple("Pair", "outputs hidden")(torch.arange(2)[:, None], torch.arange(2))
    got = select_memory(object(), {"a": pair, "b": [torch.arange(2), None]}, index)
    assert got["a"].outputs.squeeze(1).tolist() == [1, 1, 0] and got["b"][1] is None

    class BatchSecond:
        def reorder_memory(self, memory, index):
            return memory.index_select(1, index)

    assert select_memory(BatchSecond(), torch.arange(4).view(1, 2, 2), index).shape == (1, 3, 2)
    with pytest.raises(TypeError, match="reorder_memory"):
        select_memory(object(), "not a tensor", index)


def test_decoders_restore_training_mode_and_follow_the_protocol():
    model = random_model(9)
    model.train()
    src, mask = sources(9)
    greedy_decode(model, src, mask, BOS, EOS, 3)
    beam_search(model, src, mask, BOS, EOS, 3, beam_size=2)
    assert model.training
    assert isinstance(model, Seq2SeqModel) and isinstance(BigramModel(TRAP, 5), Seq2SeqModel)


@pytest.mark.parametrize("call, message", [
    (lambda m, s: greedy_decode(m, s.float(), None, BOS, EOS, 3), "integer token ids"),
    (lambda m, s: greedy_decode(m, s, None, BOS, EOS, 0), "max_len"),
    (lambda m, s: greedy_decode(m, s, torch.zeros(1, 2, dtype=torch.bool), BOS, EOS, 3),
     "src_padding_mask"),
    (lambda m, s: beam_search(m, s, None, BOS, EOS, 3, beam_size=0), "beam_size"),
    (lambda m, s: beam_search(m, s, None, BOS, EOS, 3, length_penalty=-1.0), "length_penalty"),
    (lambda m, s: sample(m, s, None, BOS, EOS, 3, temperature=0.0), "temperature"),
    (lambda m, s: sample(m, s, None, BOS, EOS, 3, top_k=0), "top_k"),
])
def test_bad_arguments_are_rejected(call, message):
    model, src = random_model(0), torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        call(model, src)

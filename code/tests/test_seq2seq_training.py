"""Teacher forcing, the padded loss and the trainer of lesson 5.5."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from neuralarch.sequence.decoding import greedy_decode
from neuralarch.sequence.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from neuralarch.sequence.seq2seq_training import (
    collate_pairs,
    evaluate_seq2seq,
    exact_match,
    pad_sequences,
    seq2seq_loss,
    teacher_forcing_batch,
    token_accuracy,
    train_seq2seq,
)

PAD, BOS, EOS = 0, 1, 2


class FixedLogits(torch.nn.Module):
    """A stand-in model that returns given logits, to test the loss in isolation."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, src, tgt_in, src_padding_mask=None):
        return self.logits


def tiny_model(vocab: int = 10, seed: int = 0) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    return Seq2SeqTransformer(Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, dim=32, heads=2,
                                            encoder_layers=1, decoder_layers=1, ffn_dim=64,
                                            dropout=0.0, max_len=16))


def test_teacher_forcing_shifts_by_one():
    tgt = torch.tensor([[BOS, 5, 6, 7, EOS], [BOS, 8, EOS, PAD, PAD]])
    tgt_in, tgt_out = teacher_forcing_batch(tgt, PAD)
    assert tgt_in.tolist() == [[BOS, 5, 6, 7], [BOS, 8, PAD, PAD]]
    assert tgt_out.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    with pytest.raises(ValueError, match="bos and eos"):
        teacher_forcing_batch(torch.tensor([[BOS]]), PAD)


def test_collate_pairs_pads_and_masks():
    batch = collate_pairs([([4, 5, 6], [7]), ([8], [9, 9])], BOS, EOS, PAD)
    assert batch.src.tolist() == [[4, 5, 6], [8, PAD, PAD]]
    assert batch.src_padding_mask.tolist() == [[False, False, False], [False, True, True]]
    assert batch.tgt_in.tolist() == [[BOS, 7, PAD], [BOS, 9, 9]]
    assert batch.tgt_out.tolist() == [[7, EOS, PAD], [9, 9, EOS]]
    assert pad_sequences([[], [3]], PAD).tolist() == [[PAD], [3]]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_ignores_padding_and_equals_a_manual_computation(smoothing):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, generator=gen)
    tgt_out = torch.tensor([[3, 4, 5, EOS], [4, EOS, PAD, PAD]])
    loss = seq2seq_loss(FixedLogits(logits), None, None, None, tgt_out, PAD, smoothing)
    terms = []
    for b in range(2):
        for t in range(4):
            if tgt_out[b, t] == PAD:
                continue
            logp = logits[b, t].log_softmax(-1)
            nll = -logp[tgt_out[b, t]]
            terms.append((1 - smoothing) * nll - smoothing * logp.mean())
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    changed = logits.clone()
    changed[1, 2:] = 100.0 * torch.randn(2, 6, generator=gen)  # garbage at padded positions
    torch.testing.assert_close(seq2seq_loss(FixedLogits(changed), None, None, None, tgt_out, PAD,
                                            smoothing), loss)
    naive = F.cross_entropy(logits.reshape(-1, 6), tgt_out.reshape(-1))  # padding counted
    assert not torch.isclose(naive, loss)


def test_loss_rejects_unshifted_targets():
    with pytest.raises(ValueError, match="shift"):
        seq2seq_loss(FixedLogits(torch.zeros(1, 4, 5)), None, None, None,
                     torch.zeros(1, 5, dtype=torch.long), PAD)


def test_metrics():
    logits = torch.tensor([[[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]])  # arg-max 1, 0, 2
    assert token_accuracy(logits, torch.tensor([[1, 2, PAD]]), PAD) == 0.5
    assert exact_match([[1, 2], [3]], [[1, 2], [3, 4]]) == 0.5
    with pytest.raises(ValueError, match="equally many"):
        exact_match([[1]], [])


def test_a_tiny_model_overfits_a_tiny_copy_task():
    rng = random.Random(0)
    pairs = [(seq, seq) for seq in ([rng.randint(3, 9) for _ in range(rng.randint(2, 5))]
                                    for _ in range(12))]
    model = tiny_model()
    history = train_seq2seq(model, pairs, bos_id=BOS, eos_id=EOS, pad_id=PAD, epochs=120,
                            batch_size=12, lr=3e-3, warmup=10, weight_decay=0.0, seed=0,
                            device="cpu", val_pairs=pairs, progress=False)
    assert history.train_loss[-1] < history.train_loss[0] / 10
    assert history.final["val_token_accuracy"] == 1.0
    batch = collate_pairs(pairs, BOS, EOS, PAD)
    out = greedy_decode(model, batch.src, batch.src_padding_mask, BOS, EOS, max_len=8)
    assert exact_match(out.tokens, [tgt for _, tgt in pairs]) == 1.0
    assert model.training  # decoding restored the mode


def test_training_is_reproducible_and_evaluation_matches_the_loss():
    pairs = [([3, 4, 5], [5, 4, 3]), ([6, 7], [7, 6]), ([8, 3, 9, 4], [4, 9, 3, 8])]
    runs = []
    for _ in range(2):
        model = tiny_model(seed=1)
        history = train_seq2seq(model, pairs, bos_id=BOS, eos_id=EOS, pad_id=PAD, epochs=3,
                                batch_size=2, warmup=1, seed=3, device="cpu", progress=False,
                                log_every=1)
        runs.append((history.train_loss, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 6
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    batch = collate_pairs(pairs, BOS, EOS, PAD)
    model.eval()
    with torch.no_grad():
        loss = seq2seq_loss(model, batch.src, batch.src_padding_mask, batch.tgt_in,
                            batch.tgt_out, PAD)
    scores = evaluate_seq2seq(model, pairs, BOS, EOS, PAD, batch_size=2)
    assert scores["loss"] == pytest.approx(loss.item(), rel=1e-5)

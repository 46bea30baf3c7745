"""Training a sequence-to-sequence model with teacher forcing.

Introduced in lesson 5.5 (``m05-l05``). A target ``bos y1 ... yn eos`` is split into the
decoder's input ``bos y1 ... yn`` and the labels ``y1 ... yn eos`` (:func:`teacher_forcing_batch`),
so one parallel forward pass trains every position to predict the next token from the *true*
prefix. :func:`seq2seq_loss` is the token cross-entropy with padding left out, and
:func:`train_seq2seq` runs AdamW with linear warmup and cosine decay on a list of
``(source ids, target ids)`` pairs, for any :class:`~neuralarch.sequence.seq2seq.Seq2SeqModel`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from neuralarch.device import get_device
from neuralarch.optim.schedules import WarmupCosineSchedule
from neuralarch.progress import progress_disabled
from neuralarch.repro import derive_seed, make_generator, seed_everything
from neuralarch.sequence.seq2seq import Seq2SeqModel
from neuralarch.train.loop import History

Pair = tuple[Sequence[int], Sequence[int]]  # (source ids, target ids without bos/eos)


@dataclass
class Seq2SeqBatch:
    """A padded batch: source ids and mask, decoder inputs and labels, all (B, ·) tensors."""

    src: torch.Tensor  # (B, S) source ids, padded
    src_padding_mask: torch.Tensor  # (B, S) True at padding
    tgt_in: torch.Tensor  # (B, T) bos y1 ... yn (pad)
    tgt_out: torch.Tensor  # (B, T) y1 ... yn eos (pad)

    def to(self, device: str | torch.device) -> Seq2SeqBatch:
        """The same batch on ``device``."""
        return Seq2SeqBatch(*(t.to(device) for t in (self.src, self.src_padding_mask,
                                                     self.tgt_in, self.tgt_out)))


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Right-pad id lists to one LongTensor (B, longest)."""
    if len(seqs) == 0:
        raise ValueError("pad_sequences needs at least one sequence")
    out = torch.full((len(seqs), max(max(len(s) for s in seqs), 1)), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return out


def teacher_forcing_batch(tgt: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split targets ``bos y1..yn eos pad..`` (B, T+1) into inputs and labels, each (B, T)."""
    if tgt.ndim != 2 or tgt.shape[1] < 2:
        raise ValueError(f"tgt must be (B, T+1) ids with bos and eos, T+1 >= 2; got shape "
                         f"{tuple(tgt.shape)}")
    tgt_in = tgt[:, :-1]  # bos y1 ... yn      (the true prefix: teacher forcing)
    tgt_out = tgt[:, 1:]  # y1 ... yn eos      (position t predicts token t + 1)
    # Where the label is padding the input is eos or pad; the loss ignores those positions.
    tgt_in = tgt_in.masked_fill(tgt_out == pad_id, pad_id)
    return tgt_in, tgt_out


def collate_pairs(pairs: Sequence[Pair], bos_id: int, eos_id: int, pad_id: int) -> Seq2SeqBatch:
    """Pad ``(source, target)`` id pairs into a :class:`Seq2SeqBatch` with bos/eos added."""
    src = pad_sequences([s for s, _ in pairs], pad_id)  # (B, S)
    tgt = pad_sequences([[bos_id, *t, eos_id] for _, t in pairs], pad_id)  # (B, T + 1)
    tgt_in, tgt_out = teacher_forcing_batch(tgt, pad_id)
    return Seq2SeqBatch(src, src == pad_id, tgt_in, tgt_out)


def seq2seq_loss(model: Seq2SeqModel, src: torch.Tensor, src_padding_mask: torch.Tensor | None,
                 tgt_in: torch.Tensor, tgt_out: torch.Tensor, pad_id: int,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the non-padding target tokens of a teacher-forced pass."""
    logits = model(src, tgt_in, src_padding_mask)  # (B, T, V)
    if logits.shape[:2] != tgt_out.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels "
                         f"{tuple(tgt_out.shape)}; did you shift the targets?")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt_out.reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing)


def token_accuracy(logits: torch.Tensor, tgt_out: torch.Tensor, pad_id: int) -> float:
    """Fraction of non-padding labels (B, T) whose arg-max logit (B, T, V) is right."""
    real = tgt_out != pad_id
    return ((logits.argmax(dim=-1) == tgt_out) & real).sum().item() / max(real.sum().item(), 1)


def exact_match(predictions: Sequence[Sequence[int]],
                references: Sequence[Sequence[int]]) -> float:
    """Fraction of predictions equal, token for token, to their reference."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need equally many predictions and references (> 0), got "
                         f"{len(predictions)} and {len(references)}")
    return sum(list(p) == list(r) for p, r in zip(predictions, references, strict=True)) \
        / len(references)


@torch.no_grad()
def evaluate_seq2seq(model: Seq2SeqModel, pairs: Sequence[Pair], bos_id: int, eos_id: int,
                     pad_id: int, batch_size: int = 256) -> dict[str, float]:
    """Teacher-forced loss and token accuracy on ``pairs`` (eval mode, restored afterwards)."""
    was_training = getattr(model, "training", False)
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct, tokens = 0.0, 0.0, 0
    try:
        for start in range(0, len(pairs), batch_size):
            batch = collate_pairs(pairs[start: start + batch_size], bos_id, eos_id, pad_id)
            batch = batch.to(device)
            logits = model(batch.src, batch.tgt_in, batch.src_padding_mask)  # (B, T, V)
            n = int((batch.tgt_out != pad_id).sum())
            loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                        batch.tgt_out.reshape(-1), ignore_index=pad_id,
                                        reduction="sum").item()
            correct += token_accuracy(logits, batch.tgt_out, pad_id) * n
            tokens += n
    finally:
        model.train(was_training)
    return {"loss": loss_sum / tokens, "token_accuracy": correct / tokens}


def train_seq2seq(model: nn.Module, pairs: Sequence[Pair], *, bos_id: int, eos_id: int,
                  pad_id: int, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                  warmup: int = 100, weight_decay: float = 0.01, label_smoothing: float = 0.0,
                  grad_clip: float | None = 1.0, seed: int = 0,
                  device: str | torch.device | None = None,
                  val_pairs: Sequence[Pair] | None = None, log_every: int = 10,
                  progress: bool = True) -> History:
    """Train with teacher forcing, AdamW, linear warmup then cosine decay; return the history.

    The history (:class:`~neuralarch.train.loop.History`) holds the mean training loss of every
    ``log_every`` steps and, per epoch, the training loss and (with ``val_pairs``) the
    teacher-forced validation loss and token accuracy.
    """
    if not pairs:
        raise ValueError("train_seq2seq needs at least one (source, target) pair")
    if epochs < 1 or batch_size < 1 or log_every < 1:
        raise ValueError(f"epochs, batch_size and log_every must be >= 1, got {epochs}, "
                         f"{batch_size}, {log_every}")
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    seed_everything(derive_seed(seed, "train"))  # dropout
    order_gen = make_generator(derive_seed(seed, "data"))  # shuffling, on its own stream
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = WarmupCosineSchedule(optimizer, warmup, epochs * steps_per_epoch)
    history, window = History(), []
    bar = tqdm(total=epochs * steps_per_epoch, unit="step", desc="seq2seq",
               disable=not progress or progress_disabled())
    model.train()
    step = 0
    for epoch in range(epochs):
        started, epoch_loss = time.perf_counter(), 0.0
        for batch_idx in torch.randperm(len(pairs), generator=order_gen).split(batch_size):
            batch = collate_pairs([pairs[i] for i in batch_idx.tolist()], bos_id, eos_id,
                                  pad_id).to(device)
            loss = seq2seq_loss(model, batch.src, batch.src_padding_mask, batch.tgt_in,
                                batch.tgt_out, pad_id, label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            window.append(loss.item())
            epoch_loss += window[-1]
            bar.update(1)
            if step % log_every == 0 or step == epochs * steps_per_epoch:
                history.steps.append(step)
                history.train_loss.append(sum(window) / len(window))
                history.lr.append(optimizer.param_groups[0]["lr"])
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}")
                window = []
        record = {"epoch": epoch + 1, "step": step, "train_loss": epoch_loss / steps_per_epoch,
                  "lr": optimizer.param_groups[0]["lr"]}
        if val_pairs:
            scores = evaluate_seq2seq(model, val_pairs, bos_id, eos_id, pad_id)
            record.update({f"val_{name}": value for name, value in scores.items()})
        record["seconds"] = time.perf_counter() - started
        history.epochs.append(record)
    bar.close()
    history.completed = True
    return history

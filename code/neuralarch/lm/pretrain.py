"""A pre-training loop for language models: steps, not epochs, with exact resume.

Introduced in lesson 6.5 (``m06-l05``). :func:`pretrain` trains any model mapping token ids
(B, T) to logits (B, T, V) on a token stream (a memory-mapped shard, see
:mod:`neuralarch.lm.shards`): AdamW with decoupled weight decay on matrices only, linear warmup
and cosine decay (the book's :class:`~neuralarch.optim.schedules.WarmupCosineSchedule`),
gradient clipping, a periodic validation loss with perplexity and nats per character, tokens
per second, and checkpoints (:mod:`neuralarch.train.checkpoint`) that continue a run bit for bit.

Why not :func:`neuralarch.train.loop.fit`? ``fit`` iterates a ``Dataset`` in epochs through a
``DataLoader``. Pre-training has no epochs: the budget is a number of optimizer steps, each
batch is a set of random windows of one long token stream, and validation runs every few
hundred steps, not after an epoch. The pieces that fit are reused: the checkpoint format and
RNG capture of ``train.checkpoint``, the schedule of ``optim.schedules``, the seeds of ``repro``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from tqdm import tqdm

from neuralarch.config import ArchConfig
from neuralarch.lm.shards import RandomWindowSampler, sequential_windows
from neuralarch.optim.schedules import WarmupCosineSchedule
from neuralarch.progress import progress_disabled
from neuralarch.repro import derive_seed, seed_everything
from neuralarch.train.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint


class PretrainConfig(ArchConfig):
    """How :func:`pretrain` trains: budget, batch, context, optimizer, schedule and evaluation."""

    steps: int = Field(1000, gt=0, description="optimizer steps (the whole budget)")
    batch_size: int = Field(16, gt=0, description="windows per step")
    context: int = Field(128, gt=1, description="tokens per window")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a fraction of lr")
    warmup_steps: int = Field(100, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay of matrices (dim >= 2)")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW first-moment decay")
    beta2: float = Field(0.95, gt=0, lt=1, description="AdamW second-moment decay")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the global gradient norm")
    eval_every: int = Field(100, gt=0, description="validate every N steps (and at the end)")
    eval_windows: int | None = Field(64, gt=0, description="validation windows; None: all")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds data order and initial RNG state")

    @model_validator(mode="after")
    def _warmup_fits(self) -> PretrainConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be < steps={self.steps}")
        return self


@dataclass
class PretrainHistory:
    """One record per validation: seconds of training so far, step, tokens seen, losses."""

    seconds: list[float] = field(default_factory=list)  # training time, validation excluded
    step: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # mean since the previous record
    val_loss: list[float] = field(default_factory=list)  # nats per token
    lr: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        """Return plain lists (what checkpoints and cached models store)."""
        return {name: list(getattr(self, name)) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> PretrainHistory:
        """Rebuild a history saved with :meth:`to_dict`."""
        return cls(**{name: list(values) for name, values in data.items()})


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    history: PretrainHistory
    step: int  # steps done
    seconds: float  # training seconds, validation excluded
    tokens_per_second: float  # training tokens per training second
    val_loss: float  # last validation loss, nats per token
    completed: bool  # False when ``stop_after`` interrupted the run


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters: matrices (and embeddings) decay, vectors (norms, biases) do not.

    Tied weights appear once (``named_parameters`` skips duplicates).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    keep = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": keep, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` with the config's lr and betas."""
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                             betas=(config.beta1, config.beta2))


def make_scheduler(optimizer: torch.optim.Optimizer,
                   config: PretrainConfig) -> WarmupCosineSchedule:
    """Linear warmup to ``lr``, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    return WarmupCosineSchedule(optimizer, config.warmup_steps, config.steps,
                                start_factor=1.0 / max(config.warmup_steps, 1),
                                min_lr=config.min_lr_ratio * config.lr)


def optimizer_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scheduler: Any, grad_clip: float | None) -> None:
    """One update: clear the gradients, backpropagate ``loss``, clip, step, advance the schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats: logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def validation_loss(model: nn.Module, tokens: np.ndarray, context: int,
                    max_windows: int | None = None, batch_size: int = 32) -> float:
    """Mean nats per token over consecutive windows of ``tokens`` (model in eval mode)."""
    inputs, targets = sequential_windows(tokens, context, max_windows)  # (N, T) each
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start:start + batch_size])  # (b, T, V)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     targets[start:start + batch_size].reshape(-1),
                                     reduction="sum").item()
    finally:
        model.train(was_training)
    return total / targets.numel()


def nats_per_char(nats_per_token: float, chars_per_token: float) -> float:
    """Convert a loss per token into a loss per character (comparable across tokenizers)."""
    return nats_per_token / chars_per_token


def perplexity(nats_per_token: float) -> float:
    """Per-token perplexity ``exp(loss)``."""
    return math.exp(nats_per_token)


def pretrain(model: nn.Module, train_tokens: np.ndarray, val_tokens: np.ndarray,
             config: PretrainConfig, *, checkpoint_path: str | Path | None = None,
             resume: bool = False, stop_after: int | None = None, progress: bool = False,
             callback: Callable[[int, float], object] | None = None) -> PretrainResult:
    """Train ``model`` for ``config.steps`` steps on random windows of ``train_tokens``.

    Validation (``config.eval_windows`` windows spread over ``val_tokens``) runs every
    ``config.eval_every`` steps and after the last one; its time is excluded from the recorded
    training seconds. ``stop_after=k`` stops after step ``k`` and writes a checkpoint (when
    ``checkpoint_path`` is given); ``resume=True`` continues from that checkpoint to the same
    parameters an uninterrupted run reaches. ``callback(step, loss)`` runs after every step.
    """
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path (the file to continue from)")
    model.train()
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    sampler = RandomWindowSampler(train_tokens, config.batch_size, config.context,
                                  derive_seed(config.seed, "data"))
    if resume:
        payload = load_checkpoint(checkpoint_path, model, optimizer, scheduler)
        extra = payload["extra"]
        if extra["config"] != config.model_dump(mode="json"):
            raise ValueError(f"checkpoint {checkpoint_path} was written with another "
                             f"PretrainConfig; resume with the same one")
        sampler.load_state_dict(extra["sampler"])
        history = PretrainHistory.from_dict(extra["history"])
        step, seconds, window = int(extra["step"]), float(extra["seconds"]), list(extra["window"])
        restore_rng_state(payload["rng"])
    else:
        seed_everything(derive_seed(config.seed, "train"))  # dropout and other global draws
        history, step, seconds, window = PretrainHistory(), 0, 0.0, []
    last = config.steps if stop_after is None else min(stop_after, config.steps)
    tokens_per_step = config.batch_size * config.context
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="pretrain",
               disable=not progress or progress_disabled())
    started = time.perf_counter()
    while step < last:
        x, y = sampler.next_batch()  # (B, T) each
        loss = lm_loss(model(x), y)
        optimizer_step(model, loss, optimizer, scheduler, config.grad_clip)
        step += 1
        window.append(loss.item())
        if callback is not None:
            callback(step, window[-1])
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            seconds += time.perf_counter() - started
            val = validation_loss(model, val_tokens, config.context, config.eval_windows)
            history.seconds.append(seconds)
            history.step.append(step)
            history.tokens.append(step * tokens_per_step)
            history.train_loss.append(sum(window) / len(window))
            history.val_loss.append(val)
            history.lr.append(optimizer.param_groups[0]["lr"])
            window = []
            started = time.perf_counter()
    bar.close()
    seconds += time.perf_counter() - started
    if checkpoint_path is not None:
        extra = {"config": config.model_dump(mode="json"), "sampler": sampler.state_dict(),
                 "history": history.to_dict(), "step": step, "seconds": seconds,
                 "window": window}
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, extra)
    val_loss = history.val_loss[-1] if history.val_loss else float("nan")
    return PretrainResult(history, step, seconds, step * tokens_per_step / max(seconds, 1e-9),
                          val_loss, step >= config.steps)


def measure_tokens_per_second(model: nn.Module, batch_size: int, context: int,
                              vocab_size: int, steps: int = 3, repeat: int = 2) -> float:
    """Training tokens per second of ``model``: forward, backward and an AdamW step.

    Runs ``steps`` steps on random ids (after one warm-up step) ``repeat`` times and keeps the
    fastest, so a busy machine distorts the number less. The model's weights change; use a
    throwaway copy.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, vocab_size, (batch_size, context),
                      generator=torch.Generator().manual_seed(0))  # (B, T)

    def step() -> None:
        loss = lm_loss(model(x), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: first calls allocate
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - started)
    return steps * batch_size * context / best

"""The book's training loop: mini-batches, validation, a metric history, and exact resume.

Introduced in Project 2 (``m02-l06``); later modules train every model with :func:`fit`.
``fit`` builds its own data loader from a dataset (so that it owns, and can checkpoint, the
data order), seeds the global generators from ``config.seed``, and can stop after any step and
later continue to bit-identical weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from neuralarch.config import ArchConfig
from neuralarch.device import get_device
from neuralarch.progress import progress_disabled
from neuralarch.repro import derive_seed, make_loader, seed_everything
from neuralarch.train.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from neuralarch.train.metrics import CorpusMetric, Mean, as_corpus_metric

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]
OptimizerArg = Optimizer | Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerArg = LRScheduler | Callable[[Optimizer], LRScheduler] | None
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Fields that shape the trajectory: a resumed run must use the same values.
_TRAJECTORY_FIELDS = ("seed", "batch_size", "shuffle", "drop_last", "grad_clip",
                      "scheduler_interval", "log_every")


class TrainConfig(ArchConfig):
    """How :func:`fit` trains: epochs, batches, seed, logging, stopping and checkpointing."""

    epochs: int = Field(1, gt=0, description="passes over the training set")
    batch_size: int = Field(64, gt=0, description="training examples per optimizer step")
    eval_batch_size: int = Field(1000, gt=0, description="examples per batch when evaluating")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds data order, dropout and other RNGs")
    shuffle: bool = Field(True, description="reshuffle the training set every epoch")
    drop_last: bool = Field(False, description="skip the last, smaller batch of an epoch")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    log_every: int = Field(10, gt=0, description="record the mean training loss every N steps")
    max_steps: int | None = Field(None, gt=0, description="stop after N steps in total")
    checkpoint_every: int | None = Field(None, gt=0, description="also checkpoint every N steps")
    grad_clip: float | None = Field(None, gt=0, description="clip the global gradient norm")
    scheduler_interval: Literal["step", "epoch"] = Field(
        "step", description="call scheduler.step() after every optimizer step or every epoch")
    device: str | None = Field(None, description="e.g. 'cpu' or 'cuda'; None: get_device()")


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows of ``logits`` (N, C) whose arg-max equals ``targets`` (N,)."""
    return (logits.argmax(dim=-1) == targets).float().mean()


@dataclass
class History:
    """What :func:`fit` returns: windowed training losses and one record per finished epoch."""

    steps: list[int] = field(default_factory=list)  # global step that ends each logged window
    train_loss: list[float] = field(default_factory=list)  # mean training loss of that window
    lr: list[float] = field(default_factory=list)  # learning rate of param group 0 at that step
    epochs: list[dict[str, float]] = field(default_factory=list)  # epoch, step, losses, metrics
    completed: bool = False  # False if training stopped early (max_steps)

    def metric(self, name: str) -> list[float]:
        """Per-epoch values of ``name``, e.g. ``"val_loss"`` or ``"val_accuracy"``."""
        available = sorted(self.epochs[0]) if self.epochs else []
        if name not in available:
            raise ValueError(f"no per-epoch metric {name!r}; available: {available}")
        return [record[name] for record in self.epochs]

    @property
    def final(self) -> dict[str, float]:
        """The record of the last finished epoch."""
        if not self.epochs:
            raise ValueError("no epoch has finished yet, so there is no final record")
        return self.epochs[-1]

    def to_dict(self) -> dict[str, Any]:
        """Return plain lists and dicts (what a checkpoint stores)."""
        return {"steps": list(self.steps), "train_loss": list(self.train_loss),
                "lr": list(self.lr), "epochs": [dict(r) for r in self.epochs],
                "completed": self.completed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a history saved with :meth:`to_dict`."""
        return cls(steps=list(data["steps"]), train_loss=list(data["train_loss"]),
                   lr=list(data["lr"]), epochs=[dict(r) for r in data["epochs"]],
                   completed=bool(data["completed"]))


@dataclass
class StepContext:
    """What a callback sees after every optimizer step (``loss`` is detached, not synced)."""

    step: int
    epoch: int
    loss: torch.Tensor
    model: nn.Module
    optimizer: Optimizer


@dataclass
class _LoopState:
    """The loop's position; with the RNG states it pins down the rest of the run."""

    loader_state: torch.Tensor  # data generator state at the start of the current epoch
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done in total
    epoch_loss_sum: float = 0.0  # sum of this epoch's synced training losses
    window: list[float] = field(default_factory=list)  # synced losses of the open log window
    epoch_seconds: float = 0.0  # wall time spent in this epoch before a checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {"loader_state": self.loader_state, "epoch": self.epoch, "batch": self.batch,
                "step": self.step, "epoch_loss_sum": self.epoch_loss_sum,
                "window": list(self.window), "epoch_seconds": self.epoch_seconds}


def evaluate(model: nn.Module, data: Dataset, loss_fn: LossFn,
             metrics: Mapping[str, Metric | CorpusMetric] | None = None, batch_size: int = 1000,
             device: str | torch.device | None = None) -> dict[str, float]:
    """Return the loss and metrics of ``model`` on the whole of ``data``, in eval mode.

    A metric is a :class:`~neuralarch.train.metrics.CorpusMetric` (reset here, updated with
    every batch, computed once at the end, so perplexity, F1 or ROC-AUC are those of the whole
    data set) or a function returning a batch *mean*, which becomes the example-weighted mean
    over batches; so does ``loss_fn``. The model's train/eval mode is restored afterwards, and
    no global random number is drawn.
    """
    _check_dataset(data, "data")
    if device is None:
        device = next(model.parameters()).device
    trackers = {"loss": Mean(loss_fn)}
    trackers.update({name: as_corpus_metric(metric) for name, metric in (metrics or {}).items()})
    # A private generator: a DataLoader draws a seed even when it does not shuffle.
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = _unpack(batch, device)
                out = model(x)  # (B, ...) e.g. (B, C) logits
                for tracker in trackers.values():
                    tracker.update(out, y)
    finally:
        model.train(was_training)
    return {name: tracker.compute() for name, tracker in trackers.items()}


def fit(model: nn.Module, train_data: Dataset, val_data: Dataset | None, loss_fn: LossFn,
        optimizer: OptimizerArg, config: TrainConfig | None = None, *,
        scheduler: SchedulerArg = None, metrics: Mapping[str, Metric] | None = None,
        checkpoint_path: str | Path | None = None, resume: bool = False,
        callbacks: Sequence[Callable[[StepContext], object]] = (),
        batch_transform: BatchTransform | None = None,
        progress: bool = True) -> History:
    """Train ``model`` on ``train_data``, validating on ``val_data`` after every epoch.

    ``optimizer`` is an optimizer over the model's parameters or a factory such as
    ``lambda params: torch.optim.Adam(params, lr=1e-3)``; ``scheduler`` likewise (a factory
    takes the optimizer). With ``checkpoint_path`` a checkpoint is written after every epoch,
    every ``config.checkpoint_every`` steps and when ``config.max_steps`` stops the run;
    ``resume=True`` continues from it, to the same weights an uninterrupted run would reach.
    A fresh (not resumed) run seeds Python's, NumPy's and torch's global generators.
    ``batch_transform(x, y) -> (x, y)`` changes each training batch on the device before the
    step (data augmentation, mixup with soft targets); validation batches are left alone. It
    should draw from the global generators, which checkpoints save, so resume stays exact.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    _check_dataset(train_data, "train_data")
    if val_data is not None:
        _check_dataset(val_data, "val_data")
    if checkpoint_path is None and (resume or config.checkpoint_every is not None):
        what = "resume=True" if resume else "config.checkpoint_every"
        raise ValueError(f"{what} needs checkpoint_path (the file to read and write)")
    device = torch.device(config.device) if config.device is not None else get_device()
    model.to(device)
    optimizer = _build_optimizer(optimizer, model)
    scheduler = _build_scheduler(scheduler, optimizer)
    loader = make_loader(train_data, config.batch_size, derive_seed(config.seed, "data"),
                         config.num_workers, shuffle=config.shuffle, drop_last=config.drop_last)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"train_data has {len(train_data)} examples: no full batch of "
                         f"batch_size={config.batch_size} with drop_last=True")

    if resume:
        payload = load_checkpoint(checkpoint_path, model, optimizer, scheduler)
        if payload["scheduler"] is not None and scheduler is None:
            raise ValueError(f"checkpoint {checkpoint_path} holds a {payload['scheduler_class']} "
                             f"state; pass the same scheduler to resume")
        _check_resumable(payload["extra"], config, len(train_data), checkpoint_path)
        state = _LoopState(**payload["extra"]["loop"])
        history = History.from_dict(payload["extra"]["history"])
        restore_rng_state(payload["rng"])
    else:
        seed_everything(derive_seed(config.seed, "train"))  # dropout and other global draws
        state = _LoopState(loader_state=loader.generator.get_state())
        history = History()

    def checkpoint() -> None:
        extra = {"loop": state.to_dict(), "history": history.to_dict(),
                 "config": config.model_dump(), "n_train": len(train_data)}
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, extra)

    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    bar = tqdm(total=total_steps, initial=min(state.step, total_steps), unit="step",
               desc="fit", disable=not progress or progress_disabled())
    pending: list[torch.Tensor] = []  # losses not yet copied to the host (one sync per window)
    per_step = config.scheduler_interval == "step" and not isinstance(scheduler, ReduceLROnPlateau)
    model.train()
    try:
        while state.epoch < config.epochs and state.step < total_steps:
            started = time.perf_counter() - state.epoch_seconds
            loader.generator.set_state(state.loader_state)  # replay this epoch's shuffle
            batches = iter(loader)
            for _ in range(state.batch):  # fast-forward over the batches a resumed run has seen
                next(batches)
            for batch in batches:
                x, y = _unpack(batch, device)
                if batch_transform is not None:
                    x, y = batch_transform(x, y)
                loss = _train_step(model, x, y, loss_fn, optimizer, config.grad_clip)
                state.step += 1
                state.batch += 1
                if scheduler is not None and per_step:
                    scheduler.step()
                pending.append(loss)
                for callback in callbacks:
                    callback(StepContext(state.step, state.epoch, loss, model, optimizer))
                bar.update(1)
                if state.step % config.log_every == 0:
                    _close_window(state, pending, history, optimizer, bar)
                stop = state.step >= total_steps
                mid_epoch = state.batch < steps_per_epoch  # else the epoch end checkpoints
                if checkpoint_path is not None and mid_epoch and (
                        stop or _due(state.step, config.checkpoint_every)):
                    _sync(state, pending)
                    state.epoch_seconds = time.perf_counter() - started
                    checkpoint()
                if stop and mid_epoch:  # at the epoch's end, let the iterator run out: the
                    break  # sampler draws from the generator once more when it is exhausted
            if state.batch < steps_per_epoch:
                break  # stopped by max_steps inside the epoch
            _close_window(state, pending, history, optimizer, bar)
            record = {"epoch": state.epoch + 1, "step": state.step,
                      "train_loss": state.epoch_loss_sum / state.batch,
                      "lr": optimizer.param_groups[0]["lr"]}
            if val_data is not None:
                scores = evaluate(model, val_data, loss_fn, metrics, config.eval_batch_size,
                                  device)
                record.update({f"val_{name}": value for name, value in scores.items()})
            record["seconds"] = time.perf_counter() - started
            history.epochs.append(record)
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(record.get("val_loss", record["train_loss"]))
            elif scheduler is not None and not per_step:
                scheduler.step()
            state.epoch += 1
            state.batch, state.epoch_loss_sum, state.epoch_seconds = 0, 0.0, 0.0
            state.loader_state = loader.generator.get_state()
            history.completed = state.epoch >= config.epochs
            if checkpoint_path is not None:
                checkpoint()
    finally:
        bar.close()
    return history


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                optimizer: Optimizer, grad_clip: float | None) -> torch.Tensor:
    """One optimizer step; returns the detached loss. The closure form also serves L-BFGS."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        return loss

    loss = optimizer.step(closure)
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"{type(optimizer).__name__}.step(closure) returned {loss!r}; an "
                         f"optimizer used by fit must call the closure and return its loss")
    return loss.detach()


def _sync(state: _LoopState, pending: list[torch.Tensor]) -> None:
    """Copy pending losses to the host (one transfer) and append them to the open window."""
    if pending:
        state.window.extend(torch.stack(pending).tolist())
        pending.clear()


def _close_window(state: _LoopState, pending: list[torch.Tensor], history: History,
                  optimizer: Optimizer, bar: tqdm) -> None:
    """Record the open window's mean loss in the history and add it to the epoch's sum."""
    _sync(state, pending)
    if not state.window:
        return
    mean = sum(state.window) / len(state.window)
    state.epoch_loss_sum += sum(state.window)
    history.steps.append(state.step)
    history.train_loss.append(mean)
    history.lr.append(optimizer.param_groups[0]["lr"])
    state.window = []
    bar.set_postfix(loss=f"{mean:.4f}")


def _due(step: int, every: int | None) -> bool:
    return every is not None and step % every == 0


def _unpack(batch: object, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, list | tuple) or len(batch) != 2:
        raise ValueError("each example must be an (input, target) pair; the dataset yields "
                         f"batches of type {type(batch).__name__}")
    x, y = batch
    return x.to(device), y.to(device)


def _check_dataset(data: object, name: str) -> None:
    if isinstance(data, DataLoader) or not hasattr(data, "__getitem__") \
            or not hasattr(data, "__len__"):
        raise ValueError(f"{name} must be a map-style Dataset (with __getitem__ and __len__), "
                         f"got {type(data).__name__}; fit builds its own DataLoader so that it "
                         f"can checkpoint the data order")
    if len(data) == 0:
        raise ValueError(f"{name} is empty")


def _build_optimizer(optimizer: OptimizerArg, model: nn.Module) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        if not callable(optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer or a factory taking "
                             f"parameters, got {type(optimizer).__name__}")
        optimizer = optimizer(model.parameters())
    own = {id(p) for p in model.parameters()}
    foreign = sum(id(p) not in own for g in optimizer.param_groups for p in g["params"])
    if foreign:
        raise ValueError(f"the optimizer holds {foreign} tensor(s) that are not parameters of "
                         f"the model (was it built for another model instance?); pass a factory "
                         f"such as lambda params: torch.optim.SGD(params, lr=0.1)")
    return optimizer


def _build_scheduler(scheduler: SchedulerArg, optimizer: Optimizer) -> LRScheduler | None:
    if scheduler is None:
        return None
    if not isinstance(scheduler, LRScheduler):
        scheduler = scheduler(optimizer)
    if scheduler.optimizer is not optimizer:
        raise ValueError("the scheduler drives a different optimizer than the one fit uses; "
                         "pass a factory such as lambda opt: CosineAnnealingLR(opt, T_max=100)")
    return scheduler


def _check_resumable(extra: Mapping[str, Any], config: TrainConfig, n_train: int,
                     path: str | Path) -> None:
    saved = extra["config"]
    changed = [f"{name}: {saved[name]!r} in checkpoint, {getattr(config, name)!r} now"
               for name in _TRAJECTORY_FIELDS if saved[name] != getattr(config, name)]
    if extra["n_train"] != n_train:
        changed.append(f"training examples: {extra['n_train']} in checkpoint, {n_train} now")
    if changed:
        raise ValueError(f"cannot resume from {path} exactly; these settings differ: "
                         + "; ".join(changed))

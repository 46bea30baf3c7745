"""Checkpoints that resume training exactly: weights, optimizer, scheduler and every RNG state.

Introduced in Project 2 (``m02-l06``). A checkpoint that holds only the weights restarts
training; one that also holds the optimizer's moments, the scheduler's position, the random
generators and the data loader's position *continues* it, bit for bit. The training loop
(``neuralarch.train.loop.fit``) saves its own position (epoch, batch, partial sums) in
``extra``; this module handles the rest."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

FORMAT = "neuralarch-checkpoint/1"


def capture_rng_state() -> dict[str, Any]:
    """Return the states of the global generators: Python, NumPy, torch CPU and every CUDA GPU."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {  # plain types and tensors, so torch.load(weights_only=True) can read it
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),  # (624,)
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put the global generators back into a state from :func:`capture_rng_state`.

    CUDA states are restored only on a machine with the same number of GPUs; a checkpoint
    written on a GPU machine and resumed on a CPU continues, but not bit for bit.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
        "has_gauss": saved["has_gauss"],
        "gauss": saved["gauss"],
    })
    torch.set_rng_state(state["torch"])
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
        torch.cuda.set_rng_state_all(cuda_states)


def check_same_architecture(model: nn.Module, saved: Mapping[str, torch.Tensor],
                            source: str = "checkpoint") -> None:
    """Raise a ``ValueError`` naming every key or shape where ``saved`` does not fit ``model``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    shapes = [f"{name}: saved {tuple(saved[name].shape)}, model {tuple(own[name].shape)}"
              for name in sorted(set(own) & set(saved)) if saved[name].shape != own[name].shape]
    problems = []
    if missing:
        problems.append(f"keys of the model that were not saved: {missing}")
    if unexpected:
        problems.append(f"saved keys that the model lacks: {unexpected}")
    if shapes:
        problems.append(f"shape mismatches: {shapes}")
    if problems:
        raise ValueError(f"{source} was saved from a different model; " + "; ".join(problems))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: Optimizer,
                    scheduler: LRScheduler | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write model, optimizer, scheduler, RNG states and ``extra`` (e.g. loop position) to ``path``.

    The file is written under a temporary name and then renamed, so a crash while saving
    leaves the previous checkpoint intact instead of a truncated one.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_class": type(optimizer).__name__,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "rng": capture_rng_state(),
        "extra": dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)  # atomic on POSIX and Windows
    return path


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: Optimizer | None = None,
                    scheduler: LRScheduler | None = None) -> dict[str, Any]:
    """Load ``path`` into the model (and optimizer, scheduler); return the checkpoint's contents.

    The RNG states are returned, not applied: call :func:`restore_rng_state` to continue a
    run exactly. The file is read with ``weights_only=True``, so it cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a neuralarch checkpoint (format {found!r}, "
                         f"expected {FORMAT!r}); write one with save_checkpoint")
    check_same_architecture(model, payload["model"], source=f"checkpoint {path}")
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        _check_class("optimizer", payload["optimizer_class"], optimizer, path)
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        if payload["scheduler"] is None:
            raise ValueError(f"checkpoint {path} has no scheduler state, but a "
                             f"{type(scheduler).__name__} was given; resume without it")
        _check_class("scheduler", payload["scheduler_class"], scheduler, path)
        scheduler.load_state_dict(payload["scheduler"])
    return payload


def _check_class(kind: str, saved: str, given: object, path: Path) -> None:
    # A state dict loads silently into the wrong optimizer class (Adam's moments are simply
    # ignored by SGD), so check the class name explicitly.
    if saved != type(given).__name__:
        raise ValueError(f"checkpoint {path} holds the state of a {saved} {kind}, but a "
                         f"{type(given).__name__} was given; build the same {kind} to resume")

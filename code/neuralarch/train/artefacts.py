"""Trained models that several pages share, cached on disk and keyed by their recipe.

Introduced in Module 4 (``m04-l01``): the book's MNIST CNN is trained once, the first time a
page asks for it, and every later page loads the same weights. :func:`cached_model` is the one
mechanism behind all such shared models. The cache file name holds a hash of the model's name,
its config, the source code of its training function and of the model's own classes, so
changing any of them trains a new model instead of silently loading a stale one. Training runs
on one CPU thread with seeded generators (or on the ``threads`` a recipe asks for: a fixed
count keeps the reduction order fixed), so every CPU build produces bit-identical weights.

The cache folder is, in order: the ``root`` argument, ``$NEURALARCH_CACHE_DIR``, the
repository's ``_build/models`` when the package is used from a checkout (so ``make clean``
empties it together with the execution cache), else ``~/.cache/neuralarch/models``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch
from filelock import FileLock
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.repro import seed_everything, state_fingerprint
from neuralarch.train.checkpoint import capture_rng_state, restore_rng_state

CACHE_ENV = "NEURALARCH_CACHE_DIR"
FORMAT = "neuralarch-artefact/1"
TRAINING_LOG = "training-log.jsonl"

C = TypeVar("C", bound=ArchConfig)
M = TypeVar("M", bound=nn.Module)


@dataclass
class TrainedModel(Generic[M]):
    """A shared model, ready for evaluation, with what is known about how it was made."""

    model: M  # in eval mode, on the CPU
    config: ArchConfig  # the recipe it was trained with
    metrics: dict[str, float]  # whatever the training function returned (accuracies, losses)
    path: Path  # the cache file
    trained_now: bool  # True if this call trained it, False if it was loaded
    seconds: float  # training time when it was trained (on the machine that trained it)
    fingerprint: str = field(default="")  # hash of the weights, equal on every CPU build


def cache_dir(root: str | Path | None = None) -> Path:
    """Return the folder that holds cached models (see the module docstring for the order)."""
    if root is not None:
        return Path(root)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "_config.yml").is_file() and (checkout / "code" / "neuralarch").is_dir():
        return checkout / "_build" / "models"
    return Path.home() / ".cache" / "neuralarch" / "models"


def _source(obj: object, what: str) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError) as error:
        raise ValueError(f"cannot read the source of the {what} {obj!r}; cached models need "
                         f"code defined in a file") from error


def artefact_key(name: str, config: ArchConfig, train: Callable[..., object],
                 model: nn.Module) -> str:
    """Return the 16-hex-digit key of a model: name, config, training code and model code.

    The model code is the source of every class in ``model`` that is not part of torch, so
    editing the architecture (a block's forward, say) trains a new model.
    """
    classes = {type(module) for module in model.modules()
               if not type(module).__module__.startswith("torch.")}
    code = [_source(cls, "model class")
            for cls in sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}")]
    recipe = json.dumps({"name": name, "config": config.model_dump(mode="json"),
                         "train": _source(train, "training function"), "model": code},
                        sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run the body on ``threads`` CPU threads (a fixed reduction order), then restore the count."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_thread() -> contextlib.AbstractContextManager[None]:
    """Run the body on one CPU thread, then restore the thread count."""
    return cpu_threads(1)


def training_threads(config: ArchConfig) -> int:
    """CPU threads a recipe trains on: its ``threads`` field, else 1 (see :func:`cached_model`)."""
    threads = getattr(config, "threads", 1)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{type(config).__name__}.threads must be an integer >= 1, "
                         f"got {threads!r}")
    return threads


def cached_model(name: str, config: C, build: Callable[[C], M],
                 train: Callable[[M, C], dict[str, float]], *,
                 root: str | Path | None = None) -> TrainedModel[M]:
    """Load the model ``name`` trained with ``config``, or train it and cache it.

    ``build(config)`` makes the untrained network; ``train(model, config)`` trains it in place and
    returns its metrics. Building and training are seeded with ``config.seed`` (the config must have
    a ``seed`` field) and run on one thread, or on ``config.threads`` where the recipe has that
    field (a model that needs the whole machine; the result is then fixed for that thread count,
    which is part of the recipe and so of the key); the caller's random generators are left as they
    were, so a page gives the same results whether the model was trained or loaded. The file is
    written atomically, so an interrupted build never leaves half a model behind, and a file lock
    makes concurrent callers (pages executing in parallel) train it only once.
    """
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"name must be letters, digits, '-' or '_' (it names a file), "
                         f"got {name!r}")
    seed = getattr(config, "seed", None)
    if not isinstance(seed, int):
        raise ValueError(f"{type(config).__name__} needs an integer `seed` field so that "
                         f"training is reproducible")
    threads = training_threads(config)
    started = time.perf_counter()
    caller_rng = capture_rng_state()  # the page's random stream must not depend on the cache
    try:
        model = build(config)  # only its code enters the key; its weights are replaced
        key = artefact_key(name, config, train, model)
        path = cache_dir(root) / f"{name}-{key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        # One trainer per model: a second process asking at the same moment waits here, then
        # loads what the first one wrote instead of training it again.
        with FileLock(f"{path}.lock"):
            if path.is_file():
                return _load(path, name, key, config, model)
            with cpu_threads(threads):
                seed_everything(seed)
                model = build(config)
                metrics = {name_: float(value) for name_, value in train(model, config).items()}
            seconds = time.perf_counter() - started
            model.to("cpu").eval()
            partial = path.with_suffix(f".partial-{os.getpid()}")
            torch.save({"format": FORMAT, "key": key, "name": name, "config": config.to_json(),
                        "metrics": metrics, "seconds": seconds, "state": model.state_dict()},
                       partial)
            os.replace(partial, path)
            _log_training(path.parent, name, key, seconds)
    finally:
        restore_rng_state(caller_rng)
    return TrainedModel(model, config, metrics, path, True, seconds, state_fingerprint(model))


def _load(path: Path, name: str, key: str, config: C, model: M) -> TrainedModel[M]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT or payload.get("key") != key:
        raise ValueError(f"{path} is not the cached model {name!r} with key {key}; "
                         f"delete the file and it will be retrained")
    model.load_state_dict(payload["state"])
    model.eval()
    return TrainedModel(model, config, dict(payload["metrics"]), path, False,
                        float(payload["seconds"]), state_fingerprint(model))


def _log_training(folder: Path, name: str, key: str, seconds: float) -> None:
    """Append one line to the folder's training log: the build report reads who trained what."""
    record = {"name": name, "key": key, "seconds": round(seconds, 2), "pid": os.getpid(),
              "finished": time.time()}
    with FileLock(f"{folder / TRAINING_LOG}.lock"), open(folder / TRAINING_LOG, "a") as log:
        log.write(json.dumps(record) + "\n")


def training_log(root: str | Path | None = None) -> list[dict[str, object]]:
    """Every training recorded in the cache folder, oldest first (see :func:`cached_model`)."""
    path = cache_dir(root) / TRAINING_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

"""Reproducible experiments: seed every generator, switch on determinism, fingerprint results.

Introduced in lesson 1.5 (``m01-l05``). Every later chapter seeds through :func:`seed_everything`
(via ``setup_page``), builds loaders with :func:`make_loader`, and proves that two runs agree
with :func:`state_fingerprint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` if it is an int in ``[0, 2**32)``; otherwise raise a ``ValueError``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"{name} must be an int in [0, 2**32), got {seed!r}")
    return seed


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and GPUs); return the seed."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def derive_seed(seed: int, stream: str) -> int:
    """Return a child seed for the named ``stream`` (e.g. ``"data"``), independent of ``seed``'s.

    One master seed, many named streams: the children are unrelated 32-bit numbers, so two
    generators never replay the same random bits, and adding a stream never shifts another.
    """
    check_seed(seed)
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a private ``torch.Generator`` so one random stream cannot disturb another."""
    check_seed(seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: derive every worker-side RNG from torch's worker seed.

    PyTorch gives worker ``i`` the torch seed ``base_seed + i`` (``base_seed`` comes from the
    loader's generator), but a NumPy ``Generator`` owned by the dataset is copied unchanged into
    every worker. This reseeds NumPy's and Python's global RNGs and calls ``dataset.reseed(seed)``
    when the dataset has such a method (see
    :class:`~neuralarch.data.noisy_dataset.NoisyDataset`).
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    info = torch.utils.data.get_worker_info()
    reseed = getattr(info.dataset, "reseed", None) if info is not None else None
    if callable(reseed):
        reseed(worker_seed)


def set_deterministic(enabled: bool = True, warn_only: bool = False) -> None:
    """Make torch choose deterministic kernels (or error where none exists), or undo it.

    With ``warn_only=True`` an op without a deterministic implementation warns instead of raising.
    """
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on CPU.
        os.environ.setdefault(_CUBLAS_ENV, ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


@contextlib.contextmanager
def deterministic(enabled: bool = True, warn_only: bool = False) -> Iterator[None]:
    """Context manager form of :func:`set_deterministic` that restores the previous settings."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    set_deterministic(enabled, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2:]


def state_fingerprint(state: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """Return a sha256 over the names, dtypes, shapes and exact bytes of a model's tensors.

    Two runs produced identical weights if and only if (up to hash collisions) their
    fingerprints are equal; a single flipped bit changes it.
    """
    if isinstance(state, nn.Module):
        state = state.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"state[{name!r}] is a {type(value).__name__}, not a tensor; fingerprint a "
                f"module or a mapping of names to tensors (e.g. model.state_dict())"
            )
        tensor = value.detach().to("cpu").contiguous().reshape(-1)  # 0-d buffers become (1,)
        digest.update(f"{name}|{tensor.dtype}|{tuple(value.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run_fingerprint(config: Mapping[str, object], seed: int) -> str:
    """Return a short id for a run: its config, seed and the library versions that shape results."""
    check_seed(seed)
    payload = {
        "config": config,
        "seed": seed,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0,
                shuffle: bool = True, drop_last: bool = False) -> DataLoader:
    """Return a ``DataLoader`` whose order and worker randomness depend only on ``seed``.

    The shuffle order and the workers' seeds come from a private generator seeded with
    ``seed``, and :func:`seed_worker` reseeds every worker-side RNG from those seeds. With
    ``num_workers=0`` the dataset runs in this process, so a dataset with a ``reseed`` method
    is reseeded here; otherwise its stream would continue from wherever the last run left it.
    """
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(num_workers, "num_workers", minimum=0)
    reseed = getattr(dataset, "reseed", None)
    if num_workers == 0 and callable(reseed):
        reseed(derive_seed(seed, "main-process"))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=make_generator(seed),
    )

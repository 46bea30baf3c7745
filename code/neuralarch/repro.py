"""Reproducible experiments: seed every generator, switch on determinism, fingerprint results."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Iterator, Mapping

import numpy as np
import torch

_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and GPUs); return the seed."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a private ``torch.Generator`` so one random stream cannot disturb another."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: derive NumPy and ``random`` seeds from torch's seed.

    PyTorch seeds each worker's torch RNG from the loader's generator, but not NumPy's or
    Python's, so augmentations using them would repeat across workers without this.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def set_deterministic(enabled: bool = True) -> None:
    """Make torch choose deterministic kernels (or error where none exists), or undo it."""
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on CPU.
        os.environ.setdefault(_CUBLAS_ENV, ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Context manager form of :func:`set_deterministic` that restores the previous settings."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    set_deterministic(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1:]


def state_fingerprint(state: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """Return a sha256 over the names, dtypes, shapes and exact bytes of a model's tensors.

    Two runs produced identical weights if and only if (up to hash collisions) their
    fingerprints are equal; a single flipped bit changes it.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def run_fingerprint(config: Mapping[str, object], seed: int) -> str:
    """Return a short id for a run: its config, seed and the library versions that shape results."""
    payload = {
        "config": config,
        "seed": seed,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

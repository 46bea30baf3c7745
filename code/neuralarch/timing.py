"""Wall-clock timing for the book's benchmarks: best and median of repeated runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeat`` rounds of ``number`` calls each."""

    best: float
    median: float
    rounds: tuple[float, ...]


def _synchronize() -> None:
    # GPU kernels run asynchronously: wait for them, or we would time only the launch.
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], repeat: int = 5, number: int = 1,
              warmup: int = 1) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` rounds of ``number`` calls.

    The best round estimates the cost without interference from other processes; the median
    shows the typical cost. Both are per call.
    """
    for name, value, low in (("repeat", repeat, 1), ("number", number, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    for _ in range(warmup):
        fn()
    _synchronize()
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        _synchronize()
        rounds.append((time.perf_counter() - start) / number)
    return Timing(best=min(rounds), median=statistics.median(rounds), rounds=tuple(rounds))


def best_seconds(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Shortcut for ``time_call(fn, repeat, number).best``: the best seconds per call."""
    return time_call(fn, repeat=repeat, number=number).best

"""Validation of optimizer hyperparameters, shared by every optimizer in ``neuralarch.optim``.

Each check returns the value (as a float where it is a number) or raises a ``ValueError`` naming
the hyperparameter, the value and the allowed range, so a typo fails at construction time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def require_nonnegative(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise a ``ValueError``."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def require_fraction(name: str, value: object, include_one: bool = False) -> float:
    """Return ``value`` if it lies in [0, 1) (or [0, 1] with ``include_one``), else raise."""
    interval = "[0, 1]" if include_one else "[0, 1)"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (
        0 <= value <= 1 if include_one else 0 <= value < 1)
    if not ok:
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def require_betas(value: object, count: int) -> tuple[float, ...]:
    """Return ``betas`` as a tuple of ``count`` decay rates in [0, 1), else raise."""
    if not isinstance(value, tuple | list) or len(value) != count:
        raise ValueError(f"betas must be a tuple of {count} numbers in [0, 1), got {value!r}")
    return tuple(require_fraction(f"betas[{i}]", beta) for i, beta in enumerate(value))


def require_flag(name: str, value: object) -> bool:
    """Return ``value`` if it is exactly ``True`` or ``False``, else raise a ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value

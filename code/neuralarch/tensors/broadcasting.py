"""Broadcasting from scratch: the result-shape rule and its zero-copy form, stride-0 views.

Two shapes broadcast when, aligned on the right, each pair of sizes is equal or one of them is 1;
missing leading dimensions count as size 1. A size-1 (or missing) dimension is stretched without
copying by giving it stride 0, so every index along it reads the same memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def as_shape(shape: object, name: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ints >= 0, or raise a ValueError naming it ``name``."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise ValueError(f"{name} must be a sequence of ints such as (3, 1), got {shape!r}")
    sizes = tuple(shape)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name} = {shape!r}: every size must be an int >= 0, got {size!r}")
    return sizes


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """Return the shape that broadcasting ``shapes`` gives (as ``torch.broadcast_shapes`` does)."""
    checked = [as_shape(shape, f"shapes[{n}]") for n, shape in enumerate(shapes)]
    ndim = max((len(shape) for shape in checked), default=0)
    result = []
    for dim in range(-ndim, 0):  # right-aligned: dim -1 is the last axis of every shape
        sizes = [shape[dim] for shape in checked if len(shape) >= -dim]
        stretched = {size for size in sizes if size != 1}
        if len(stretched) > 1:
            raise ValueError(
                f"shapes {[tuple(s) for s in checked]} cannot be broadcast: at dimension {dim} "
                f"(counted from the right) the sizes are {sizes}; at each dimension the sizes "
                f"must be equal or 1"
            )
        result.append(stretched.pop() if stretched else 1)
    return tuple(result)


def broadcast_strides(
    shape: Sequence[int], strides: Sequence[int], target: Sequence[int]
) -> tuple[int, ...]:
    """Return the strides that view a ``shape``/``strides`` tensor as ``target`` without copying."""
    shape = as_shape(shape, "shape")
    target = as_shape(target, "target")
    strides = tuple(strides)
    if len(strides) != len(shape):
        raise ValueError(f"strides {strides} must have one entry per dimension of shape {shape}")
    leading = len(target) - len(shape)
    if leading < 0 or any(n not in (1, m) for n, m in zip(shape, target[leading:], strict=True)):
        raise ValueError(
            f"shape {shape} cannot be broadcast to target {target}: aligned on the right, each "
            f"size must equal the target size or be 1, and target needs at least {len(shape)} dims"
        )
    new_strides = [0] * leading  # new leading dims repeat the whole tensor: stride 0
    for size, stride, want in zip(shape, strides, target[leading:], strict=True):
        new_strides.append(0 if size == 1 and want != 1 else stride)
    return tuple(new_strides)


def expand_as_strided(x: torch.Tensor, target: Sequence[int]) -> torch.Tensor:
    """Broadcast ``x`` to ``target`` as a stride-0 view (what ``x.expand(target)`` does)."""
    strides = broadcast_strides(x.shape, x.stride(), target)
    return x.as_strided(tuple(target), strides, x.storage_offset())

"""Reshape, view and permute as arithmetic on (shape, strides): when can a view avoid a copy?

A tensor is a lens on a flat strip of memory: element ``(i_0, ..., i_{n-1})`` lives at
``offset + sum(i_k * strides[k])``. ``permute`` only reorders the lens; ``view`` asks for a new
lens on the same strip and fails when none exists; ``reshape`` falls back to a copy then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from neuralarch.tensors.anatomy import contiguous_strides
from neuralarch.tensors.broadcasting import as_shape


def infer_shape(new_shape: Sequence[int], numel: int) -> tuple[int, ...]:
    """Resolve a single ``-1`` in ``new_shape`` so that it holds ``numel`` elements."""
    sizes = tuple(new_shape)
    if sizes.count(-1) > 1:
        raise ValueError(f"new_shape {sizes} has more than one -1; only one size can be inferred")
    as_shape([s for s in sizes if s != -1], "new_shape")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known == 0:
            raise ValueError(
                f"new_shape {sizes}: the -1 cannot be inferred because the other sizes multiply "
                f"to 0; give every size explicitly"
            )
        if numel % known:
            raise ValueError(f"new_shape {sizes} cannot hold {numel} elements: {numel} % {known}")
        sizes = tuple(numel // known if s == -1 else s for s in sizes)
    if math.prod(sizes) != numel:
        raise ValueError(
            f"new_shape {sizes} holds {math.prod(sizes)} elements but the tensor has {numel}"
        )
    return sizes


def view_strides(
    shape: Sequence[int], strides: Sequence[int], new_shape: Sequence[int]
) -> tuple[int, ...] | None:
    """Return the strides of ``view(new_shape)`` on a ``shape``/``strides`` tensor, or ``None``
    when no view exists and a copy (``reshape``) is needed. Same rule as PyTorch's ``view``."""
    shape = as_shape(shape, "shape")
    strides = tuple(strides)
    if len(strides) != len(shape):
        raise ValueError(f"strides {strides} must have one entry per dimension of shape {shape}")
    numel = math.prod(shape)
    new_shape = infer_shape(new_shape, numel)
    if not shape:  # a 0-d tensor holds one element: any all-ones shape views it
        return (1,) * len(new_shape)
    if numel == 0:  # nothing to address, so any layout is a valid view
        return strides if new_shape == shape else contiguous_strides(new_shape)

    # Walk the old dims from the right, grouping them into chunks: runs of dims that are
    # contiguous with each other (stride[d-1] == size[d] * stride[d], as in a fresh tensor).
    # A new dim may split a chunk or merge dims inside one, but must never straddle two chunks.
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1  # next new dim to place, from the right
    chunk_stride = strides[-1]  # stride of the innermost dim of the current chunk
    chunk_numel = view_numel = 1
    for d in reversed(range(len(shape))):
        chunk_numel *= shape[d]
        chunk_ends = d == 0 or (shape[d - 1] != 1 and strides[d - 1] != chunk_numel * chunk_stride)
        if not chunk_ends:
            continue
        while view_d >= 0 and (view_numel < chunk_numel or new_shape[view_d] == 1):
            new_strides[view_d] = view_numel * chunk_stride
            view_numel *= new_shape[view_d]
            view_d -= 1
        if view_numel != chunk_numel:
            return None  # the last new dim placed spans two chunks: no single stride fits
        if d > 0:
            chunk_stride, chunk_numel, view_numel = strides[d - 1], 1, 1
    return tuple(new_strides)


def permute_layout(
    shape: Sequence[int], strides: Sequence[int], dims: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the (shape, strides) of ``permute(dims)``: both are reordered, no data moves."""
    shape = as_shape(shape, "shape")
    strides = tuple(strides)
    if len(strides) != len(shape):
        raise ValueError(f"strides {strides} must have one entry per dimension of shape {shape}")
    ndim = len(shape)
    dims = tuple(dims)
    if any(isinstance(d, bool) or not isinstance(d, int) or not -ndim <= d < ndim for d in dims):
        raise ValueError(f"dims {dims}: each entry must be an int in [{-ndim}, {ndim})")
    positive = tuple(d % ndim for d in dims)
    if sorted(positive) != list(range(ndim)):
        raise ValueError(f"dims {dims} must name each of the {ndim} dims exactly once")
    return tuple(shape[d] for d in positive), tuple(strides[d] for d in positive)

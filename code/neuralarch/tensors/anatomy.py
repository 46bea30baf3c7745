"""Anatomy of a tensor: a flat storage plus (shape, stride, offset) metadata, rebuilt from scratch.

A tensor is a window onto a 1-D block of memory. Element ``(i_0, ..., i_{n-1})`` lives at
storage position ``offset + sum_k i_k * stride_k``. Everything here computes that arithmetic by
hand so it can be checked against what PyTorch does (``Tensor.stride``, ``torch.as_strided``,
``Tensor.is_contiguous``), and reports which dispatch keys route a tensor's operations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class TensorAnatomy:
    """Everything that says where a tensor's elements live and how to read them."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]  # in elements, not bytes
    storage_offset: int  # in elements
    dtype: torch.dtype
    itemsize: int  # bytes per element
    numel: int
    nbytes: int  # bytes the tensor's elements occupy: numel * itemsize
    storage_nbytes: int  # bytes of the whole storage, which views share
    is_contiguous: bool
    device: torch.device

    def as_dict(self) -> dict[str, object]:
        """Return the fields as a plain dict (dtype and device as strings, for tables)."""
        row = asdict(self)
        row["dtype"] = str(self.dtype).removeprefix("torch.")
        row["device"] = str(self.device)
        return row


def describe(t: torch.Tensor) -> TensorAnatomy:
    """Return the storage-level anatomy of a tensor: shape, strides, offset, dtype, sizes."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a torch.Tensor, got {type(t).__name__}")
    return TensorAnatomy(
        shape=tuple(t.shape),
        stride=tuple(t.stride()),
        storage_offset=t.storage_offset(),
        dtype=t.dtype,
        itemsize=t.element_size(),
        numel=t.numel(),
        nbytes=t.numel() * t.element_size(),
        storage_nbytes=t.untyped_storage().nbytes(),
        is_contiguous=t.is_contiguous(),
        device=t.device,
    )


def flat_storage(t: torch.Tensor) -> torch.Tensor:
    """Return a tensor's whole storage as a 1-D tensor of its dtype (a view: writes go through)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a torch.Tensor, got {type(t).__name__}")
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage())


def _check_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must hold non-negative ints, got {values!r}")
    return values


def _check_layout(
    shape: Sequence[int], strides: Sequence[int], offset: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    shape = _check_ints("shape", shape)
    strides = _check_ints("strides", strides)
    if len(shape) != len(strides):
        raise ValueError(
            f"shape {shape} and strides {strides} must have the same length "
            f"(one stride per dimension), got {len(shape)} and {len(strides)}"
        )
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    return shape, strides


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Return the row-major (C-order) strides of ``shape``, as ``torch.empty(shape).stride()``."""
    shape = _check_ints("shape", shape)
    strides = [1] * len(shape)
    for k in range(len(shape) - 2, -1, -1):
        # stride_k = stride_{k+1} * size_{k+1}; torch counts an empty dim as size 1 here
        strides[k] = strides[k + 1] * max(shape[k + 1], 1)
    return tuple(strides)


def is_contiguous_layout(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Return True when (shape, strides) is row-major contiguous, by torch's rule.

    Dimensions of size 1 may have any stride (they are never stepped over), and a tensor with
    no elements is always contiguous.
    """
    shape, strides = _check_layout(shape, strides, 0)
    if 0 in shape:
        return True
    expected = 1
    for size, stride in zip(reversed(shape), reversed(strides), strict=True):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def flat_index(index: Sequence[int], strides: Sequence[int], offset: int = 0) -> int:
    """Return the storage position of element ``index``: ``offset + sum_k index_k * stride_k``."""
    index, strides = _check_layout(index, strides, offset)
    return offset + sum(i * s for i, s in zip(index, strides, strict=True))


def min_storage_size(shape: Sequence[int], strides: Sequence[int], offset: int = 0) -> int:
    """Return how many storage elements a (shape, strides, offset) view needs to stay in bounds."""
    shape, strides = _check_layout(shape, strides, offset)
    if 0 in shape:
        return 0
    last = flat_index([n - 1 for n in shape], strides, offset)  # the farthest element
    return last + 1


def storage_indices(shape: Sequence[int], strides: Sequence[int], offset: int = 0) -> torch.Tensor:
    """Return a LongTensor of ``shape`` holding each element's position in the storage."""
    shape, strides = _check_layout(shape, strides, offset)
    positions = torch.full(shape, offset, dtype=torch.long)  # (n_0, ..., n_{d-1})
    for k, (size, stride) in enumerate(zip(shape, strides, strict=True)):
        # arange along dim k, shaped (1, ..., n_k, ..., 1) so it broadcasts over the others
        view_shape = [1] * len(shape)
        view_shape[k] = size
        positions = positions + (torch.arange(size) * stride).view(view_shape)
    return positions


def strided_gather(
    storage: torch.Tensor, shape: Sequence[int], strides: Sequence[int], offset: int = 0
) -> torch.Tensor:
    """Read what ``torch.as_strided(storage, shape, strides, offset)`` would show, as a copy.

    This is the from-scratch meaning of a strided view: gather each element from its storage
    position. The result has the same values as the view but its own memory.
    """
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        got = storage.shape if isinstance(storage, torch.Tensor) else type(storage).__name__
        raise ValueError(f"storage must be a 1-D tensor, got {got}")
    needed = min_storage_size(shape, strides, offset)
    if needed > storage.numel():
        raise ValueError(
            f"shape {tuple(shape)}, strides {tuple(strides)} and offset {offset} reach storage "
            f"position {needed - 1}, but storage has only {storage.numel()} elements"
        )
    return storage[storage_indices(shape, strides, offset).to(storage.device)]


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Return True when two tensors are windows onto the same storage (so writes show in both)."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(
            f"a and b must be torch.Tensors, got {type(a).__name__} and {type(b).__name__}"
        )
    ptr_a = a.untyped_storage().data_ptr()
    ptr_b = b.untyped_storage().data_ptr()
    # an empty storage has no memory (data_ptr 0), so it cannot be shared
    return a.device == b.device and ptr_a != 0 and ptr_a == ptr_b


def _dispatch_api(name: str) -> Callable[..., object]:
    fn = getattr(torch._C, name, None)
    if fn is None:
        raise RuntimeError(
            f"torch._C.{name} is not available in torch {torch.__version__}; this private API "
            "is used only to inspect the dispatcher, so pin a torch version that has it"
        )
    return fn


def dispatch_keys(t: torch.Tensor) -> tuple[str, ...]:
    """Return the dispatch keys of a tensor (e.g. ``('CPU', 'AutogradCPU', ...)``)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a torch.Tensor, got {type(t).__name__}")
    text = str(_dispatch_api("_dispatch_keys")(t))  # "DispatchKeySet(CPU, AutogradCPU, ...)"
    inside = re.fullmatch(r"DispatchKeySet\((.*)\)", text)
    if inside is None:
        raise RuntimeError(f"cannot parse dispatch key set {text!r}")
    return tuple(key.strip() for key in inside.group(1).split(",") if key.strip())


def has_kernel(op: str, key: str) -> bool:
    """Return True when operator ``op`` (e.g. ``"aten::add.Tensor"``) has a kernel for ``key``."""
    lookup = _dispatch_api("_dispatch_has_kernel_for_dispatch_key")
    try:
        return bool(lookup(op, key))
    except RuntimeError as error:
        raise ValueError(
            f"cannot look up op {op!r} for dispatch key {key!r}: {error}; use an operator name "
            "like 'aten::add.Tensor' and a key like 'CPU', 'CUDA', 'Meta' or 'Autograd'"
        ) from None

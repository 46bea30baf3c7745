"""Custom autograd Functions: a forward pass in torch and a backward pass written by hand.

Introduced in lesson 2.1 (``m02-l01``). :class:`LogSumExp` shifts by the maximum so that large
inputs cannot overflow, and its backward is the softmax. :class:`Swish` fuses ``x * sigmoid(x)``
into one graph node that saves only its input. Both backward passes are written with
differentiable torch operations, so ``torch.autograd.gradgradcheck`` passes as well.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import FunctionCtx


def _check_floating(x: object, name: str = "x") -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor, else raise a ValueError naming it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (float16/32/64, bfloat16), got "
                         f"dtype {x.dtype}; convert it with {name}.double() or {name}.float()")
    return x


class LogSumExp(torch.autograd.Function):
    """log(sum(exp(x))) over one dimension, computed stably, with backward = softmax(x)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, dim: int) -> torch.Tensor:
        shift = x.amax(dim=dim, keepdim=True)  # (..., 1, ...): the largest entry along dim
        shift = torch.where(torch.isinf(shift), torch.zeros_like(shift), shift)  # all -inf rows
        result = ((x - shift).exp().sum(dim=dim, keepdim=True).log() + shift).squeeze(dim)
        ctx.save_for_backward(x, result)  # an input and an output: double backward stays exact
        ctx.dim = dim
        return result

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, result = ctx.saved_tensors
        probs = (x - result.unsqueeze(ctx.dim)).exp()  # exp(x - lse) = softmax(x) along dim
        return grad_out.unsqueeze(ctx.dim) * probs, None  # no gradient for the int `dim`


def logsumexp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Return ``log(sum(exp(x), dim))`` via :class:`LogSumExp` (like ``torch.logsumexp``)."""
    _check_floating(x)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension to reduce over, got a 0-d tensor")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be an int in [{-x.ndim}, {x.ndim}) for x of shape "
                         f"{tuple(x.shape)}, got {dim!r}")
    return LogSumExp.apply(x, dim % x.ndim)


class Swish(torch.autograd.Function):
    """Swish / SiLU ``x * sigmoid(x)`` as one node that saves only ``x`` for the backward pass."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)  # sigmoid(x) is recomputed in backward instead of stored
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_out * s * (1 + x * (1 - s))  # d/dx [x s(x)] = s + x s (1 - s)


def swish(x: torch.Tensor) -> torch.Tensor:
    """Return ``x * sigmoid(x)`` via :class:`Swish` (like ``torch.nn.functional.silu``)."""
    return Swish.apply(_check_floating(x))


def saved_tensor_bytes(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> int:
    """Return how many bytes of tensors autograd keeps for the backward pass of ``fn(*inputs)``.

    Counts each distinct storage once, as the memory would be held, using saved-tensor hooks.
    Only inputs with ``requires_grad=True`` make autograd save anything.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(*inputs)
    return sum(storages.values())

"""Mixed precision: number formats, fp16 gradient underflow, autocast and loss scaling.

Introduced in lesson 10.3 (``m10-l03``). Low-precision formats trade range and resolution for
speed and memory: fp16 has 5 exponent bits (range ~6e-8 .. 65504), bf16 keeps fp32's 8
exponent bits but only 7 mantissa bits. Small gradients flush to zero in fp16 unless the loss is
scaled up first (Micikevicius et al., 2018); ``torch.amp.GradScaler`` does it dynamically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FormatInfo:
    """The numbers one floating-point format can hold."""

    name: str
    bits: int
    max: float
    smallest_normal: float
    smallest_subnormal: float
    eps: float


def format_info(dtype: torch.dtype) -> FormatInfo:
    """Return range and resolution of a floating-point ``dtype`` (from ``torch.finfo``)."""
    info = torch.finfo(dtype)
    return FormatInfo(name=str(dtype).removeprefix("torch."), bits=info.bits, max=info.max,
                      smallest_normal=info.smallest_normal,
                      smallest_subnormal=info.smallest_normal * 2.0 ** -(_mantissa_bits(dtype)),
                      eps=info.eps)


def _mantissa_bits(dtype: torch.dtype) -> int:
    return {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7, torch.float64: 52}[dtype]


def survival(values: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> dict[str, float]:
    """Cast ``values * scale`` to ``dtype``; return the fractions lost to underflow or overflow.

    ``underflow``: flushed to zero; ``subnormal``: kept, but below the smallest normal number,
    with fewer significant bits; ``overflow``: became inf; ``kept``: finite and non-zero. Only
    non-zero ``values`` count: a zero gradient cannot be lost.
    """
    nonzero = values[values != 0].double() * scale
    cast = nonzero.to(dtype)
    n = max(nonzero.numel(), 1)
    tiny = torch.finfo(dtype).smallest_normal
    return {"underflow": (cast == 0).sum().item() / n,
            "subnormal": ((cast != 0) & (cast.abs() < tiny)).sum().item() / n,
            "overflow": torch.isinf(cast).sum().item() / n,
            "kept": ((cast != 0) & torch.isfinite(cast)).sum().item() / n}


def scaled_training_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                         scaler: torch.amp.GradScaler, x: torch.Tensor,
                         y: torch.Tensor) -> dict[str, float]:
    """One step with loss scaling; return the loss, the scale used and whether it was skipped.

    ``scaler.step`` unscales the gradients and skips the update if any is inf/NaN;
    ``scaler.update`` then halves the scale, or doubles it after ``growth_interval`` good steps.
    """
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    scale = scaler.get_scale()
    scaler.scale(loss).backward()
    before = [p.detach().clone() for p in model.parameters()]
    scaler.step(optimizer)
    scaler.update()
    skipped = all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    return {"loss": loss.item(), "scale": scale, "skipped": float(skipped)}


def mlp(width: int, depth: int = 4) -> nn.Sequential:
    """Return a stack of ``depth`` Linear + GELU layers of width ``width`` (a matmul workload)."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.GELU()]
    return nn.Sequential(*layers)


def time_training_step(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None,
                       repeat: int = 3) -> float:
    """Best seconds for forward + backward, in fp32 (``dtype=None``) or under autocast."""
    device_type = x.device.type
    best = float("inf")
    for _ in range(repeat + 1):  # the first run warms up
        model.zero_grad()
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(x).float().square().mean()
        loss.backward()
        if device_type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def autocast_dtypes(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> Sequence[str]:
    """Return the dtype of every leaf module's output under autocast (what ran in low precision)."""
    seen: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(
        f"{type(mod).__name__}: {str(out.dtype).removeprefix('torch.')}"))
        for m in model.modules() if not list(m.children())]
    with torch.autocast(x.device.type, dtype=dtype):
        model(x)
    for hook in hooks:
        hook.remove()
    return seen

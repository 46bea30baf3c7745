"""Tiled attention with the online softmax (FlashAttention), forward and backward, in PyTorch.

Introduced in lesson 6.4 (``m06-l04``). Plain attention builds the (T, S) score matrix, so its
memory grows with the square of the sequence length. :func:`flash_attention` never holds more
than one (block_q, block_k) tile of scores: it walks over key blocks keeping, per query row, the
running maximum ``m``, the running normaliser ``l`` and an unnormalised output, rescaling them
whenever the maximum grows (the online softmax of Milakov and Gimelshein, 2018). The forward
pass saves only the output and the log-sum-exp ``L = m + log l`` of every row; the backward
pass recomputes each tile's probabilities from ``L`` (Dao et al., 2022; Dao, 2023). The
real FlashAttention does this inside one GPU kernel, in on-chip memory; this version runs the
same arithmetic with Python loops, to show the algorithm and measure its memory, not its speed.
:func:`peak_memory` measures the peak bytes a function allocates.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from neuralarch.layers.attention import attention


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_q: int, block_k: int) -> None:
    if q.ndim < 2 or q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1] \
            or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"need q (..., T, d), k (..., S, d), v (..., S, d_v) with the same "
                         f"leading axes; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be an int >= 1, got {size!r}")


def _tile_scores(q_i: torch.Tensor, k_j: torch.Tensor, scale: float, causal: bool,
                 i0: int, j0: int) -> torch.Tensor:
    """Scores (N, bq, bk) of one tile, -inf where key j0 + c is after query i0 + r."""
    s = q_i @ k_j.transpose(-2, -1) * scale  # (N, bq, bk)
    if causal and j0 + k_j.shape[-2] - 1 > i0:  # the tile crosses the diagonal
        rows = torch.arange(i0, i0 + q_i.shape[-2], device=s.device)[:, None]
        cols = torch.arange(j0, j0 + k_j.shape[-2], device=s.device)[None, :]
        s = s.masked_fill(cols > rows, float("-inf"))
    return s


def _key_blocks(i0: int, bq: int, s_len: int, block_k: int, causal: bool) -> range:
    """Start indices of the key blocks query rows i0 .. i0 + bq - 1 can see."""
    end = min(s_len, i0 + bq) if causal else s_len  # causal: keys after the last row are dead
    return range(0, end, block_k)


def flash_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                  block_q: int, block_k: int, scale: float,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Output (N, T, d_v) and log-sum-exp (N, T) of attention, one tile at a time."""
    n, t, s_len = q.shape[0], q.shape[1], k.shape[1]
    out = torch.empty(n, t, v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(n, t, dtype=q.dtype, device=q.device)
    for i0 in range(0, t, block_q):
        q_i = q[:, i0:i0 + block_q]  # (N, bq, d)
        bq = q_i.shape[1]
        m = torch.full((n, bq, 1), float("-inf"), dtype=q.dtype, device=q.device)  # running max
        l = torch.zeros(n, bq, 1, dtype=q.dtype, device=q.device)  # running sum of exp  # noqa: E741
        acc = torch.zeros(n, bq, v.shape[-1], dtype=q.dtype, device=q.device)  # unnormalised O
        for j0 in _key_blocks(i0, bq, s_len, block_k, causal):
            scores = _tile_scores(q_i, k[:, j0:j0 + block_k], scale, causal, i0, j0)
            m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))  # (N, bq, 1)
            p = torch.exp(scores - m_new)  # (N, bq, bk): this tile, on the new max's scale
            correction = torch.exp(m - m_new)  # shrink what was summed under the old max
            l = l * correction + p.sum(dim=-1, keepdim=True)  # noqa: E741
            acc = acc * correction + p @ v[:, j0:j0 + block_k]
            m = m_new
        out[:, i0:i0 + bq] = acc / l
        lse[:, i0:i0 + bq] = (m + torch.log(l)).squeeze(-1)
    return out, lse


def flash_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, grad_out: torch.Tensor, causal: bool, block_q: int,
                   block_k: int, scale: float,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k, v, recomputing each tile's probabilities from the log-sum-exp."""
    t, s_len = q.shape[1], k.shape[1]
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # (N, T, 1): rowsum(dO * O)
    for i0 in range(0, t, block_q):
        q_i, do_i = q[:, i0:i0 + block_q], grad_out[:, i0:i0 + block_q]
        lse_i, delta_i = lse[:, i0:i0 + block_q, None], delta[:, i0:i0 + block_q]
        for j0 in _key_blocks(i0, q_i.shape[1], s_len, block_k, causal):
            k_j, v_j = k[:, j0:j0 + block_k], v[:, j0:j0 + block_k]
            p = torch.exp(_tile_scores(q_i, k_j, scale, causal, i0, j0) - lse_i)  # softmax tile
            dv[:, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
            dp = do_i @ v_j.transpose(-2, -1)  # (N, bq, bk)
            ds = p * (dp - delta_i)  # the softmax's Jacobian, applied row by row
            dq[:, i0:i0 + block_q] += ds @ k_j * scale
            dk[:, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, the output and the log-sum-exp, never the scores."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                block_q: int, block_k: int, scale: float) -> torch.Tensor:
        """Tiled attention of (N, T, d) queries; see :func:`flash_forward`."""
        out, lse = flash_forward(q, k, v, causal, block_q, block_k, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.settings = (causal, block_q, block_k, scale)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Gradients of q, k, v; none for the settings."""
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(q, k, v, out, lse, grad_out.contiguous(), *ctx.settings)
        return dq, dk, dv, None, None, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                    is_causal: bool = False, block_q: int = 64, block_k: int = 64,
                    scale: float | None = None) -> torch.Tensor:
    """``softmax(Q K^T * scale) V`` for (..., T, d) queries without a (T, S) score matrix.

    Same conventions as ``F.scaled_dot_product_attention``: ``is_causal`` is top-left aligned
    (query ``i`` sees keys ``<= i``). Lengths need not be multiples of the block sizes.
    """
    _check(q, k, v, block_q, block_k)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    lead = q.shape[:-2]
    flat = [x.reshape(-1, *x.shape[-2:]) for x in (q, k, v)]  # (N, T, d): batch and heads
    out = FlashAttentionFunction.apply(*flat, is_causal, block_q, block_k, scale)
    return out.reshape(*lead, *out.shape[-2:])


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                    is_causal: bool = False) -> torch.Tensor:
    """The book's :func:`~neuralarch.layers.attention.attention`, output only (the baseline)."""
    return attention(q, k, v, is_causal=is_causal)[0]


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where C++ libraries log) to /dev/null for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before it.

    On a GPU, ``torch.cuda.max_memory_allocated``. On the CPU, the profiler records every
    allocation and free of torch's CPU allocator with its size; the running sum of those events,
    in time order, is the live memory, and its maximum the peak. Both count the tensors torch
    allocates (intermediates, outputs, what autograd saves), not Python objects.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # the profiler's C++ side logs every start and stop to stderr
        prof.start()
    try:
        fn()
    finally:
        with _quiet_stderr():
            prof.stop()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def compare_memory(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                   block: int = 512, device: str | torch.device = "cpu") -> dict[str, float]:
    """Peak bytes of naive and tiled attention on the same inputs, and their largest gap."""
    outputs: dict[str, torch.Tensor] = {}

    def naive_fn() -> None:
        outputs["naive"] = naive_attention(q, k, v, is_causal=causal)

    def tiled_fn() -> None:
        outputs["tiled"] = flash_attention(q, k, v, is_causal=causal, block_q=block,
                                           block_k=block)

    with torch.no_grad():  # outputs are kept, so both peaks include the (T, d) output
        naive, tiled = peak_memory(naive_fn, device), peak_memory(tiled_fn, device)
    gap = (outputs["tiled"] - outputs["naive"]).abs().max().item()
    return {"length": q.shape[-2], "naive_bytes": naive, "tiled_bytes": tiled,
            "ratio": naive / tiled, "max_abs_diff": gap}


def memory_table(lengths: list[int], dim: int = 64, heads: int = 1, block: int = 512,
                 causal: bool = True, device: str | torch.device = "cpu",
                 seed: int = 0) -> list[dict[str, float]]:
    """Peak forward memory (bytes) of naive vs tiled attention per sequence length, no grad."""
    gen = torch.Generator(device=device).manual_seed(seed)
    rows = []
    for t in lengths:
        q, k, v = (torch.randn(1, heads, t, dim, generator=gen, device=device) for _ in range(3))
        rows.append(compare_memory(q, k, v, causal, block, device))
    return rows

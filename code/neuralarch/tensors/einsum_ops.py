"""Einstein summation: read an equation, evaluate it as broadcast-multiply-sum, and use it for
matmul, batched attention scores, bilinear maps and outer products.

Rule of the notation: every axis gets a letter; letters written after ``->`` are kept, letters
that disappear are summed over. ``"bhtd,bhsd->bhts"`` keeps b, h, t, s and sums over d.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.utils import benchmark

Operand = torch.Tensor | Sequence[int]


@dataclass(frozen=True)
class EinsumPlan:
    """An einsum equation taken apart: operand subscripts, kept and summed letters, their sizes."""

    inputs: tuple[str, ...]  # one subscript string per operand, e.g. ("ij", "jk")
    output: str  # letters kept, in output order, e.g. "ik"
    summed: tuple[str, ...]  # letters contracted away, e.g. ("j",)
    sizes: Mapping[str, int]  # size of every letter after broadcasting size-1 axes

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the result."""
        return tuple(self.sizes[c] for c in self.output)

    @property
    def multiply_adds(self) -> int:
        """Number of terms a naive loop nest adds up (product of the sizes of all letters)."""
        return math.prod(self.sizes.values())

    def formula(self) -> str:
        """The equation as a sum, e.g. ``out[i,k] = sum_j A[i,j] * B[j,k]``."""
        names = "ABCDEFGH" if len(self.inputs) <= 8 else [f"X{n}" for n in range(len(self.inputs))]
        product = " * ".join(f"{names[n]}[{','.join(term)}]" for n, term in enumerate(self.inputs))
        total = f"sum_{''.join(self.summed)} " if self.summed else ""
        return f"out[{','.join(self.output)}] = {total}{product}"


def explain_einsum(equation: str, *operands: Operand) -> EinsumPlan:
    """Parse ``equation`` for operands (tensors or shapes): which letters are kept, which summed."""
    if not isinstance(equation, str):
        raise ValueError(f"equation must be a string such as 'ij,jk->ik', got {equation!r}")
    text = equation.replace(" ", "")
    if "..." in text:
        raise ValueError(f"equation {equation!r}: '...' is not supported here; torch.einsum has it")
    if text.count("->") > 1:
        raise ValueError(f"equation {equation!r} has more than one '->'")
    lhs, arrow, rhs = text.partition("->")
    inputs = tuple(lhs.split(","))
    if len(inputs) != len(operands):
        raise ValueError(
            f"equation {equation!r} names {len(inputs)} operand(s) but {len(operands)} were given"
        )
    bad = sorted({c for c in lhs.replace(",", "") + rhs if not (c.isascii() and c.isalpha())})
    if bad:
        raise ValueError(f"equation {equation!r}: subscripts must be letters a-z, A-Z, got {bad}")

    sizes: dict[str, int] = {}
    for n, (term, operand) in enumerate(zip(inputs, operands, strict=True)):
        shape = tuple(operand.shape if isinstance(operand, torch.Tensor) else operand)
        if len(term) != len(shape):
            raise ValueError(
                f"operand {n} has {len(shape)} dims {shape} but its subscripts {term!r} "
                f"name {len(term)}"
            )
        own: dict[str, int] = {}
        for c, size in zip(term, shape, strict=True):
            if own.setdefault(c, size) != size:
                raise ValueError(
                    f"operand {n}: repeated letter {c!r} (a diagonal) needs equal sizes, got "
                    f"{own[c]} and {size}"
                )
            known = sizes.get(c, 1)
            if size != known and 1 not in (size, known):
                raise ValueError(
                    f"letter {c!r} has size {known} in an earlier operand but {size} in operand "
                    f"{n}; sizes of one letter must be equal or 1"
                )
            sizes[c] = max(known, size) if 1 in (size, known) else size

    if arrow:
        output = rhs
        if len(set(output)) != len(output):
            raise ValueError(f"equation {equation!r}: the output repeats a letter in {output!r}")
        missing = sorted(set(output) - set(sizes))
        if missing:
            raise ValueError(f"equation {equation!r}: output letters {missing} are in no input")
    else:  # implicit mode (NumPy/torch rule): keep letters seen once, alphabetically
        counts = lhs.replace(",", "")
        output = "".join(sorted(c for c in sizes if counts.count(c) == 1))
    summed = tuple(c for c in sizes if c not in output)
    return EinsumPlan(inputs=inputs, output=output, summed=summed, sizes=dict(sizes))


def _take_diagonals(x: torch.Tensor, term: str) -> tuple[torch.Tensor, str]:
    """Replace every letter repeated inside one operand (as in ``"ii"``) by its diagonal."""
    while len(set(term)) < len(term):
        c = next(c for c in term if term.count(c) > 1)
        i = term.index(c)
        j = term.index(c, i + 1)
        x = x.diagonal(dim1=i, dim2=j)  # removes dims i, j; appends the diagonal as last dim
        term = term[:i] + term[i + 1 : j] + term[j + 1 :] + c
    return x, term


def einsum_broadcast(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """Evaluate an einsum from scratch: line every operand up on all letters, multiply with
    broadcasting, sum the contracted letters. Same result as ``torch.einsum``, far more memory."""
    if not all(isinstance(x, torch.Tensor) for x in operands):
        raise ValueError("einsum_broadcast needs tensors as operands")
    plan = explain_einsum(equation, *operands)
    letters = plan.output + "".join(plan.summed)  # the full index space: kept, then summed
    product = None
    for term, x in zip(plan.inputs, operands, strict=True):
        x, term = _take_diagonals(x, term)
        order = sorted(term, key=letters.index)
        x = x.permute([term.index(c) for c in order])
        # a size-1 axis for every letter this operand lacks, so broadcasting lines it up
        x = x.reshape([x.shape[order.index(c)] if c in term else 1 for c in letters])
        product = x if product is None else product * x  # (..all letters..) after broadcasting
    product = product.expand([plan.sizes[c] for c in letters])
    if plan.summed:
        product = product.sum(dim=tuple(range(len(plan.output), len(letters))))
    return product.clone()  # own memory, never a stride-0 view of an input


def matmul_einsum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix product ``a @ b`` for (M, K) @ (K, N) or batched (B, M, K) @ (B, K, N) via einsum."""
    if a.dim() != b.dim() or a.dim() not in (2, 3):
        raise ValueError(
            f"a and b must both be 2-D or both 3-D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner sizes differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if a.dim() == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    equation = "mk,kn->mn" if a.dim() == 2 else "bmk,bkn->bmn"
    return torch.einsum(equation, a, b)  # (M, N) or (B, M, N)


def _check_qk(q: torch.Tensor, k: torch.Tensor, scale: float | None) -> float:
    """Validate (B, H, T, D) queries and (B, H, S, D) keys; return the score scale."""
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(
            f"q and k must be 4-D (B, H, T, D) and (B, H, S, D), got {tuple(q.shape)} and "
            f"{tuple(k.shape)}"
        )
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on B, H and D (dims 0, 1, 3)"
        )
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale


def attention_scores(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Scaled dot-product scores ``q k^T / sqrt(D)``: (B, H, T, D), (B, H, S, D) -> (B, H, T, S)."""
    scale = _check_qk(q, k, scale)
    return torch.einsum("bhtd,bhsd->bhts", q, k) * scale  # (B, H, T, S)


def attention_scores_matmul(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The same scores with ``@``: batched matmul broadcasts over the leading (B, H) dims."""
    scale = _check_qk(q, k, scale)
    return (q @ k.transpose(-2, -1)) * scale  # (B, H, T, D) @ (B, H, D, S) -> (B, H, T, S)


def attention_scores_bmm(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The same scores with ``torch.bmm``, which wants one batch dim: fold (B, H) into B*H."""
    scale = _check_qk(q, k, scale)
    b, h, t, d = q.shape
    s = k.shape[2]
    flat_q = q.reshape(b * h, t, d)  # (B*H, T, D)
    flat_k = k.reshape(b * h, s, d)  # (B*H, S, D)
    return (torch.bmm(flat_q, flat_k.transpose(1, 2)) * scale).view(b, h, t, s)


def attention_scores_loop(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The same scores with a Python loop over batch and heads: one small matmul per head."""
    scale = _check_qk(q, k, scale)
    b, h, t, _ = q.shape
    out = q.new_empty(b, h, t, k.shape[2])  # (B, H, T, S)
    for i in range(b):
        for j in range(h):
            out[i, j] = (q[i, j] @ k[i, j].T) * scale  # (T, D) @ (D, S)
    return out


def attention_scores_broadcast(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The same scores by :func:`einsum_broadcast`: materialises a (B, H, T, S, D) product."""
    scale = _check_qk(q, k, scale)
    return einsum_broadcast("bhtd,bhsd->bhts", q, k) * scale


ATTENTION_SCORE_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "einsum": attention_scores,
    "matmul (@)": attention_scores_matmul,
    "bmm": attention_scores_bmm,
    "python loop": attention_scores_loop,
    "broadcast-multiply-sum": attention_scores_broadcast,
}
"""Ways to compute the same attention scores, by name, for comparisons and benchmarks."""


def bilinear(
    x1: torch.Tensor, weight: torch.Tensor, x2: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Bilinear map ``y_o = x1^T W_o x2 + b_o`` as ``F.bilinear``: (..., I), (O, I, J), (..., J)."""
    if weight.dim() != 3:
        raise ValueError(f"weight must be 3-D (O, I, J), got shape {tuple(weight.shape)}")
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ValueError(
            f"x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)} must share all leading (batch) dims"
        )
    if x1.shape[-1] != weight.shape[1] or x2.shape[-1] != weight.shape[2]:
        raise ValueError(
            f"weight {tuple(weight.shape)} needs x1 (..., {weight.shape[1]}) and x2 "
            f"(..., {weight.shape[2]}), got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    out = torch.einsum("...i,oij,...j->...o", x1, weight, x2)  # (..., O)
    if bias is not None:
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        out = out + bias
    return out


def batched_outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One outer product per row: (B, I), (B, J) -> (B, I, J), ``out[n] = outer(a[n], b[n])``."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a and b must be 2-D (B, I) and (B, J) with the same B, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    return torch.einsum("bi,bj->bij", a, b)  # (B, I, J)


def time_attention_scores(
    seq_lens: Sequence[int],
    batch: int = 2,
    heads: int = 4,
    head_dim: int = 32,
    methods: Sequence[str] | None = None,
    repeats: int = 7,
    block_time: float = 0.005,
    device: str | torch.device = "cpu",
    num_threads: int = 1,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Median run time of each attention-score method at each sequence length T (= S).

    Each method runs as a ``torch.utils.benchmark.Timer`` (which synchronises CUDA) in blocks
    of about ``block_time`` seconds; the methods take turns block by block, ``repeats`` rounds,
    so a burst of load from elsewhere slows all of them rather than one. ``num_threads`` is 1 by
    default: a fair per-core comparison, and steadier on a shared machine. Returns one row per
    (method, seq_len) with the median seconds per call.
    """
    names = list(ATTENTION_SCORE_METHODS) if methods is None else list(methods)
    unknown = [n for n in names if n not in ATTENTION_SCORE_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(ATTENTION_SCORE_METHODS)}")
    if not seq_lens or any(not isinstance(t, int) or t < 1 for t in seq_lens):
        raise ValueError(f"seq_lens must be a non-empty list of ints >= 1, got {seq_lens!r}")
    if repeats < 1 or block_time <= 0:
        raise ValueError(f"need repeats >= 1 and block_time > 0, got {repeats} and {block_time}")
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, object]] = []
    for t in seq_lens:
        q = torch.randn(batch, heads, t, head_dim, generator=generator).to(device)  # (B, H, T, D)
        k = torch.randn(batch, heads, t, head_dim, generator=generator).to(device)  # (B, H, T, D)
        timers, calls = {}, {}
        for name in names:
            timers[name] = benchmark.Timer(
                stmt="fn(q, k)",
                globals={"fn": ATTENTION_SCORE_METHODS[name], "q": q, "k": k},
                num_threads=num_threads,
            )
            timers[name].timeit(1)  # warm-up: first calls pay for allocation and dispatch caches
            once = timers[name].timeit(1).median
            calls[name] = max(1, round(block_time / once))  # calls per block of ~block_time
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(repeats):
            for name in names:  # interleaved: every method sees the same machine load
                samples[name].append(timers[name].timeit(calls[name]).median)
        for name in names:
            median = statistics.median(samples[name])
            rows.append({"method": name, "seq_len": t, "median_s": median})
    return rows

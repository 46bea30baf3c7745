"""Conway's Game of Life as tensor operations: one convolution and two comparisons per step.

Week 02's warm-up (``w02``): the torch version counts neighbours with ``F.conv2d`` on a whole
batch of boards at once; :func:`life_step_reference` is the NumPy/SciPy version it is checked
against. Boards are 0/1 tensors of shape ``(H, W)`` or ``(B, H, W)``; the boundary is either
``"wrap"`` (a torus: the left edge touches the right edge) or ``"dead"`` (cells outside the board
are always dead).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

BOUNDARIES = ("wrap", "dead")

# Small patterns (1 = alive), written row by row.
PATTERNS: dict[str, tuple[tuple[int, ...], ...]] = {
    "block": ((1, 1), (1, 1)),  # still life: never changes
    "blinker": ((1, 1, 1),),  # oscillator of period 2: horizontal <-> vertical
    "glider": ((0, 1, 0), (0, 0, 1), (1, 1, 1)),  # moves one cell down-right every 4 steps
}

# The 3x3 neighbourhood without the centre cell: a cell's 8 neighbours.
_KERNEL = ((1, 1, 1), (1, 0, 1), (1, 1, 1))


def _check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return boundary


def _check_board(board: torch.Tensor) -> None:
    if not isinstance(board, torch.Tensor):
        raise ValueError(f"board must be a torch.Tensor, got {type(board).__name__}")
    if board.ndim not in (2, 3):
        raise ValueError(f"board must have shape (H, W) or (B, H, W), got {tuple(board.shape)}")
    if board.shape[-1] < 3 or board.shape[-2] < 3:
        raise ValueError(f"board must be at least 3x3, got {tuple(board.shape[-2:])}")
    if board.is_complex() or not bool(((board == 0) | (board == 1)).all()):
        raise ValueError("board must contain only 0 (dead) and 1 (alive)")


def neighbour_counts(board: torch.Tensor, boundary: str = "wrap") -> torch.Tensor:
    """Return how many of its 8 neighbours are alive, for every cell: float, same shape as board."""
    _check_boundary(boundary)
    _check_board(board)
    x = board.to(torch.float32).reshape(-1, 1, *board.shape[-2:])  # (B, 1, H, W)
    mode = "circular" if boundary == "wrap" else "constant"
    x = F.pad(x, (1, 1, 1, 1), mode=mode)  # (B, 1, H+2, W+2): one ring of wrapped or dead cells
    kernel = torch.tensor(_KERNEL, dtype=torch.float32, device=board.device).view(1, 1, 3, 3)
    counts = F.conv2d(x, kernel)  # (B, 1, H, W); the kernel is symmetric, so no flip is needed
    return counts.reshape(board.shape)


def life_step(board: torch.Tensor, boundary: str = "wrap") -> torch.Tensor:
    """Return the next generation of ``board`` (same shape and dtype) under Conway's rules."""
    n = neighbour_counts(board, boundary)  # (..., H, W)
    alive = board != 0
    born_or_survives = (n == 3) | (alive & (n == 2))  # B3/S23
    return born_or_survives.to(board.dtype)


def life_run(board: torch.Tensor, steps: int, boundary: str = "wrap") -> torch.Tensor:
    """Return generations 0..steps stacked on a new first dim: ``(steps + 1, *board.shape)``."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    _check_board(board)
    history = [board]
    for _ in range(steps):
        history.append(life_step(history[-1], boundary))
    return torch.stack(history)


def life_step_reference(board: np.ndarray, boundary: str = "wrap") -> np.ndarray:
    """NumPy/SciPy reference: one step of one (H, W) board, to check :func:`life_step` against."""
    _check_boundary(boundary)
    board = np.asarray(board)
    if board.ndim != 2:
        raise ValueError(f"board must have shape (H, W), got {board.shape}")
    scipy_boundary = "wrap" if boundary == "wrap" else "fill"
    n = convolve2d(board.astype(np.int64), np.array(_KERNEL), mode="same",
                   boundary=scipy_boundary, fillvalue=0)  # (H, W) neighbour counts
    nxt = (n == 3) | ((board != 0) & (n == 2))
    return nxt.astype(board.dtype)


def random_board(height: int, width: int, density: float = 0.3, batch: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a random uint8 board, (H, W) or (batch, H, W), each cell alive with ``density``."""
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 3:
            raise ValueError(f"{name} must be an int >= 3, got {value!r}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density!r}")
    shape = (height, width) if batch is None else (batch, height, width)
    return (torch.rand(shape, generator=generator) < density).to(torch.uint8)


def place_pattern(name: str, height: int, width: int, top: int = 0,
                  left: int = 0) -> torch.Tensor:
    """Return an empty (height, width) uint8 board with pattern ``name`` at (``top``, ``left``)."""
    if name not in PATTERNS:
        raise ValueError(f"unknown pattern {name!r}; choose one of {sorted(PATTERNS)}")
    pattern = torch.tensor(PATTERNS[name], dtype=torch.uint8)  # (h, w)
    h, w = pattern.shape
    if not (0 <= top <= height - h and 0 <= left <= width - w):
        raise ValueError(f"pattern {name!r} of size {h}x{w} at (top={top}, left={left}) does not "
                         f"fit a {height}x{width} board")
    board = torch.zeros(height, width, dtype=torch.uint8)
    board[top:top + h, left:left + w] = pattern
    return board


def period(board: torch.Tensor, max_steps: int = 100, boundary: str = "wrap") -> int | None:
    """Return the smallest p in 1..max_steps with step^p(board) == board, or None if none is."""
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    _check_board(board)
    state = board
    for p in range(1, max_steps + 1):
        state = life_step(state, boundary)
        if torch.equal(state, board):
            return p
    return None

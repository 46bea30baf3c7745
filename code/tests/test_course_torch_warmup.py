"""Week 02 warm-up: tensor-only curves vs NumPy, the torch Game of Life vs the SciPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from neuralarch.course.curves import (
    heart_curve,
    lissajous_curve,
    parameter_grid,
    polar_to_xy,
    rose_curve,
    shoelace_area,
)
from neuralarch.course.game_of_life import (
    PATTERNS,
    life_run,
    life_step,
    life_step_reference,
    neighbour_counts,
    period,
    place_pattern,
    random_board,
)

# ---------------------------------------------------------------- curves


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [2, 17, 1000])
def test_heart_curve_matches_numpy(n, dtype):
    t = parameter_grid(n, -1.0, 7.0, dtype=dtype)
    s = t.double().numpy()
    expected = np.stack([16 * np.sin(s) ** 3,
                         13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s)],
                        axis=-1)
    points = heart_curve(t)
    assert points.shape == (n, 2) and points.dtype == dtype
    assert_close(points, torch.from_numpy(expected).to(dtype))


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_rose_curve_matches_numpy(k):
    theta = parameter_grid(301, 0.0, 2 * math.pi)
    s = theta.numpy()
    r = np.cos(k * s)
    expected = np.stack([r * np.cos(s), r * np.sin(s)], axis=-1)
    assert_close(rose_curve(theta, k), torch.from_numpy(expected))


@pytest.mark.parametrize(("a", "b", "delta"), [(3, 2, math.pi / 2), (1, 1, 0.0), (5, 4, 0.3)])
def test_lissajous_curve_matches_numpy(a, b, delta):
    t = parameter_grid(257, dtype=torch.float32)
    s = t.double().numpy()
    expected = np.stack([np.sin(a * s + delta), np.sin(b * s)], axis=-1)
    assert_close(lissajous_curve(t, a, b, delta), torch.from_numpy(expected).float())


def test_polar_to_xy_matches_numpy():
    theta = torch.linspace(0, 3, 11, dtype=torch.float64)
    r = torch.linspace(0.5, 2, 11, dtype=torch.float64)
    expected = np.stack([r.numpy() * np.cos(theta.numpy()), r.numpy() * np.sin(theta.numpy())], -1)
    assert_close(polar_to_xy(r, theta), torch.from_numpy(expected))


@pytest.mark.parametrize(("curve", "grid", "area"), [
    (heart_curve, (20001, 0.0, 2 * math.pi), -180 * math.pi),  # clockwise
    (lambda t: rose_curve(t, 3), (20001, 0.0, math.pi), math.pi / 4),  # odd k: traced over [0, π]
    (lambda t: rose_curve(t, 4), (20001, 0.0, 2 * math.pi), math.pi / 2),  # even k: 2k petals
])
def test_shoelace_area_of_closed_curves_matches_the_exact_area(curve, grid, area):
    got = shoelace_area(curve(parameter_grid(*grid))).item()
    assert got == pytest.approx(area, rel=1e-6)


def test_shoelace_area_of_unit_square_and_orientation():
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    assert shoelace_area(square).item() == pytest.approx(2.0)
    assert shoelace_area(square.flip(0)).item() == pytest.approx(-2.0)


def test_curves_are_differentiable_with_autograd():
    t = parameter_grid(50, dtype=torch.float64).requires_grad_()
    heart_curve(t)[:, 0].sum().backward()  # d/dt 16 sin^3 t = 48 sin^2 t cos t
    expected = 48 * torch.sin(t.detach()) ** 2 * torch.cos(t.detach())
    assert_close(t.grad, expected)


def test_parameter_grid_endpoints_and_dtype():
    t = parameter_grid(5, 1.0, 2.0, dtype=torch.float32)
    assert t.dtype == torch.float32
    assert_close(t, torch.tensor([1.0, 1.25, 1.5, 1.75, 2.0]))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: heart_curve(np.linspace(0, 1, 5)), "t must be a torch.Tensor"),
    (lambda: heart_curve(torch.zeros(3, 2)), r"t must be 1-D \(N,\), got shape \(3, 2\)"),
    (lambda: heart_curve(torch.arange(5)), "t must have a floating dtype, got torch.int64"),
    (lambda: rose_curve(torch.zeros(3), k=0), "k must be an int >= 1, got 0"),
    (lambda: rose_curve(torch.zeros(3), k=2.5), "k must be an int >= 1, got 2.5"),
    (lambda: lissajous_curve(torch.zeros(3), a=0), "a must be an int >= 1, got 0"),
    (lambda: lissajous_curve(torch.zeros(3), b=True), "b must be an int >= 1, got True"),
    (lambda: lissajous_curve(torch.zeros(3), delta=math.nan), "delta must be a finite number"),
    (lambda: parameter_grid(1), "n must be an int >= 2, got 1"),
    (lambda: parameter_grid(5, 2.0, 1.0), "stop must be greater than start"),
    (lambda: parameter_grid(5, "0"), "start must be a finite number, got '0'"),
    (lambda: polar_to_xy(torch.zeros(4), torch.zeros(3)), r"r must be a tensor of theta's shape"),
    (lambda: polar_to_xy([1.0, 2.0], torch.zeros(2)), "got list"),
    (lambda: shoelace_area(torch.zeros(5, 3)), r"points must be a tensor of shape \(N, 2\)"),
    (lambda: shoelace_area([[0, 0]]), "got list"),
    (lambda: shoelace_area(torch.zeros(2, 2)), "a polygon needs at least 3 points, got 2"),
])
def test_curves_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- Game of Life


@pytest.mark.parametrize("boundary", ["wrap", "dead"])
@pytest.mark.parametrize(("height", "width", "density"), [(3, 3, 0.5), (16, 16, 0.3),
                                                          (9, 23, 0.4), (31, 7, 0.2)])
def test_life_matches_scipy_reference_over_many_steps(boundary, height, width, density):
    g = torch.Generator().manual_seed(height * 100 + width)
    board = random_board(height, width, density, generator=g)
    expected = board.numpy()
    history = life_run(board, 40, boundary)
    assert history.shape == (41, height, width)
    for step in range(1, 41):
        expected = life_step_reference(expected, boundary)
        assert np.array_equal(history[step].numpy(), expected), f"differs at step {step}"


@pytest.mark.parametrize("boundary", ["wrap", "dead"])
def test_batched_step_equals_per_board_reference(boundary):
    boards = random_board(12, 15, 0.35, batch=6, generator=torch.Generator().manual_seed(1))
    got = life_step(boards, boundary)
    assert got.shape == boards.shape and got.dtype == boards.dtype
    for b in range(6):
        assert np.array_equal(got[b].numpy(), life_step_reference(boards[b].numpy(), boundary))


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float32])
def test_life_step_keeps_the_dtype(dtype):
    board = random_board(10, 10, generator=torch.Generator().manual_seed(2)).to(dtype)
    got = life_step(board)
    assert got.dtype == dtype
    assert np.array_equal(got.to(torch.uint8).numpy(),
                          life_step_reference(board.to(torch.uint8).numpy()))


def test_neighbour_counts_of_a_single_cell_and_the_wrap():
    board = torch.zeros(5, 6, dtype=torch.uint8)
    board[0, 0] = 1  # a corner cell
    wrap = neighbour_counts(board, "wrap")
    dead = neighbour_counts(board, "dead")
    assert wrap.sum().item() == 8 and dead.sum().item() == 3
    assert wrap[4, 5].item() == 1 and dead[4, 5].item() == 0  # the opposite corner touches it
    assert wrap[0, 0].item() == 0  # a cell is not its own neighbour


@pytest.mark.parametrize("boundary", ["wrap", "dead"])
def test_block_is_a_still_life(boundary):
    board = place_pattern("block", 6, 6, 2, 2)
    assert torch.equal(life_step(board, boundary), board)
    assert period(board, boundary=boundary) == 1


@pytest.mark.parametrize("boundary", ["wrap", "dead"])
def test_blinker_has_period_two(boundary):
    board = place_pattern("blinker", 5, 5, 2, 1)
    once = life_step(board, boundary)
    assert not torch.equal(once, board)
    assert once[:, 2].tolist() == [0, 1, 1, 1, 0]  # horizontal -> vertical
    assert torch.equal(life_step(once, boundary), board)
    assert period(board, boundary=boundary) == 2


def test_glider_moves_one_cell_diagonally_every_four_steps():
    board = place_pattern("glider", 12, 12, 1, 1)
    history = life_run(board, 4 * 12, "wrap")
    for k in range(1, 13):
        expected = torch.roll(board, shifts=(k, k), dims=(0, 1))  # (1, 1) per 4 steps
        assert torch.equal(history[4 * k], expected)
        assert not torch.equal(history[4 * k - 1], expected)
    assert period(board, max_steps=60) == 48  # back home after 12 cells on a 12x12 torus


def test_glider_dies_into_a_block_at_a_dead_wall():
    board = place_pattern("glider", 8, 8, 0, 0)
    final = life_run(board, 40, "dead")[-1]
    assert torch.equal(final, place_pattern("block", 8, 8, 6, 6))  # it crashes into the corner


def test_period_returns_none_when_the_board_does_not_repeat():
    board = place_pattern("glider", 10, 10, 0, 0)
    assert period(board, max_steps=3) is None


def test_random_board_density_and_shape():
    g = torch.Generator().manual_seed(0)
    board = random_board(100, 50, 0.25, batch=2, generator=g)
    assert board.shape == (2, 100, 50) and board.dtype == torch.uint8
    assert abs(board.float().mean().item() - 0.25) < 0.02
    assert random_board(4, 4, 0.0).sum().item() == 0


def test_patterns_are_zero_one():
    for name, rows in PATTERNS.items():
        board = place_pattern(name, 8, 8, 2, 2)
        assert board.sum().item() == sum(map(sum, rows))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: life_step(torch.zeros(5, 5), boundary="torus"),
     r"boundary must be one of \('wrap', 'dead'\), got 'torus'"),
    (lambda: life_step(np.zeros((5, 5))), "board must be a torch.Tensor, got ndarray"),
    (lambda: life_step(torch.zeros(5)), r"board must have shape \(H, W\) or \(B, H, W\)"),
    (lambda: life_step(torch.zeros(2, 5, 2)), r"board must be at least 3x3, got \(5, 2\)"),
    (lambda: life_step(torch.full((4, 4), 2)), "board must contain only 0 .dead. and 1 .alive."),
    (lambda: life_step(torch.full((4, 4), math.nan)), "board must contain only 0"),
    (lambda: life_run(torch.zeros(4, 4), -1), "steps must be an int >= 0, got -1"),
    (lambda: life_run(torch.zeros(4, 4), 2.0), "steps must be an int >= 0, got 2.0"),
    (lambda: life_step_reference(np.zeros((2, 4, 4))), r"board must have shape \(H, W\)"),
    (lambda: life_step_reference(np.zeros((4, 4)), "void"), "boundary must be one of"),
    (lambda: random_board(2, 5), "height must be an int >= 3, got 2"),
    (lambda: random_board(5, 5.0), "width must be an int >= 3, got 5.0"),
    (lambda: random_board(5, 5, 1.5), r"density must be in \[0, 1\], got 1.5"),
    (lambda: place_pattern("gosper", 9, 9), "unknown pattern 'gosper'"),
    (lambda: place_pattern("glider", 9, 9, 7, 0), "does not fit a 9x9 board"),
    (lambda: place_pattern("block", 9, 9, 0, -1), "does not fit"),
    (lambda: period(torch.zeros(4, 4), max_steps=0), "max_steps must be an int >= 1, got 0"),
])
def test_game_of_life_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""Augmentations of lesson 4.5 against references: torch.rot90, scipy.ndimage, pad + slice, scipy's
Beta distribution, and exact pixel counts for the labels of mixup and cutmix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage, stats

from neuralarch.vision import augment
from neuralarch.vision.augment import (
    affine_matrices,
    compose,
    cutmix,
    gaussian_noise,
    grid_of,
    images_only,
    mixup,
    random_affine,
    random_crop,
    rotate,
    sample_beta,
    soft_targets,
    warp,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, c: int, h: int, w: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Random positive images, so that no pixel equals the zero fill by accident."""
    return torch.rand(n, c, h, w, generator=_gen(seed), dtype=dtype) + 0.5


def _theta(degrees: float, shift: tuple[float, float], scale: float, h: int, w: int,
           n: int = 1) -> torch.Tensor:
    return affine_matrices(torch.full((n,), degrees, dtype=F64),
                           torch.tensor([shift] * n, dtype=F64),
                           torch.full((n,), scale, dtype=F64), h, w)


def _scipy_warp(image: np.ndarray, degrees: float, shift: tuple[float, float],
                scale: float) -> np.ndarray:
    """The same forward map with scipy: rotate counter-clockwise, scale, shift (right, down)."""
    h, w = image.shape
    a = math.radians(degrees)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])  # (row, col) of the image centre
    # input (row, col) = matrix @ output (row, col) + offset: the inverse of the forward map
    matrix = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / scale
    offset = centre - matrix @ (centre + np.array([shift[1], shift[0]]))
    return ndimage.affine_transform(image, matrix, offset, order=1, mode="grid-constant", cval=0.0)


# ---- geometry: affine_matrices, warp, rotate -----------------------------------------------------


@pytest.mark.parametrize("size", [5, 9, 28])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate_by_multiples_of_90_equals_rot90(size, k):
    x = _images(3, 2, size, size, seed=k)
    # counter-clockwise as displayed is torch.rot90's direction on dims (H, W)
    torch.testing.assert_close(rotate(x, 90.0 * k), torch.rot90(x, k, dims=(2, 3)),
                               atol=1e-5, rtol=0)


def test_rotate_clockwise_is_negative_angle():
    x = _images(1, 1, 7, 7)
    torch.testing.assert_close(rotate(x, -90.0), torch.rot90(x, -1, dims=(2, 3)),
                               atol=1e-5, rtol=0)


def test_rotate_takes_one_angle_per_image():
    x = _images(2, 1, 9, 9)
    out = rotate(x, torch.tensor([0.0, 180.0]))
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], 2, dims=(1, 2)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (3, 3, 9, 13), (1, 2, 16, 5)])
def test_zero_rotation_and_zero_shift_are_identities(shape):
    x = _images(*shape, dtype=F64)
    torch.testing.assert_close(rotate(x, 0.0), x)
    n, _, h, w = shape
    torch.testing.assert_close(warp(x, _theta(0.0, (0.0, 0.0), 1.0, h, w, n)), x)
    torch.testing.assert_close(random_affine(x, generator=_gen()), x)


@pytest.mark.parametrize(("shift", "expected"), [((2.0, 0.0), (4, 6)), ((0.0, 3.0), (7, 4)),
                                                 ((-3.0, -1.0), (3, 1)), ((1.0, 2.0), (6, 5))])
@pytest.mark.parametrize("hw", [(9, 9), (11, 8)])
def test_shift_moves_a_single_pixel_right_and_down(shift, expected, hw):
    x = torch.zeros(1, 1, *hw, dtype=F64)
    x[0, 0, 4, 4] = 1.0
    out = warp(x, _theta(0.0, shift, 1.0, *hw))
    target = torch.zeros_like(x)
    target[0, 0, expected[0], expected[1]] = 1.0
    torch.testing.assert_close(out, target)


def test_rotation_moves_a_pixel_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9, dtype=F64)
    x[0, 0, 4, 7] = 1.0  # three pixels right of the centre (4, 4)
    out = rotate(x, 90.0)
    assert out[0, 0, 1, 4] == pytest.approx(1.0)  # now three pixels *above* the centre
    assert out.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0])
@pytest.mark.parametrize("hw", [(15, 15), (12, 20)])
def test_scale_about_the_centre_divides_a_ramp(scale, hw):
    h, w = hw
    cols = torch.arange(w, dtype=F64) - (w - 1) / 2  # distance from the centre column
    rows = torch.arange(h, dtype=F64)[:, None] - (h - 1) / 2
    ramp = (cols + 0.5 * rows).expand(h, w)[None, None]  # linear in position
    out = warp(ramp, _theta(0.0, (0.0, 0.0), scale, h, w))
    # pixels that read from inside the input (not the zero fill): |position| / s within bounds
    inner = (cols.abs() / scale <= (w - 1) / 2) & (rows.abs() / scale <= (h - 1) / 2)  # (H, W)
    assert inner.sum() >= 20
    # bilinear interpolation reproduces linear functions exactly, so zooming by s divides by s
    torch.testing.assert_close(out[0, 0][inner], ramp[0, 0][inner] / scale)


@pytest.mark.parametrize(("degrees", "shift", "scale"), [
    (30.0, (0.0, 0.0), 1.0), (-17.0, (1.5, -2.25), 1.0), (45.0, (0.0, 0.0), 0.7),
    (123.0, (-3.0, 2.0), 1.3), (0.0, (0.4, 0.6), 1.0), (200.0, (2.0, 1.0), 0.9)])
@pytest.mark.parametrize("hw", [(11, 11), (10, 17), (19, 8)])
def test_warp_equals_scipy_affine_transform(degrees, shift, scale, hw):
    image = torch.rand(*hw, generator=_gen(3), dtype=F64)
    ours = warp(image[None, None], _theta(degrees, shift, scale, *hw))[0, 0]
    ref = _scipy_warp(image.numpy(), degrees, shift, scale)
    torch.testing.assert_close(ours, torch.from_numpy(ref))


def test_affine_matrices_batch_and_shape_errors():
    theta = affine_matrices(torch.tensor([0.0, 90.0]), torch.zeros(2, 2), torch.ones(2), 5, 7)
    assert theta.shape == (2, 2, 3)
    torch.testing.assert_close(theta[0], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    with pytest.raises(ValueError, match=r"shift \(N, 2\)"):
        affine_matrices(torch.zeros(2), torch.zeros(3, 2), torch.ones(2), 5, 5)
    with pytest.raises(ValueError, match="degrees"):
        affine_matrices(torch.zeros(()), torch.zeros(1, 2), torch.ones(1), 5, 5)
    with pytest.raises(ValueError, match="scale"):
        affine_matrices(torch.zeros(2), torch.zeros(2, 2), torch.ones(3), 5, 5)


def test_warp_nearest_mode_and_theta_errors():
    x = _images(2, 1, 6, 6)
    out = warp(x, _theta(37.0, (0.3, 0.0), 1.0, 6, 6, n=2), mode="nearest")
    values = set(x.unique().tolist()) | {0.0}
    assert set(out.unique().tolist()) <= values  # nearest only copies pixels
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 2, 3\)"):
        warp(x, _theta(0.0, (0.0, 0.0), 1.0, 6, 6, n=3))


def test_random_affine_uses_the_documented_draws():
    x = _images(4, 1, 12, 10)
    out = random_affine(x, max_degrees=20.0, max_shift=2.0, scale=(0.8, 1.2), generator=_gen(5))
    g = _gen(5)
    angles = -20.0 + 40.0 * torch.rand(4, generator=g)
    shift = torch.stack([-2.0 + 4.0 * torch.rand(4, generator=g) for _ in range(2)], 1)
    scales = 0.8 + 0.4 * torch.rand(4, generator=g)
    assert angles.abs().max() <= 20 and shift.abs().max() <= 2
    torch.testing.assert_close(out, warp(x, affine_matrices(angles, shift, scales, 12, 10)))


def test_random_affine_rejects_bad_ranges():
    x = _images(1, 1, 5, 5)
    with pytest.raises(ValueError, match="max_degrees >= 0"):
        random_affine(x, max_degrees=-1.0)
    with pytest.raises(ValueError, match="max_shift >= 0"):
        random_affine(x, max_shift=-0.5)
    with pytest.raises(ValueError, match=r"0 < scale\[0\] <= scale\[1\]"):
        random_affine(x, scale=(1.2, 0.8))
    with pytest.raises(ValueError, match=r"scale\[0\]"):
        random_affine(x, scale=(0.0, 1.0))


# ---- random_crop ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "padding"), [((6, 1, 8, 8), 2), ((5, 3, 7, 11), 3),
                                                ((4, 2, 5, 4), 1)])
def test_random_crop_equals_pad_and_slice(shape, padding):
    x = _images(*shape)
    out = random_crop(x, padding, generator=_gen(4))
    offsets = torch.randint(0, 2 * padding + 1, (shape[0], 2), generator=_gen(4))
    padded = F.pad(x, (padding,) * 4)
    h, w = shape[2:]
    for i, (r, c) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, r:r + h, c:c + w])


def _integer_shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift (C, H, W) down by dy and right by dx whole pixels, filling with zeros."""
    p = max(abs(dy), abs(dx))
    h, w = x.shape[1:]
    return F.pad(x, (p,) * 4)[:, p - dy:p - dy + h, p - dx:p - dx + w]


def test_random_crop_only_makes_integer_shifts_within_padding():
    padding = 2
    x = _images(40, 1, 6, 7)
    out = random_crop(x, padding, generator=_gen(1))
    seen = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(-padding, padding + 1)
                   for dx in range(-padding, padding + 1)
                   if torch.equal(out[i], _integer_shift(x[i], dy, dx))]
        assert len(matches) == 1, f"image {i} is not one whole-pixel shift of its input"
        seen.add(matches[0])
    assert len(seen) > 10  # many different shifts are drawn
    assert torch.equal(random_crop(x, 0, generator=_gen()), x)


def test_random_crop_rejects_negative_padding():
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        random_crop(_images(1, 1, 4, 4), -1)


# ---- noise ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("std", [0.1, 0.5])
def test_gaussian_noise_statistics(std):
    x = _images(8, 2, 32, 32)
    noise = gaussian_noise(x, std, generator=_gen(2)) - x
    count = noise.numel()
    assert abs(noise.mean().item()) < 4 * std / math.sqrt(count)
    assert noise.std().item() == pytest.approx(std, rel=4 / math.sqrt(2 * count))
    assert stats.kstest(noise.flatten().double().numpy() / std, "norm").pvalue > 0.01
    assert torch.equal(gaussian_noise(x, 0.0), x)


def test_gaussian_noise_rejects_negative_std():
    with pytest.raises(ValueError, match=r"std must be >= 0, got -0\.1"):
        gaussian_noise(_images(1, 1, 3, 3), -0.1)


@pytest.mark.parametrize("transform", [
    lambda x, g: random_affine(x, 15.0, 2.0, (0.9, 1.1), generator=g),
    lambda x, g: random_crop(x, 2, generator=g),
    lambda x, g: gaussian_noise(x, 0.3, generator=g),
    lambda x, g: mixup(x, torch.arange(len(x)), 10, 0.4, generator=g)[0],
    lambda x, g: cutmix(x, torch.arange(len(x)), 10, 1.0, generator=g)[0],
])
def test_generators_make_draws_reproducible(transform):
    x = _images(6, 1, 10, 10)
    assert torch.equal(transform(x, _gen(7)), transform(x, _gen(7)))
    assert not torch.equal(transform(x, _gen(7)), transform(x, _gen(8)))
    torch.manual_seed(3)  # without a generator, torch's global generator is used
    first = transform(x, None)
    torch.manual_seed(3)
    assert torch.equal(transform(x, None), first)


@pytest.mark.parametrize("fn", [
    lambda x: warp(x, torch.zeros(1, 2, 3)), lambda x: rotate(x, 10.0),
    lambda x: random_affine(x), lambda x: random_crop(x, 1), lambda x: gaussian_noise(x, 0.1),
    lambda x: mixup(x, torch.zeros(1, dtype=torch.long), 2),
    lambda x: cutmix(x, torch.zeros(1, dtype=torch.long), 2)])
def test_non_image_batches_are_rejected(fn):
    with pytest.raises(ValueError, match=r"float batch of images \(N, C, H, W\)"):
        fn(torch.rand(1, 5, 5))  # missing channel axis
    with pytest.raises(ValueError, match=r"dtype torch\.uint8"):
        fn(torch.zeros(1, 1, 5, 5, dtype=torch.uint8))


# ---- labels: soft_targets, sample_beta -----------------------------------------------------------


def test_soft_targets_one_hot_and_passthrough():
    y = torch.tensor([2, 0, 1], dtype=torch.int32)  # any integer dtype
    torch.testing.assert_close(soft_targets(y, 4), torch.eye(4)[[2, 0, 1]])
    probs = torch.softmax(torch.randn(3, 4, generator=_gen()), dim=1)
    assert soft_targets(probs, 4) is probs
    assert soft_targets(torch.zeros(0, dtype=torch.long), 3).shape == (0, 3)


@pytest.mark.parametrize(("y", "match"), [
    (torch.tensor([0, 10]), r"labels must lie in \[0, 10\), got range \[0, 10\]"),
    (torch.tensor([-1, 3]), r"labels must lie in \[0, 10\), got range \[-1, 3\]"),
    (torch.tensor([0.0, 1.0]), r"int labels \(N,\) or probabilities \(N, 10\)"),
    (torch.rand(3, 9), r"got shape \(3, 9\)"),
    (torch.zeros(3, 10, dtype=torch.long), "dtype torch.int64"),
])
def test_soft_targets_rejects_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        soft_targets(y, 10)
    with pytest.raises(ValueError, match=match):
        mixup(_images(len(y), 1, 4, 4), y, 10)
    with pytest.raises(ValueError, match=match):
        cutmix(_images(len(y), 1, 4, 4), y, 10)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_sample_beta_follows_scipy_beta(alpha):
    g = _gen(11)
    draws = np.array([sample_beta(alpha, g) for _ in range(2000)])
    assert draws.min() >= 0 and draws.max() <= 1
    assert stats.kstest(draws, stats.beta(alpha, alpha).cdf).pvalue > 0.01
    # and each draw is exactly the inverse CDF at the generator's uniform number
    g1, g2 = _gen(12), _gen(12)
    for _ in range(5):
        u = float(torch.rand((), generator=g2))
        assert sample_beta(alpha, g1) == pytest.approx(stats.beta.ppf(u, alpha, alpha), abs=1e-9)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_sample_beta_rejects_non_positive_alpha(alpha):
    with pytest.raises(ValueError, match=f"alpha must be > 0, got {alpha}"):
        sample_beta(alpha)


# ---- mixup ---------------------------------------------------------------------------------------


def _class_images(labels: torch.Tensor, h: int = 8, w: int = 8) -> torch.Tensor:
    """Constant images whose pixel value is their label: pixels then reveal where they came from."""
    return labels.float()[:, None, None, None].expand(-1, 1, h, w).clone()


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_blends_images_and_labels_with_one_lambda(alpha):
    y = torch.tensor([3, 1, 4, 0, 5, 9])
    x = _images(6, 2, 5, 7)
    mixed, targets = mixup(x, y, 10, alpha, generator=_gen(2))
    g = _gen(2)
    lam = sample_beta(alpha, g)
    partner = torch.randperm(6, generator=g)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner])
    onehot = F.one_hot(y, 10).float()
    torch.testing.assert_close(targets, lam * onehot + (1 - lam) * onehot[partner])
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    assert targets.min() >= 0


def test_mixup_pixels_and_labels_agree():
    y = torch.tensor([2, 7, 5, 1, 8])
    mixed, targets = mixup(_class_images(y), y, 10, 1.0, generator=_gen(9))
    # each pixel is sum_k weight_k * k when every image's value is its class
    torch.testing.assert_close(mixed[:, 0, 0, 0], targets @ torch.arange(10.0))


def test_mixup_with_lambda_one_is_the_identity(monkeypatch):
    monkeypatch.setattr(augment, "sample_beta", lambda alpha, generator=None: 1.0)
    x, y = _images(4, 1, 6, 6), torch.tensor([0, 1, 2, 3])
    mixed, targets = mixup(x, y, 4, generator=_gen())
    assert torch.equal(mixed, x)
    assert torch.equal(targets, torch.eye(4))


def test_mixup_soft_targets_in_soft_targets_out():
    y = torch.softmax(torch.randn(5, 3, generator=_gen(1)), dim=1)
    x = _images(5, 1, 4, 4)
    _, targets = mixup(x, y, 3, 0.5, generator=_gen(6))
    g = _gen(6)
    lam = sample_beta(0.5, g)
    partner = torch.randperm(5, generator=g)
    torch.testing.assert_close(targets, lam * y + (1 - lam) * y[partner])
    torch.testing.assert_close(targets.sum(1), torch.ones(5))
    # soft targets can be mixed again, e.g. cutmix after mixup
    _, twice = cutmix(x, targets, 3, generator=_gen(7))
    torch.testing.assert_close(twice.sum(1), torch.ones(5))
    # and F.cross_entropy accepts them as class probabilities
    assert torch.isfinite(F.cross_entropy(torch.randn(5, 3), twice))


# ---- cutmix --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(8, 8), (7, 12), (13, 5)])
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_cutmix_label_weight_is_the_pasted_pixel_fraction(hw, alpha):
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    x = _class_images(y, *hw)
    for seed in range(40):  # many boxes, including boxes clipped by the border
        mixed, targets = cutmix(x, y, 8, alpha, generator=_gen(seed))
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        for i in range(8):
            counts = torch.bincount(mixed[i].long().flatten(), minlength=8).float()
            torch.testing.assert_close(targets[i], counts / (hw[0] * hw[1]))


def test_cutmix_pastes_one_axis_aligned_box_from_the_partner():
    y = torch.arange(4)
    x = _images(4, 3, 10, 9)
    mixed, _ = cutmix(x, y, 4, 1.0, generator=_gen(3))
    g = _gen(3)
    sample_beta(1.0, g)
    partner = torch.randperm(4, generator=g)
    changed = (mixed != x).any(1)  # (N, H, W)
    rows, cols = changed.any(2), changed.any(1)  # the box's rows and columns
    for i in range(4):
        if partner[i] == i:
            continue
        box = rows[i][:, None] & cols[i][None, :]
        assert torch.equal(changed[i], box)  # the changed pixels form a rectangle
        assert torch.equal(mixed[i][:, box], x[partner[i]][:, box])
    assert changed.any()


@pytest.mark.parametrize(("lam", "pasted"), [(1.0, 0.0), (0.75, None)])
def test_cutmix_box_size_follows_lambda(monkeypatch, lam, pasted):
    monkeypatch.setattr(augment, "sample_beta", lambda alpha, generator=None: lam)
    y = torch.arange(6)
    x = _class_images(y, 16, 16)
    mixed, targets = cutmix(x, y, 6, generator=_gen(1))
    own = targets[torch.arange(6), y]
    if pasted == 0.0:
        assert torch.equal(mixed, x) and torch.equal(targets, torch.eye(6))
    else:  # an 8x8 box (1 - λ = 1/4 of the area) or less where the border cuts it
        assert (1 - own).max() <= 0.25 + 1e-6 and (1 - own).max() > 0


# ---- composition and plotting helpers ------------------------------------------------------------


def test_compose_applies_steps_in_order():
    x, y = torch.ones(2, 1, 3, 3), torch.tensor([0, 1])
    add = images_only(lambda t: t + 1)
    double = images_only(lambda t: 2 * t)
    assert torch.equal(compose(add, double)(x, y)[0], torch.full_like(x, 4.0))
    assert torch.equal(compose(double, add)(x, y)[0], torch.full_like(x, 3.0))
    same_x, same_y = compose()(x, y)
    assert same_x is x and same_y is y


def test_images_only_leaves_labels_alone_and_composes_with_mixing():
    x, y = _images(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    crop = images_only(lambda t: random_crop(t, 1, generator=_gen(2)))
    out_x, out_y = crop(x, y)
    assert out_y is y and torch.equal(out_x, random_crop(x, 1, generator=_gen(2)))
    pipeline = compose(crop, lambda a, b: mixup(a, b, 4, generator=_gen(3)))
    mixed, targets = pipeline(x, y)
    assert mixed.shape == x.shape and targets.shape == (4, 4)


@pytest.mark.parametrize(("n", "columns"), [(6, 3), (5, 3), (1, 4), (7, 1)])
def test_grid_of_tiles_row_major(n, columns):
    images = _images(n, 2, 4, 5)
    grid = grid_of(images, columns)
    rows = math.ceil(n / columns)
    assert grid.shape == (2, rows * 4, columns * 5)
    for k in range(rows * columns):
        r, c = divmod(k, columns)
        tile = grid[:, r * 4:(r + 1) * 4, c * 5:(c + 1) * 5]
        assert torch.equal(tile, images[k] if k < n else torch.zeros(2, 4, 5))
    assert torch.equal(grid_of(list(images), columns), grid)

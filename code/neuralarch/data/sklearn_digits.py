"""scikit-learn's 8x8 handwritten digits, upsampled to look like MNIST: a small transfer target.

Introduced in week 04 (``w04``). ``sklearn.datasets.load_digits`` ships 1,797 digits of 8x8
pixels with values 0-16, written by different people from MNIST's and digitised differently. We
scale each digit to ``digit_size`` pixels (20, like MNIST's digit box), centre it on a
``size x size`` canvas (28) and divide by 16, so a network trained on MNIST accepts it unchanged.
The 1,797 images are split once with a fixed permutation into train / val / test parts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neuralarch.data.mnist import MNISTSplit

DIGITS_SPLIT_SIZES = {"train": 997, "val": 200, "test": 600}
DIGITS_SPLIT_SEED = 0


def upsample_digits(images: torch.Tensor, size: int = 28, digit_size: int = 20) -> torch.Tensor:
    """Scale (N, 1, h, w) digits to ``digit_size`` pixels and centre them on a ``size`` canvas."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    if not 0 < digit_size <= size:
        raise ValueError(f"need 0 < digit_size <= size, got digit_size={digit_size}, "
                         f"size={size}")
    scaled = F.interpolate(images, size=(digit_size, digit_size), mode="bilinear",
                           align_corners=False)  # (N, 1, digit_size, digit_size)
    before = (size - digit_size) // 2
    after = size - digit_size - before
    return F.pad(scaled, (before, after, before, after)).clamp(0.0, 1.0)  # (N, 1, size, size)


def load_sklearn_digits(split: str = "train", size: int = 28,
                        digit_size: int = 20) -> MNISTSplit:
    """Load one split (train 997 / val 200 / test 600) of the upsampled 8x8 sklearn digits.

    Returns an :class:`~neuralarch.data.mnist.MNISTSplit`, so ``.normalized()`` and
    ``.dataset()`` standardise with MNIST's training mean and std, as an MNIST model expects.
    """
    if split not in DIGITS_SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(DIGITS_SPLIT_SIZES)}, got {split!r}")
    from sklearn.datasets import load_digits  # imported here: no work at package import

    bunch = load_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(bunch.target))
    start = 0
    for name, count in DIGITS_SPLIT_SIZES.items():
        if name == split:
            break
        start += count
    index = order[start:start + DIGITS_SPLIT_SIZES[split]]
    pixels = torch.from_numpy(bunch.images[index].astype(np.float32) / 16.0)  # (N, 8, 8)
    images = upsample_digits(pixels.unsqueeze(1), size, digit_size)  # (N, 1, size, size)
    labels = torch.from_numpy(bunch.target[index].astype(np.int64))
    return MNISTSplit(images=images, labels=labels, name=f"sklearn-digits-{split}")

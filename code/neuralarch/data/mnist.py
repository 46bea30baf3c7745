"""MNIST from the shipped official test set, re-split into fixed train / validation / test parts.

Only the 10,000-image official *test* file ships with the book, so the book re-splits it with a
fixed permutation (seed 0): 8,000 train, 1,000 validation and 1,000 test images. Every accuracy
in the book says which of these splits it is on.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neuralarch.data.files import DataFileError, fetch

IMAGES = "mnist-t10k/t10k-images-idx3-ubyte.gz"
LABELS = "mnist-t10k/t10k-labels-idx1-ubyte.gz"
SPLIT_SIZES = {"train": 8000, "val": 1000, "test": 1000}
SPLIT_SEED = 0
# Mean and std of the train split's pixels in [0, 1] (checked by a test).
TRAIN_MEAN, TRAIN_STD = 0.1326, 0.3106


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Map pixels in [0, 1] to the train split's zero mean and unit variance."""
    return (images - TRAIN_MEAN) / TRAIN_STD

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a NumPy array, validating its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataFileError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFileError(
            f"{path} is not an IDX file: its header starts {raw[:4].hex()!r}, expected two zero "
            f"bytes, a type code in {sorted(_IDX_DTYPES)} and a dimension count"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFileError(f"{path}: IDX header declares {ndim} dimensions but is truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFileError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; the file is truncated or not the file it claims to be"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


@dataclass(frozen=True)
class MNISTSplit:
    """One split of MNIST: ``images`` (N, 1, 28, 28) float in [0, 1] and ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def normalized(self) -> torch.Tensor:
        """Return the images standardised with the train split's mean and std."""
        return standardize(self.images)

    def dataset(self, normalize: bool = True) -> torch.utils.data.TensorDataset:
        """Return a ``TensorDataset`` of (image, label) pairs for a ``DataLoader``."""
        images = self.normalized() if normalize else self.images
        return torch.utils.data.TensorDataset(images, self.labels)


def split_indices(n: int = 10_000, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Return the fixed indices of the train / val / test splits of the 10,000 images."""
    order = np.random.default_rng(seed).permutation(n)
    cut1, cut2 = SPLIT_SIZES["train"], SPLIT_SIZES["train"] + SPLIT_SIZES["val"]
    return {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}


def load_mnist(split: str = "train", root: str | Path | None = None,
               limit: int | None = None) -> MNISTSplit:
    """Load one split (``"train"``, ``"val"``, ``"test"``) of the book's MNIST re-split.

    ``limit`` keeps only the first ``limit`` examples of the split (still a fixed subset).
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)}, got {split!r}")
    images = read_idx(fetch(IMAGES, root))
    labels = read_idx(fetch(LABELS, root))
    if images.shape != (10_000, 28, 28) or labels.shape != (10_000,):
        raise DataFileError(f"unexpected MNIST shapes {images.shape} and {labels.shape}")
    index = split_indices()[split][:limit]
    x = torch.from_numpy(images[index].astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels[index].astype(np.int64))
    return MNISTSplit(images=x, labels=y, name=split)

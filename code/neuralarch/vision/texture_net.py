"""The book's RGB feature network for style transfer, and the pretext task that trains it.

Introduced in the extra lesson on neural style transfer (``extra-style``). Gatys et al. used
VGG-19 trained on ImageNet; the book ships no ImageNet, so it trains its own small VGG-like
network on data that is available offline: random crops of scikit-learn's two sample
photographs and procedurally generated textures (stripes, checks, dots, rings, grid, smooth
noise) in random colours, frequencies and orientations. The pretext task is to say which of
these eight families a 32-pixel crop comes from. The trained network is cached with
:func:`neuralarch.train.artefacts.cached_model`, so the page trains it once and later loads it.
"""

from __future__ import annotations

import importlib.util
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import TensorDataset

from neuralarch.config import ArchConfig
from neuralarch.repro import derive_seed, make_generator
from neuralarch.train.artefacts import TrainedModel, cached_model
from neuralarch.train.loop import TrainConfig, accuracy, evaluate, fit

TEXTURE_FAMILIES = ("stripes", "checks", "dots", "rings", "grid", "noise")
PHOTOS = ("china", "flower")
CLASSES = (*TEXTURE_FAMILIES, *PHOTOS)  # the eight labels of the pretext task


def _sample_image_path(name: str) -> Path:
    """Where scikit-learn keeps ``name``.jpg, found without importing ``sklearn.datasets``."""
    spec = importlib.util.find_spec("sklearn")  # importing sklearn.datasets takes seconds
    if spec is None or spec.origin is None:
        raise ValueError("the sample photos ship with scikit-learn: pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "images" / f"{name}.jpg"


def load_sample_photo(name: str, size: int | tuple[int, int]) -> torch.Tensor:
    """Return scikit-learn's ``"china"`` or ``"flower"`` photo as a (1, 3, H, W) tensor in [0, 1].

    An int ``size`` is the height (the width keeps the 427 x 640 aspect ratio); a pair is
    ``(H, W)``. Downsizing uses antialiasing, so fine detail is averaged instead of aliased.
    """
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {PHOTOS}, got {name!r}")
    pixels = torch.from_numpy(np.array(Image.open(_sample_image_path(name)))).permute(2, 0, 1)
    height, width = pixels.shape[1:]
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        size = (size, round(size * width / height))
    if not (isinstance(size, tuple) and len(size) == 2 and
            all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"size must be a positive int (height) or a pair (H, W) of positive "
                         f"ints, got {size!r}")
    image = pixels[None].float() / 255.0  # (1, 3, H, W)
    image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    return image.clamp(0.0, 1.0)


def procedural_textures(family: str, n: int, size: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``n`` random two-colour textures of one ``family``, shape (n, 3, size, size)."""
    if family not in TEXTURE_FAMILIES:
        raise ValueError(f"family must be one of {TEXTURE_FAMILIES}, got {family!r}")
    if n < 1 or size < 4:
        raise ValueError(f"need n >= 1 and size >= 4, got n={n}, size={size}")

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, 1, 1, generator=generator)

    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                          torch.arange(size, dtype=torch.float32), indexing="ij")  # (S, S)
    angle = uniform(0.0, math.pi)  # (n, 1, 1)
    u = x * torch.cos(angle) + y * torch.sin(angle)  # (n, S, S) rotated coordinates
    v = -x * torch.sin(angle) + y * torch.cos(angle)
    freq = uniform(1 / 16, 1 / 4)  # cycles per pixel: periods of 4 to 16 pixels
    phase, phase2 = uniform(0.0, 2 * math.pi), uniform(0.0, 2 * math.pi)
    sharp = uniform(2.0, 12.0)  # soft to hard edges
    if family == "stripes":
        mask = 0.5 + 0.5 * torch.tanh(sharp * torch.sin(2 * math.pi * freq * u + phase))
    elif family == "checks":
        s = torch.sin(2 * math.pi * freq * u + phase) * torch.sin(2 * math.pi * freq * v + phase2)
        mask = 0.5 + 0.5 * torch.tanh(sharp * s)
    elif family == "dots":
        du = torch.frac(freq * u + phase / (2 * math.pi) + 8.0) - 0.5  # offset into one period
        dv = torch.frac(freq * v + phase2 / (2 * math.pi) + 8.0) - 0.5
        mask = torch.sigmoid(4 * sharp * (uniform(0.15, 0.35) - torch.sqrt(du**2 + dv**2)))
    elif family == "rings":
        cy, cx = uniform(0.0, 1.0) * size, uniform(0.0, 1.0) * size  # centre inside
        r = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        mask = 0.5 + 0.5 * torch.tanh(sharp * torch.sin(2 * math.pi * freq * r + phase))
    elif family == "grid":  # thin lines along u and along v
        width = uniform(0.1, 0.25)  # line width as a fraction of the period
        du = torch.frac(freq * u + phase / (2 * math.pi) + 8.0)  # position within one period
        dv = torch.frac(freq * v + phase2 / (2 * math.pi) + 8.0)
        mask = torch.sigmoid(4 * sharp * (width - torch.minimum(du, dv)))
    else:  # smooth random field: white noise low-passed in the Fourier domain
        white = torch.randn(n, size, size, generator=generator)
        fy = torch.fft.fftfreq(size)[:, None]  # (S, 1)
        fx = torch.fft.rfftfreq(size)[None, :]  # (1, S // 2 + 1)
        sigma = uniform(0.7, 4.0)  # blur width in pixels
        gain = torch.exp(-2 * math.pi**2 * sigma**2 * (fx**2 + fy**2))  # Gaussian filter
        field = torch.fft.irfft2(torch.fft.rfft2(white) * gain, s=(size, size))
        field = (field - field.mean((1, 2), keepdim=True)) / field.std((1, 2), keepdim=True)
        mask = torch.sigmoid(sharp * field / 2)
    c1 = torch.rand(n, 3, 1, 1, generator=generator)  # background colour
    c2 = torch.remainder(c1 + 0.3 + 0.4 * torch.rand(n, 3, 1, 1, generator=generator), 1.0)
    image = c1 + (c2 - c1) * mask[:, None]  # (n, 3, S, S)
    noise = uniform(0.0, 0.05)[:, None] * torch.randn(n, 3, size, size, generator=generator)
    return (image + noise).clamp(0.0, 1.0)


def photo_crops(photo: torch.Tensor, n: int, size: int, columns: tuple[int, int],
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``n`` random square crops (n, 3, size, size) of ``photo`` (1, 3, H, W).

    Crops have a random side between ``size`` and ``2 * size`` (zoom), lie in the pixel
    ``columns`` range [start, stop), are resized to ``size`` and flipped left-right at random.
    """
    start, stop = columns
    height = photo.shape[2]
    if not 0 <= start < stop <= photo.shape[3] or min(stop - start, height) < size:
        raise ValueError(f"columns {columns} must lie inside the photo's width "
                         f"{photo.shape[3]} and span at least size={size} pixels")
    largest = min(2 * size, stop - start, height)
    crops = []
    for _ in range(n):
        side = int(torch.randint(size, largest + 1, (), generator=generator))
        top = int(torch.randint(0, height - side + 1, (), generator=generator))
        left = start + int(torch.randint(0, stop - start - side + 1, (), generator=generator))
        crop = photo[:, :, top:top + side, left:left + side]  # (1, 3, side, side)
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False)
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.cat(crops)


class TextureNetConfig(ArchConfig):
    """The feature network (a small VGG) and the recipe that trains it on the pretext task."""

    widths: tuple[int, ...] = Field((16, 32, 64, 128), description="channels of each stage")
    convs_per_stage: tuple[int, ...] = Field((1, 1, 1, 1), description="3x3 convs per stage")
    crop_size: int = Field(32, ge=8, description="side of the training crops, pixels")
    photo_height: int = Field(128, ge=32, description="height the photos are resized to")
    train_per_class: int = Field(384, gt=0, description="training crops per class")
    val_per_class: int = Field(128, gt=0, description="validation crops per class")
    epochs: int = Field(12, gt=0, description="passes over the training crops")
    batch_size: int = Field(32, gt=0, description="crops per optimizer step")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate (cosine-annealed to 0)")
    seed: int = Field(0, ge=0, description="seeds initialisation, data and data order")

    @model_validator(mode="after")
    def _stages_match(self) -> TextureNetConfig:
        if len(self.widths) != len(self.convs_per_stage) or not self.widths:
            raise ValueError(f"widths {self.widths} and convs_per_stage {self.convs_per_stage} "
                             f"must be non-empty and of equal length (one entry per stage)")
        if min(self.widths) < 1 or min(self.convs_per_stage) < 1:
            raise ValueError(f"every width and conv count must be >= 1, got widths "
                             f"{self.widths} and convs_per_stage {self.convs_per_stage}")
        return self


class Normalize(nn.Module):
    """Standardise each colour channel with fixed (buffered) mean and std."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, channels, 1, 1), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (N, C, H, W)


class TextureNet(nn.Module):
    """A VGG-like classifier: named ``conv{s}_{i}``/``relu{s}_{i}`` layers, average pooling."""

    def __init__(self, config: TextureNetConfig) -> None:
        super().__init__()
        self.config = config
        layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize())
        channels = 3
        for s, (width, convs) in enumerate(zip(config.widths, config.convs_per_stage,
                                               strict=True), start=1):
            if s > 1:  # Gatys et al.: average pooling looks better than max pooling
                layers[f"pool{s - 1}"] = nn.AvgPool2d(2)
            for i in range(1, convs + 1):
                conv = nn.Conv2d(channels, width, 3, padding=1)
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")  # unit-scale ReLUs
                nn.init.zeros_(conv.bias)
                layers[f"conv{s}_{i}"], layers[f"relu{s}_{i}"] = conv, nn.ReLU()
                channels = width
        self.features = nn.Sequential(layers)  # images in [0, 1] -> last feature map
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, len(CLASSES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, 3, H, W) in [0, 1] to logits (N, 8) over ``CLASSES``."""
        return self.head(self.features(x))


def pretext_dataset(config: TextureNetConfig, split: str) -> TensorDataset:
    """Return the labelled crops of one split (``"train"`` or ``"val"``) of the pretext task.

    Textures are drawn from independent random streams per split; photo crops come from the
    left three quarters of each photo for training and from the unseen right quarter for
    validation.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    per_class = config.train_per_class if split == "train" else config.val_per_class
    generator = make_generator(derive_seed(config.seed, f"texture-{split}"))
    images = [procedural_textures(f, per_class, config.crop_size, generator)
              for f in TEXTURE_FAMILIES]
    for name in PHOTOS:
        photo = load_sample_photo(name, config.photo_height)  # (1, 3, H, W)
        cut = photo.shape[3] * 3 // 4
        columns = (0, cut) if split == "train" else (cut, photo.shape[3])
        images.append(photo_crops(photo, per_class, config.crop_size, columns, generator))
    labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)  # (8 * per_class,)
    return TensorDataset(torch.cat(images), labels)


def train_texture_net(model: TextureNet, config: TextureNetConfig) -> dict[str, float]:
    """Train ``model`` in place on the pretext task; return train/val loss and accuracy."""
    train, val = pretext_dataset(config, "train"), pretext_dataset(config, "val")
    with torch.no_grad():  # standardise inputs with the training set's channel statistics
        images = train.tensors[0]
        model.features.normalize.mean.copy_(images.mean((0, 2, 3), keepdim=True))
        model.features.normalize.std.copy_(images.std((0, 2, 3), keepdim=True))

    def flip(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        upside_down = torch.rand(len(x)) < 0.5  # vertical flips: textures have no "up"
        return torch.where(upside_down[:, None, None, None], x.flip(-2), x), y

    steps = config.epochs * -(-len(train) // config.batch_size)
    fit(model, train, val, F.cross_entropy,
        lambda params: torch.optim.Adam(params, lr=config.lr),
        TrainConfig(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                    device="cpu"),
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
        batch_transform=flip, progress=False)
    scores = {name: evaluate(model, data, F.cross_entropy, {"acc": accuracy})
              for name, data in (("train", train), ("val", val))}
    return {f"{name}_{metric}": value for name, result in scores.items()
            for metric, value in result.items()}


def texture_net(config: TextureNetConfig | None = None, *,
                root: str | Path | None = None) -> TrainedModel[TextureNet]:
    """Return the book's trained texture network (trained on first use, then loaded)."""
    return cached_model("texture-net", config or TextureNetConfig(), TextureNet,
                        train_texture_net, root=root)


def untrained_texture_net(trained: TrainedModel[TextureNet]) -> TextureNet:
    """Return the trained network's exact starting point: same seed, same init, no training.

    The input standardisation is copied from ``trained``, so the two differ only in what
    training changed: the convolution weights.
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
        torch.manual_seed(trained.config.seed)  # what cached_model does before building
        model = TextureNet(trained.config)
    model.features.normalize.load_state_dict(trained.model.features.normalize.state_dict())
    return model.eval()

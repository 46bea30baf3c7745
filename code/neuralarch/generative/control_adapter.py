"""The book's ControlNet-style adapter for the MNIST diffusion model: trained once, cached.

Introduced in lesson 7.5 (``m07-l05``). The control signal is a coarse 7 x 7 version of a digit
(:func:`~neuralarch.generative.image_to_image.coarse_control`), computable for any image. The
adapter trains on the 8,000 training digits with the DDPM loss, the base model frozen and
unconditional (the null class), so whatever steers the samples comes from the control alone.
"""

from __future__ import annotations

import torch
from pydantic import Field
from tqdm.auto import trange

from neuralarch.config import ArchConfig
from neuralarch.data.mnist import load_mnist
from neuralarch.generative.image_to_image import ControlAdapter, coarse_control
from neuralarch.generative.mnist_ddpm import (
    MnistDDPMConfig,
    diffusion_for,
    mnist_ddpm,
    to_model_range,
)
from neuralarch.progress import progress_disabled
from neuralarch.train.artefacts import TrainedModel, cached_model


class ControlAdapterConfig(ArchConfig):
    """The recipe of the cached adapter: its base model, the control and the training run."""

    base: MnistDDPMConfig = Field(MnistDDPMConfig(), description="the frozen base model")
    factor: int = Field(4, gt=0, description="control = block means over factor x factor")
    hint_width: int = Field(16, gt=0, description="channels of the control's small conv stack")
    steps: int = Field(300, gt=0, description="optimizer steps")
    batch_size: int = Field(64, gt=0, description="images per step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (cosine decay)")
    seed: int = Field(0, ge=0, description="seeds initialisation and data order")


def build_control_adapter(config: ControlAdapterConfig) -> ControlAdapter:
    """A fresh adapter around the cached base model (whose weights stay frozen)."""
    return ControlAdapter(mnist_ddpm(config.base).model, hint_width=config.hint_width)


def train_control_adapter(adapter: ControlAdapter,
                          config: ControlAdapterConfig) -> dict[str, float]:
    """Train the adapter's copy, hint stack and zero convolutions; return the losses."""
    images = load_mnist("train").images  # (8000, 1, 28, 28) pixels in [0, 1]
    data, controls = to_model_range(images), coarse_control(images, config.factor)
    diffusion = diffusion_for(config.base)
    gen = torch.Generator().manual_seed(config.seed)
    trainable = [p for p in adapter.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    adapter.train()
    losses = []
    for _ in trange(config.steps, disable=progress_disabled(), desc="adapter"):
        idx = torch.randint(0, len(data), (config.batch_size,), generator=gen)
        control = controls[idx]

        def steered(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
                    control: torch.Tensor = control) -> torch.Tensor:
            return adapter(x, t, None, control=control)  # unconditional base, steered

        loss = diffusion.loss(steered, data[idx], None, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    adapter.eval()
    tail = max(1, len(losses) // 10)
    return {"first_loss": sum(losses[:tail]) / tail, "final_loss": sum(losses[-tail:]) / tail}


def mnist_control_adapter(config: ControlAdapterConfig | None = None
                          ) -> TrainedModel[ControlAdapter]:
    """Return the book's trained ControlNet-style adapter (trained on first use, then cached)."""
    return cached_model("mnist-control-adapter", config or ControlAdapterConfig(),
                        build_control_adapter, train_control_adapter)

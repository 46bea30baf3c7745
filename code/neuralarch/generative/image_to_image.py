"""Image-to-image diffusion: SDEdit, inpainting, and a ControlNet-style adapter.

Introduced in lesson 7.5 (``m07-l05``). All three reuse a trained noise predictor unchanged.
SDEdit (Meng et al., 2022) noises a guide image to an intermediate step and denoises it.
Inpainting puts the known pixels back, noised to the current step, after every reverse step
(the simple *replacement* method; RePaint, Lugmayr et al. 2022, adds resampling on top). The
ControlNet-style adapter (Zhang et al., 2023) trains a copy of the encoder that reads a control
image and feeds the frozen model through zero-initialised convolutions.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.generative.ddim import ddim_sample
from neuralarch.generative.ddpm import Denoiser, Diffusion
from neuralarch.generative.unet import UNet


def sdedit(model: Denoiser, diffusion: Diffusion, guide: torch.Tensor, strength: float,
           steps: int = 20, y: torch.Tensor | None = None, eta: float = 0.0,
           generator: torch.Generator | None = None, clip: float | None = None) -> torch.Tensor:
    """Noise ``guide`` (model range) to step ``t0 = strength * T`` and denoise it with DDIM.

    ``strength`` near 0 returns (almost) the guide; near 1 forgets it and samples afresh.
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    t0 = max(0, round(strength * diffusion.steps) - 1)
    t = torch.full((guide.shape[0],), t0, dtype=torch.long)
    noise = torch.randn(guide.shape, generator=generator)
    x_start = diffusion.q_sample(guide, t, noise)  # (B, ...): the guide at step t0
    return ddim_sample(model, diffusion, tuple(guide.shape), steps, eta=eta, y=y,
                       generator=generator, x_start=x_start, start_step=t0, clip=clip)


def inpaint(model: Denoiser, diffusion: Diffusion, known: torch.Tensor, mask: torch.Tensor,
            steps: int = 50, y: torch.Tensor | None = None, eta: float = 1.0,
            generator: torch.Generator | None = None, clip: float | None = None) -> torch.Tensor:
    """Fill the pixels where ``mask`` is False, keeping ``known`` (model range) where it is True.

    After each reverse step to step ``t``, the known region is replaced by ``known`` noised to
    step ``t`` with :meth:`~neuralarch.generative.ddpm.Diffusion.q_sample`, so the model only
    ever invents the hole.
    """
    if mask.shape[-2:] != known.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} must match the images {tuple(known.shape)}")
    keep = mask.to(known.dtype).expand_as(known)  # (B, C, H, W), 1 = known

    def put_back(x: torch.Tensor, step: int) -> torch.Tensor:
        if step < 0:  # the end of the chain: the known pixels themselves
            return keep * known + (1 - keep) * x
        t = torch.full((known.shape[0],), step, dtype=torch.long)
        noised = diffusion.q_sample(known, t, torch.randn(known.shape, generator=generator))
        return keep * noised + (1 - keep) * x

    return ddim_sample(model, diffusion, tuple(known.shape), steps, eta=eta, y=y,
                       generator=generator, hook=put_back, clip=clip)


def coarse_control(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """A control image: ``images`` averaged over ``factor`` x ``factor`` blocks, blown back up."""
    small = F.avg_pool2d(images, factor)  # (B, C, H / f, W / f)
    return F.interpolate(small, scale_factor=factor, mode="nearest")


def zero_conv(channels: int) -> nn.Conv2d:
    """A 1 x 1 convolution whose weight and bias start at exactly zero."""
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlAdapter(nn.Module):
    """ControlNet-style adapter: a trainable copy of a frozen U-Net's encoder reads a control.

    The copy's features enter the frozen model's skips and bottleneck through zero-initialised
    1 x 1 convolutions, and the control image enters the copy through a small conv stack whose
    last layer is zero too. At initialisation every added term is exactly zero, so the adapted
    model *is* the base model, and training starts from it instead of from noise.
    """

    def __init__(self, base: UNet, control_channels: int = 1, hint_width: int = 16) -> None:
        super().__init__()
        c = base.config
        self.base = base.requires_grad_(False).eval()  # frozen: never updated
        self.copy = copy.deepcopy(base).requires_grad_(True)
        del self.copy.up, self.copy.out_norm, self.copy.out  # only the encoder is copied
        last = nn.Conv2d(hint_width, c.channels[0], 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.hint = nn.Sequential(nn.PixelUnshuffle(c.patch),
                                  nn.Conv2d(control_channels * c.patch**2, hint_width, 3,
                                            padding=1), nn.SiLU(), last)
        self.zero_convs = nn.ModuleList(zero_conv(w) for w in (*c.channels, c.channels[-1]))

    def train(self, mode: bool = True) -> ControlAdapter:
        """Switch the trainable parts; the frozen base always stays in eval mode."""
        super().train(mode)
        self.base.eval()
        return self

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                control: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        """The base model's noise estimate, steered by ``control`` (B, C_ctrl, H, W)."""
        if control is None:
            return self.base(x, t, y)
        emb = self.copy.embed(t, y)  # (B, embed_dim)
        skips, h = self.copy.encode(x, emb, hint=self.hint(control))
        residuals = [scale * conv(f) for conv, f in zip(self.zero_convs, [*skips, h],
                                                        strict=True)]
        return self.base(x, t, y, residuals=residuals)


class Controlled(nn.Module):
    """Bind a control image to an adapter, giving a plain ``model(x, t, y)`` for the samplers."""

    def __init__(self, adapter: ControlAdapter, control: torch.Tensor, scale: float = 1.0) -> None:
        super().__init__()
        self.adapter, self.control, self.scale = adapter, control, scale

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        control = self.control
        if len(control) != len(x):  # classifier-free guidance doubles the batch
            control = control.repeat(len(x) // len(control), *([1] * (control.ndim - 1)))
        return self.adapter(x, t, y, control=control, scale=self.scale)

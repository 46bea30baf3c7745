"""Neural style transfer (Gatys et al.): optimise an image to match content and style statistics.

Introduced in the extra lesson on neural style transfer (``extra-style``). A CNN's feature maps
at a layer say *what* is *where*; their Gram matrix (channel-by-channel correlations averaged
over all positions) keeps *what* and discards *where*, which is what a texture or a painting
style is. :func:`transfer_style` starts from the content photo (or from noise) and changes its
pixels by gradient descent until its deep features match the content image and its Gram
matrices match the style image. The feature network is any ``nn.Sequential`` with named layers,
such as the book's :class:`neuralarch.vision.texture_net.TextureNet`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.repro import make_generator


def _check_images(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, C, H, W), got {shape}")


def _mean_square(x: torch.Tensor) -> float:
    return max(x.pow(2).mean().item(), 1e-12)  # an all-zero target (dead layer) stays finite


def gram_matrix(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Return the Gram matrices (N, C, C) of feature maps (N, C, H, W), averaged over positions.

    ``G[n, i, j] = sum_p F[n, i, p] F[n, j, p] / (H W)``; with ``normalize=False`` the plain sum,
    which grows with the image's area.
    """
    _check_images(features, "features")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)  # (N, C, M): one row per channel, M = H * W positions
    gram = flat @ flat.transpose(1, 2)  # (N, C, C)
    return gram / (h * w) if normalize else gram


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between feature maps and the content image's feature maps."""
    if features.shape != target.shape:
        raise ValueError(f"features {tuple(features.shape)} and target {tuple(target.shape)} "
                         f"must have the same shape (same layer, same image size)")
    return F.mse_loss(features, target)


def style_loss(features: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
               weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """Weighted sum over layers of the mean squared difference of Gram matrices.

    ``features`` maps layer names to feature maps (N, C, H, W), ``target_grams`` the same names
    to the style image's Gram matrices (1 or N, C, C); ``weights`` defaults to ``1 / layers``.
    """
    if not target_grams:
        raise ValueError("target_grams is empty: give at least one style layer")
    missing = [name for name in target_grams if name not in features]
    if missing:
        raise ValueError(f"features lack the style layers {missing}; got {sorted(features)}")
    if weights is None:
        weights = dict.fromkeys(target_grams, 1.0 / len(target_grams))
    elif set(weights) != set(target_grams):
        raise ValueError(f"weights must name exactly the style layers {sorted(target_grams)}, "
                         f"got {sorted(weights)}")
    terms = []
    for name, target in target_grams.items():
        gram = gram_matrix(features[name])  # (N, C, C)
        if gram.shape[1:] != target.shape[1:]:
            raise ValueError(f"layer {name!r}: Gram matrix {tuple(gram.shape)} does not match "
                             f"the target {tuple(target.shape)}")
        terms.append(weights[name] * (gram - target).pow(2).mean())
    return torch.stack(terms).sum()


def total_variation(x: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """Mean ``|difference|**power`` between vertical neighbours plus between horizontal ones."""
    _check_images(x, "x")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    down = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().pow(power)  # (N, C, H - 1, W)
    right = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().pow(power)  # (N, C, H, W - 1)
    return down.mean() + right.mean()


class FeatureExtractor(nn.Module):
    """Run a named ``nn.Sequential`` and return the outputs of the requested layers by name.

    The forward pass stops after the deepest requested layer. The network is used as it is:
    put it in eval mode first if it has dropout or batch norm.
    """

    def __init__(self, body: nn.Sequential, layers: Sequence[str]) -> None:
        super().__init__()
        names = [name for name, _ in body.named_children()]
        unknown = [name for name in layers if name not in names]
        if not layers or unknown:
            raise ValueError(f"layers must be a non-empty list of layer names of the network; "
                             f"unknown: {unknown}; available: {names}")
        self.body = body
        self.layers = tuple(dict.fromkeys(layers))  # requested order, duplicates dropped
        self._last = max(names.index(name) for name in self.layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map images (N, 3, H, W) to ``{layer name: feature map (N, C_l, H_l, W_l)}``."""
        _check_images(x, "x")
        out = {}
        for i, (name, layer) in enumerate(self.body.named_children()):
            x = layer(x)
            if name in self.layers:
                out[name] = x
            if i == self._last:
                break
        return out


class StyleTransferConfig(ArchConfig):
    """Which layers and weights define the loss, and how the image is optimised."""

    content_layers: tuple[str, ...] = Field(("relu2_1",), description="content feature layers")
    style_layers: tuple[str, ...] = Field(("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
                                          description="layers whose Gram matrices define style")
    style_layer_weights: tuple[float, ...] | None = Field(
        None, description="one weight per style layer; None: 1 / number of style layers")
    relative: bool = Field(True, description="divide each layer's content or style term by "
                                             "the mean square of its target (relative errors)")
    content_weight: float = Field(1.0, ge=0, description="alpha: weight of the content loss")
    style_weight: float = Field(3.0, ge=0, description="beta: weight of the style loss")
    tv_weight: float = Field(0.0, ge=0, description="weight of the total-variation penalty")
    steps: int = Field(150, gt=0, description="loss evaluations (forward + backward passes)")
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="L-BFGS or Adam")
    lr: float | None = Field(None, gt=0, description="None: 1.0 for L-BFGS, 0.05 for Adam")
    parametrization: Literal["sigmoid", "clamp"] = Field(
        "sigmoid", description="image = sigmoid(z), or pixels projected back into [0, 1]")
    init: Literal["content", "noise"] = Field("content", description="starting image")
    seed: int = Field(0, ge=0, description="seeds the noise of init='noise'")

    @model_validator(mode="after")
    def _check_layers(self) -> StyleTransferConfig:
        if not self.style_layers or not self.content_layers:
            raise ValueError(f"style_layers {self.style_layers} and content_layers "
                             f"{self.content_layers} must each name at least one layer")
        weights = self.style_layer_weights
        if weights is not None and (len(weights) != len(self.style_layers) or min(weights) < 0):
            raise ValueError(f"style_layer_weights {weights} must hold one weight >= 0 per "
                             f"style layer {self.style_layers}")
        return self

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the loss needs (content layers, then style layers, without repeats)."""
        return tuple(dict.fromkeys((*self.content_layers, *self.style_layers)))

    @property
    def layer_weights(self) -> dict[str, float]:
        """Style layer name -> weight."""
        count = len(self.style_layers)
        weights = self.style_layer_weights or (1.0 / count,) * count
        return dict(zip(self.style_layers, weights, strict=True))


@dataclass
class StyleTransferResult:
    """The optimised image (1, 3, H, W) in [0, 1] and the loss terms at every evaluation."""

    image: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)  # total, content, style, tv

    @property
    def final(self) -> dict[str, float]:
        """The loss terms of the returned image."""
        return {name: values[-1] for name, values in self.history.items()}


class StyleLoss(nn.Module):
    """The total loss of Gatys et al. for fixed content and style images, term by term."""

    def __init__(self, extractor: FeatureExtractor, config: StyleTransferConfig,
                 style: torch.Tensor, content: torch.Tensor | None = None) -> None:
        super().__init__()
        missing = [name for name in config.layers if name not in extractor.layers]
        if missing:
            raise ValueError(f"the extractor does not return the layers {missing}; build it "
                             f"with FeatureExtractor(body, config.layers)")
        _check_images(style, "style")
        self.extractor, self.config = extractor, config
        with torch.no_grad():
            style_features = extractor(style)
            self.target_grams = {name: gram_matrix(style_features[name])
                                 for name in config.style_layers}  # (1, C, C) each
            self.style_weights = config.layer_weights
            self.target_content, self.content_weights = None, {}
            if content is not None:
                _check_images(content, "content")
                content_features = extractor(content)
                self.target_content = {name: content_features[name]
                                       for name in config.content_layers}
                self.content_weights = dict.fromkeys(config.content_layers, 1.0)
        if config.relative:  # each term becomes ||G - A||^2 / ||A||^2, or ||F - P||^2 / ||P||^2
            self.style_weights = {name: weight / _mean_square(self.target_grams[name])
                                  for name, weight in self.style_weights.items()}
            self.content_weights = {name: 1.0 / _mean_square(self.target_content[name])
                                    for name in self.content_weights}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"total", "content", "style", "tv"}`` losses of ``image`` (1, 3, H, W)."""
        config = self.config
        features = self.extractor(image)
        content = torch.zeros(())
        if self.target_content is not None:
            content = torch.stack([weight * content_loss(features[name],
                                                         self.target_content[name])
                                   for name, weight in self.content_weights.items()]).sum()
        style = style_loss(features, self.target_grams, self.style_weights)
        tv = total_variation(image)
        total = (config.content_weight * content + config.style_weight * style
                 + config.tv_weight * tv)
        return {"total": total, "content": content, "style": style, "tv": tv}


def transfer_style(content: torch.Tensor | None, style: torch.Tensor,
                   extractor: FeatureExtractor, config: StyleTransferConfig | None = None,
                   size: tuple[int, int] | None = None) -> StyleTransferResult:
    """Optimise an image to have ``content``'s features and ``style``'s Gram matrices.

    With ``content=None`` this is texture synthesis: the image (of ``size``, default the style
    image's size) starts from noise and only the style and TV terms count. Images are
    (1, 3, H, W) in [0, 1]; ``history`` holds the loss terms at every evaluation, and one last
    entry for the returned image.
    """
    config = config or StyleTransferConfig()
    _check_images(style, "style")
    if content is None:
        if config.init == "content":
            raise ValueError("init='content' needs a content image; use init='noise' for "
                             "texture synthesis (content=None)")
        height, width = size or tuple(style.shape[2:])
    else:
        _check_images(content, "content")
        if size is not None:
            raise ValueError(f"size={size} is only for texture synthesis (content=None); the "
                             f"result has the content image's size, so resize the content")
        if content.shape[0] != 1 or content.shape[1] != style.shape[1]:
            raise ValueError(f"content {tuple(content.shape)} must be one image with the "
                             f"style image's {style.shape[1]} channels")
        height, width = content.shape[2:]
    loss_fn = StyleLoss(extractor, config, style, content)
    if config.init == "content":
        start = content.clone()
    else:
        start = torch.rand(1, style.shape[1], height, width, generator=make_generator(config.seed))
    sigmoid = config.parametrization == "sigmoid"
    # sigmoid: every real z is a valid image, nothing to clamp; clamp: z are the pixels
    z = torch.logit(start.clamp(1e-3, 1 - 1e-3)) if sigmoid else start.clamp(0, 1)
    z.requires_grad_(True)

    def to_image(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z) if sigmoid else z

    history: dict[str, list[float]] = {"total": [], "content": [], "style": [], "tv": []}

    def closure() -> torch.Tensor:
        if not sigmoid:
            with torch.no_grad():
                z.clamp_(0, 1)  # project back into the valid range before every evaluation
        z.grad = None
        losses = loss_fn(to_image(z))
        losses["total"].backward(inputs=[z])  # gradients for the image only, not the network
        for name, value in losses.items():
            history[name].append(value.item())
        return losses["total"]

    if config.optimizer == "adam":
        optimizer = torch.optim.Adam([z], lr=config.lr or 0.05)
        for _ in range(config.steps):
            optimizer.step(closure)
    else:
        optimizer = torch.optim.LBFGS([z], lr=config.lr or 1.0, history_size=50,
                                      line_search_fn="strong_wolfe",
                                      tolerance_grad=0.0, tolerance_change=0.0)
        while (left := config.steps - len(history["total"])) > 0:
            optimizer.param_groups[0].update(max_iter=left, max_eval=left)
            optimizer.step(closure)
            if len(history["total"]) == config.steps - left + 1:  # stalled: no descent left
                break
    with torch.no_grad():
        image = to_image(z).clamp(0, 1).detach()
        final = loss_fn(image)
    for name, value in final.items():  # the last entry is the returned image's loss
        history[name].append(value.item())
    return StyleTransferResult(image=image, history=history)

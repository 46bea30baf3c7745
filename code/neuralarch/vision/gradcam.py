"""Grad-CAM (Selvaraju et al., 2017): a class heat map from any convolutional layer of a model.

Introduced in the interpretability lesson (``extra-interp``). A forward hook on ``target_layer``
catches its output feature maps :math:`A^k`; autograd gives the gradient of the class score with
respect to them; each map is weighted by its spatially averaged gradient, the weighted sum goes
through a ReLU and is upsampled bilinearly to the input size. The hook is removed and the modes of
every submodule are restored before :func:`grad_cam` returns, whatever happens in between.
Parameter gradients (``.grad``) are not touched, and in-place operations after the target layer
do not change the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.vision.attribution import Target, check_inputs, evaluation_mode, select_scores


def grad_cam(model: nn.Module, x: torch.Tensor, target_layer: nn.Module,
             target: Target = None) -> torch.Tensor:
    """Return Grad-CAM heat maps (N, H, W) of ``target`` at ``target_layer``, non-negative.

    ``target`` is one class index for every image, an (N,) tensor of indices, or None for the
    predicted class. ``target_layer`` must be a submodule of ``model`` whose output is a
    feature map (N, C, h, w); the maps are upsampled from (h, w) to the input's (H, W) but not
    normalised, so their values stay comparable between images and classes.
    """
    check_inputs(model, x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W) for Grad-CAM, got shape "
                         f"{tuple(x.shape)}")
    if not isinstance(target_layer, nn.Module) or not any(
            m is target_layer for m in model.modules()):
        raise ValueError(f"target_layer must be a submodule of model, got "
                         f"{type(target_layer).__name__}")
    captured: list[torch.Tensor] = []

    def keep_output(_module: nn.Module, _inputs: object, output: object) -> object:
        captured.append(output)  # type: ignore[arg-type]
        # pass a copy on, so an in-place op downstream (ReLU(inplace=True)) cannot overwrite the
        # maps we keep or re-route their gradient
        return output.clone() if isinstance(output, torch.Tensor) else output

    handle = target_layer.register_forward_hook(keep_output)
    try:
        with evaluation_mode(model), torch.enable_grad():
            # the input requires grad so that the feature maps do even for a frozen model
            logits = model(x.detach().requires_grad_(True))  # (N, K)
            scores, _ = select_scores(logits, target)  # (N,)
            if len(captured) != 1:
                raise ValueError(f"target_layer must run exactly once per forward pass, it ran "
                                 f"{len(captured)} times")
            maps = captured[0]
            if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or maps.shape[0] != len(x):
                shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps)
                raise ValueError(f"target_layer must output feature maps (N, C, h, w) with "
                                 f"N={len(x)}, got {shape}")
            # images are independent in eval mode, so the gradient of the sum is per image
            (grads,) = torch.autograd.grad(scores.sum(), maps)  # (N, C, h, w)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k: (N, C, 1, 1)
    cam = F.relu((weights * maps.detach()).sum(dim=1, keepdim=True))  # (N, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0].clamp_min(0.0)  # (N, H, W); clamp only removes rounding below zero

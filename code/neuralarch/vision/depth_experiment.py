"""Why depth needs skips: deep plain and residual networks, their gradients at init and training.

Introduced in lesson 4.1 (``m04-l01``). :func:`deep_config` builds the same deep, narrow
:class:`~neuralarch.vision.resnet.ResNet` with or without skip connections;
:func:`block_input_gradients` measures how large the loss gradient is at the input of every
block, from the output back to the input; :func:`train_for_steps` trains a network for a fixed
number of steps and returns its loss history, so plain and residual nets can be compared.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from neuralarch.repro import seed_everything
from neuralarch.train.loop import History, TrainConfig, fit
from neuralarch.vision.resnet import BasicBlock, ResNet, ResNetConfig


def deep_config(blocks_per_stage: int, residual: bool, zero_init_residual: bool = True,
                widths: tuple[int, int, int] = (8, 16, 32)) -> ResNetConfig:
    """Return a three-stage MNIST ResNet config with ``2 + 6 * blocks_per_stage`` layers."""
    if isinstance(blocks_per_stage, bool) or not isinstance(blocks_per_stage, int) \
            or blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be an int >= 1, got {blocks_per_stage!r}")
    return ResNetConfig(widths=widths, blocks=(blocks_per_stage,) * 3, strides=(2, 2, 2),
                        residual=residual, zero_init_residual=zero_init_residual)


def weighted_layers(config: ResNetConfig) -> int:
    """Count layers as He et al. do: the stem conv, two convs per block and the linear head."""
    return 1 + 2 * sum(config.blocks) + 1


def block_input_gradients(model: ResNet, x: torch.Tensor, y: torch.Tensor,
                          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                          = F.cross_entropy) -> list[float]:
    """Return the RMS of d loss / d input of every block, first block first.

    The model runs in its current mode (train mode: BatchNorm uses batch statistics, as during
    training). Only the block inputs are differentiated, so no ``.grad`` is touched.
    """
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    if not blocks:
        raise ValueError("model has no BasicBlock; block_input_gradients needs a ResNet")
    inputs: list[torch.Tensor] = []
    hooks = [block.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
             for block in blocks]
    try:
        loss = loss_fn(model(x), y)
    finally:
        for hook in hooks:
            hook.remove()
    grads = torch.autograd.grad(loss, inputs)  # one (N, C, H, W) gradient per block
    return [g.pow(2).mean().sqrt().item() for g in grads]


def train_for_steps(config: ResNetConfig, data: Dataset, steps: int, lr: float = 3e-3,
                    batch_size: int = 32, seed: int = 0,
                    log_every: int = 10) -> tuple[nn.Module, History]:
    """Build ``ResNet(config)`` from ``seed`` and train it with Adam for ``steps`` steps."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    seed_everything(seed)  # the same seed gives the same initial weights for every config
    model = ResNet(config)
    per_epoch = -(-len(data) // batch_size)  # batches per epoch, the last one may be smaller
    epochs = -(-steps // per_epoch)  # enough epochs to reach `steps`; max_steps stops there
    history = fit(model, data, None, F.cross_entropy,
                  lambda params: torch.optim.Adam(params, lr=lr),
                  TrainConfig(epochs=epochs, batch_size=batch_size, max_steps=steps,
                              log_every=log_every, seed=seed, device="cpu"),
                  progress=False)
    return model, history

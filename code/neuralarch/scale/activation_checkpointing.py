"""Activation checkpointing: keep only block inputs, recompute the rest in the backward pass.

Introduced in lesson 10.4 (``m10-l04``). Backpropagation needs the activations the forward pass
computed; a deep network's activations can outweigh its parameters. Checkpointing a block with
``torch.utils.checkpoint.checkpoint`` stores only the block's input and runs the block's forward
again during the backward pass (Chen et al., 2016): memory for about one extra forward.
:func:`saved_tensor_bytes` measures what autograd keeps, with ``saved_tensors_hooks``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    """A residual MLP block: ``x + W2 gelu(W1 LayerNorm(x))`` with a 4x wider hidden layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output, shape of ``x``: (B, W)."""
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))  # (B, W)


class DeepMLP(nn.Module):
    """A stack of :class:`Block` s; with ``checkpointing=True`` every block is checkpointed."""

    def __init__(self, width: int = 128, depth: int = 8, checkpointing: bool = False) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the blocks; checkpointed ones keep only their input for the backward pass."""
        for block in self.blocks:
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)  # recomputed in backward
            else:
                x = block(x)
        return x


def saved_tensor_bytes(fn: Callable[[], torch.Tensor],
                       exclude: Iterable[torch.Tensor] = ()) -> int:
    """Run ``fn`` (a forward pass) and return the bytes autograd saved for the backward pass.

    Every tensor autograd packs passes through the pack hook; tensors are counted once per
    storage. Pass the model's parameters as ``exclude``: they exist anyway, so saving a
    reference to them costs nothing.
    """
    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in exclude}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = fn()
    output.sum().backward()  # the checkpointed blocks pack their recomputed tensors here
    return sum(seen.values())

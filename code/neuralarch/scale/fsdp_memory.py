"""Measure the model-state bytes each rank holds under DDP and FSDP (``fully_shard``).

Introduced in lesson 10.2 (``m10-l02``). Runs under ``torchrun`` on gloo CPU processes: one
Adam step of the same MLP wrapped in ``DistributedDataParallel`` and in FSDP2's
``fully_shard``, then counts the bytes of the rank's parameters, gradients and Adam moments
(``DTensor.to_local()`` for the sharded ones). fp32 training here, so the account of
:func:`neuralarch.scale.memory.memory_per_gpu` applies with 4 + 4 + 8 bytes per parameter.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # a DTensor's shard on this rank


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Return the bytes of parameters, gradients and optimizer tensors held by this rank."""
    params = [_local(p) for p in model.parameters()]
    grads = [_local(p.grad) for p in model.parameters() if p.grad is not None]
    moments = [_local(v) for s in optimizer.state.values() for k, v in s.items() if k != "step"]
    return {name: sum(t.numel() * t.element_size() for t in group)
            for name, group in (("params", params), ("grads", grads), ("optimizer", moments))}


def build_mlp(width: int, seed: int = 0) -> nn.Sequential:
    """Return the measured model: Linear(W, 4W) -> ReLU -> Linear(4W, W)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))


def one_step(model: nn.Module, width: int) -> torch.optim.Optimizer:
    """Take one Adam step on a fixed batch (the same on every rank) and return the optimizer."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(8, width, generator=torch.Generator().manual_seed(1))
    model(x).square().mean().backward()
    optimizer.step()
    return optimizer


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``torchrun``: measure DDP and FSDP; rank 0 writes JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world = dist.get_world_size()
    ddp = DistributedDataParallel(build_mlp(args.width))
    ddp_bytes = state_bytes(ddp, one_step(ddp, args.width))
    sharded = build_mlp(args.width)
    for layer in sharded:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)  # each Linear is one FSDP unit, gathered just in time
    fully_shard(sharded)
    fsdp_bytes = state_bytes(sharded, one_step(sharded, args.width))
    full = {n: p.full_tensor() for n, p in sharded.named_parameters()}  # all-gathers
    gap = max((full[n] - p).abs().max().item() for n, p in ddp.module.named_parameters())
    every: list = [None] * world
    dist.all_gather_object(every, {"ddp": ddp_bytes, "fsdp": fsdp_bytes})
    if dist.get_rank() == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "world_size": world, "n_params": sum(p.numel() for p in ddp.parameters()),
            "ranks": every, "max_param_gap": gap}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Data-parallel training with ``DistributedDataParallel``, checkpointed so it survives a crash.

Introduced in lesson 10.1 (``m10-l01``); the fault-tolerance part in lesson 10.4 (``m10-l04``).
Run it with ``torchrun --nproc-per-node=2 -m neuralarch.scale.ddp_train --out run.pt``. Every
rank draws the same batch indices from the (identically seeded) global generator and trains on
its own slice; DDP averages the gradients, so the parameters follow single-process training on
the full batch (:func:`train_single_process`). With ``--ckpt-dir`` rank 0 writes a checkpoint
(model, optimizer, scheduler, RNG, step) every ``--ckpt-every`` steps and a restarted group
resumes from it; ``--crash-at`` makes rank 1 kill itself at that step on the first attempt only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from neuralarch.train.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint

CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class DDPRunConfig:
    """A tiny regression run: sizes, optimisation, and the checkpoint / crash settings."""

    steps: int = 8
    batch: int = 16  # the global batch, split evenly over the ranks
    n_examples: int = 256
    features: int = 8
    hidden: int = 32
    lr: float = 0.05
    seed: int = 0
    ckpt_every: int = 0  # 0 = no checkpoints
    crash_at: int = -1  # -1 = never crash

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "n_examples", "features", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def make_problem(config: DDPRunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a fixed regression data set ``(x, y)`` of shapes (N, F) and (N, 1)."""
    gen = torch.Generator().manual_seed(config.seed + 1)
    x = torch.randn(config.n_examples, config.features, generator=gen)  # (N, F)
    w = torch.randn(config.features, 1, generator=gen)
    y = torch.sin(x @ w) + 0.1 * torch.randn(config.n_examples, 1, generator=gen)  # (N, 1)
    return x, y


def build_model(config: DDPRunConfig) -> nn.Module:
    """Return the same freshly initialised MLP on every rank (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    return nn.Sequential(nn.Linear(config.features, config.hidden), nn.Tanh(),
                         nn.Linear(config.hidden, config.hidden), nn.Tanh(),
                         nn.Linear(config.hidden, 1))


def build_optimizer(model: nn.Module, config: DDPRunConfig
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Return AdamW and a step-decay schedule: both have state a checkpoint must keep."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    return optimizer, scheduler


def train_loop(model: nn.Module, config: DDPRunConfig, rank: int = 0, world: int = 1,
               ckpt_dir: Path | None = None) -> list[float]:
    """Train ``model`` (plain or DDP-wrapped) for ``config.steps`` steps; return the losses.

    Each step draws ``config.batch`` indices from the global generator (identical on every
    rank) and rank ``r`` keeps rows ``r::world`` of them. With ``ckpt_dir`` the loop resumes
    from its checkpoint if there is one.
    """
    if config.batch % world:
        raise ValueError(f"batch={config.batch} must be divisible by the world size {world}")
    x, y = make_problem(config)
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    optimizer, scheduler = build_optimizer(model, config)
    start, losses = 0, []
    checkpoint = ckpt_dir / CHECKPOINT_NAME if ckpt_dir is not None else None
    if checkpoint is not None and checkpoint.is_file():
        payload = load_checkpoint(checkpoint, inner, optimizer, scheduler)
        restore_rng_state(payload["rng"])
        start, losses = payload["extra"]["step"], list(payload["extra"]["losses"])
    for step in range(start, config.steps):
        if step == config.crash_at and rank == 1 \
                and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            os.kill(os.getpid(), signal.SIGKILL)  # a worker dies: hardware fault, OOM kill...
        index = torch.randperm(config.n_examples)[:config.batch]  # same on every rank
        mine = index[rank::world]  # (batch / world,)
        loss = nn.functional.mse_loss(model(x[mine]), y[mine])
        optimizer.zero_grad()
        loss.backward()  # DDP all-reduces (averages) the gradients here
        optimizer.step()
        scheduler.step()
        total = loss.detach().clone()
        if world > 1:
            dist.all_reduce(total)
        losses.append(total.item() / world)
        if checkpoint is not None and config.ckpt_every and (step + 1) % config.ckpt_every == 0:
            if rank == 0:
                save_checkpoint(checkpoint, inner, optimizer, scheduler,
                                extra={"step": step + 1, "losses": losses})
            if world > 1:
                dist.barrier()  # nobody runs ahead of a checkpoint that is not on disk yet
    return losses


def train_single_process(config: DDPRunConfig) -> tuple[nn.Module, list[float]]:
    """The reference: one process, the full batch each step. Returns the model and losses."""
    torch.manual_seed(config.seed)
    model = build_model(config)
    losses = train_loop(model, config)
    return model, losses


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``torchrun``: train with DDP and let rank 0 write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where rank 0 writes results")
    parser.add_argument("--ckpt-dir", type=Path, default=None)
    for name, default in asdict(DDPRunConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    config = DDPRunConfig(**{k: getattr(args, k) for k in asdict(DDPRunConfig())})
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # "nccl" on GPUs, with device_ids=[local_rank] below
    rank, world = dist.get_rank(), dist.get_world_size()
    started = time.perf_counter()
    model = DistributedDataParallel(build_model(config))  # broadcasts rank 0's weights
    losses = train_loop(model, config, rank, world, args.ckpt_dir)
    if rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.module.state_dict(), args.out)
        args.out.with_suffix(".json").write_text(json.dumps({
            "world_size": world, "losses": losses, "seconds": time.perf_counter() - started,
            "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
            "nodes": world // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

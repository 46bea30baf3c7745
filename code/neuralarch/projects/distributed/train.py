"""Project 10's training script: a small CNN on the book's MNIST split, trained with DDP.

Introduced in Project 10 (``m10-l06``). The same file runs on a laptop
(``torchrun --nproc-per-node=2 -m neuralarch.projects.distributed.train ...``, gloo on CPU) and on
a GPU cluster (``srun torchrun --nnodes=$SLURM_NNODES ...``, NCCL, one GPU per process): it reads
its rank, world size and local rank from the environment ``torchrun`` sets, shards the data with
a ``DistributedSampler``, checkpoints every epoch to ``--ckpt-dir`` and resumes from there after
a restart, and rank 0 writes the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from neuralarch.data.mnist import load_mnist
from neuralarch.train.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint


def small_cnn() -> nn.Module:
    """Return the project's CNN: two 3x3 convs, max-pooling, a linear head (6,090 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 14, 14)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 7, 7)
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32 * 4, 10),  # (B, 10)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the script's flags (the same ones in the book and in ``train.sbatch``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        parser.error(f"need epochs >= 1, batch-size >= 1, lr > 0; got {args.epochs}, "
                     f"{args.batch_size}, {args.lr}")
    return args


def evaluate(model: nn.Module, split: str, device: torch.device, rank: int, world: int) -> float:
    """Return the accuracy on ``split``: each rank scores a shard, the counts are all-reduced."""
    data = load_mnist(split)
    x = data.normalized()[rank::world].to(device)
    y = data.labels[rank::world].to(device)
    model.eval()
    with torch.no_grad():
        counts = torch.tensor([(model(x).argmax(1) == y).sum().item(), len(y)],
                              dtype=torch.float64, device=device)
    model.train()
    dist.all_reduce(counts)
    return (counts[0] / counts[1]).item()


def main(argv: list[str] | None = None) -> None:
    """Train, checkpoint each epoch, evaluate, and let rank 0 write ``--out`` (JSON)."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)  # same initial weights everywhere (DDP broadcasts rank 0's too)
    model = DistributedDataParallel(small_cnn().to(device),
                                    device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = load_mnist("train", limit=args.limit_train)
    sampler = DistributedSampler(train.dataset(), num_replicas=world, rank=rank,
                                 shuffle=True, seed=args.seed)
    loader = DataLoader(train.dataset(), batch_size=args.batch_size, sampler=sampler)
    checkpoint = args.ckpt_dir / "last.pt" if args.ckpt_dir is not None else None
    start_epoch, history = 0, []
    if checkpoint is not None and checkpoint.is_file():  # a restarted job continues here
        payload = load_checkpoint(checkpoint, model.module, optimizer)
        restore_rng_state(payload["rng"])
        start_epoch, history = payload["extra"]["epoch"], payload["extra"]["history"]
    started = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        total = torch.zeros(2, dtype=torch.float64, device=device)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()  # gradients all-reduced across every process of every node
            optimizer.step()
            total += torch.tensor([loss.item() * len(y), len(y)], dtype=torch.float64,
                                  device=device)
        dist.all_reduce(total)
        history.append((total[0] / total[1]).item())
        if checkpoint is not None:
            if rank == 0:  # on a cluster: a path on shared storage every node can read
                save_checkpoint(checkpoint, model.module, optimizer,
                                extra={"epoch": epoch + 1, "history": history})
            dist.barrier()
    seconds = time.perf_counter() - started
    val, test = (evaluate(model.module, s, device, rank, world) for s in ("val", "test"))
    if rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "world_size": world, "backend": dist.get_backend(), "device": str(device),
            "train_examples": len(train), "epochs": args.epochs, "train_loss": history,
            "train_seconds": seconds, "val_accuracy": val, "test_accuracy": test,
            "val_examples": len(load_mnist("val")), "test_examples": len(load_mnist("test")),
            "parameters": sum(p.numel() for p in model.parameters())}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

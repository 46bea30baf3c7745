"""How many bytes each GPU holds for a model under DDP, ZeRO-1/2/3 (= FSDP full sharding).

Introduced in lesson 10.2 (``m10-l02``). The account of Rajbhandari et al. (2020) for mixed
precision Adam: per parameter, 2 bytes of fp16/bf16 weights, 2 bytes of fp16/bf16 gradients and
``K = 12`` bytes of optimizer state (an fp32 master copy, Adam's first and second moments).
DDP replicates all of it on every GPU; ZeRO stage 1 shards the optimizer state over the ``N``
data-parallel GPUs, stage 2 also the gradients, stage 3 (FSDP) also the weights. Activations
and temporary buffers come on top and are not counted here.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("ddp", "zero1", "zero2", "zero3")


@dataclass(frozen=True)
class MemoryAccount:
    """Bytes per GPU for weights, gradients and optimizer state under one strategy."""

    strategy: str
    params: float
    grads: float
    optimizer: float

    @property
    def total(self) -> float:
        """All model-state bytes on one GPU."""
        return self.params + self.grads + self.optimizer


def memory_per_gpu(n_params: float, n_gpus: int, strategy: str, param_bytes: int = 2,
                   grad_bytes: int = 2, optimizer_bytes: int = 12) -> MemoryAccount:
    """Return the model-state bytes one GPU holds for ``n_params`` parameters under ``strategy``.

    ``strategy`` is one of ``"ddp"``, ``"zero1"`` (shard optimizer state), ``"zero2"`` (+ shard
    gradients), ``"zero3"`` (+ shard weights; what FSDP's ``FULL_SHARD`` does).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if n_gpus < 1 or n_params <= 0:
        raise ValueError(f"need n_gpus >= 1 and n_params > 0, got {n_gpus}, {n_params}")
    level = STRATEGIES.index(strategy)  # 0 = nothing sharded ... 3 = everything sharded
    shard = 1.0 / n_gpus
    return MemoryAccount(
        strategy=strategy,
        params=n_params * param_bytes * (shard if level >= 3 else 1.0),
        grads=n_params * grad_bytes * (shard if level >= 2 else 1.0),
        optimizer=n_params * optimizer_bytes * (shard if level >= 1 else 1.0),
    )


def communication_per_step(n_params: float, strategy: str, param_bytes: int = 2) -> float:
    """Return the bytes one GPU sends per step (ring algorithms, large ``N`` limit).

    DDP and ZeRO-1/2 move ``2 Psi`` elements (an all-reduce = reduce-scatter + all-gather);
    ZeRO-3 gathers the weights again for the backward pass, ``3 Psi`` in all.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return (3.0 if strategy == "zero3" else 2.0) * n_params * param_bytes


def count_parameters(model: object) -> int:
    """Return the number of parameters of an ``nn.Module``."""
    return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]

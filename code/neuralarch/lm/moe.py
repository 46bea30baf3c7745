"""A sparse mixture-of-experts feed-forward layer (Switch / Mixtral style), and MoE language models.

Introduced in the mixture-of-experts lesson (``extra-mixture-of-experts``). A linear *router*
scores every token against ``n_experts`` SwiGLU feed-forward *experts*; each token is sent to its
``top_k`` best experts and their outputs are mixed with the *gates*. Two gate conventions:

* ``"softmax_topk"`` (Switch, GShard): softmax over **all** experts' logits, then keep the top-k
  probabilities as they are (for k = 1 the gate is the chosen expert's probability, < 1, which is
  what lets the task loss train the router);
* ``"topk_softmax"`` (Mixtral): softmax over the **top-k logits only**, so the gates sum to 1.

Each expert takes at most ``capacity = ceil(capacity_factor * k * tokens / n_experts)``
assignments per batch; later ones are *dropped* (the token gets nothing from that expert and
passes through the block's residual). Priority is GShard's: all first choices before any second
choice, and within a rank, earlier tokens first. The layer also returns the Switch
load-balancing loss ``n_experts * sum_i f_i P_i``, the router z-loss of ST-MoE and usage counts.

:meth:`SparseMoE.dispatch` is the vectorised computation (sort assignments by expert, one batched
call per expert, ``index_add_``); :func:`moe_loop_reference` is the same layer one token at a
time, which the tests hold it equal to, forward and backward.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.transformer import SwiGLU
from neuralarch.lm.pretrain import (
    PretrainConfig,
    lm_loss,
    make_optimizer,
    make_scheduler,
    optimizer_step,
    validation_loss,
)
from neuralarch.lm.shards import RandomWindowSampler
from neuralarch.repro import derive_seed, seed_everything


class MoEConfig(ArchConfig):
    """A sparse MoE feed-forward layer: width, experts, routing, capacity and auxiliary losses."""

    dim: int = Field(64, gt=0, description="model width (input and output size)")
    ffn_dim: int = Field(128, gt=0, description="hidden width of each SwiGLU expert")
    n_experts: int = Field(4, gt=0, description="number of experts")
    top_k: int = Field(1, gt=0, description="experts per token (Switch: 1, Mixtral: 2)")
    gating: Literal["softmax_topk", "topk_softmax"] = Field(
        "softmax_topk", description="softmax over all logits then top-k (Switch), or the reverse")
    capacity_factor: float | None = Field(
        1.25, gt=0, description="expert capacity = factor * k * tokens / experts; None: no limit")
    balance_coef: float = Field(0.01, ge=0, description="weight of the load-balancing loss")
    z_loss_coef: float = Field(0.0, ge=0, description="weight of the router z-loss (ST-MoE)")

    @model_validator(mode="after")
    def _check_routing(self) -> MoEConfig:
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k = {self.top_k} must be <= n_experts = {self.n_experts}")
        if self.top_k == 1 and self.gating == "topk_softmax":
            raise ValueError("top_k = 1 with gating = 'topk_softmax' makes every gate exactly 1, "
                             "so the task loss never trains the router; use 'softmax_topk'")
        return self


@dataclass
class MoEOutput:
    """Everything one MoE forward pass produces."""

    output: torch.Tensor  # (..., D), same shape as the input
    balance_loss: torch.Tensor  # scalar, n_experts * sum_i f_i P_i (1.0 when perfectly even)
    z_loss: torch.Tensor  # scalar, mean over tokens of logsumexp(router logits)^2
    tokens_per_expert: torch.Tensor  # (E,) assignments each expert received, before capacity
    kept_per_expert: torch.Tensor  # (E,) assignments each expert processed
    dropped: int  # assignments over capacity, passed through the residual
    dropped_tokens: int  # tokens whose every assignment was dropped
    capacity: int | None  # slots per expert, None when unlimited


def expert_capacity(tokens: int, config: MoEConfig) -> int | None:
    """Slots per expert for a batch of ``tokens`` tokens: ceil(factor * k * tokens / E)."""
    if config.capacity_factor is None:
        return None
    return math.ceil(config.capacity_factor * config.top_k * tokens / config.n_experts)


class SparseMoE(nn.Module):
    """A router and ``n_experts`` SwiGLU experts; each token uses only its top-k experts."""

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.router = nn.Linear(config.dim, config.n_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(config.dim, config.ffn_dim)
                                     for _ in range(config.n_experts))
        self.last: MoEOutput | None = None  # the statistics of the latest forward pass

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router logits (N, E), chosen experts (N, k) and their gates (N, k) for tokens (N, D)."""
        logits = self.router(x)  # (N, E)
        k = self.config.top_k
        if self.config.gating == "softmax_topk":
            gates, experts = logits.softmax(-1).topk(k, dim=-1)  # (N, k) each
        else:
            top, experts = logits.topk(k, dim=-1)
            gates = top.softmax(-1)  # (N, k), sums to 1 per token
        return logits, experts, gates

    def dispatch(self, x: torch.Tensor) -> MoEOutput:
        """The layer on tokens of any shape (..., D): route, enforce capacity, run, combine."""
        if x.shape[-1] != self.config.dim:
            raise ValueError(f"expected the last dimension to be dim = {self.config.dim}, "
                             f"got input of shape {tuple(x.shape)}")
        flat = x.reshape(-1, x.shape[-1])  # (N, D)
        n, k, e = flat.shape[0], self.config.top_k, self.config.n_experts
        logits, experts, gates = self.route(flat)
        capacity = expert_capacity(n, self.config)

        # one row per (token, choice) assignment, ordered by expert, then rank, then token
        expert_of = experts.T.reshape(-1)  # (k*N,) rank-major: all first choices first
        token_of = torch.arange(n, device=x.device).repeat(k)  # (k*N,)
        gate_of = gates.T.reshape(-1)  # (k*N,)
        order = torch.argsort(expert_of, stable=True)  # stable keeps rank, then token order
        counts = torch.bincount(expert_of, minlength=e)  # (E,) before capacity
        starts = torch.cumsum(counts, 0) - counts  # (E,) first row of each expert
        slot = torch.arange(k * n, device=x.device) - starts[expert_of[order]]  # place in queue
        keep = slot < capacity if capacity is not None else torch.ones_like(slot, dtype=bool)
        order = order[keep]

        out = torch.zeros_like(flat)
        kept = torch.bincount(expert_of[order], minlength=e)  # (E,)
        for i, rows in enumerate(order.split(kept.tolist())):  # one batched call per expert
            if len(rows) == 0:
                continue
            tokens = token_of[rows]  # (n_i,)
            y = self.experts[i](flat[tokens]) * gate_of[rows, None]  # (n_i, D)
            out.index_add_(0, tokens, y)
        served = torch.zeros(n, dtype=torch.bool, device=x.device)
        served[token_of[order]] = True

        balance, z = self.auxiliary_losses(logits, experts)
        return MoEOutput(out.reshape(x.shape), balance, z, counts, kept,
                         int(k * n - len(order)), int(n - served.sum()), capacity)

    def auxiliary_losses(self, logits: torch.Tensor,
                         experts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Switch load-balancing loss E * sum_i f_i P_i and the z-loss, from logits (N, E)."""
        e = self.config.n_experts
        chosen = F.one_hot(experts, e).sum(1).float()  # (N, E), a 1 per chosen expert
        f = chosen.mean(0) / self.config.top_k  # (E,) share of assignments, sums to 1
        p = logits.softmax(-1).mean(0)  # (E,) mean router probability, differentiable
        z = torch.logsumexp(logits, dim=-1).pow(2).mean()
        return e * (f * p).sum(), z

    def weighted_aux_loss(self, output: MoEOutput) -> torch.Tensor:
        """The auxiliary loss training adds: balance_coef * balance + z_loss_coef * z."""
        return (self.config.balance_coef * output.balance_loss
                + self.config.z_loss_coef * output.z_loss)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A drop-in feed-forward: (..., D) -> (..., D); the statistics go to ``self.last``."""
        self.last = self.dispatch(x)
        return self.last.output


def moe_loop_reference(moe: SparseMoE, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The same layer, one token and one choice at a time: the output and the dropped count."""
    flat = x.reshape(-1, x.shape[-1])
    n, k = flat.shape[0], moe.config.top_k
    capacity = expert_capacity(n, moe.config)
    used = [0] * moe.config.n_experts
    rows = [torch.zeros_like(flat[0]) for _ in range(n)]
    dropped = 0
    for rank in range(k):  # all first choices get their slots before any second choice
        for t in range(n):
            _, experts, gates = moe.route(flat[t:t + 1])
            i = int(experts[0, rank])
            if capacity is not None and used[i] >= capacity:
                dropped += 1
                continue
            used[i] += 1
            rows[t] = rows[t] + gates[0, rank] * moe.experts[i](flat[t:t + 1])[0]
    return torch.stack(rows).reshape(x.shape), dropped


# ---------------------------------------------------------------- MoE inside a language model
def moe_layers(model: nn.Module) -> list[SparseMoE]:
    """Every :class:`SparseMoE` inside ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, SparseMoE)]


def use_moe_ffn(model: nn.Module, config: MoEConfig, every: int = 1,
                std: float = 0.02) -> nn.Module:
    """Replace the ``ffn`` of every ``every``-th block of ``model.blocks`` with a SparseMoE.

    Works for the book's ``DecoderLM``, whose blocks call ``self.ffn(self.ffn_norm(x))``. The new
    router and experts are initialised like the DecoderLM's own layers (GPT-2's scheme: N(0,
    std), the residual projection ``down_proj`` N(0, std / sqrt(2 L)) for L blocks), so a dense
    and an MoE model start alike. Returns the same model, changed in place.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    residual_std = std / math.sqrt(2 * len(model.blocks))
    for i, block in enumerate(model.blocks):
        if i % every == 0:
            block.ffn = SparseMoE(config)
            for name, param in block.ffn.named_parameters():
                nn.init.normal_(param, 0.0, residual_std if "down_proj" in name else std)
    return model


def moe_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the weighted auxiliary losses of the model's MoE layers after a forward pass."""
    layers = [m for m in moe_layers(model) if m.last is not None]
    if not layers:
        return torch.zeros(())
    return sum(m.weighted_aux_loss(m.last) for m in layers)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total parameters, and the *active* ones a token uses (its top-k experts only)."""
    total = sum(p.numel() for p in model.parameters())
    idle = 0
    for moe in moe_layers(model):
        per_expert = sum(p.numel() for p in moe.experts[0].parameters())
        idle += (moe.config.n_experts - moe.config.top_k) * per_expert
    return {"total": total, "active": total - idle}


# ---------------------------------------------------------------- training with the auxiliary loss
@dataclass
class MoETrainResult:
    """What :func:`train_moe_lm` returns: losses, speed, and expert usage over training."""

    steps: list[int] = field(default_factory=list)  # steps with a validation record
    train_loss: list[float] = field(default_factory=list)  # mean task loss since the last record
    val_loss: list[float] = field(default_factory=list)  # nats per token
    usage: list[torch.Tensor] = field(default_factory=list)  # per step: (layers, E) shares
    dropped: list[float] = field(default_factory=list)  # per step: share of assignments dropped
    seconds: float = 0.0  # training time, validation excluded
    tokens_per_second: float = 0.0


def train_moe_lm(model: nn.Module, train_tokens: np.ndarray, val_tokens: np.ndarray,
                 config: PretrainConfig) -> MoETrainResult:
    """Pre-train a (B, T) -> (B, T, V) model, adding its MoE layers' auxiliary losses.

    The recipe is :func:`neuralarch.lm.pretrain.pretrain`'s (its optimizer, schedule, sampler
    and validation), with one change: the loss is the task loss plus :func:`moe_aux_loss`, and
    every step records which experts the tokens chose. A dense model (no MoE layer) trains
    exactly as ``pretrain`` would train it.
    """
    model.train()
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    sampler = RandomWindowSampler(train_tokens, config.batch_size, config.context,
                                  derive_seed(config.seed, "data"))
    seed_everything(derive_seed(config.seed, "train"))
    result, window, layers = MoETrainResult(), [], moe_layers(model)
    for step in range(1, config.steps + 1):
        started = time.perf_counter()
        x, y = sampler.next_batch()  # (B, T) each
        task = lm_loss(model(x), y)
        loss = task + moe_aux_loss(model)
        optimizer_step(model, loss, optimizer, scheduler, config.grad_clip)
        result.seconds += time.perf_counter() - started
        window.append(task.item())
        if layers:
            counts = torch.stack([m.last.tokens_per_expert for m in layers]).float()
            result.usage.append(counts / counts.sum(1, keepdim=True))  # (layers, E)
            assigned = sum(int(m.last.tokens_per_expert.sum()) for m in layers)
            result.dropped.append(sum(m.last.dropped for m in layers) / assigned)
        if step % config.eval_every == 0 or step == config.steps:
            result.steps.append(step)
            result.train_loss.append(sum(window) / len(window))
            result.val_loss.append(validation_loss(model, val_tokens, config.context,
                                                   config.eval_windows))
            window = []
    result.tokens_per_second = config.steps * config.batch_size * config.context / result.seconds
    model.eval()
    return result

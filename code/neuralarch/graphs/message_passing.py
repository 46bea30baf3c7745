"""Message passing from scratch: scatter a message per edge into its target node and reduce.

Introduced in lesson 9.2 (``m09-l02``). Every GNN layer of Module 9 is this pattern: compute a
message on each edge ``j -> i``, aggregate the messages arriving at ``i`` with a permutation
invariant function (sum, mean or max), then update ``i``'s state.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralarch.graphs.graph_data import validate_edge_index

REDUCTIONS = ("sum", "mean", "max")


def scatter(src: torch.Tensor, index: torch.Tensor, num_nodes: int,
            reduce: str = "sum") -> torch.Tensor:
    """Reduce the rows of ``src`` (E, ...) that share an ``index`` (E,) into (num_nodes, ...).

    Nodes that receive nothing get zeros, for every reduction (PyG's convention).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if index.dim() != 1 or index.numel() != src.size(0):
        raise ValueError(f"index must be 1-D with one entry per row of src ({src.size(0)}), "
                         f"got shape {tuple(index.shape)}")
    out = torch.zeros((num_nodes, *src.shape[1:]), dtype=src.dtype, device=src.device)
    if reduce == "max":
        expanded = index.view(-1, *[1] * (src.dim() - 1)).expand_as(src)
        return out.scatter_reduce(0, expanded, src, reduce="amax", include_self=False)
    out = out.index_add(0, index, src)  # (N, ...): sum of the incoming rows
    if reduce == "mean":
        count = torch.zeros(num_nodes, device=src.device).index_add_(
            0, index, torch.ones(index.numel(), device=src.device))
        out = out / count.clamp(min=1).view(-1, *[1] * (src.dim() - 1))
    return out


def propagate(x: torch.Tensor, edge_index: torch.Tensor, reduce: str = "sum",
              edge_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Send ``x[source]`` (times an optional weight) along every edge and reduce at the target."""
    validate_edge_index(edge_index, x.size(0))
    source, target = edge_index
    messages = x[source]  # (E, D): one message per edge
    if edge_weight is not None:
        messages = messages * edge_weight.view(-1, 1)
    return scatter(messages, target, x.size(0), reduce)  # (N, D)


class MessagePassingLayer(nn.Module):
    """One generic layer: ``h_i' = ReLU(W_self h_i + W_neigh AGG_{j -> i} h_j)``."""

    def __init__(self, in_dim: int, out_dim: int, reduce: str = "mean") -> None:
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.reduce = reduce
        self.self_proj = nn.Linear(in_dim, out_dim)
        self.neigh_proj = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Update every node from its own state and its aggregated neighbours, (N, out_dim)."""
        aggregated = propagate(x, edge_index, self.reduce)  # (N, in_dim)
        return torch.relu(self.self_proj(x) + self.neigh_proj(aggregated))

"""The detectors of Project 9: a GNN and an MLP that score transactions (edges).

Introduced in Project 9 (``m09-l06``). Laundering is a property of *transactions* (AMLworld labels
payments, and one account may take part in laundering and in honest trade), so both networks
score an edge ``u -> v`` from the states of ``u`` and ``v`` and the amount. The MLP's states are
the accounts' own features; the GNN's states come from two rounds of directed message passing,
with separate weights for money received and money sent, since a fan-in and a fan-out differ
only in direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.graphs.message_passing import scatter


class DirectedSAGELayer(nn.Module):
    """``h_i' = ReLU(W_s h_i + W_in mean_{j->i} [h_j, a_ji] + W_out mean_{i->k} [h_k, a_ik])``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.self_proj = nn.Linear(in_dim, out_dim)
        self.in_proj = nn.Linear(in_dim + 1, out_dim, bias=False)
        self.out_proj = nn.Linear(in_dim + 1, out_dim, bias=False)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor) -> torch.Tensor:
        """Return new account states (N, out_dim); ``edge_attr`` is (E, 1)."""
        source, target = edge_index
        n = h.size(0)
        received = scatter(torch.cat([h[source], edge_attr], 1), target, n, "mean")  # (N, D+1)
        sent = scatter(torch.cat([h[target], edge_attr], 1), source, n, "mean")  # (N, D+1)
        return torch.relu(self.self_proj(h) + self.in_proj(received) + self.out_proj(sent))


class EdgeClassifier(nn.Module):
    """Score edges from ``[h_u, h_v, edge features]``; with ``layers=0`` it is the MLP baseline."""

    def __init__(self, node_dim: int, edge_dim: int, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        dims = [node_dim] + [hidden] * layers
        self.convs = nn.ModuleList(DirectedSAGELayer(dims[i], dims[i + 1]) for i in range(layers))
        self.node_in = nn.Linear(node_dim, hidden) if layers == 0 else None
        self.head = nn.Sequential(nn.Linear(2 * hidden + edge_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                edges: torch.Tensor) -> torch.Tensor:
        """Return one logit per edge in ``edges`` (ids into ``edge_index``), shape (len(edges),)."""
        if self.node_in is not None:
            h = torch.relu(self.node_in(x))  # (N, hidden): no neighbourhood information
        else:
            h = x
            for conv in self.convs:
                h = conv(h, edge_index, edge_attr[:, :1])
        source, target = edge_index[:, edges]
        return self.head(torch.cat([h[source], h[target], edge_attr[edges]], 1)).squeeze(1)


def train_edge_classifier(model: EdgeClassifier, x: torch.Tensor, edge_index: torch.Tensor,
                          edge_attr: torch.Tensor, labels: torch.Tensor,
                          train_edges: torch.Tensor, epochs: int = 150, lr: float = 0.01,
                          weight_decay: float = 1e-4) -> list[float]:
    """Full-batch training with a class-weighted BCE (positives weighted by #neg / #pos)."""
    y = labels[train_edges].float()
    pos_weight = (y.numel() - y.sum()) / y.sum().clamp(min=1)  # counters the 1:100 imbalance
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    model.train()
    for _ in range(epochs):
        logits = model(x, edge_index, edge_attr, train_edges)
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses

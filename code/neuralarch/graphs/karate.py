"""Semi-supervised node classification on Zachary's karate club with our GCN or GAT layers.

Introduced in lesson 9.3 (``m09-l03``). PyG's ``KarateClub`` ships with the library (no
download): 34 members, 78 friendships (156 directed edges), four communities, and one labelled
member per community (``train_mask``). A three-layer GNN ending in a 2-D embedding, followed by a
linear classifier, learns to label the other 30 members; we record the embedding during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from neuralarch.graphs.gat import GATLayer
from neuralarch.graphs.gcn import GCNLayer


def load_karate_club() -> Data:
    """Return PyG's ``KarateClub`` graph as a ``torch_geometric.data.Data`` object."""
    from torch_geometric.datasets import KarateClub

    return KarateClub()[0]


class KarateGNN(nn.Module):
    """Three graph layers down to a 2-D embedding, then a linear classifier."""

    def __init__(self, in_dim: int, num_classes: int, kind: str = "gcn",
                 widths: tuple[int, int, int] = (8, 8, 2)) -> None:
        super().__init__()
        if kind not in ("gcn", "gat"):
            raise ValueError(f"kind must be 'gcn' or 'gat', got {kind!r}")
        dims = (in_dim, *widths)
        make = GCNLayer if kind == "gcn" else (lambda i, o: GATLayer(i, o, heads=1))
        self.convs = nn.ModuleList(make(dims[i], dims[i + 1]) for i in range(len(widths)))
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits (N, classes), embedding (N, 2))``."""
        h = x
        for conv in self.convs:
            h = torch.tanh(conv(h, edge_index))
        return self.classifier(h), h


@dataclass
class KarateResult:
    """What a training run produced: the model, losses, embeddings over time and accuracy."""

    model: KarateGNN
    losses: list[float]
    embeddings: dict[int, torch.Tensor]  # epoch -> (N, 2) embedding before that epoch's step
    accuracy: float  # on the members without a label in training
    predictions: torch.Tensor  # (N,)


def train_karate(kind: str = "gcn", epochs: int = 200, lr: float = 0.01, seed: int = 0,
                 snapshot_epochs: tuple[int, ...] = (0, 20, 60, 200)) -> KarateResult:
    """Train on the four labelled members, evaluate on the 30 others, keep embedding snapshots."""
    data = load_karate_club()
    torch.manual_seed(seed)
    model = KarateGNN(data.num_features, int(data.y.max()) + 1, kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, embeddings = [], {}
    for epoch in range(epochs + 1):
        logits, embedding = model(data.x, data.edge_index)
        if epoch in snapshot_epochs:
            embeddings[epoch] = embedding.detach().clone()
        if epoch == epochs:
            break
        loss = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        predictions = model(data.x, data.edge_index)[0].argmax(dim=1)
    test = ~data.train_mask
    accuracy = (predictions[test] == data.y[test]).float().mean().item()
    return KarateResult(model, losses, embeddings, accuracy, predictions)

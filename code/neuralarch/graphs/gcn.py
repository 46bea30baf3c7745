"""The graph convolutional network (GCN) layer of Kipf and Welling, from scratch.

Introduced in lesson 9.3 (``m09-l03``). The layer equals PyG's ``GCNConv`` once
:func:`load_pyg_gcn` has copied its weights, forward and backward, with and without self-loops
and normalisation, on directed graphs and graphs with isolated nodes.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralarch.graphs.graph_data import validate_edge_index
from neuralarch.graphs.message_passing import scatter


def gcn_norm(edge_index: torch.Tensor, num_nodes: int, edge_weight: torch.Tensor | None = None,
             self_loops: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return edges and weights ``w_ji / sqrt(d_j d_i)``, degrees counted at the target.

    Self-loops of weight 1 are added to nodes that lack one; an existing self-loop keeps its
    weight (PyG's ``add_remaining_self_loops``).
    """
    validate_edge_index(edge_index, num_nodes)
    weight = torch.ones(edge_index.size(1)) if edge_weight is None else edge_weight
    if self_loops:
        is_loop = edge_index[0] == edge_index[1]
        loop_weight = torch.ones(num_nodes, dtype=weight.dtype)
        loop_weight[edge_index[0, is_loop]] = weight[is_loop]  # keep existing loops' weights
        loops = torch.arange(num_nodes).repeat(2, 1)  # (2, N)
        edge_index = torch.cat([edge_index[:, ~is_loop], loops], dim=1)
        weight = torch.cat([weight[~is_loop], loop_weight])
    source, target = edge_index
    deg = torch.zeros(num_nodes, dtype=weight.dtype).index_add_(0, target, weight)  # (N,)
    inv_sqrt = deg.pow(-0.5).masked_fill(deg == 0, 0.0)  # isolated nodes: 0, not inf
    return edge_index, inv_sqrt[source] * weight * inv_sqrt[target]


class GCNLayer(nn.Module):
    """``H' = D^-1/2 (A + I) D^-1/2 H W + b`` as message passing over ``edge_index``."""

    def __init__(self, in_dim: int, out_dim: int, self_loops: bool = True,
                 normalize: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.self_loops, self.normalize = self_loops, normalize
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        nn.init.xavier_uniform_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Return the new node states, (N, out_dim)."""
        num_nodes = x.size(0)
        if self.normalize:
            edge_index, edge_weight = gcn_norm(edge_index, num_nodes, edge_weight,
                                               self.self_loops)
        else:
            validate_edge_index(edge_index, num_nodes)
        h = self.lin(x)  # (N, out): transform first, it is cheaper when out < in
        messages = h[edge_index[0]]  # (E, out)
        if edge_weight is not None:
            messages = messages * edge_weight.view(-1, 1)
        out = scatter(messages, edge_index[1], num_nodes, "sum")  # (N, out)
        return out if self.bias is None else out + self.bias


def load_pyg_gcn(layer: GCNLayer, pyg_conv: nn.Module) -> GCNLayer:
    """Copy the weights of a PyG ``GCNConv`` into ``layer`` (in place) and return it."""
    with torch.no_grad():
        layer.lin.weight.copy_(pyg_conv.lin.weight)
        if layer.bias is not None:
            layer.bias.copy_(pyg_conv.bias)
    return layer

"""The graph attention (GAT) layer of Veličković et al., from scratch.

Introduced in lesson 9.3 (``m09-l03``). Each edge ``j -> i`` gets a score from the two nodes'
transformed features, the scores of the edges arriving at ``i`` are normalised with a softmax,
and ``i`` takes the weighted sum of its neighbours' features, once per head. The layer equals
PyG's ``GATConv`` once :func:`load_pyg_gat` has copied its weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.graphs.graph_data import add_self_loops, validate_edge_index
from neuralarch.graphs.message_passing import scatter


def edge_softmax(scores: torch.Tensor, target: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Softmax of edge scores (E, H) over the edges that share a target node."""
    top = scatter(scores, target, num_nodes, "max")[target]  # (E, H): subtract for stability
    exp = (scores - top).exp()
    return exp / (scatter(exp, target, num_nodes, "sum")[target] + 1e-16)


class GATLayer(nn.Module):
    """Multi-head graph attention; heads are concatenated (``concat=True``) or averaged."""

    def __init__(self, in_dim: int, out_dim: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0, self_loops: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads, self.out_dim, self.concat = heads, out_dim, concat
        self.negative_slope, self.dropout, self.self_loops = negative_slope, dropout, self_loops
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_dim))
        for weight in (self.lin.weight, self.att_src, self.att_dst):
            nn.init.xavier_uniform_(weight)
        size = heads * out_dim if concat else out_dim
        self.bias = nn.Parameter(torch.zeros(size)) if bias else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Return new node states (N, heads*out or out), and optionally ``(edge_index, alpha)``."""
        num_nodes, H, C = x.size(0), self.heads, self.out_dim
        validate_edge_index(edge_index, num_nodes)
        if self.self_loops:
            edge_index = add_self_loops(edge_index, num_nodes)
        source, target = edge_index
        h = self.lin(x).view(num_nodes, H, C)  # (N, H, C)
        score_src = (h * self.att_src).sum(-1)  # (N, H): a_src . W h_j
        score_dst = (h * self.att_dst).sum(-1)  # (N, H): a_dst . W h_i
        scores = F.leaky_relu(score_src[source] + score_dst[target], self.negative_slope)
        alpha = edge_softmax(scores, target, num_nodes)  # (E, H)
        alpha_used = F.dropout(alpha, self.dropout, self.training)
        out = scatter(h[source] * alpha_used.unsqueeze(-1), target, num_nodes)  # (N, H, C)
        out = out.reshape(num_nodes, H * C) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        return (out, (edge_index, alpha)) if return_attention else out


def load_pyg_gat(layer: GATLayer, pyg_conv: nn.Module) -> GATLayer:
    """Copy the weights of a PyG ``GATConv`` (one input size, no edge features) into ``layer``."""
    if getattr(pyg_conv, "lin", None) is None:
        raise ValueError("only GATConv with an int in_channels (one shared `lin`) is supported")
    with torch.no_grad():
        layer.lin.weight.copy_(pyg_conv.lin.weight)
        layer.att_src.copy_(pyg_conv.att_src)
        layer.att_dst.copy_(pyg_conv.att_dst)
        if layer.bias is not None:
            layer.bias.copy_(pyg_conv.bias)
    return layer

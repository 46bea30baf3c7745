"""Tests of neuralarch.graphs.message_passing against dense products and PyG."""

import pytest
import torch
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter as pyg_scatter

from neuralarch.graphs.graph_data import to_dense_adjacency
from neuralarch.graphs.message_passing import MessagePassingLayer, propagate, scatter


class PygCopy(MessagePassing):
    """PyG's MessagePassing with the default message x_j: the reference aggregation."""

    def forward(self, x, edge_index):
        return self.propagate(edge_index, x=x)


def graph(num_nodes, num_edges, seed):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    x = torch.randn(num_nodes, 5, generator=g, dtype=torch.float64)
    return x, edge_index


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("num_nodes, num_edges, seed", [(6, 10, 0), (12, 40, 1), (9, 3, 2)])
def test_scatter_and_propagate_match_pyg(reduce, num_nodes, num_edges, seed):
    x, edge_index = graph(num_nodes, num_edges, seed)  # (9, 3): most nodes receive nothing
    src = x[edge_index[0]]
    expected = pyg_scatter(src, edge_index[1], 0, num_nodes, reduce=reduce)
    torch.testing.assert_close(scatter(src, edge_index[1], num_nodes, reduce), expected)
    aggr = "add" if reduce == "sum" else reduce
    torch.testing.assert_close(propagate(x, edge_index, reduce),
                               PygCopy(aggr=aggr)(x, edge_index))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_propagate_is_a_dense_adjacency_product(reduce):
    x, edge_index = graph(10, 35, 4)
    adjacency = to_dense_adjacency(edge_index, 10).double()  # (N, N), row i = in-edges of i
    if reduce == "mean":
        adjacency = adjacency / adjacency.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(propagate(x, edge_index, reduce), adjacency @ x)


def test_max_gradient_flows_to_the_winning_message():
    x = torch.tensor([[1.0], [3.0], [2.0]], requires_grad=True)
    edge_index = torch.tensor([[0, 1, 2], [2, 2, 0]])
    propagate(x, edge_index, "max").sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0], [1.0], [1.0]]))


def test_bad_reduce_and_index_raise():
    with pytest.raises(ValueError, match="reduce"):
        scatter(torch.ones(3, 2), torch.zeros(3, dtype=torch.long), 2, "median")
    with pytest.raises(ValueError, match="index"):
        scatter(torch.ones(3, 2), torch.zeros(4, dtype=torch.long), 2)


def test_layer_output_shape_and_permutation_equivariance():
    torch.manual_seed(0)
    x, edge_index = graph(8, 20, 5)
    layer = MessagePassingLayer(5, 7).double()
    perm = torch.randperm(8)
    inverse = torch.argsort(perm)
    out = layer(x, edge_index)
    out_perm = layer(x[perm], inverse[edge_index])
    assert out.shape == (8, 7)
    torch.testing.assert_close(out_perm, out[perm])

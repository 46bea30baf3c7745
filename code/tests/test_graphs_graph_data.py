"""Tests of neuralarch.graphs.graph_data: edge_index validation, degrees, adjacency formats."""

import pytest
import torch
from torch_geometric import utils as pyg_utils

from neuralarch.graphs.graph_data import (
    add_self_loops,
    degree,
    from_dense_adjacency,
    remove_self_loops,
    to_dense_adjacency,
    to_sparse_adjacency,
    to_undirected,
    validate_edge_index,
)


def random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_nodes, (2, num_edges), generator=g)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 4, dtype=torch.long), "shape"),
    (torch.zeros(2, 4, dtype=torch.int32), "dtype"),
    (torch.tensor([[0, 5], [1, 2]]), "outside"),
    (torch.tensor([[0, -1], [1, 2]]), "outside"),
])
def test_validation_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_edge_index(bad, num_nodes=5)


@pytest.mark.parametrize("num_nodes, num_edges", [(5, 12), (9, 30), (7, 0)])
@pytest.mark.parametrize("direction", ["in", "out"])
def test_degree_matches_pyg(num_nodes, num_edges, direction):
    edge_index = random_graph(num_nodes, num_edges)
    index = edge_index[1] if direction == "in" else edge_index[0]
    expected = pyg_utils.degree(index, num_nodes)
    torch.testing.assert_close(degree(edge_index, num_nodes, direction), expected)


def test_self_loops_match_pyg():
    edge_index = torch.tensor([[0, 1, 1, 2, 3], [1, 1, 2, 0, 3]])
    expected, _ = pyg_utils.add_self_loops(pyg_utils.remove_self_loops(edge_index)[0],
                                           num_nodes=5)
    assert torch.equal(add_self_loops(edge_index, 5), expected)
    assert torch.equal(remove_self_loops(edge_index), torch.tensor([[0, 1, 2], [1, 2, 0]]))


def test_to_undirected_matches_pyg():
    edge_index = random_graph(8, 20, seed=3)
    expected = pyg_utils.to_undirected(edge_index, num_nodes=8)
    assert torch.equal(to_undirected(edge_index, 8), expected)


@pytest.mark.parametrize("num_nodes, num_edges", [(6, 15), (10, 40)])
def test_dense_and_sparse_round_trips(num_nodes, num_edges):
    edge_index = random_graph(num_nodes, num_edges, seed=num_edges)
    weight = torch.rand(num_edges)
    dense = to_dense_adjacency(edge_index, num_nodes, weight)
    # PyG's to_dense_adj is source-by-target; ours is target-by-source (A @ X aggregates)
    torch.testing.assert_close(dense, pyg_utils.to_dense_adj(edge_index, None, weight,
                                                             num_nodes)[0].t())
    for layout in ("coo", "csr"):
        torch.testing.assert_close(to_sparse_adjacency(edge_index, num_nodes, weight,
                                                       layout).to_dense(), dense)
    back, back_weight = from_dense_adjacency(dense)
    torch.testing.assert_close(to_dense_adjacency(back, num_nodes, back_weight), dense)
    assert back.size(1) == torch.unique(edge_index[0] * num_nodes + edge_index[1]).numel()


def test_duplicate_edges_add_up_in_the_dense_matrix():
    edge_index = torch.tensor([[0, 0, 1], [1, 1, 0]])
    assert to_dense_adjacency(edge_index, 2)[1, 0] == 2

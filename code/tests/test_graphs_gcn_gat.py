"""Tests of neuralarch.graphs.gcn and .gat: equal to PyG's GCNConv and GATConv, both ways."""

import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv

from neuralarch.graphs.gat import GATLayer, edge_softmax, load_pyg_gat
from neuralarch.graphs.gcn import GCNLayer, load_pyg_gcn
from neuralarch.graphs.karate import train_karate

GRAPHS = {
    # directed, with node 5 isolated and a self-loop on node 2
    "directed": (6, torch.tensor([[0, 1, 2, 2, 3, 4, 0], [1, 2, 2, 3, 0, 1, 3]])),
    # undirected (both directions), nodes 6 and 7 isolated
    "undirected": (8, torch.tensor([[0, 1, 1, 2, 2, 3, 4, 5], [1, 0, 2, 1, 3, 2, 5, 4]])),
    # a duplicated edge 0 -> 1
    "duplicates": (4, torch.tensor([[0, 0, 1, 2, 3], [1, 1, 2, 3, 0]])),
    "no edges": (3, torch.empty(2, 0, dtype=torch.long)),
}


def compare(ours, theirs, x, edge_index, **kwargs):
    """Forward and backward of both layers must agree (outputs, input and weight grads)."""
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    out1, out2 = ours(x1, edge_index, **kwargs), theirs(x2, edge_index, **kwargs)
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=1e-6)
    upstream = torch.randn_like(out1)
    (out1 * upstream).sum().backward()
    (out2 * upstream).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(ours.lin.weight.grad, theirs.lin.weight.grad, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("self_loops, normalize", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("in_dim, out_dim", [(5, 3), (3, 7)])
def test_gcn_equals_pyg(name, self_loops, normalize, in_dim, out_dim):
    torch.manual_seed(0)
    num_nodes, edge_index = GRAPHS[name]
    theirs = GCNConv(in_dim, out_dim, add_self_loops=self_loops, normalize=normalize)
    torch.nn.init.normal_(theirs.bias)  # non-zero, so a missing bias would fail
    ours = load_pyg_gcn(GCNLayer(in_dim, out_dim, self_loops, normalize), theirs)
    compare(ours, theirs, torch.randn(num_nodes, in_dim), edge_index)


def test_gcn_edge_weights_equal_pyg():
    torch.manual_seed(1)
    num_nodes, edge_index = GRAPHS["directed"]
    weight = torch.rand(edge_index.size(1)) + 0.1
    theirs = GCNConv(4, 3)
    ours = load_pyg_gcn(GCNLayer(4, 3), theirs)
    x = torch.randn(num_nodes, 4)
    torch.testing.assert_close(ours(x, edge_index, weight), theirs(x, edge_index, weight))


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("heads, concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("self_loops", [True, False])
def test_gat_equals_pyg(name, heads, concat, self_loops):
    torch.manual_seed(0)
    num_nodes, edge_index = GRAPHS[name]
    theirs = GATConv(5, 4, heads=heads, concat=concat, add_self_loops=self_loops)
    torch.nn.init.normal_(theirs.bias)
    ours = load_pyg_gat(GATLayer(5, 4, heads, concat, self_loops=self_loops), theirs)
    compare(ours, theirs, torch.randn(num_nodes, 5), edge_index)
    torch.testing.assert_close(ours.att_src.grad, theirs.att_src.grad, atol=1e-5, rtol=1e-6)


def test_gat_attention_weights_equal_pyg_and_sum_to_one():
    torch.manual_seed(2)
    num_nodes, edge_index = GRAPHS["undirected"]
    theirs = GATConv(5, 4, heads=2)
    ours = load_pyg_gat(GATLayer(5, 4, heads=2), theirs)
    x = torch.randn(num_nodes, 5)
    _, (edges, alpha) = ours(x, edge_index, return_attention=True)
    _, (pyg_edges, pyg_alpha) = theirs(x, edge_index, return_attention_weights=True)
    assert torch.equal(edges, pyg_edges)
    torch.testing.assert_close(alpha, pyg_alpha)
    sums = torch.zeros(num_nodes, 2).index_add_(0, edges[1], alpha)
    torch.testing.assert_close(sums, torch.ones(num_nodes, 2))


def test_edge_softmax_is_stable_for_large_scores():
    scores = torch.tensor([[1000.0], [1001.0], [-5.0]])
    alpha = edge_softmax(scores, torch.tensor([0, 0, 1]), 2)
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha[2], torch.ones(1))


def test_gat_rejects_zero_heads():
    with pytest.raises(ValueError, match="heads"):
        GATLayer(3, 2, heads=0)


def test_karate_gcn_beats_the_majority_class():
    result = train_karate("gcn", epochs=200, seed=0)
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert result.accuracy > 0.6  # majority class among the 30 unlabelled members: 0.40
    assert set(result.embeddings) == {0, 20, 60, 200}
    assert result.embeddings[200].shape == (34, 2)

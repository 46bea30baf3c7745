"""Tests of neuralarch.graphs.sampler: sampled edges exist, fan-outs hold, seeds come first."""

import pytest
import torch
from torch_geometric.data import Data

from neuralarch.graphs.gcn import GCNLayer
from neuralarch.graphs.sampler import NeighborSampler


def power_law_graph(num_nodes=200, num_edges=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.rand(num_nodes, generator=g) ** 3 + 0.01  # a few hubs with many neighbours
    source = torch.multinomial(weight, num_edges, replacement=True, generator=g)
    target = torch.multinomial(weight, num_edges, replacement=True, generator=g)
    return torch.stack([source, target])


@pytest.mark.parametrize("fanouts", [[5], [4, 3], [10, 5, 2]])
def test_sampled_subgraph_is_valid(fanouts):
    edge_index = power_law_graph()
    data = Data(edge_index=edge_index, num_nodes=200)
    sampler = NeighborSampler(data.edge_index, data.num_nodes, fanouts, seed=1)
    seeds = torch.tensor([3, 17, 42, 0])
    sub = sampler.sample(seeds)
    assert torch.equal(sub.node_ids[:4], seeds) and sub.batch_size == 4
    assert sub.node_ids.unique().numel() == sub.node_ids.numel()
    # every sampled edge exists in the graph, with the same endpoints
    glob = sub.node_ids[sub.edge_index]
    assert torch.equal(glob, edge_index[:, sub.edge_ids])
    assert sub.edge_ids.unique().numel() == sub.edge_ids.numel()
    in_degree = torch.bincount(edge_index[1], minlength=200)
    for hop, fanout in enumerate(fanouts):
        targets = glob[1, sub.hop_of_edge == hop]
        counts = torch.bincount(targets, minlength=200)
        sampled = counts.nonzero().squeeze(1)
        assert (counts <= fanout).all()  # fan-out respected...
        # ...and exactly min(fanout, in-degree) for every node expanded at this hop
        assert torch.equal(counts[sampled], in_degree[sampled].clamp(max=fanout))
    seeds_in = torch.bincount(glob[1, sub.hop_of_edge == 0], minlength=200)[seeds]
    assert torch.equal(seeds_in, in_degree[seeds].clamp(max=fanouts[0]))


def test_same_seed_same_sample_and_different_seed_differs():
    edge_index = power_law_graph()
    seeds = torch.arange(10)
    a = NeighborSampler(edge_index, 200, [3, 3], seed=7).sample(seeds)
    b = NeighborSampler(edge_index, 200, [3, 3], seed=7).sample(seeds)
    c = NeighborSampler(edge_index, 200, [3, 3], seed=8).sample(seeds)
    assert torch.equal(a.edge_ids, b.edge_ids)
    assert not torch.equal(a.edge_ids, c.edge_ids)


def test_full_fanout_gives_exact_gnn_outputs_for_the_seeds():
    torch.manual_seed(0)
    edge_index = power_law_graph(60, 300)
    x = torch.randn(60, 4)
    layers = [GCNLayer(4, 8, normalize=False), GCNLayer(8, 3, normalize=False)]

    def run(features, edges):
        return layers[1](torch.relu(layers[0](features, edges)), edges)

    sub = NeighborSampler(edge_index, 60, [1000, 1000]).sample(torch.tensor([5, 9]))
    torch.testing.assert_close(run(x[sub.node_ids], sub.edge_index)[:2],
                               run(x, edge_index)[[5, 9]])


def test_bad_arguments_raise():
    edge_index = power_law_graph()
    with pytest.raises(ValueError, match="fanouts"):
        NeighborSampler(edge_index, 200, [])
    sampler = NeighborSampler(edge_index, 200, [2])
    with pytest.raises(ValueError, match="distinct"):
        sampler.sample(torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="seed ids"):
        sampler.sample(torch.tensor([500]))

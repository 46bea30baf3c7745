"""A GraphSAGE-style neighbour sampler in plain torch.

Introduced in lesson 9.5 (``m09-l05``). For a mini-batch of seed nodes it samples at most
``fanouts[0]`` incoming neighbours of each seed, then at most ``fanouts[1]`` of each node found so
far, and so on, and returns the union as a small subgraph with the seed nodes first, so a
``len(fanouts)``-layer GNN computes exactly the seeds' outputs from it. (PyG's ``NeighborLoader``
does the same in C++ but needs ``pyg-lib`` or ``torch-sparse``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralarch.graphs.graph_data import validate_edge_index


@dataclass
class SampledSubgraph:
    """A sampled computation graph: global ids, seeds first, and edges in local ids."""

    node_ids: torch.Tensor  # (n,) global ids; the first batch_size are the seeds
    edge_index: torch.Tensor  # (2, e) local ids into node_ids
    edge_ids: torch.Tensor  # (e,) position of each sampled edge in the full edge_index
    batch_size: int
    hop_of_edge: torch.Tensor  # (e,) which hop sampled each edge (0 = the seeds' neighbours)


class NeighborSampler:
    """Sample fixed-size neighbourhoods (``fanouts`` per hop) around seed nodes, seeded."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, fanouts: list[int],
                 seed: int = 0) -> None:
        validate_edge_index(edge_index, num_nodes)
        if not fanouts or any(k < 1 for k in fanouts):
            raise ValueError(f"fanouts must be a non-empty list of ints >= 1, got {fanouts}")
        self.num_nodes, self.fanouts = num_nodes, list(fanouts)
        # CSR by target: the incoming edges of node i are order[ptr[i]:ptr[i + 1]]
        self.order = torch.argsort(edge_index[1], stable=True)
        counts = torch.bincount(edge_index[1], minlength=num_nodes)
        self.ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.source, self.target = edge_index[0], edge_index[1]
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, seeds: torch.Tensor) -> SampledSubgraph:
        """Return the sampled subgraph around ``seeds`` (1-D tensor of distinct node ids)."""
        seeds = seeds.long()
        if seeds.unique().numel() != seeds.numel():
            raise ValueError("seeds must be distinct node ids")
        if seeds.numel() and (seeds.min() < 0 or seeds.max() >= self.num_nodes):
            raise ValueError(f"seed ids must lie in [0, {self.num_nodes})")
        local = {int(n): i for i, n in enumerate(seeds.tolist())}
        nodes, frontier = list(seeds.tolist()), list(seeds.tolist())
        edge_ids, hops = [], []
        for hop, fanout in enumerate(self.fanouts):
            next_frontier = []
            for node in frontier:
                start, stop = int(self.ptr[node]), int(self.ptr[node + 1])
                incoming = self.order[start:stop]  # global ids of edges into `node`
                if incoming.numel() > fanout:  # sample without replacement
                    pick = torch.randperm(incoming.numel(), generator=self.generator)[:fanout]
                    incoming = incoming[pick]
                for edge in incoming.tolist():
                    edge_ids.append(edge)
                    hops.append(hop)
                    neighbour = int(self.source[edge])
                    if neighbour not in local:
                        local[neighbour] = len(nodes)
                        nodes.append(neighbour)
                        next_frontier.append(neighbour)
            frontier = next_frontier
        edge_tensor = torch.tensor(edge_ids, dtype=torch.long)
        node_ids = torch.tensor(nodes, dtype=torch.long)
        lookup = torch.full((self.num_nodes,), -1, dtype=torch.long)
        lookup[node_ids] = torch.arange(node_ids.numel())
        sub_edges = torch.stack([lookup[self.source[edge_tensor]],
                                 lookup[self.target[edge_tensor]]])
        return SampledSubgraph(node_ids, sub_edges.view(2, -1), edge_tensor, seeds.numel(),
                               torch.tensor(hops, dtype=torch.long))

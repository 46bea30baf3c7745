"""Graphs as data: an ``edge_index`` tensor of shape (2, E) and the operations every GNN needs.

Introduced in lesson 9.1 (``m09-l01``). Row 0 of ``edge_index`` holds the source node of each
edge, row 1 its target, and messages flow from source to target (PyG's ``source_to_target``).
"""

from __future__ import annotations

import warnings

import torch


def validate_edge_index(edge_index: torch.Tensor, num_nodes: int) -> None:
    """Raise a ``ValueError`` unless ``edge_index`` is int64, shape (2, E), ids < num_nodes."""
    if not isinstance(edge_index, torch.Tensor):
        raise ValueError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}; "
                         "transpose an (E, 2) list of pairs with .t()")
    if edge_index.dtype != torch.long:
        raise ValueError(f"edge_index must have dtype torch.long (int64), got {edge_index.dtype}; "
                         "convert it with .long()")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        bad = edge_index[(edge_index < 0) | (edge_index >= num_nodes)][0].item()
        raise ValueError(f"edge_index holds node id {bad}, outside [0, {num_nodes}); "
                         "node ids must be 0 .. num_nodes - 1")


def degree(edge_index: torch.Tensor, num_nodes: int, direction: str = "in",
           edge_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Return each node's in-degree (edges it receives) or out-degree (edges it sends), (N,)."""
    validate_edge_index(edge_index, num_nodes)
    if direction not in ("in", "out"):
        raise ValueError(f"direction must be 'in' or 'out', got {direction!r}")
    index = edge_index[1] if direction == "in" else edge_index[0]
    weight = torch.ones(index.numel()) if edge_weight is None else edge_weight.float()
    return torch.zeros(num_nodes).index_add_(0, index, weight)  # (N,)


def remove_self_loops(edge_index: torch.Tensor) -> torch.Tensor:
    """Return the edges that do not start and end at the same node."""
    return edge_index[:, edge_index[0] != edge_index[1]]


def add_self_loops(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Remove existing self-loops, then append one loop ``(i, i)`` per node, as PyG does."""
    validate_edge_index(edge_index, num_nodes)
    loops = torch.arange(num_nodes).repeat(2, 1)  # (2, N)
    return torch.cat([remove_self_loops(edge_index), loops], dim=1)


def to_undirected(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Add the reverse of every edge and drop duplicates (sorted by source, then target)."""
    validate_edge_index(edge_index, num_nodes)
    both = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    key = torch.unique(both[0] * num_nodes + both[1])  # sorted, duplicates removed
    return torch.stack([key // num_nodes, key % num_nodes])


def to_dense_adjacency(edge_index: torch.Tensor, num_nodes: int,
                       edge_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Return the (N, N) matrix with ``A[target, source]`` = summed weight of that edge.

    Rows are targets so that ``A @ X`` sums each node's incoming messages (duplicates add up).
    """
    validate_edge_index(edge_index, num_nodes)
    weight = torch.ones(edge_index.size(1)) if edge_weight is None else edge_weight
    dense = torch.zeros(num_nodes, num_nodes, dtype=weight.dtype)
    return dense.index_put_((edge_index[1], edge_index[0]), weight, accumulate=True)


def from_dense_adjacency(adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(edge_index, edge_weight)`` of the non-zero entries of a target-by-source matrix."""
    if adjacency.dim() != 2 or adjacency.size(0) != adjacency.size(1):
        raise ValueError(f"adjacency must be square (N, N), got {tuple(adjacency.shape)}")
    target, source = adjacency.nonzero(as_tuple=True)
    order = torch.argsort(source * adjacency.size(0) + target)  # sort by source, then target
    edge_index = torch.stack([source[order], target[order]])
    return edge_index, adjacency[target[order], source[order]]


def to_sparse_adjacency(edge_index: torch.Tensor, num_nodes: int,
                        edge_weight: torch.Tensor | None = None,
                        layout: str = "coo") -> torch.Tensor:
    """Return the target-by-source adjacency as a ``torch.sparse_coo`` or ``sparse_csr`` tensor."""
    validate_edge_index(edge_index, num_nodes)
    if layout not in ("coo", "csr"):
        raise ValueError(f"layout must be 'coo' or 'csr', got {layout!r}")
    weight = torch.ones(edge_index.size(1)) if edge_weight is None else edge_weight
    coo = torch.sparse_coo_tensor(edge_index.flip(0), weight, (num_nodes, num_nodes),
                                  check_invariants=True).coalesce()
    if layout == "coo":
        return coo
    with warnings.catch_warnings():  # PyTorch flags CSR as beta; the conversion itself is exact
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()

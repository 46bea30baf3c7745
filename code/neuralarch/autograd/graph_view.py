"""Draw computation graphs with matplotlib: a scalar-engine graph, or PyTorch's own graph.

Introduced in lesson 2.1 (``m02-l01``). Both kinds of graph become a :class:`Graph` (labels,
kinds, edges from inputs to outputs); :func:`layered_layout` puts every node one column to the
right of its furthest input, and :func:`draw_graph` draws boxes and arrows. PyTorch's graph is
read by following ``tensor.grad_fn`` and each node's ``next_functions``, as torchviz does, but
without needing the graphviz program.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes

from neuralarch.autograd.scalar_engine import Value, topological_order
from neuralarch.plot import PALETTE

KIND_COLORS = {"leaf": "#d6e6f2", "op": "#eeeeee", "output": "#f6d7b8"}


@dataclass(frozen=True)
class Graph:
    """A computation graph ready to draw: a label and a kind per node, edges input -> output."""

    labels: tuple[str, ...]
    kinds: tuple[str, ...]  # "leaf", "op" or "output", one per node
    edges: tuple[tuple[int, int], ...]  # (i, j): node i is an input of node j


def value_graph(root: Value, show_grad: bool = True) -> Graph:
    """Return the graph of every Value that ``root`` depends on, labelled with data and grad."""
    if not isinstance(root, Value):
        raise ValueError(f"root must be a Value, got {type(root).__name__}")
    order = topological_order(root)
    index = {node: i for i, node in enumerate(order)}
    labels, kinds = [], []
    for node in order:
        name = node.label or node.op or "const"
        if node.label and node.op:
            name = f"{node.label} = {node.op}"
        text = f"{name}\n{node.data:.3g}"
        labels.append(f"{text}\ngrad {node.grad:.3g}" if show_grad else text)
        kinds.append("output" if node is root else ("op" if node.parents else "leaf"))
    edges = dict.fromkeys((index[p], index[node]) for node in order for p in node.parents)
    return Graph(tuple(labels), tuple(kinds), tuple(edges))


def torch_graph(output: torch.Tensor, names: Mapping[str, torch.Tensor] | None = None) -> Graph:
    """Return the backward graph that autograd recorded for ``output`` (``grad_fn`` nodes).

    Leaves appear as ``AccumulateGrad`` nodes; ``names`` maps names to leaf tensors to label them.
    """
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"output must be a torch.Tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("output has no grad_fn: it is a leaf, or it was computed without "
                         "autograd (no input with requires_grad=True, or under torch.no_grad())")
    leaf_names = {id(t): name for name, t in (names or {}).items()}
    index = {output.grad_fn: 0}
    queue, edges = [output.grad_fn], []
    while queue:  # breadth-first from the output towards the leaves
        fn = queue.pop(0)
        for parent, _ in fn.next_functions:
            if parent is None:  # an input that does not require grad
                continue
            if parent not in index:
                index[parent] = len(index)
                queue.append(parent)
            edges.append((index[parent], index[fn]))
    labels, kinds = [], []
    for fn in index:  # dicts keep insertion order, so this matches the indices
        label = type(fn).__name__
        if hasattr(fn, "variable"):  # AccumulateGrad: the node that writes a leaf's .grad
            name = leaf_names.get(id(fn.variable), "leaf")
            label = f"{name} {tuple(fn.variable.shape)}\n{label}"
        labels.append(label)
        kinds.append("output" if fn is output.grad_fn else
                     ("leaf" if hasattr(fn, "variable") else "op"))
    return Graph(tuple(labels), tuple(kinds), tuple(dict.fromkeys(edges)))


def layered_layout(graph: Graph) -> list[tuple[float, float]]:
    """Return an (x, y) per node: x = longest path from an input, y = rank within its column."""
    n = len(graph.labels)
    parents: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    for i, j in graph.edges:
        parents[j].append(i)
        children[i].append(j)
    waiting = [len(p) for p in parents]  # Kahn's algorithm: inputs not yet placed
    ready = [i for i in range(n) if waiting[i] == 0]
    depth, placed = [0] * n, []
    while ready:
        i = ready.pop(0)
        placed.append(i)
        for j in children[i]:
            depth[j] = max(depth[j], depth[i] + 1)
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(placed) != n:
        raise ValueError("graph has a cycle; a computation graph must be acyclic")
    y = [0.0] * n
    for column in range(max(depth, default=-1) + 1):
        members = [i for i in placed if depth[i] == column]
        # order a column by the mean height of each node's inputs: fewer crossing arrows
        members.sort(key=lambda i: -sum(y[p] for p in parents[i]) / max(len(parents[i]), 1))
        for rank, i in enumerate(members):
            y[i] = (len(members) - 1) / 2 - rank
    return [(float(depth[i]), y[i]) for i in range(n)]


def draw_graph(graph: Graph, ax: Axes | None = None, title: str = "", fontsize: float = 7.5,
               column_gap: float = 1.0) -> Axes:
    """Draw ``graph`` as labelled boxes (inputs left, output right) joined by arrows.

    ``column_gap`` is the horizontal distance between columns, in units of the vertical distance
    between rows; raise it when long labels overlap.
    """
    if not column_gap > 0:
        raise ValueError(f"column_gap must be a number > 0, got {column_gap!r}")
    if ax is None:
        _, ax = plt.subplots()
    positions = [(x * column_gap, y) for x, y in layered_layout(graph)]
    boxes = []
    for (x, y), label, kind in zip(positions, graph.labels, graph.kinds, strict=True):
        boxes.append(ax.text(x, y, label, ha="center", va="center", fontsize=fontsize,
                             bbox={"boxstyle": "round,pad=0.3", "fc": KIND_COLORS[kind],
                                   "ec": PALETTE[7], "lw": 0.8}))
    for i, j in graph.edges:
        ax.annotate("", xy=positions[j], xytext=positions[i],
                    arrowprops={"arrowstyle": "-|>", "color": PALETTE[0], "lw": 0.9,
                                "patchA": boxes[i].get_bbox_patch(),
                                "patchB": boxes[j].get_bbox_patch(), "shrinkA": 1,
                                "shrinkB": 1})
    xs = [x for x, _ in positions] or [0.0]
    ys = [y for _, y in positions] or [0.0]
    ax.set_xlim(min(xs) - 0.6 * column_gap, max(xs) + 0.6 * column_gap)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax

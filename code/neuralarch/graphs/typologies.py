"""The eight laundering typologies of IBM's AMLworld (Altman et al., 2023): build and verify.

Introduced in lesson 9.4 (``m09-l04``). Each builder draws one pattern among distinct accounts
within a time window; :func:`verify_pattern` checks, from the generated transactions alone, that a
planted pattern has its defining structure (a fan-out is one source paying k distinct targets,
a cycle is a directed path in time order that returns to its origin, and so on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from neuralarch.graphs.transactions import TransactionNetwork

TYPOLOGIES = ("fan_out", "fan_in", "cycle", "gather_scatter", "scatter_gather", "stack",
              "bipartite", "random")
Edge = tuple[int, int, float, float]  # source, target, time (h), amount


@dataclass
class Pattern:
    """One planted laundering pattern: its kind, the accounts by role, and its transactions."""

    id: int
    typology: str
    roles: dict[str, list[int]]
    edge_ids: list[int]


def _staged_times(rng: np.random.Generator, t0: float, window: float, stages: int,
                  counts: list[int]) -> list[np.ndarray]:
    """Times for consecutive stages: every time of stage s precedes every time of stage s + 1."""
    width = window / stages
    return [t0 + s * width + width * (0.05 + 0.9 * np.sort(rng.random(c)))
            for s, c in enumerate(counts)]


def _chain_times(rng: np.random.Generator, t0: float, window: float, k: int) -> np.ndarray:
    """k strictly increasing times in [t0, t0 + window), at least 0.2 * window / k apart."""
    return t0 + window * (np.arange(k) + 0.1 + 0.8 * rng.random(k)) / k


def _build(typology: str, k: int, n: int, t0: float, window: float,
           rng: np.random.Generator) -> tuple[list[Edge], dict[str, list[int]]]:
    base = float(rng.lognormal(6.5, 1.0))  # the laundered sum
    fee = lambda: float(rng.uniform(0.95, 0.99))  # noqa: E731 (each hop keeps 95-99 %)
    split = lambda parts: base / parts * float(rng.uniform(0.9, 1.1))  # noqa: E731
    if typology in ("fan_out", "fan_in"):
        hub, *others = (int(a) for a in rng.choice(n, k + 1, replace=False))
        times = t0 + window * rng.random(k)
        edges = [(hub, o, t, split(k)) if typology == "fan_out" else (o, hub, t, split(k))
                 for o, t in zip(others, times, strict=True)]
        role = "targets" if typology == "fan_out" else "sources"
        return edges, {"hub": [hub], role: others}
    if typology in ("cycle", "random"):
        members = [int(a) for a in rng.choice(n, k, replace=False)]
        if typology == "cycle":
            path = members + members[:1]
        else:  # a temporal random walk inside the group, which may revisit accounts
            path = members[:1]
            for _ in range(k):
                path.append(int(rng.choice([m for m in members if m != path[-1]])))
        times, amount, edges = _chain_times(rng, t0, window, k), base, []
        for hop in range(k):
            edges.append((path[hop], path[hop + 1], float(times[hop]), amount))
            amount *= fee()
        return edges, {"members": members}
    if typology in ("gather_scatter", "scatter_gather"):
        accounts = [int(a) for a in rng.choice(n, 2 * k + 2, replace=False)]
        first, middle, last = accounts[:k], accounts[k:2 * k], accounts[2 * k:2 * k + 2]
        t_in, t_out = _staged_times(rng, t0, window, 2, [k, k])
        if typology == "gather_scatter":  # many -> hub -> many
            hub = last[0]
            edges = [(s, hub, t, split(k)) for s, t in zip(first, t_in, strict=True)]
            edges += [(hub, d, t, split(k) * fee()) for d, t in zip(middle, t_out, strict=True)]
            return edges, {"sources": first, "hub": [hub], "targets": middle}
        origin, destination = last  # one -> many intermediaries -> one
        first_hop = [split(k) for _ in middle]  # each intermediary passes on what it got
        edges = [(origin, m, t, a) for m, t, a in zip(middle, t_in, first_hop, strict=True)]
        edges += [(m, destination, t, a * fee())
                  for m, t, a in zip(middle, t_out, first_hop, strict=True)]
        return edges, {"origin": [origin], "intermediaries": middle,
                       "destination": [destination]}
    sizes = [int(s) for s in rng.integers(2, 4, 3)]  # stack / bipartite: layers of 2-3 accounts
    accounts = [int(a) for a in rng.choice(n, sum(sizes), replace=False)]
    layers = [accounts[:sizes[0]], accounts[sizes[0]:sizes[0] + sizes[1]],
              accounts[sizes[0] + sizes[1]:]]
    if typology == "bipartite":
        pairs = [(a, b) for a in layers[0] for b in layers[1]]
        times = t0 + window * rng.random(len(pairs))
        edges = [(a, b, float(t), split(len(pairs)))
                 for (a, b), t in zip(pairs, times, strict=True)]
        return edges, {"senders": layers[0], "receivers": layers[1]}
    first = [(a, b) for a in layers[0] for b in layers[1]]
    second = [(b, c) for b in layers[1] for c in layers[2]]
    t1, t2 = _staged_times(rng, t0, window, 2, [len(first), len(second)])
    edges = [(a, b, float(t), split(len(first))) for (a, b), t in zip(first, t1, strict=True)]
    edges += [(b, c, float(t), split(len(second)) * fee())
              for (b, c), t in zip(second, t2, strict=True)]
    return edges, {"layer0": layers[0], "layer1": layers[1], "layer2": layers[2]}


def plant(cfg: Any, target: int, rng: np.random.Generator
          ) -> tuple[list[Pattern], list[tuple[int, int, float, float, int]]]:
    """Draw patterns, cycling through the typologies, until ``target`` transactions are illicit.

    The last pattern is a fan-out or fan-in sized to hit the target exactly when possible.
    """
    span = cfg.n_days * 24.0
    patterns: list[Pattern] = []
    rows: list[tuple[int, int, float, float, int]] = []
    order = list(cfg.typologies)
    while len(rows) < target:
        typology = order[len(patterns) % len(order)]
        k = int(rng.integers(cfg.min_pattern_size, cfg.max_pattern_size + 1))
        t0 = float(rng.uniform(0.0, span - cfg.window_hours))
        edges, roles = _build(typology, k, cfg.n_accounts, t0, cfg.window_hours, rng)
        if len(rows) + len(edges) > target:
            remaining = target - len(rows)
            if remaining < 2:
                break
            typology = order[0] if order[0] in ("fan_out", "fan_in") else "fan_out"
            edges, roles = _build(typology, remaining, cfg.n_accounts, t0, cfg.window_hours, rng)
        ids = list(range(len(rows), len(rows) + len(edges)))
        rows += [(s, d, t, a, len(patterns)) for s, d, t, a in edges]
        patterns.append(Pattern(len(patterns), typology, roles, ids))
    return patterns, rows


def _temporal_path(src: list[int], dst: list[int], time: list[float]) -> bool:
    """True if the edges, in time order, form a walk: each starts where the previous ended."""
    return all(src[i + 1] == dst[i] and time[i + 1] > time[i] for i in range(len(src) - 1))


def _complete(src: list[int], dst: list[int], left: list[int], right: list[int]) -> bool:
    """True if the edges are exactly one per (left, right) pair."""
    return sorted(zip(src, dst, strict=True)) == sorted((a, b) for a in left for b in right)


def verify_pattern(network: TransactionNetwork, pattern: Pattern) -> list[str]:
    """Return the defining properties that ``pattern`` violates in ``network`` (empty = valid)."""
    ids = pattern.edge_ids
    src = network.source[ids].tolist()
    dst = network.target[ids].tolist()
    time = network.time[ids].tolist()
    problems = []
    if not ids or (network.pattern_id[ids] != pattern.id).any():
        problems.append("its transactions are not all labelled with its id")
    if max(time) - min(time) > network.config.window_hours + 1e-3:
        problems.append("it is spread over more than the time window")
    if any(s == d for s, d in zip(src, dst, strict=True)):
        problems.append("it contains a self-payment")
    r = pattern.roles
    checks: dict[str, Callable[[], bool]] = {
        "fan_out": lambda: set(src) == set(r["hub"]) and sorted(dst) == sorted(set(r["targets"]))
        and len(dst) >= 2,
        "fan_in": lambda: set(dst) == set(r["hub"]) and sorted(src) == sorted(set(r["sources"]))
        and len(src) >= 2,
        "cycle": lambda: _temporal_path(src, dst, time) and dst[-1] == src[0]
        and sorted(src) == sorted(set(r["members"])),
        "random": lambda: _temporal_path(src, dst, time)
        and set(src) | set(dst) <= set(r["members"]),
        "gather_scatter": lambda: _fan_through(src, dst, time, r["sources"], r["hub"][0],
                                               r["targets"])
        and len(ids) == len(r["sources"]) + len(r["targets"]),
        "scatter_gather": lambda: all(
            _fan_through(src, dst, time, r["origin"], m, r["destination"])
            for m in r["intermediaries"]) and len(ids) == 2 * len(r["intermediaries"]),
        "stack": lambda: _layered(src, dst, time, [r["layer0"], r["layer1"], r["layer2"]]),
        "bipartite": lambda: _complete(src, dst, r["senders"], r["receivers"])
        and not set(r["senders"]) & set(r["receivers"]),
    }
    if not checks[pattern.typology]():
        problems.append(f"it lacks the defining structure of a {pattern.typology}")
    return problems


def _fan_through(src: list[int], dst: list[int], time: list[float], inflow: list[int],
                 hub: int, outflow: list[int]) -> bool:
    """True if every ``inflow`` account pays ``hub`` before ``hub`` pays every ``outflow`` one."""
    t_in = [t for s, d, t in zip(src, dst, time, strict=True) if d == hub and s in inflow]
    t_out = [t for s, d, t in zip(src, dst, time, strict=True) if s == hub and d in outflow]
    senders = sorted(s for s, d in zip(src, dst, strict=True) if d == hub)
    receivers = sorted(d for s, d in zip(src, dst, strict=True) if s == hub)
    return (senders == sorted(inflow) and receivers == sorted(outflow)
            and max(t_in) < min(t_out) and not set(inflow) & set(outflow))


def _layered(src: list[int], dst: list[int], time: list[float], layers: list[list[int]]) -> bool:
    """True if the edges are complete between consecutive layers and layer by layer in time."""
    hop = [[i for i, s in enumerate(src) if s in layer] for layer in layers[:2]]
    complete = all(_complete([src[i] for i in h], [dst[i] for i in h], layers[j], layers[j + 1])
                   for j, h in enumerate(hop))
    disjoint = len(set().union(*map(set, layers))) == sum(map(len, layers))
    return (complete and disjoint and len(src) == sum(map(len, hop))
            and max(time[i] for i in hop[0]) < min(time[i] for i in hop[1]))

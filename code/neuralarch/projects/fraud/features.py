"""Hand-made graph features of every transaction, for gradient boosting and for rules.

Introduced in lesson 9.4 (``m09-l04``) and used in Project 9 (``m09-l06``). Each feature answers a
question an investigator would ask about a payment ``u -> v`` at time ``t``: how many distinct
accounts did ``u`` pay, and ``v`` receive from, within the time window around ``t`` (fan-out,
fan-in)? Did ``v`` pass most of the money on soon after (a layering hop)? Does the money come
back to ``u`` within the window (a cycle)? Features use the whole transaction log but never a
label, the transductive setting of Altman et al. (2023).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from neuralarch.graphs.transactions import TransactionNetwork

FEATURE_NAMES = [
    "log amount", "amount / payer's median", "payer out-degree", "payer in-degree",
    "payee in-degree", "payee out-degree", "payer fan-out in window", "payee fan-in in window",
    "payer fan-in in window", "payee fan-out in window", "payee forwards it (count)",
    "payer was funded (count)", "on a money cycle", "payer business", "payee business",
    "payee's mean log amount in",
]


def _by_account(keys: np.ndarray, time: np.ndarray) -> dict[int, np.ndarray]:
    """Edge ids grouped by account, each group in time order (the log is sorted by time)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for edge, key in enumerate(keys.tolist()):
        groups[key].append(edge)
    return {k: np.array(v) for k, v in groups.items()}


def _distinct_in_window(groups: dict[int, np.ndarray], partner: np.ndarray, nodes: np.ndarray,
                        at: np.ndarray, time: np.ndarray, window: float) -> np.ndarray:
    """For each query (node, t): distinct partners on the node's edges in [t - w, t + w]."""
    out = np.zeros(len(nodes))
    for q, (node, t0) in enumerate(zip(nodes.tolist(), at.tolist(), strict=True)):
        edges = groups.get(node)
        if edges is None:
            continue
        t = time[edges]
        lo, hi = np.searchsorted(t, t0 - window), np.searchsorted(t, t0 + window, side="right")
        out[q] = len(set(partner[edges[lo:hi]].tolist()))
    return out


def _trace(start: int, t0: float, held: float, groups: dict[int, np.ndarray],
           other: np.ndarray, time: np.ndarray, amount: np.ndarray, window: float,
           forward: bool, max_hops: int) -> set[int]:
    """Accounts reached by following the money from ``start`` forward (or back) in time.

    Only payments of 85-100 % of the amount in hand are followed (backward: 100-118 %), as an
    investigator tracing funds would; this keeps the search tiny.
    """
    reached: set[int] = set()
    frontier = [(start, t0, held)]
    for _ in range(max_hops):
        step = []
        for node, t_node, money in frontier:
            edges = groups.get(node)
            if edges is None:
                continue
            t = time[edges]
            if forward:
                hop = edges[np.searchsorted(t, t_node, "right"):
                            np.searchsorted(t, t0 + window, "right")]
                hop = hop[(amount[hop] <= money) & (amount[hop] >= 0.85 * money)]
            else:
                hop = edges[np.searchsorted(t, t0 - window):np.searchsorted(t, t_node)]
                hop = hop[(amount[hop] >= money) & (amount[hop] <= money / 0.85)]
            step += [(int(other[h]), time[h], amount[h]) for h in hop]
        reached.update(node for node, _, _ in step)
        frontier = step[:50]
    return reached


def _on_money_cycle(src: np.ndarray, dst: np.ndarray, time: np.ndarray, amount: np.ndarray,
                    out_groups: dict[int, np.ndarray], in_groups: dict[int, np.ndarray],
                    window: float, max_hops: int = 8) -> np.ndarray:
    """1 if ``u -> v`` lies on a time-ordered money cycle: funds reach ``u`` from some ``x``
    (or ``x = u``), and the same funds flow on from ``v`` back to ``x``, within the window."""
    result = np.zeros(len(src))
    for e in range(len(src)):
        ahead = _trace(int(dst[e]), time[e], amount[e], out_groups, dst, time, amount, window,
                       True, max_hops)
        behind = _trace(int(src[e]), time[e], amount[e], in_groups, src, time, amount, window,
                        False, max_hops)
        result[e] = float(bool((ahead | {int(dst[e])}) & (behind | {int(src[e])})))
    return result


def _relays(groups: dict[int, np.ndarray], src: np.ndarray, dst: np.ndarray, time: np.ndarray,
            amount: np.ndarray, window: float, forward: bool) -> np.ndarray:
    """Count payments that relay this one: the payee pays on 90-100 % of the amount within the
    window after (``forward``), or the payer received 100-112 % of it within the window before."""
    out = np.zeros(len(src))
    for e in range(len(src)):
        edges = groups.get(int(dst[e] if forward else src[e]))
        if edges is None:
            continue
        t = time[edges]
        if forward:
            lo, hi = np.searchsorted(t, time[e], "right"), np.searchsorted(t, time[e] + window)
            ratio = amount[edges[lo:hi]] / amount[e]
            out[e] = np.count_nonzero((ratio >= 0.9) & (ratio <= 1.0))
        else:
            lo, hi = np.searchsorted(t, time[e] - window), np.searchsorted(t, time[e])
            ratio = amount[edges[lo:hi]] / amount[e]
            out[e] = np.count_nonzero((ratio >= 1.0) & (ratio <= 1.12))
    return out


def transaction_features(network: TransactionNetwork) -> np.ndarray:
    """Return the (E, len(FEATURE_NAMES)) matrix of hand-made features, one row per transaction."""
    src, dst = network.source.numpy(), network.target.numpy()
    time = network.time.double().numpy()
    amount = network.amount.double().numpy()
    window = network.config.window_hours
    n = network.num_accounts
    out_groups, in_groups = _by_account(src, time), _by_account(dst, time)
    out_deg = np.bincount(src, minlength=n)
    in_deg = np.bincount(dst, minlength=n)
    median_out = np.ones(n)
    mean_log_in = np.zeros(n)
    for account, edges in out_groups.items():
        median_out[account] = np.median(amount[edges])
    for account, edges in in_groups.items():
        mean_log_in[account] = np.log1p(amount[edges]).mean()
    business = network.is_business.numpy().astype(float)
    columns = [
        np.log1p(amount), amount / median_out[src], np.log1p(out_deg[src]),
        np.log1p(in_deg[src]), np.log1p(in_deg[dst]), np.log1p(out_deg[dst]),
        _distinct_in_window(out_groups, dst, src, time, time, window),  # payer's fan-out
        _distinct_in_window(in_groups, src, dst, time, time, window),  # payee's fan-in
        _distinct_in_window(in_groups, src, src, time, time, window),  # payer's fan-in
        _distinct_in_window(out_groups, dst, dst, time, time, window),  # payee's fan-out
        _relays(out_groups, src, dst, time, amount, window, forward=True),
        _relays(in_groups, src, dst, time, amount, window, forward=False),
        _on_money_cycle(src, dst, time, amount, out_groups, in_groups, window),
        business[src], business[dst], mean_log_in[dst],
    ]
    return np.column_stack(columns).astype(np.float32)


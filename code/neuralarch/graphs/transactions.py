"""A generated transaction network with the money-laundering typologies of IBM's AMLworld.

Introduced in lesson 9.4 (``m09-l04``). Accounts (nodes) with a skewed activity distribution make
ordinary payments (edges with an amount and a time): favourite counterparties, shops that receive
from many customers, and payroll runs where a business pays many employees at once, so that
fan-outs and fan-ins also occur *legitimately*. Into this activity we plant the eight laundering
patterns of Altman et al. (2023), each within a short time window, at a configured rate of
illicit transactions. Everything is drawn from one seeded NumPy generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import Field, model_validator

from neuralarch.config import ArchConfig
from neuralarch.graphs.typologies import TYPOLOGIES, Pattern, plant

HOURS_PER_DAY = 24.0


class TransactionConfig(ArchConfig):
    """Size and rates of a generated transaction network; defaults run in well under a second."""

    n_accounts: int = Field(2000, ge=100, description="accounts (nodes)")
    n_transactions: int = Field(30_000, ge=1000, description="transactions (edges), all kinds")
    n_days: int = Field(30, ge=2, description="length of the simulated period")
    illicit_rate: float = Field(0.01, gt=0.0, le=0.05,
                                description="fraction of transactions that are laundering")
    window_hours: float = Field(72.0, gt=0.0, description="each pattern happens within this")
    min_pattern_size: int = Field(3, ge=3, description="smallest fan / cycle size")
    max_pattern_size: int = Field(8, ge=3, description="largest fan / cycle size")
    n_banks: int = Field(8, ge=1, description="banks the accounts belong to")
    business_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of business accounts")
    payroll_fraction: float = Field(0.15, ge=0.0, lt=1.0,
                                    description="share of normal payments that are payroll runs")
    typologies: tuple[str, ...] = Field(TYPOLOGIES, description="which patterns to plant")
    seed: int = Field(0, ge=0, description="seed of the NumPy generator")

    @model_validator(mode="after")
    def _consistent(self) -> TransactionConfig:
        if self.min_pattern_size > self.max_pattern_size:
            raise ValueError(f"min_pattern_size ({self.min_pattern_size}) must be <= "
                             f"max_pattern_size ({self.max_pattern_size})")
        unknown = sorted(set(self.typologies) - set(TYPOLOGIES))
        if unknown or not self.typologies:
            raise ValueError(f"typologies must be a non-empty subset of {TYPOLOGIES}, "
                             f"got unknown {unknown}" if unknown else "typologies is empty")
        if self.window_hours >= self.n_days * HOURS_PER_DAY:
            raise ValueError(f"window_hours ({self.window_hours}) must be shorter than the "
                             f"period, n_days * 24 = {self.n_days * HOURS_PER_DAY}")
        if round(self.illicit_rate * self.n_transactions) < 2 * self.max_pattern_size:
            raise ValueError(f"illicit_rate * n_transactions = "
                             f"{self.illicit_rate * self.n_transactions:.0f} illicit transactions "
                             f"is too few to plant patterns of up to {self.max_pattern_size} "
                             "accounts; raise n_transactions or illicit_rate")
        return self


@dataclass
class TransactionNetwork:
    """Transactions sorted by time, with labels, account features and the planted patterns."""

    source: torch.Tensor  # (E,) sending account
    target: torch.Tensor  # (E,) receiving account
    time: torch.Tensor  # (E,) hours since the start, sorted ascending
    amount: torch.Tensor  # (E,) in currency units
    is_illicit: torch.Tensor  # (E,) bool
    pattern_id: torch.Tensor  # (E,) index into `patterns`, -1 for normal payments
    account_features: torch.Tensor  # (N, F) static account profile (no transaction data)
    feature_names: list[str]
    patterns: list[Pattern]
    config: TransactionConfig
    is_business: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))

    @property
    def edge_index(self) -> torch.Tensor:
        """Return the (2, E) edge index, source row then target row."""
        return torch.stack([self.source, self.target])

    @property
    def num_accounts(self) -> int:
        """Return the number of accounts (nodes)."""
        return self.account_features.size(0)

    def illicit_rate(self) -> float:
        """Return the fraction of transactions that belong to a laundering pattern."""
        return self.is_illicit.float().mean().item()

    def time_masks(self, fractions: tuple[float, float] = (0.6, 0.75)
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return train / validation / test masks that split the period at two time fractions."""
        span = self.config.n_days * HOURS_PER_DAY
        cut1, cut2 = fractions[0] * span, fractions[1] * span
        return self.time < cut1, (self.time >= cut1) & (self.time < cut2), self.time >= cut2


def _accounts(cfg: TransactionConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = cfg.n_accounts
    business = rng.random(n) < cfg.business_fraction
    bank_share = 1.0 / np.arange(1, cfg.n_banks + 1)  # a few large banks, many small ones
    return {
        "business": business,
        "activity": rng.lognormal(0.0, 1.0, n) * np.where(business, 5.0, 1.0),
        "bank": rng.choice(cfg.n_banks, n, p=bank_share / bank_share.sum()),
        "balance": rng.lognormal(8.0, 1.2, n) * np.where(business, 10.0, 1.0),
        "age_years": rng.uniform(0.1, 20.0, n),
    }


def _normal_payments(cfg: TransactionConfig, count: int, acc: dict[str, np.ndarray],
                     rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw ordinary payments: payroll runs, favourite counterparties and random shops."""
    n, span = cfg.n_accounts, cfg.n_days * HOURS_PER_DAY
    weight = acc["activity"] / acc["activity"].sum()
    businesses = np.flatnonzero(acc["business"])
    src, dst, time, amount = [], [], [], []
    n_payroll = int(cfg.payroll_fraction * count)
    employees = {b: rng.choice(n, rng.integers(4, 16), replace=False) for b in businesses}
    while n_payroll > 0:  # a business pays all its employees within an hour
        boss = rng.choice(businesses)
        staff = employees[boss][employees[boss] != boss][:n_payroll]
        day = rng.integers(0, cfg.n_days)
        src += [boss] * len(staff)
        dst += list(staff)
        time += list(day * HOURS_PER_DAY + 9.0 + rng.random(len(staff)))
        amount += list(rng.lognormal(7.5, 0.3, len(staff)))
        n_payroll -= len(staff)
    rest = count - len(src)
    favourites = rng.choice(n, (n, 5), p=weight)  # every account pays a few accounts often
    payer = rng.choice(n, rest, p=weight)
    use_favourite = rng.random(rest) < 0.5
    payee = np.where(use_favourite, favourites[payer, rng.integers(0, 5, rest)],
                     rng.choice(n, rest, p=weight))
    clash = payee == payer
    payee[clash] = (payee[clash] + 1 + rng.integers(0, n - 1, clash.sum())) % n
    day = rng.integers(0, cfg.n_days, rest)
    src += list(payer)
    dst += list(payee)
    time += list(np.minimum(day * HOURS_PER_DAY + 24.0 * rng.beta(4, 3, rest), span - 1e-3))
    amount += list(rng.lognormal(4.5, 1.5, rest) * np.where(acc["business"][payer], 3.0, 1.0))
    return np.array(src), np.array(dst), np.array(time), np.array(amount)


def generate_transactions(config: TransactionConfig | None = None) -> TransactionNetwork:
    """Generate a labelled transaction network with planted laundering patterns."""
    cfg = config or TransactionConfig()
    rng = np.random.default_rng(cfg.seed)
    acc = _accounts(cfg, rng)
    target = round(cfg.illicit_rate * cfg.n_transactions)
    patterns, edges = plant(cfg, target, rng)  # edges: list of (src, dst, time, amount, id)
    illicit = np.array(edges, dtype=float).reshape(-1, 5)
    src, dst, time, amount = _normal_payments(cfg, cfg.n_transactions - len(illicit), acc, rng)
    all_src = np.concatenate([src, illicit[:, 0]]).astype(np.int64)
    all_dst = np.concatenate([dst, illicit[:, 1]]).astype(np.int64)
    all_time = np.concatenate([time, illicit[:, 2]])
    all_amount = np.round(np.concatenate([amount, illicit[:, 3]]), 2)
    pattern = np.concatenate([np.full(len(src), -1), illicit[:, 4]]).astype(np.int64)
    order = np.argsort(all_time, kind="stable")
    new_position = np.empty_like(order)
    new_position[order] = np.arange(len(order))
    for p in patterns:  # edge ids were positions in the unsorted list
        p.edge_ids = sorted(int(new_position[len(src) + e]) for e in p.edge_ids)
    bank = np.eye(cfg.n_banks)[acc["bank"]]
    features = np.column_stack([acc["business"], np.log10(acc["balance"]),
                                acc["age_years"] / 10.0, bank])
    names = ["business", "log10 balance", "age / 10 y"] + [f"bank {b}" for b in range(cfg.n_banks)]
    return TransactionNetwork(
        source=torch.from_numpy(all_src[order]), target=torch.from_numpy(all_dst[order]),
        time=torch.from_numpy(all_time[order]).float(),
        amount=torch.from_numpy(all_amount[order]).float(),
        is_illicit=torch.from_numpy(pattern[order] >= 0),
        pattern_id=torch.from_numpy(pattern[order]),
        account_features=torch.from_numpy(features).float(), feature_names=names,
        patterns=patterns, config=cfg, is_business=torch.from_numpy(acc["business"]))

"""Real daily returns cut into windows, split by time, for the synthetic-market project.

Introduced in lesson 7.6 (``m07-l06``). The returns are the S&P 500's daily log returns in
percent (1999-2018, shipped offline in the ``arch`` package). Everything a generator learns
comes from the days before ``split_date``; the later days are held out for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neuralarch.sequence.forecast import load_log_returns

SPLIT_DATE = "2015-01-01"


@dataclass(frozen=True)
class MarketSplit:
    """Daily log returns (percent) before and after the split date."""

    train: pd.Series  # (N_train,) returns of the earlier years
    test: pd.Series  # (N_test,) returns of the held-out later years

    @property
    def mean(self) -> float:
        """Mean daily return of the training years (the only statistics a model may use)."""
        return float(self.train.mean())

    @property
    def std(self) -> float:
        """Standard deviation of the training years' daily returns."""
        return float(self.train.std())


def load_market_split(split_date: str = SPLIT_DATE, asset: str = "sp500") -> MarketSplit:
    """Load the real returns of ``asset`` and split them by time at ``split_date``."""
    returns = load_log_returns((asset,))[asset]  # (days,)
    cut = pd.Timestamp(split_date)
    train, test = returns[returns.index < cut], returns[returns.index >= cut]
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"split_date {split_date} leaves an empty side; the data run from "
                         f"{returns.index[0].date()} to {returns.index[-1].date()}")
    return MarketSplit(train=train, test=test)


def make_windows(returns: pd.Series | np.ndarray, length: int, stride: int | None = None
                 ) -> np.ndarray:
    """Cut a return series into windows (M, length), ``stride`` days apart (default: length).

    With ``stride < length`` the windows overlap: more training examples, but they are not
    independent, so counts of overlapping windows overstate the sample size.
    """
    values = np.asarray(returns, dtype=np.float64)
    stride = length if stride is None else stride
    if length < 2 or stride < 1:
        raise ValueError(f"need length >= 2 and stride >= 1, got {length}, {stride}")
    if len(values) < length:
        raise ValueError(f"a series of {len(values)} days is shorter than one window ({length})")
    starts = np.arange(0, len(values) - length + 1, stride)
    return np.stack([values[s:s + length] for s in starts])  # (M, length)

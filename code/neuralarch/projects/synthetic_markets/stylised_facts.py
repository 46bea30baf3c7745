"""Stylised facts of daily returns (Cont, 2001): the yardstick for synthetic market data.

Introduced in lesson 7.6 (``m07-l06``). Every function takes returns as one path (N,) or as a
set of windows (M, L); statistics that pair day t with day t + k use only pairs inside the same
window, so windows cut from different places (or made by a generator one at a time) are never
glued together into pairs that did not happen.
"""

from __future__ import annotations

import numpy as np


def _as_windows(returns: np.ndarray) -> np.ndarray:
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"returns must be (N,) or (M, L) with L >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("returns contain NaN or infinite values")
    return x  # (M, L)


def _check_lags(lags: int, length: int) -> None:
    if not 1 <= lags < length:
        raise ValueError(f"lags must be in 1..{length - 1} for windows of {length} days, "
                         f"got {lags}")


def excess_kurtosis(returns: np.ndarray) -> float:
    """Kurtosis minus 3 of all the returns pooled: 0 for a Gaussian, > 0 for heavy tails."""
    x = _as_windows(returns).ravel()
    z = x - x.mean()
    return float(np.mean(z**4) / np.mean(z**2) ** 2 - 3.0)


def hill_tail_index(returns: np.ndarray, tail: float = 0.05) -> float:
    """Hill's estimate of the tail index alpha of ``|r|`` from its largest ``tail`` share.

    ``P(|r| > x) ~ x^-alpha``: alpha is the number of finite moments, about 3 for daily equity
    returns, infinite for a Gaussian (the estimate then grows with the sample size).
    """
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    x = np.sort(np.abs(_as_windows(returns).ravel()))[::-1]  # descending
    k = int(tail * len(x))
    if k < 2 or x[k] <= 0:
        raise ValueError(f"tail={tail} of {len(x)} returns leaves too few (or zero) order stats")
    return float(1.0 / np.mean(np.log(x[:k] / x[k])))


def autocorrelation(returns: np.ndarray, lags: int) -> np.ndarray:
    """ACF at lags 1..``lags`` (lags,), pooling the day pairs of all windows.

    ``rho(k) = mean(z_t z_{t+k}) / mean(z_t^2)`` with ``z`` the returns minus their mean; for one
    path this is the "adjusted" ACF (each lag averaged over its own number of pairs).
    """
    x = _as_windows(returns)
    _check_lags(lags, x.shape[1])
    z = x - x.mean()
    var = np.mean(z**2)
    return np.array([np.mean(z[:, :-k] * z[:, k:]) / var for k in range(1, lags + 1)])


def abs_autocorrelation(returns: np.ndarray, lags: int) -> np.ndarray:
    """ACF of ``|r|`` at lags 1..``lags``: volatility clustering makes it positive and slow."""
    return autocorrelation(np.abs(_as_windows(returns)), lags)


def leverage(returns: np.ndarray, lags: int) -> np.ndarray:
    """``corr(r_t, |r_{t+k}|)`` for k = 1..``lags`` (lags,): negative if falls raise volatility."""
    x = _as_windows(returns)
    _check_lags(lags, x.shape[1])
    out = []
    for k in range(1, lags + 1):
        past, future = x[:, :-k].ravel(), np.abs(x[:, k:]).ravel()
        out.append(np.corrcoef(past, future)[0, 1])
    return np.array(out)


def stylised_facts(returns: np.ndarray, lags: int = 20) -> dict[str, float]:
    """The project's summary: one number per fact, computed the same way for every source."""
    x = _as_windows(returns)
    return {
        "std": float(x.std()),
        "excess_kurtosis": excess_kurtosis(x),
        "hill_alpha": hill_tail_index(x),
        "acf_r": float(np.mean(np.abs(autocorrelation(x, 5)))),  # mean |ACF(r)|, lags 1-5
        "acf_abs": float(np.mean(abs_autocorrelation(x, lags))),  # mean ACF(|r|), lags 1-lags
        "leverage": float(np.mean(leverage(x, 10))),  # mean corr(r_t, |r_t+k|), lags 1-10
    }

"""Judging synthetic returns: a real-vs-fake discriminator and a strategy back-test.

Introduced in lesson 7.6 (``m07-l06``). The discriminator is a logistic regression on a few
summary features of each window, scored by cross-validated accuracy: 0.5 means it cannot tell
the generator's windows from real ones, 1.0 means it always can. The back-test runs a
volatility-targeting strategy on every window, using only past days for every position.
"""

from __future__ import annotations

import numpy as np

TRADING_DAYS = 252


def _windows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 8:
        raise ValueError(f"expected windows (M, L) with L >= 8, got shape {x.shape}")
    return x


def window_features(windows: np.ndarray) -> np.ndarray:
    """Eight summary statistics per window (M, 8): scale, tails, skew, clustering, leverage."""
    x = _windows(windows)
    z = x - x.mean(axis=1, keepdims=True)
    std = z.std(axis=1) + 1e-12
    u = z / std[:, None]  # each window standardised by its own scale
    a = np.abs(u) - np.abs(u).mean(axis=1, keepdims=True)

    def lag1(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.mean(p[:, :-1] * q[:, 1:], axis=1) / (p.std(axis=1) * q.std(axis=1) + 1e-12)

    return np.stack([
        np.log(std),  # volatility level of the window
        x.mean(axis=1) / std,  # drift relative to volatility
        np.mean(u**3, axis=1),  # skewness
        np.mean(u**4, axis=1),  # kurtosis
        np.abs(u).max(axis=1),  # the largest move, in the window's own standard deviations
        lag1(u, u),  # linear autocorrelation at lag 1
        lag1(a, a),  # volatility clustering at lag 1
        lag1(u, a),  # leverage at lag 1
    ], axis=1)


def discriminator_accuracy(real: np.ndarray, fake: np.ndarray, folds: int = 5,
                           repeats: int = 5, seed: int = 0) -> tuple[float, float]:
    """Cross-validated accuracy of a logistic regression telling ``real`` from ``fake`` windows.

    Returns the mean and the standard deviation over ``repeats`` shuffles of ``folds`` folds.
    Use as many fake as real windows, so that 0.5 is the accuracy of guessing.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(real) != len(fake):
        raise ValueError(f"use as many fake as real windows, got {len(fake)} and {len(real)}")
    features = np.concatenate([window_features(real), window_features(fake)])  # (2M, 8)
    labels = np.r_[np.ones(len(real)), np.zeros(len(fake))]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    scores = cross_val_score(classifier, features, labels, cv=cv)
    return float(scores.mean()), float(scores.std())


def vol_target_positions(windows: np.ndarray, lookback: int = 20, target: float = 1.0,
                         cap: float = 2.0) -> np.ndarray:
    """Positions (M, L - lookback): ``min(cap, target / sigma_hat)`` from the previous days only.

    ``sigma_hat`` on day t is the standard deviation of days t - lookback .. t - 1, so a
    position never uses the return it is about to earn (no look-ahead).
    """
    x = _windows(windows)
    if not 2 <= lookback < x.shape[1]:
        raise ValueError(f"lookback must be in 2..{x.shape[1] - 1}, got {lookback}")
    past = np.lib.stride_tricks.sliding_window_view(x, lookback, axis=1)[:, :-1]  # (M, L-lb, lb)
    sigma = past.std(axis=2, ddof=1) + 1e-12
    return np.minimum(cap, target / sigma)


def sharpe(returns: np.ndarray) -> np.ndarray:
    """Annualised Sharpe ratio of each row of daily returns (zero risk-free rate)."""
    r = np.asarray(returns, dtype=np.float64)
    return r.mean(axis=-1) / (r.std(axis=-1, ddof=1) + 1e-12) * np.sqrt(TRADING_DAYS)


def max_drawdown(returns: np.ndarray) -> np.ndarray:
    """Largest fall from a peak of the cumulative log return, per row (percent, >= 0)."""
    wealth = np.cumsum(np.asarray(returns, dtype=np.float64), axis=-1)
    wealth = np.concatenate([np.zeros((*wealth.shape[:-1], 1)), wealth], axis=-1)
    return (np.maximum.accumulate(wealth, axis=-1) - wealth).max(axis=-1)


def backtest(windows: np.ndarray, lookback: int = 20, target: float = 1.0,
             cap: float = 2.0) -> dict[str, np.ndarray]:
    """Buy-and-hold vs volatility targeting on every window; per-window Sharpe and drawdown."""
    x = _windows(windows)
    held = x[:, lookback:]  # (M, L - lookback): the days both strategies trade
    managed = vol_target_positions(x, lookback, target, cap) * held
    return {"sharpe_hold": sharpe(held), "sharpe_target": sharpe(managed),
            "drawdown_hold": max_drawdown(held), "drawdown_target": max_drawdown(managed)}

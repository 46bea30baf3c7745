"""The two classical baselines: geometric Brownian motion and GARCH(1,1) with Student-t shocks.

Introduced in lesson 7.6 (``m07-l06``). Both are fitted to the training years only. GBM makes
daily log returns i.i.d. Gaussian; GARCH(1,1) (Bollerslev, 1986) lets today's variance depend on
yesterday's squared return and variance, which produces volatility clustering and heavy tails.
The fit uses the ``arch`` package; the simulation is vectorised over paths here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GBMParams:
    """Drift and volatility of daily log returns (percent)."""

    mu: float
    sigma: float


@dataclass(frozen=True)
class GarchParams:
    """``r_t = mu + e_t``, ``e_t = sigma_t z_t``, ``sigma_t^2 = omega + alpha e_{t-1}^2 +
    beta sigma_{t-1}^2``, ``z_t`` standardised Student-t with ``nu`` degrees of freedom."""

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float

    @property
    def persistence(self) -> float:
        """``alpha + beta``: how slowly a volatility shock decays (< 1 for a stationary model)."""
        return self.alpha + self.beta

    @property
    def unconditional_variance(self) -> float:
        """Long-run variance ``omega / (1 - alpha - beta)``."""
        return self.omega / (1.0 - self.persistence)


def fit_gbm(returns: pd.Series | np.ndarray) -> GBMParams:
    """Fit GBM: the mean and standard deviation of the daily log returns."""
    x = np.asarray(returns, dtype=np.float64)
    return GBMParams(mu=float(x.mean()), sigma=float(x.std(ddof=1)))


def simulate_gbm(params: GBMParams, paths: int, length: int, seed: int = 0) -> np.ndarray:
    """``paths`` windows (paths, length) of i.i.d. Gaussian log returns."""
    rng = np.random.default_rng(seed)
    return params.mu + params.sigma * rng.standard_normal((paths, length))


def fit_garch(returns: pd.Series | np.ndarray, dist: str = "t") -> GarchParams:
    """Fit a constant-mean GARCH(1,1) by maximum likelihood with ``arch`` (``dist="t"``)."""
    from arch import arch_model

    if dist != "t":
        raise ValueError(f"only Student-t innovations (dist='t') are simulated here, got {dist!r}")
    result = arch_model(np.asarray(returns, dtype=np.float64), mean="Constant", vol="GARCH",
                        p=1, q=1, dist=dist).fit(disp="off")
    p = result.params
    return GarchParams(mu=float(p["mu"]), omega=float(p["omega"]), alpha=float(p["alpha[1]"]),
                       beta=float(p["beta[1]"]), nu=float(p["nu"]))


def garch_variance(returns: np.ndarray, params: GarchParams, initial: float) -> np.ndarray:
    """Filter the conditional variances sigma_t^2 (N,) of a return series, from ``initial``."""
    e2 = (np.asarray(returns, dtype=np.float64) - params.mu) ** 2
    var = np.empty_like(e2)
    var[0] = initial
    for t in range(1, len(e2)):
        var[t] = params.omega + params.alpha * e2[t - 1] + params.beta * var[t - 1]
    return var


def standardised_t(rng: np.random.Generator, nu: float, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t draws rescaled to unit variance (needs ``nu > 2``)."""
    if nu <= 2:
        raise ValueError(f"nu must be > 2 for a finite variance, got {nu}")
    return rng.standard_t(nu, shape) * np.sqrt((nu - 2) / nu)


def simulate_garch(params: GarchParams, paths: int, length: int, burn: int = 500,
                   seed: int = 0) -> np.ndarray:
    """``paths`` windows (paths, length) of GARCH returns, each after ``burn`` warm-up days.

    The warm-up starts at the long-run variance and lets every path forget it, so windows start
    in calm and in stormy states in the proportions the model implies.
    """
    if params.persistence >= 1:
        raise ValueError(f"alpha + beta = {params.persistence:.4f} >= 1: not stationary")
    rng = np.random.default_rng(seed)
    z = standardised_t(rng, params.nu, (burn + length, paths))  # (T, paths)
    var = np.full(paths, params.unconditional_variance)
    out = np.empty((burn + length, paths))
    for t in range(burn + length):
        e = np.sqrt(var) * z[t]
        out[t] = params.mu + e
        var = params.omega + params.alpha * e**2 + params.beta * var
    return out[burn:].T  # (paths, length)

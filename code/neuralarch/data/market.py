"""Deterministic synthetic market data: OHLCV prices for many assets with realistic structure.

Daily log returns come from a factor model (one market factor, a few sector factors and one
idiosyncratic term per asset). Every source has GARCH(1,1) volatility clustering and fat-tailed
Student-t shocks, and a two-state Markov regime (calm / turbulent) scales the volatilities and
drifts, so correlations rise in turbulent periods, as they do in real markets. Same arguments and
seed give bit-identical data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

FIELDS = ("open", "high", "low", "close", "volume")
SECTORS = ("TEC", "FIN", "NRG", "HLT", "IND", "CON", "UTL", "MAT")

# Regime parameters, index 0 = calm, 1 = turbulent (daily units).
STAY_PROBABILITY = (0.985, 0.96)  # P(regime_t = s | regime_{t-1} = s): ~67-day calm, ~25-day storm
MARKET_DRIFT = (4e-4, -1.5e-3)  # mean daily market return
MARKET_VOL = (0.008, 0.024)  # daily volatility of the market factor
SECTOR_VOL = (0.007, 0.012)
IDIO_VOL_SCALE = (1.0, 1.5)  # multiplies each asset's own idiosyncratic volatility
GARCH_ALPHA, GARCH_BETA = 0.06, 0.92  # reaction to yesterday's shock, persistence of variance
STUDENT_DOF = 5  # degrees of freedom of the shocks: fat tails, finite variance


@dataclass(frozen=True)
class MarketData:
    """OHLCV prices of ``A`` assets over ``T`` business days, plus the hidden generating state."""

    prices: torch.Tensor  # (A, T, 5) fields in FIELDS order
    assets: tuple[str, ...]  # A ticker names, e.g. "TEC00"
    sectors: tuple[str, ...]  # A sector codes
    dates: np.ndarray  # (T,) datetime64[D] business days
    regimes: torch.Tensor  # (T,) int64, 0 = calm, 1 = turbulent
    volatility: torch.Tensor  # (A, T) true conditional daily volatility of each asset's return
    fields: tuple[str, ...] = FIELDS

    @property
    def n_assets(self) -> int:
        """Number of assets ``A``."""
        return self.prices.shape[0]

    @property
    def n_days(self) -> int:
        """Number of business days ``T``."""
        return self.prices.shape[1]

    def field(self, name: str) -> torch.Tensor:
        """Return one field, e.g. ``"close"``, as an ``(A, T)`` view of ``prices``."""
        if name not in self.fields:
            raise ValueError(f"field must be one of {self.fields}, got {name!r}")
        return self.prices[:, :, self.fields.index(name)]

    def frame(self, name: str = "close") -> pd.DataFrame:
        """Return one field as a pandas DataFrame: dates as rows, assets as columns."""
        import pandas as pd

        values = self.field(name).T.double().numpy()  # (T, A)
        return pd.DataFrame(values, index=pd.DatetimeIndex(self.dates), columns=list(self.assets))


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return value


def _student_t(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Unit-variance Student-t draws built from normals (so one generator drives everything)."""
    normal = torch.randn(shape, generator=generator, dtype=torch.float64)
    chi2 = torch.randn((*shape, STUDENT_DOF), generator=generator, dtype=torch.float64)
    chi2 = chi2.square().sum(-1)
    return normal / torch.sqrt(chi2 / STUDENT_DOF) * ((STUDENT_DOF - 2) / STUDENT_DOF) ** 0.5


def _markov_regimes(n_days: int, generator: torch.Generator) -> torch.Tensor:
    """Sample a two-state Markov chain that starts calm; returns (T,) int64."""
    uniforms = torch.rand(n_days, generator=generator, dtype=torch.float64).tolist()
    regimes, state = [], 0
    for u in uniforms:
        if u > STAY_PROBABILITY[state]:
            state = 1 - state
        regimes.append(state)
    return torch.tensor(regimes, dtype=torch.int64)


def _garch_unit(shocks: torch.Tensor) -> torch.Tensor:
    """Turn (K, T) unit shocks into GARCH(1,1) paths with long-run variance 1; returns sqrt(h)."""
    omega = 1.0 - GARCH_ALPHA - GARCH_BETA
    variance = torch.empty_like(shocks)  # (K, T) conditional variance h_t
    h = torch.ones(shocks.shape[0], dtype=shocks.dtype)  # (K,) start at the long-run variance
    shock_sq = torch.zeros_like(h)  # (K,) z_{t-1}^2
    for t in range(shocks.shape[1]):
        h = omega + (GARCH_ALPHA * shock_sq + GARCH_BETA) * h  # eps^2 = h * z^2
        variance[:, t] = h
        shock_sq = shocks[:, t].square()
    return variance.sqrt()


def generate_market(
    n_assets: int = 8,
    n_days: int = 504,
    seed: int = 0,
    *,
    n_sectors: int = 3,
    start: str = "2020-01-01",
    dtype: torch.dtype = torch.float32,
) -> MarketData:
    """Generate OHLCV data with factor correlations, volatility clustering and regime switches."""
    _check_int("n_assets", n_assets, 1, 100_000)
    _check_int("n_days", n_days, 2, 100_000)
    _check_int("seed", seed, 0, 2**32 - 1)
    _check_int("n_sectors", n_sectors, 1, min(n_assets, len(SECTORS)))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    try:
        first_day = np.busday_offset(np.datetime64(start, "D"), 0, roll="forward")
    except ValueError:
        raise ValueError(f"start must be an ISO date like '2020-01-01', got {start!r}") from None

    g = torch.Generator().manual_seed(seed)
    A, S, T = n_assets, n_sectors, n_days
    f64 = torch.float64
    regimes = _markov_regimes(T, g)  # (T,)
    turbulent = regimes.to(f64)  # (T,) 1.0 in turbulent days

    def by_regime(pair: tuple[float, float]) -> torch.Tensor:  # (T,) value of the day's regime
        return pair[0] + (pair[1] - pair[0]) * turbulent

    # Sources: K = 1 market + S sectors + A idiosyncratic terms, each a GARCH path times a scale.
    sector_of = torch.arange(A) % S  # (A,) round-robin sector assignment
    idio_vol = 0.008 + 0.012 * torch.rand(A, generator=g, dtype=f64)  # (A,) 0.8%-2.0% a day
    scale = torch.cat([
        by_regime(MARKET_VOL)[None, :],  # (1, T)
        by_regime(SECTOR_VOL).expand(S, T),  # (S, T)
        idio_vol[:, None] * by_regime(IDIO_VOL_SCALE)[None, :],  # (A, T)
    ])  # (K, T)
    unit = _student_t((1 + S + A, T), g)  # (K, T)
    sigma = _garch_unit(unit) * scale  # (K, T) conditional volatility of each source
    sources = sigma * unit  # (K, T)
    sources[0] += by_regime(MARKET_DRIFT)

    # Factor model: each asset loads on the market, on its own sector, and on its own term.
    market, sector, idio = sources[0], sources[1:1 + S], sources[1 + S:]  # (T,), (S, T), (A, T)
    beta_market = 0.6 + 0.8 * torch.rand(A, 1, generator=g, dtype=f64)  # (A, 1) 0.6-1.4
    beta_sector = 0.5 + torch.rand(A, 1, generator=g, dtype=f64)  # (A, 1) 0.5-1.5
    returns = beta_market * market + beta_sector * sector[sector_of] + idio  # (A, T) log returns
    vol = torch.sqrt(  # (A, T) true conditional volatility (the sources are independent)
        (beta_market * sigma[0]).square()
        + (beta_sector * sigma[1 + sector_of]).square()
        + sigma[1 + S:].square()
    )

    # Prices: split each return into an overnight gap and an intraday move.
    log_start = torch.log(torch.tensor(20.0, dtype=f64)) + 2.3 * torch.rand(A, 1, generator=g,
                                                                              dtype=f64)
    log_close = log_start + returns.cumsum(1)  # (A, T)
    prev_close = torch.cat([log_start, log_close[:, :-1]], dim=1)  # (A, T)
    gap = 0.25 * returns + 0.1 * vol * torch.randn(A, T, generator=g, dtype=f64)
    log_open = prev_close + gap
    wick = 0.5 * vol  # typical extra excursion beyond the open-close body
    log_high = torch.maximum(log_open, log_close) + wick * torch.randn(A, T, generator=g,
                                                                         dtype=f64).abs()
    log_low = torch.minimum(log_open, log_close) - wick * torch.randn(A, T, generator=g,
                                                                        dtype=f64).abs()
    # Volume: a per-asset base level that rises on large moves (volume follows volatility).
    log_base = 11.5 + 2.0 * torch.rand(A, 1, generator=g, dtype=f64)
    surprise = returns.abs() / idio_vol[:, None]
    log_volume = log_base + 0.4 * surprise + 0.3 * torch.randn(A, T, generator=g, dtype=f64)

    prices = torch.stack([log_open, log_high, log_low, log_close, log_volume], dim=-1).exp()
    assets = tuple(f"{SECTORS[int(s)]}{a:02d}" for a, s in enumerate(sector_of))
    return MarketData(
        prices=prices.to(dtype),  # (A, T, 5)
        assets=assets,
        sectors=tuple(SECTORS[int(s)] for s in sector_of),
        dates=np.busday_offset(first_day, np.arange(T), roll="forward"),
        regimes=regimes,
        volatility=vol.to(dtype),
    )

"""Project 1: a tensor engine for market data: rolling windows with ``unfold``, features with
``einsum``, and the pandas / NumPy reference implementations it is tested and benchmarked against.

Layout: prices are an ``(A, T, F)`` tensor (assets × business days × OHLCV fields). Every feature
at day ``t`` is computed from days ``<= t`` only (no look-ahead), and the warm-up days whose
windows are incomplete are dropped, so the engine never returns NaN for finite input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuralarch.data.market import FIELDS
from neuralarch.timing import best_seconds

if TYPE_CHECKING:
    import pandas as pd

FEATURE_NAMES = ("log_return", "momentum", "volatility", "price_zscore", "volume_zscore")


def _check_window(window: object, length: int, minimum: int = 1) -> int:
    if not isinstance(window, int) or isinstance(window, bool) or window < minimum:
        raise ValueError(f"window must be an int >= {minimum}, got {window!r}")
    if window > length:
        raise ValueError(f"window ({window}) must not exceed the number of time steps ({length})")
    return window


def rolling_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """View ``x`` ``(A, T, *rest)`` as trailing windows ``(A, T - window + 1, *rest, window)``.

    Entry ``[a, n, ..., k]`` is ``x[a, n + k, ...]``: window ``n`` ends at day ``n + window - 1``.
    No data is copied; the result shares ``x``'s storage.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor with at least 2 dims (A, T, ...), got {_shape(x)}")
    _check_window(window, x.shape[1])
    return x.unfold(1, window, 1)  # (A, T - w + 1, *rest, w)


def window_reduce(windows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over the last (window) axis: ``sum_k weights[k] * windows[..., k]``."""
    if weights.dim() != 1 or weights.shape[0] != windows.shape[-1]:
        raise ValueError(
            f"weights must be 1-D with length {windows.shape[-1]} (the window), "
            f"got shape {tuple(weights.shape)}"
        )
    return torch.einsum("...w,w->...", windows, weights.to(windows))


def rolling_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing mean over ``window`` steps: ``(A, T, *rest)`` -> ``(A, T - window + 1, *rest)``."""
    return rolling_windows(x, window).mean(-1)  # reads the view in place, no copy


def rolling_mean_std(
    x: torch.Tensor, window: int, correction: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trailing mean and standard deviation (``correction=1``: sample std, like pandas)."""
    if correction not in (0, 1):
        raise ValueError(f"correction must be 0 or 1, got {correction!r}")
    windows = rolling_windows(x, window)  # (A, N, *rest, w), a view
    _check_window(window, x.shape[1], minimum=1 + correction)
    mean = windows.mean(-1)  # (A, N, *rest)
    centred = windows - mean.unsqueeze(-1)  # (A, N, *rest, w), a real copy: w x the input
    sum_sq = torch.einsum("...w,...w->...", centred, centred)  # (A, N, *rest)
    return mean, torch.sqrt(sum_sq / (window - correction))


def rolling_std(x: torch.Tensor, window: int, correction: int = 1) -> torch.Tensor:
    """Trailing standard deviation over ``window`` steps: ``(A, T, *rest)`` -> ``(A, N, *rest)``."""
    return rolling_mean_std(x, window, correction)[1]


def rolling_zscore(x: torch.Tensor, window: int) -> torch.Tensor:
    """How many trailing standard deviations the last value of each window is from its mean."""
    mean, std = rolling_mean_std(x, window)  # (A, N, *rest) each
    return (x[:, window - 1:] - mean) / std  # x[:, window - 1:] is the day each window ends on


def log_returns(close: torch.Tensor) -> torch.Tensor:
    """Daily log returns ``log(c_t / c_{t-1})``: (A, T) -> (A, T - 1); entry t is day t + 1."""
    if not isinstance(close, torch.Tensor) or close.dim() != 2 or close.shape[1] < 2:
        raise ValueError(f"close must be an (A, T) tensor with T >= 2, got {_shape(close)}")
    log_close = close.log()
    return log_close[:, 1:] - log_close[:, :-1]


def rolling_correlation(returns: torch.Tensor, window: int) -> torch.Tensor:
    """Correlation matrix of the assets in every trailing window: (A, T) -> (T - w + 1, A, A)."""
    if not isinstance(returns, torch.Tensor) or returns.dim() != 2:
        raise ValueError(f"returns must be an (A, T) tensor, got {_shape(returns)}")
    _check_window(window, returns.shape[1], minimum=2)
    windows = rolling_windows(returns, window)  # (A, N, w)
    centred = windows - windows.mean(-1, keepdim=True)  # (A, N, w)
    cov = torch.einsum("anw,bnw->nab", centred, centred) / (window - 1)  # (N, A, A)
    std = cov.diagonal(dim1=-2, dim2=-1).sqrt()  # (N, A)
    return cov / (std[:, :, None] * std[:, None, :])  # (N, A, A)


@dataclass(frozen=True)
class FeatureSet:
    """Features as an (A, T', n_features) tensor; ``days[i]`` is the day index of row ``i``."""

    values: torch.Tensor  # (A, T', n_features)
    names: tuple[str, ...]
    days: torch.Tensor  # (T',) int64 indices into the original time axis
    window: int

    def feature(self, name: str) -> torch.Tensor:
        """Return one feature as an (A, T') tensor."""
        if name not in self.names:
            raise ValueError(f"feature must be one of {self.names}, got {name!r}")
        return self.values[..., self.names.index(name)]


def _shape(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_prices(prices: object, window: int) -> torch.Tensor:
    if not isinstance(prices, torch.Tensor) or prices.dim() != 3 or prices.shape[-1] != 5:
        raise ValueError(f"prices must be an (A, T, 5) tensor with fields {FIELDS}, "
                         f"got {_shape(prices)}")
    if not prices.is_floating_point():
        raise ValueError(f"prices must have a floating dtype, got {prices.dtype}")
    _check_window(window, prices.shape[1] - 1, minimum=2)  # returns are one day shorter
    if not bool(torch.isfinite(prices).all()) or not bool((prices > 0).all()):
        raise ValueError("prices must be finite and > 0 (fill or drop missing quotes first)")
    return prices


def _asset_features(prices: torch.Tensor, window: int) -> torch.Tensor:
    """The features of a block of assets: (a, T, 5) prices -> (a, T - window, n_features)."""
    close, volume = FIELDS.index("close"), FIELDS.index("volume")
    log_prices = prices.log()  # (a, T, 5)
    returns = log_prices[:, 1:, close] - log_prices[:, :-1, close]  # (a, T-1), entry j = day j+1
    # Three base series on days 1 .. T-1, rolled together: one unfold, one mean, one einsum.
    base = torch.stack([returns, log_prices[:, 1:, close], log_prices[:, 1:, volume]], dim=-1)
    mean, std = rolling_mean_std(base, window)  # (a, T', 3) each, windows end on days w .. T-1
    last = base[:, window - 1:]  # (a, T', 3) the value on the day each window ends
    zscore = (last - mean) / std  # (a, T', 3)
    return torch.stack([
        last[..., 0],  # log_return
        window * mean[..., 0],  # momentum: sum of the last `window` returns
        std[..., 0],  # volatility
        zscore[..., 1],  # price_zscore
        zscore[..., 2],  # volume_zscore
    ], dim=-1)  # (a, T', n_features)


def compute_features(prices: torch.Tensor, window: int = 20, chunk_assets: int = 32) -> FeatureSet:
    """Compute the FEATURE_NAMES features for every asset and day with a full window.

    Row ``i`` describes day ``t = window + i`` and uses prices of days ``t - window .. t`` only.
    Assets are processed ``chunk_assets`` at a time, which gives the same result.
    """
    _check_prices(prices, window)
    if not isinstance(chunk_assets, int) or isinstance(chunk_assets, bool) or chunk_assets < 1:
        raise ValueError(f"chunk_assets must be an int >= 1, got {chunk_assets!r}")
    # Assets are independent, and a chunk's w-times-larger temporary stays in the CPU cache.
    blocks = [_asset_features(block, window) for block in prices.split(chunk_assets)]
    values = torch.cat(blocks)  # (A, T', n_features)
    days = torch.arange(window, prices.shape[1], device=prices.device)
    return FeatureSet(values=values, names=FEATURE_NAMES, days=days, window=window)


def _pandas_features(log_close: pd.Series | pd.DataFrame, log_volume: pd.Series | pd.DataFrame,
                     window: int) -> list[pd.Series | pd.DataFrame]:
    """The features with pandas ``rolling``; works on Series (one asset) and DataFrames alike."""
    ret = log_close.diff()
    return [
        ret,  # log_return
        ret.rolling(window).sum(),  # momentum
        ret.rolling(window).std(),  # volatility
        (log_close - log_close.rolling(window).mean()) / log_close.rolling(window).std(),
        (log_volume - log_volume.rolling(window).mean()) / log_volume.rolling(window).std(),
    ]


def _as_float64(prices: torch.Tensor | np.ndarray, window: int) -> np.ndarray:
    array = np.asarray(prices.cpu() if isinstance(prices, torch.Tensor) else prices, np.float64)
    _check_prices(torch.from_numpy(array), window)
    return array


def compute_features_pandas(prices: torch.Tensor | np.ndarray, window: int = 20) -> np.ndarray:
    """Reference and baseline: pandas ``rolling``, one asset at a time in a Python loop."""
    import pandas as pd

    out = []
    for asset in _as_float64(prices, window):  # (T, 5) per asset
        frame = pd.DataFrame(np.log(asset), columns=list(FIELDS))
        features = _pandas_features(frame["close"], frame["volume"], window)  # Series (T,)
        out.append(np.stack([f.to_numpy()[window:] for f in features], axis=-1))  # drop warm-up
    return np.stack(out)  # (A, T', n_features)


def compute_features_pandas_wide(prices: torch.Tensor | np.ndarray,
                                 window: int = 20) -> np.ndarray:
    """Vectorised pandas: one wide DataFrame per field (days x assets), no loop over assets."""
    import pandas as pd

    log_prices = np.log(_as_float64(prices, window))  # (A, T, 5)
    log_close = pd.DataFrame(log_prices[:, :, FIELDS.index("close")].T)  # (T, A)
    log_volume = pd.DataFrame(log_prices[:, :, FIELDS.index("volume")].T)  # (T, A)
    features = _pandas_features(log_close, log_volume, window)  # DataFrames (T, A)
    return np.stack([f.to_numpy()[window:].T for f in features], axis=-1)  # (A, T', n_features)


def rolling_correlation_numpy(returns: torch.Tensor | np.ndarray, window: int) -> np.ndarray:
    """Reference: ``np.corrcoef`` on each trailing window, one window at a time (a Python loop)."""
    array = np.asarray(returns.cpu() if isinstance(returns, torch.Tensor) else returns, np.float64)
    _check_window(window, array.shape[1], minimum=2)
    return np.stack([np.corrcoef(array[:, n:n + window])
                     for n in range(array.shape[1] - window + 1)])  # (N, A, A)


def benchmark_features(
    prices: torch.Tensor,
    asset_counts: Sequence[int],
    window: int = 20,
    repeats: int = 3,
    num_threads: int | None = 1,
) -> list[dict[str, float]]:
    """Time the pandas loop, wide pandas and the tensor engine on the first ``n`` assets.

    Returns one row per asset count with each method's best-of-``repeats`` wall time in seconds.
    ``num_threads=1`` (default) gives torch one CPU thread, like pandas; ``None`` keeps torch's.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be None or an int >= 1, got {num_threads!r}")
    for n in asset_counts:
        if not isinstance(n, int) or not 1 <= n <= prices.shape[0]:
            raise ValueError(f"asset_counts entries must be ints in [1, {prices.shape[0]}], "
                             f"got {n!r}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads or previous_threads)
    rows = []
    try:
        for n in asset_counts:
            subset = prices[:n].contiguous()
            loop_s = best_seconds(lambda s=subset: compute_features_pandas(s, window), repeats)
            wide_s = best_seconds(lambda s=subset: compute_features_pandas_wide(s, window), repeats)
            engine_s = best_seconds(lambda s=subset: compute_features(s, window), repeats)
            rows.append({"n_assets": n, "pandas_loop_s": loop_s, "pandas_wide_s": wide_s,
                         "engine_s": engine_s})
    finally:
        torch.set_num_threads(previous_threads)
    return rows

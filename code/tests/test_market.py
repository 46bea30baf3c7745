"""Project 1: the synthetic market generator and the tensor feature engine vs pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.testing import assert_close

from neuralarch.data.market import FIELDS, MarketData, generate_market
from neuralarch.projects.market.engine import (
    FEATURE_NAMES,
    benchmark_features,
    compute_features,
    compute_features_pandas,
    compute_features_pandas_wide,
    log_returns,
    rolling_correlation,
    rolling_correlation_numpy,
    rolling_mean,
    rolling_mean_std,
    rolling_std,
    rolling_windows,
    rolling_zscore,
    window_reduce,
)

# float32 z-scores of log prices lose ~4 digits (levels ~4, window std ~0.03): looser tolerance.
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-3, atol=2e-3)}


@pytest.fixture(scope="module")
def market() -> MarketData:
    return generate_market(n_assets=9, n_days=300, seed=3, dtype=torch.float64)


# --------------------------------------------------------------------------- the generator


def test_same_seed_gives_identical_data():
    a, b = generate_market(5, 120, seed=11), generate_market(5, 120, seed=11)
    assert torch.equal(a.prices, b.prices)
    assert torch.equal(a.volatility, b.volatility) and torch.equal(a.regimes, b.regimes)
    assert a.assets == b.assets and np.array_equal(a.dates, b.dates)
    assert not torch.equal(a.prices, generate_market(5, 120, seed=12).prices)


def test_generation_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    generate_market(3, 50, seed=1)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("n_assets,n_days,n_sectors", [(1, 2, 1), (7, 40, 3), (20, 260, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_ohlc_consistency(n_assets, n_days, n_sectors, dtype):
    data = generate_market(n_assets, n_days, seed=0, n_sectors=n_sectors, dtype=dtype)
    assert data.prices.shape == (n_assets, n_days, len(FIELDS)) and data.prices.dtype == dtype
    assert data.volatility.shape == (n_assets, n_days) and data.regimes.shape == (n_days,)
    assert (data.n_assets, data.n_days) == (n_assets, n_days)
    assert len(set(data.assets)) == n_assets and len(set(data.sectors)) == n_sectors
    assert torch.isfinite(data.prices).all() and (data.prices > 0).all()
    o, h, low, c = (data.field(name) for name in ("open", "high", "low", "close"))
    assert (h >= torch.maximum(o, c)).all() and (low <= torch.minimum(o, c)).all()
    assert set(data.regimes.tolist()) <= {0, 1}
    days = data.dates.astype("datetime64[D]")
    assert (np.diff(days).astype(int) > 0).all() and np.is_busday(days).all()


def test_field_and_frame(market):
    assert torch.equal(market.field("close"), market.prices[:, :, 3])
    frame = market.frame("volume")
    assert frame.shape == (market.n_days, market.n_assets)
    assert list(frame.columns) == list(market.assets)
    assert frame.index[0] == pd.Timestamp(market.dates[0])
    np.testing.assert_array_equal(frame.to_numpy(), market.field("volume").T.numpy())
    with pytest.raises(ValueError, match="field must be one of"):
        market.field("adj_close")


def test_stylised_facts_of_returns():
    """Fat tails, volatility clustering, no linear predictability, correlations rise in storms."""
    data = generate_market(16, 1500, seed=0, dtype=torch.float64)
    r = log_returns(data.field("close"))  # (A, T-1)
    z = (r - r.mean(1, keepdim=True)) / r.std(1, keepdim=True)
    kurtosis = z.pow(4).mean(1) - 3

    def autocorr(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(1, keepdim=True)
        return (x[:, 1:] * x[:, :-1]).mean(1) / x.var(1)

    assert kurtosis.median() > 1.0
    assert autocorr(r.abs()).mean() > 0.1 > autocorr(r).mean().abs()
    calm = data.regimes[1:] == 0
    corr_calm, corr_storm = torch.corrcoef(r[:, calm]), torch.corrcoef(r[:, ~calm])
    off = ~torch.eye(16, dtype=torch.bool)
    assert corr_storm[off].mean() > corr_calm[off].mean() + 0.1
    assert 0.05 < data.regimes.double().mean() < 0.6


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_assets=0), "n_assets must be an int"),
        (dict(n_assets=2.0), "n_assets must be an int"),
        (dict(n_assets=True), "n_assets must be an int"),
        (dict(n_days=1), "n_days must be an int"),
        (dict(seed=-1), "seed must be an int"),
        (dict(n_assets=2, n_sectors=3), "n_sectors must be an int in \\[1, 2\\]"),
        (dict(dtype=torch.int64), "dtype must be a floating"),
        (dict(start="yesterday-ish"), "start must be an ISO date"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_market(**kwargs)


# --------------------------------------------------------------------------- rolling primitives


def _pandas_rolling(x: torch.Tensor, window: int, stat: str, **kwargs) -> torch.Tensor:
    """Apply a pandas rolling statistic per asset row of an (A, T) tensor; drop the warm-up."""
    frame = pd.DataFrame(x.double().T.numpy())  # (T, A)
    result = getattr(frame.rolling(window), stat)(**kwargs).to_numpy()[window - 1:]
    return torch.from_numpy(result.T.copy())  # (A, N)


@pytest.mark.parametrize("window", [1, 4, 30])
def test_rolling_windows_is_a_view_with_the_right_entries(window):
    x = torch.randn(3, 30, 2)
    windows = rolling_windows(x, window)
    assert windows.shape == (3, 30 - window + 1, 2, window)
    assert windows.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert windows.stride() == (60, 2, 1, 2)
    n, k = 30 - window, window - 1
    assert_close(windows[:, n, :, k], x[:, n + k, :])
    assert_close(windows[:, 0, :, :], x[:, :window, :].transpose(1, 2))


@pytest.mark.parametrize("window", [2, 5, 20])
@pytest.mark.parametrize("n_assets", [1, 3, 7])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rolling_stats_match_pandas(window, n_assets, dtype):
    x = torch.randn(n_assets, 60, generator=torch.Generator().manual_seed(window), dtype=dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    expected_mean = _pandas_rolling(x, window, "mean")
    expected_std = _pandas_rolling(x, window, "std")
    assert_close(rolling_mean(x, window).double(), expected_mean, **tol)
    assert_close(rolling_std(x, window).double(), expected_std, **tol)
    assert_close(rolling_std(x, window, correction=0).double(),
                 _pandas_rolling(x, window, "std", ddof=0), **tol)
    zscore = (x.double()[:, window - 1:] - expected_mean) / expected_std
    assert_close(rolling_zscore(x, window).double(), zscore, **tol)
    mean, std = rolling_mean_std(x, window)
    assert mean.dtype == std.dtype == dtype


def test_rolling_stats_work_on_extra_trailing_dims():
    x = torch.randn(4, 50, 3, dtype=torch.float64)
    std = rolling_std(x, 10)  # (4, 41, 3)
    assert std.shape == (4, 41, 3)
    for f in range(3):
        assert_close(std[..., f], _pandas_rolling(x[..., f], 10, "std"))


@pytest.mark.parametrize("window", [3, 8])
def test_window_reduce_matches_a_numpy_loop(window):
    x = torch.randn(2, 25, dtype=torch.float64)
    weights = torch.linspace(0.1, 1.0, window, dtype=torch.float64)
    expected = np.array([[np.dot(row[n:n + window], weights.numpy())
                          for n in range(25 - window + 1)] for row in x.numpy()])
    assert_close(window_reduce(rolling_windows(x, window), weights), torch.from_numpy(expected))
    with pytest.raises(ValueError, match="weights must be 1-D with length"):
        window_reduce(rolling_windows(x, window), torch.ones(window + 1))


def test_log_returns_match_numpy():
    close = torch.rand(3, 40, dtype=torch.float64) + 1.0
    assert_close(log_returns(close), torch.from_numpy(np.diff(np.log(close.numpy()), axis=1)))


@pytest.mark.parametrize("window", [2, 10, 40])
@pytest.mark.parametrize("n_assets", [2, 5])
def test_rolling_correlation_matches_numpy_and_pandas(window, n_assets):
    r = torch.randn(n_assets, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    corr = rolling_correlation(r, window)  # (N, A, A)
    assert corr.shape == (50 - window + 1, n_assets, n_assets)
    assert_close(corr, torch.from_numpy(rolling_correlation_numpy(r, window)))
    assert_close(corr, corr.transpose(1, 2))
    assert_close(corr.diagonal(dim1=1, dim2=2), torch.ones(50 - window + 1, n_assets,
                                                           dtype=torch.float64))
    pairwise = pd.DataFrame(r.T.numpy()).rolling(window).corr().to_numpy()  # (T*A, A)
    expected = pairwise.reshape(50, n_assets, n_assets)[window - 1:]
    assert_close(corr, torch.from_numpy(expected), rtol=1e-6, atol=1e-6)


def test_nan_only_reaches_the_windows_that_contain_it():
    x = torch.randn(2, 30, dtype=torch.float64)
    x[0, 12] = float("nan")
    window = 5
    mean, std = rolling_mean_std(x, window)  # windows n cover days n .. n + 4
    bad = torch.zeros_like(mean, dtype=torch.bool)
    bad[0, 8:13] = True  # exactly the windows that contain day 12
    assert torch.equal(mean.isnan(), bad) and torch.equal(std.isnan(), bad)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: rolling_windows(torch.randn(5), 2), "x must be a tensor with at least 2 dims"),
        (lambda: rolling_windows([[1.0, 2.0]], 1), "x must be a tensor"),
        (lambda: rolling_windows(torch.randn(2, 5), 0), "window must be an int >= 1"),
        (lambda: rolling_windows(torch.randn(2, 5), 6), "must not exceed the number of time"),
        (lambda: rolling_windows(torch.randn(2, 5), 2.0), "window must be an int"),
        (lambda: rolling_std(torch.randn(2, 5), 1), "window must be an int >= 2"),
        (lambda: rolling_std(torch.randn(2, 5), 3, correction=2), "correction must be 0 or 1"),
        (lambda: log_returns(torch.rand(5)), "close must be an \\(A, T\\) tensor"),
        (lambda: rolling_correlation(torch.randn(2, 3, 4), 2), "returns must be an \\(A, T\\)"),
        (lambda: rolling_correlation(torch.randn(2, 9), 1), "window must be an int >= 2"),
        (lambda: rolling_correlation_numpy(np.ones((2, 9)), 10), "must not exceed"),
    ],
)
def test_primitives_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- the feature engine


def _well_conditioned(prices: torch.Tensor, window: int) -> np.ndarray:
    """(A, T') mask of windows where pandas' online rolling std is accurate for the z-scores.

    pandas updates the rolling variance as days enter and leave the window, so its rounding error
    scales with the level of the values: when a window's std is tiny next to its level (a nearly
    unchanged price, easy with window=2), its relative error grows (see the page's pitfalls).
    """
    logs = np.log(prices.double().numpy()[..., [3, 4]])  # (A, T, 2) log close, log volume
    ok = []
    for asset in logs:
        frame = pd.DataFrame(asset)
        ratio = frame.rolling(window).std() / frame.rolling(window).mean().abs()
        ok.append((ratio.to_numpy()[window:] > 1e-4).all(axis=1))
    return np.stack(ok)


@pytest.mark.parametrize("window", [2, 5, 20, 60])
@pytest.mark.parametrize("n_assets", [1, 4, 9])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_engine_equals_pandas_rolling(market, window, n_assets, dtype):
    prices = market.prices[:n_assets].to(dtype)
    features = compute_features(prices, window)
    expected = torch.from_numpy(compute_features_pandas(prices, window))  # (A, T', F) float64
    assert features.values.shape == expected.shape == (n_assets, 300 - window, 5)
    assert features.values.dtype == dtype and features.names == FEATURE_NAMES
    values = features.values.double()
    assert_close(values[..., :3], expected[..., :3], **TOL[dtype])
    ok = torch.from_numpy(_well_conditioned(prices, window))
    assert ok.float().mean() > 0.95  # the comparison below covers almost every row
    z_tol = dict(rtol=1e-7, atol=1e-7) if dtype == torch.float64 else TOL[dtype]
    assert_close(values[..., 3:][ok], expected[..., 3:][ok], **z_tol)
    wide = torch.from_numpy(compute_features_pandas_wide(prices, window))
    assert_close(wide, expected, rtol=1e-9, atol=1e-9)
    assert torch.equal(features.days, torch.arange(window, 300))


def test_two_day_zscore_is_exact_where_pandas_drifts(market):
    """With window=2, algebra says z = ±1/sqrt(2) whenever the two values differ."""
    zscore = compute_features(market.prices, 2).feature("price_zscore")
    assert_close(zscore.abs(), torch.full_like(zscore, 0.5**0.5), rtol=1e-8, atol=1e-8)
    pandas_z = torch.from_numpy(compute_features_pandas(market.prices, 2)[..., 3])
    assert (pandas_z.abs() - 0.5**0.5).abs().max() > 1e-6  # pandas' online update is less exact


@pytest.mark.parametrize("chunk_assets", [1, 4, 100])
def test_chunking_over_assets_does_not_change_the_result(market, chunk_assets):
    whole = compute_features(market.prices, 15, chunk_assets=market.n_assets).values
    assert_close(compute_features(market.prices, 15, chunk_assets=chunk_assets).values, whole,
                 rtol=0, atol=0)


def test_feature_set_lookup(market):
    features = compute_features(market.prices, 10)
    assert_close(features.feature("volatility"), features.values[..., 2])
    assert features.window == 10
    with pytest.raises(ValueError, match="feature must be one of"):
        features.feature("alpha")


def test_engine_has_no_nan_warm_up_rows(market):
    features = compute_features(market.prices, 30)
    assert torch.isfinite(features.values).all()
    assert features.values.shape[1] == market.n_days - 30


@pytest.mark.parametrize("day", [25, 100, 299])
def test_no_look_ahead(market, day):
    """Shocking every field on `day` leaves all features before `day` bit-identical."""
    window = 20
    shocked = market.prices.clone()
    shocked[:, day] *= torch.tensor([1.3, 1.5, 0.9, 1.2, 4.0], dtype=shocked.dtype)
    before, after = compute_features(market.prices, window), compute_features(shocked, window)
    past = before.days < day
    assert torch.equal(before.values[:, past], after.values[:, past])
    today = before.days == day
    assert (before.values[:, today] != after.values[:, today]).all()


def test_engine_runs_on_the_available_device(market):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    features = compute_features(market.prices.to(device), 15)
    assert features.values.device.type == device.type
    assert_close(features.values.cpu(), compute_features(market.prices, 15).values)


@pytest.mark.parametrize(
    "prices,window,match",
    [
        (torch.rand(3, 40), 5, "prices must be an \\(A, T, 5\\) tensor"),
        (np.ones((3, 40, 5)), 5, "prices must be an \\(A, T, 5\\) tensor"),
        (torch.ones(3, 40, 5, dtype=torch.int64), 5, "prices must have a floating dtype"),
        (torch.ones(3, 40, 5), 40, "window \\(40\\) must not exceed the number of time steps"),
        (torch.ones(3, 40, 5), 1, "window must be an int >= 2"),
        (torch.ones(3, 40, 5), True, "window must be an int"),
    ],
)
def test_engine_rejects_bad_input(prices, window, match):
    with pytest.raises(ValueError, match=match):
        compute_features(prices, window)


@pytest.mark.parametrize("chunk_assets", [0, 2.5, True])
def test_engine_rejects_bad_chunk_size(market, chunk_assets):
    with pytest.raises(ValueError, match="chunk_assets must be an int >= 1"):
        compute_features(market.prices, 10, chunk_assets=chunk_assets)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_engine_and_reference_reject_missing_or_non_positive_prices(market, bad):
    prices = market.prices.clone()
    prices[2, 50, 3] = bad
    with pytest.raises(ValueError, match="prices must be finite and > 0"):
        compute_features(prices, 10)
    with pytest.raises(ValueError, match="prices must be finite and > 0"):
        compute_features_pandas(prices.numpy(), 10)


def test_benchmark_rows(market):
    rows = benchmark_features(market.prices, [1, 3], window=10, repeats=1)
    assert [row["n_assets"] for row in rows] == [1, 3]
    for row in rows:
        assert all(row[key] > 0 for key in ("pandas_loop_s", "pandas_wide_s", "engine_s"))
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        benchmark_features(market.prices, [1], repeats=0)
    with pytest.raises(ValueError, match="asset_counts entries must be ints in \\[1, 9\\]"):
        benchmark_features(market.prices, [10])
    with pytest.raises(ValueError, match="num_threads must be None or an int >= 1"):
        benchmark_features(market.prices, [1], num_threads=0)


def test_benchmark_restores_the_thread_count(market):
    threads = torch.get_num_threads()
    rows = benchmark_features(market.prices, [2], window=5, repeats=1, num_threads=None)
    assert rows[0]["engine_s"] > 0 and torch.get_num_threads() == threads
    benchmark_features(market.prices, [2], window=5, repeats=1, num_threads=1)
    assert torch.get_num_threads() == threads

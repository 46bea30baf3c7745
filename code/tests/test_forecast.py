"""The next-day return challenge of lesson 5.1: windows, splits, baselines and statistics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.sequence.forecast import (
    ForecastConfig,
    ar1_like,
    baseline_forecasts,
    block_bootstrap_ci,
    diebold_mariano,
    forecast_metrics,
    load_log_returns,
    make_forecast_data,
    train_forecaster,
)

SMALL = ForecastConfig(window=5, val_start="2001-01-01", test_start="2001-07-01",
                       hidden_size=8, epochs=2, batch_size=64)


def synthetic_returns(n: int = 700, phi: float = 0.0, seed: int = 0,
                      columns: tuple[str, ...] = ("sp500",)) -> pd.DataFrame:
    """AR(1) daily returns on business days from 1999: predictable when phi != 0."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, len(columns)))
    values = np.zeros_like(noise)
    for t in range(1, n):
        values[t] = phi * values[t - 1] + noise[t]
    return pd.DataFrame(values, index=pd.bdate_range("1999-01-05", periods=n),
                        columns=list(columns))


def test_real_returns_load_offline():
    returns = load_log_returns(("sp500", "nasdaq"))
    assert list(returns.columns) == ["sp500", "nasdaq"]
    assert len(returns) > 5000 and returns.index.is_monotonic_increasing
    assert returns.abs().max().max() < 20, "daily log returns in percent"
    assert returns.loc["2008-10-13", "sp500"] > 10, "the largest up day of 2008 (+11.6 %)"
    with pytest.raises(ValueError, match="unknown assets"):
        load_log_returns(("ftse",))


def test_windows_are_aligned_and_scaled_with_train_statistics():
    returns = synthetic_returns(columns=("sp500", "nasdaq"))
    data = make_forecast_data(SMALL.replace(assets=("sp500", "nasdaq")), returns)
    n_train = len(data.train.y)
    train_days = returns.iloc[:n_train + SMALL.window]
    torch.testing.assert_close(data.mean, torch.tensor(train_days.mean().to_numpy()).float())
    torch.testing.assert_close(data.std, torch.tensor(train_days.std().to_numpy()).float())
    for split in (data.train, data.val, data.test):
        day = returns.index.get_loc(split.dates[3])
        raw_x = split.x[3] * data.std + data.mean  # (W, F) back to returns
        expected = torch.tensor(returns.iloc[day - SMALL.window:day].to_numpy()).float()
        torch.testing.assert_close(raw_x, expected)  # the W days before day t, both series
        torch.testing.assert_close(data.unscale(split.y[3]),
                                   torch.tensor([returns.iloc[day, 0]]).float())
        assert split.last[3] == pytest.approx(returns.iloc[day - 1, 0], abs=1e-6)
    assert data.train.dates.max() < pd.Timestamp(SMALL.val_start) <= data.val.dates.min()
    assert data.val.dates.max() < pd.Timestamp(SMALL.test_start) <= data.test.dates.min()
    assert n_train + len(data.val.y) + len(data.test.y) == len(returns) - SMALL.window


def test_no_statistic_sees_the_future():
    returns = synthetic_returns()
    changed = returns.copy()
    changed.loc[changed.index >= pd.Timestamp(SMALL.val_start)] *= 100.0  # a wild future
    a, b = make_forecast_data(SMALL, returns), make_forecast_data(SMALL, changed)
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.std, b.std)
    torch.testing.assert_close(a.train.x, b.train.x)
    torch.testing.assert_close(a.train.y, b.train.y)


def test_baselines_and_metrics():
    data = make_forecast_data(SMALL, synthetic_returns())
    baselines = baseline_forecasts(data)
    actual = data.unscale(data.test.y)[:, 0]
    assert baselines["zero (random walk)"].abs().max() == 0
    torch.testing.assert_close(baselines["last return"][1:], actual[:-1])  # yesterday's return
    zero = forecast_metrics(baselines["zero (random walk)"], actual)
    assert zero["mse"] == pytest.approx(actual.pow(2).mean().item())
    assert math.isnan(zero["direction"])
    metrics = forecast_metrics(torch.tensor([1.0, -2.0, 0.5, 0.0]),
                               torch.tensor([2.0, 1.0, 0.5, -1.0]))
    assert metrics["mse"] == pytest.approx((1 + 9 + 0 + 1) / 4)
    assert metrics["mae"] == pytest.approx((1 + 3 + 0 + 1) / 4)
    assert metrics["direction"] == pytest.approx(2 / 3)  # the 0 forecast calls no direction


def test_diebold_mariano_without_lags_is_a_t_statistic():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(500, generator=gen), torch.rand(500, generator=gen)
    d = (a - b).double()
    statistic, p = diebold_mariano(a, b, lags=0)
    assert statistic == pytest.approx((d.mean() / (d.std(unbiased=False) / math.sqrt(500))).item())
    assert p == pytest.approx(math.erfc(abs(statistic) / math.sqrt(2)))
    worse, p_worse = diebold_mariano(a + 0.2, b)
    assert worse > 5 and p_worse < 1e-6
    assert diebold_mariano(b, a + 0.2)[0] == pytest.approx(-worse)
    with pytest.raises(ValueError, match="paired losses"):
        diebold_mariano(a[:5], b[:5], lags=5)


def test_block_bootstrap_interval_covers_the_mean_and_widens_with_dependence():
    gen = torch.Generator().manual_seed(1)
    iid = torch.randn(2000, generator=gen) + 1.0
    low, high = block_bootstrap_ci(iid, block=1)
    assert low < 1.0 < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(2000), rel=0.15)
    persistent = torch.randn(200, generator=gen).repeat_interleave(10)  # blocks of 10 equal days
    narrow = block_bootstrap_ci(persistent, block=1)
    wide = block_bootstrap_ci(persistent, block=20)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])
    with pytest.raises(ValueError, match="block must be"):
        block_bootstrap_ci(iid, block=0)


def test_config_rejects_dates_out_of_order():
    with pytest.raises(ConfigError, match="val_start < test_start"):
        ForecastConfig(val_start="2016-01-01", test_start="2013-01-01")
    with pytest.raises(ConfigError, match="assets"):
        ForecastConfig(assets=("ftse",))


def test_our_lstm_and_torch_lstm_train_to_the_same_forecaster():
    data = make_forecast_data(SMALL, synthetic_returns(phi=0.3))
    ours = train_forecaster(SMALL, data)
    theirs = train_forecaster(SMALL.replace(implementation="torch"), data)
    torch.testing.assert_close(ours.predictions, theirs.predictions)
    assert ours.val_loss == pytest.approx(theirs.val_loss, rel=1e-4)
    assert ours.best_epoch == 1 + int(np.argmin(ours.val_loss))
    assert len(ours.train_loss) == SMALL.epochs


def test_the_pipeline_finds_signal_when_there_is_some():
    # AR(1) with phi = 0.6: the best forecast is 0.6 * today's return, R^2 = 0.36
    config = SMALL.replace(val_start="2003-01-01", test_start="2003-09-01", epochs=4, lr=1e-2,
                           implementation="torch")
    data = make_forecast_data(config, synthetic_returns(n=1500, phi=0.6))
    result = train_forecaster(config, data)
    actual = data.unscale(data.test.y)[:, 0]
    lstm = forecast_metrics(result.predictions, actual)["mse"]
    zero = forecast_metrics(baseline_forecasts(data)["zero (random walk)"], actual)["mse"]
    assert lstm < 0.8 * zero


def test_ar1_control_has_the_requested_autocorrelation_and_scale():
    like = synthetic_returns(n=20000, columns=("sp500", "nasdaq")) * 1.7
    control = ar1_like(like, phi=0.3, seed=2)
    assert control.index.equals(like.index) and list(control.columns) == list(like.columns)
    np.testing.assert_allclose(control.std().to_numpy(), like.std().to_numpy(), rtol=1e-9)
    for column in control:
        assert control[column].autocorr(1) == pytest.approx(0.3, abs=0.03)
    with pytest.raises(ValueError, match="phi must be in"):
        ar1_like(like, phi=1.0)

"""Tests of project 7 (lesson 7.6): data windows, stylised facts, baselines, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralarch.projects.synthetic_markets.baselines import (
    GarchParams,
    fit_garch,
    fit_gbm,
    garch_variance,
    simulate_garch,
    simulate_gbm,
)
from neuralarch.projects.synthetic_markets.data import load_market_split, make_windows
from neuralarch.projects.synthetic_markets.evaluation import (
    backtest,
    discriminator_accuracy,
    max_drawdown,
    sharpe,
    vol_target_positions,
    window_features,
)
from neuralarch.projects.synthetic_markets.generator import (
    MarketDDPMConfig,
    ReturnDenoiser,
    ReturnDenoiserConfig,
    diffusion_for,
    sample_returns,
    train_market_ddpm,
)
from neuralarch.projects.synthetic_markets.stylised_facts import (
    abs_autocorrelation,
    autocorrelation,
    excess_kurtosis,
    hill_tail_index,
    leverage,
    stylised_facts,
)

GARCH = GarchParams(mu=0.0, omega=0.02, alpha=0.1, beta=0.88, nu=6.0)


@pytest.fixture(scope="module")
def gaussian() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(40_000)


def test_split_is_by_time_and_windows_cut_as_asked():
    split = load_market_split("2015-01-01")
    assert split.train.index.max() < split.test.index.min()
    assert len(split.train) > 3000 and len(split.test) > 900
    windows = make_windows(np.arange(10.0), 4, 3)
    np.testing.assert_array_equal(windows, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    assert make_windows(np.arange(10.0), 4).shape == (2, 4)  # non-overlapping by default
    with pytest.raises(ValueError, match="shorter than one window"):
        make_windows(np.arange(3.0), 4)
    with pytest.raises(ValueError, match="empty side"):
        load_market_split("2030-01-01")


def test_kurtosis_matches_scipy_and_is_zero_for_gaussian(gaussian):
    from scipy.stats import kurtosis

    t = np.random.default_rng(1).standard_t(5, 5000)
    assert excess_kurtosis(t) == pytest.approx(kurtosis(t, fisher=True, bias=True), rel=1e-10)
    assert abs(excess_kurtosis(gaussian)) < 0.1
    assert excess_kurtosis(t) > 1.0


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.0])
def test_hill_recovers_the_pareto_tail_index(alpha):
    x = np.random.default_rng(2).pareto(alpha, 50_000) + 1.0  # P(X > x) = x^-alpha, x >= 1
    assert hill_tail_index(x, tail=0.05) == pytest.approx(alpha, rel=0.08)


def test_hill_sees_heavier_tails_in_student_t_than_gaussian(gaussian):
    t3 = np.random.default_rng(3).standard_t(3, 40_000)
    assert 2.0 < hill_tail_index(t3) < 4.5
    assert hill_tail_index(gaussian) > hill_tail_index(t3) + 1.0


def test_autocorrelation_matches_statsmodels_and_ar1():
    from statsmodels.tsa.stattools import acf

    rng = np.random.default_rng(4)
    x = np.zeros(20_000)
    for t in range(1, len(x)):
        x[t] = 0.5 * x[t - 1] + rng.standard_normal()
    ours = autocorrelation(x, 7)
    np.testing.assert_allclose(ours, acf(x, nlags=7, adjusted=True)[1:], rtol=1e-10)
    np.testing.assert_allclose(ours[:3], [0.5, 0.25, 0.125], atol=0.03)


def test_autocorrelation_pairs_days_only_inside_a_window():
    windows = np.r_[np.ones(10), -np.ones(10)].reshape(2, 10)
    assert autocorrelation(windows, 1)[0] == pytest.approx(1.0)
    assert autocorrelation(windows.ravel(), 1)[0] < 0.95  # one path: the jump is a pair


def test_volatility_clustering_and_leverage_on_known_processes(gaussian):
    garch = simulate_garch(GARCH, paths=50, length=400, seed=0)
    assert abs_autocorrelation(garch, 5)[0] > 0.1
    assert np.abs(abs_autocorrelation(gaussian, 5)).max() < 0.03
    assert np.abs(autocorrelation(garch, 5)).max() < 0.05  # clustering without linear ACF
    assert np.abs(leverage(gaussian, 5)).max() < 0.03
    assert np.abs(leverage(garch, 5)).mean() < 0.03  # symmetric GARCH: no leverage

    from arch import arch_model  # GJR-GARCH: falls raise tomorrow's variance more than rises

    gjr = arch_model(None, mean="Zero", vol="GARCH", p=1, o=1, q=1)
    sim = gjr.simulate([0.02, 0.0, 0.2, 0.85], 30_000, burn=500)["data"].to_numpy()
    assert leverage(sim, 5).mean() < -0.05


def test_stylised_facts_summary_and_errors():
    facts = stylised_facts(np.random.default_rng(5).standard_normal((30, 64)))
    assert set(facts) == {"std", "excess_kurtosis", "hill_alpha", "acf_r", "acf_abs",
                          "leverage"}
    with pytest.raises(ValueError, match="lags"):
        autocorrelation(np.zeros((3, 8)), 8)
    with pytest.raises(ValueError, match="NaN"):
        excess_kurtosis(np.array([1.0, np.nan]))


def test_gbm_fit_and_simulation_moments():
    params = fit_gbm(np.random.default_rng(6).normal(0.05, 1.3, 50_000))
    assert params.mu == pytest.approx(0.05, abs=0.02) and params.sigma == pytest.approx(1.3, 0.02)
    sim = simulate_gbm(params, 200, 100, seed=1)
    assert sim.shape == (200, 100) and sim.std() == pytest.approx(1.3, rel=0.02)


def test_garch_variance_filter_matches_arch_and_simulation_has_the_long_run_variance():
    from arch import arch_model

    returns = simulate_garch(GARCH, paths=1, length=3000, seed=2)[0]
    params = fit_garch(returns)
    assert params.persistence == pytest.approx(0.98, abs=0.03)
    assert params.nu == pytest.approx(6.0, rel=0.5)
    result = arch_model(returns, vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
    ours = garch_variance(returns, params, initial=result.conditional_volatility[0] ** 2)
    np.testing.assert_allclose(ours, result.conditional_volatility**2, rtol=1e-6)

    sim = simulate_garch(GARCH, paths=400, length=250, seed=3)
    assert sim.var() == pytest.approx(GARCH.unconditional_variance, rel=0.15)
    assert excess_kurtosis(sim) > 1.0
    with pytest.raises(ValueError, match="not stationary"):
        simulate_garch(GarchParams(0.0, 0.1, 0.2, 0.8, 5.0), 2, 10)


def test_discriminator_is_at_chance_for_equal_sources_and_sure_for_different_ones():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((150, 64)), rng.standard_normal((150, 64))
    assert window_features(a).shape == (150, 8)
    same, _ = discriminator_accuracy(a, b)
    assert 0.35 < same < 0.65
    garch = simulate_garch(GARCH, 150, 64, seed=4)
    different, _ = discriminator_accuracy(garch, b * garch.std())
    assert different > 0.7


def test_vol_target_positions_use_only_the_past():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 40))
    positions = vol_target_positions(x, lookback=10)
    assert positions.shape == (4, 30)
    y = x.copy()
    y[:, 25:] *= 50.0  # change day 25 on: positions for days 10..25 must not move
    np.testing.assert_array_equal(vol_target_positions(y, lookback=10)[:, :16], positions[:, :16])
    assert not np.allclose(vol_target_positions(y, lookback=10)[:, 16:], positions[:, 16:])


def test_sharpe_drawdown_and_backtest():
    np.testing.assert_allclose(max_drawdown(np.array([1.0, -2.0, -1.0, 3.0])), 3.0)
    assert max_drawdown(np.array([-1.0, 1.0])) == pytest.approx(1.0)  # from the start, too
    r = np.random.default_rng(9).normal(0.1, 1.0, (3, 500))
    expected = r.mean(1) / r.std(1, ddof=1) * np.sqrt(252)
    np.testing.assert_allclose(sharpe(r), expected)
    garch = simulate_garch(GARCH, 300, 64, seed=5)
    result = backtest(garch, lookback=20)
    assert all(v.shape == (300,) for v in result.values())
    # with volatility clustering, targeting makes the risk of a window far more predictable
    managed = vol_target_positions(garch, lookback=20) * garch[:, 20:]
    assert managed.std(1).std() < 0.6 * garch[:, 20:].std(1).std()


def test_denoiser_shapes_validation_and_a_tiny_training_run():
    with pytest.raises(ValueError, match="multiple of 8"):
        ReturnDenoiserConfig(width=12)
    with pytest.raises(ValueError, match="dilations"):
        ReturnDenoiserConfig(dilations=())
    config = MarketDDPMConfig(arch=ReturnDenoiserConfig(width=8, dilations=(1, 2),
                                                        time_steps=20, embed_dim=16),
                              steps=60, batch_size=16, length=32, stride=32)
    torch.manual_seed(0)
    model = ReturnDenoiser(config.arch)
    t = torch.tensor([0, 19, 5])
    assert model(torch.randn(3, 1, 32), t).shape == (3, 1, 32)
    with pytest.raises(ValueError, match=r"\(B, 1, L\)"):
        model(torch.randn(3, 32), t)
    metrics = train_market_ddpm(model, config)
    assert metrics["final_loss"] < metrics["first_loss"]
    assert model.scale[1].item() == pytest.approx(load_market_split().std)
    samples = sample_returns(model, diffusion_for(config), 5, 32, steps=5)
    assert samples.shape == (5, 32) and np.isfinite(samples).all()

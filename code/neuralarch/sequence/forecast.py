"""The LSTM time-series challenge: next-day S&P 500 returns against the persistence baselines.

Introduced in lesson 5.1 (``m05-l01``). The data are real daily index levels, 1999-2018, that
ship offline with the ``arch`` package. The model reads the previous ``window`` daily log
returns (in percent) and predicts the next one. Everything respects time: the split is
chronological (by the date of the predicted day), the scale is fitted on the training days
only, and the model is chosen by its loss on the validation years before the test years are
touched once. The baselines are the ones any forecast must beat: the random walk (tomorrow's
price is today's, i.e. a return of 0), return persistence (tomorrow's return is today's) and
the training mean. :func:`diebold_mariano` and :func:`block_bootstrap_ci` say whether a
difference in test error is larger than the noise.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import TensorDataset

from neuralarch.config import ArchConfig
from neuralarch.repro import derive_seed, seed_everything
from neuralarch.sequence.recurrent import LSTM
from neuralarch.train.loop import TrainConfig, evaluate, fit

Asset = Literal["sp500", "nasdaq"]


class ForecastConfig(ArchConfig):
    """Data, split, model and training of the next-day return forecaster (CPU-sized)."""

    assets: tuple[Asset, ...] = Field(("sp500",), min_length=1,
                                      description="input series; the first is the target")
    window: int = Field(30, gt=0, description="past daily returns the model reads")
    val_start: str = Field("2013-01-01", description="first predicted day of validation")
    test_start: str = Field("2016-01-01", description="first predicted day of the test split")
    hidden_size: int = Field(32, gt=0, description="LSTM state width")
    num_layers: int = Field(1, gt=0, description="stacked LSTM layers")
    implementation: Literal["ours", "torch"] = Field("ours", description="LSTM or nn.LSTM")
    epochs: int = Field(10, gt=0, description="maximum passes over the training windows")
    batch_size: int = Field(128, gt=0, description="windows per optimizer step")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds the weights and the data order")

    @model_validator(mode="after")
    def _dates_in_order(self) -> ForecastConfig:
        start, val, test = pd.Timestamp("1999-01-01"), pd.Timestamp(self.val_start), \
            pd.Timestamp(self.test_start)
        if not start < val < test < pd.Timestamp("2018-12-31"):
            raise ValueError(f"need 1999-01-01 < val_start < test_start < 2018-12-31, got "
                             f"val_start={self.val_start!r}, test_start={self.test_start!r}")
        return self


def load_log_returns(assets: tuple[str, ...] = ("sp500",)) -> pd.DataFrame:
    """Daily log returns in percent, ``100 * log(P_t / P_{t-1})`` of the adjusted close."""
    from arch.data import nasdaq, sp500  # the real prices ship inside the arch package

    sources = {"sp500": sp500, "nasdaq": nasdaq}
    unknown = [a for a in assets if a not in sources]
    if unknown:
        raise ValueError(f"unknown assets {unknown}; available: {sorted(sources)}")
    prices = pd.concat({a: sources[a].load()["Adj Close"] for a in assets}, axis=1).dropna()
    return (100 * np.log(prices).diff()).dropna()  # (days, assets)


def ar1_like(returns: pd.DataFrame, phi: float, seed: int = 0) -> pd.DataFrame:
    """A control with a known signal: AR(1) returns ``r_t = phi r_{t-1} + noise``.

    The series has the dates, column names and standard deviations of ``returns``, so the same
    pipeline can run on it; the best possible forecast, ``phi * r_{t-1}``, explains a share
    ``phi**2`` of the variance.
    """
    if not -1.0 < phi < 1.0:
        raise ValueError(f"phi must be in (-1, 1) for a stationary AR(1), got {phi!r}")
    noise = np.random.default_rng(seed).standard_normal(returns.shape)  # (N, F)
    values = np.zeros_like(noise)
    values[0] = noise[0] / math.sqrt(1 - phi**2)  # start in the stationary distribution
    for t in range(1, len(values)):
        values[t] = phi * values[t - 1] + noise[t]
    values *= returns.std().to_numpy() / values.std(0, ddof=1)
    return pd.DataFrame(values, index=returns.index, columns=returns.columns)


@dataclass(frozen=True)
class Windows:
    """Sliding windows: x[m] holds the returns of days t-W..t-1, y[m] the return of day t."""

    x: torch.Tensor  # (M, W, F) inputs, scaled with the training statistics
    y: torch.Tensor  # (M, 1) next-day return of the target, scaled the same way
    dates: pd.DatetimeIndex  # (M,) the predicted day t
    last: torch.Tensor  # (M,) the target's return on day t-1 (unscaled): persistence forecast


@dataclass(frozen=True)
class ForecastData:
    """The three chronological splits and the training scale (mean, std) of every series."""

    train: Windows
    val: Windows
    test: Windows
    mean: torch.Tensor  # (F,) fitted on the training days only
    std: torch.Tensor  # (F,)

    def unscale(self, y: torch.Tensor) -> torch.Tensor:
        """Scaled target values back to daily log returns in percent."""
        return y * self.std[0] + self.mean[0]


def make_forecast_data(config: ForecastConfig, returns: pd.DataFrame | None = None
                       ) -> ForecastData:
    """Windows of ``config.window`` returns, split by the date of the predicted day."""
    returns = load_log_returns(config.assets) if returns is None else returns
    values = torch.tensor(returns.to_numpy(), dtype=torch.float32)  # (N, F)
    dates = returns.index[config.window:]  # day t of every window
    in_train = torch.tensor(dates < pd.Timestamp(config.val_start))
    in_test = torch.tensor(dates >= pd.Timestamp(config.test_start))
    # the scale comes from the returns the training windows see, never from later days
    train_days = values[: int(in_train.sum()) + config.window]
    mean, std = train_days.mean(0), train_days.std(0)  # (F,)
    scaled = (values - mean) / std
    x = scaled.unfold(0, config.window, 1)[:-1].transpose(1, 2)  # (M, W, F): days t-W..t-1
    y = scaled[config.window:, :1]  # (M, 1) the target on day t
    last = values[config.window - 1:-1, 0]  # (M,) the target on day t-1

    def split(mask: torch.Tensor) -> Windows:
        return Windows(x[mask].contiguous(), y[mask], dates[mask.numpy()], last[mask])

    return ForecastData(split(in_train), split(~in_train & ~in_test), split(in_test), mean, std)


class LSTMForecaster(nn.Module):
    """An LSTM over the window, then a linear read-out of its last hidden state."""

    def __init__(self, features: int, hidden_size: int = 32, num_layers: int = 1,
                 implementation: str = "ours") -> None:
        super().__init__()
        layer = LSTM if implementation == "ours" else nn.LSTM
        self.lstm = layer(features, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map windows (B, W, F) to next-day predictions (B, 1), in the scaled units."""
        out, _ = self.lstm(x)  # (B, W, H)
        return self.head(out[:, -1])  # (B, 1) from the state after the last day


@dataclass
class ForecastResult:
    """A trained forecaster, its validation curve and its test-split predictions."""

    model: LSTMForecaster
    data: ForecastData
    train_loss: list[float]  # mean scaled training MSE of every epoch
    val_loss: list[float]  # scaled MSE on validation after every epoch
    best_epoch: int  # 1-based epoch whose weights were kept
    predictions: torch.Tensor  # (M_test,) predicted returns, percent
    seconds: float  # wall time of the training


def train_forecaster(config: ForecastConfig, data: ForecastData | None = None
                     ) -> ForecastResult:
    """Train with Adam and MSE, keep the epoch with the lowest validation loss, predict test."""
    data = make_forecast_data(config) if data is None else data
    seed_everything(config.seed)
    model = LSTMForecaster(len(config.assets), config.hidden_size, config.num_layers,
                           config.implementation)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_set = TensorDataset(data.train.x, data.train.y)
    val_set = TensorDataset(data.val.x, data.val.y)
    started = time.perf_counter()
    train_loss: list[float] = []
    val_loss: list[float] = []
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    for epoch in range(config.epochs):  # one epoch per call, to keep the best weights
        history = fit(model, train_set, None, nn.functional.mse_loss, optimizer,
            TrainConfig(epochs=1, batch_size=config.batch_size, device="cpu",
                        seed=derive_seed(config.seed, f"epoch-{epoch}")), progress=False)
        train_loss.append(history.final["train_loss"])
        val_loss.append(evaluate(model, val_set, nn.functional.mse_loss)["loss"])
        if val_loss[-1] < best[0]:
            best = (val_loss[-1], epoch + 1, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    with torch.no_grad():
        predictions = data.unscale(model(data.test.x))[:, 0]  # (M_test,) percent
    return ForecastResult(model, data, train_loss, val_loss, best[1], predictions,
                          time.perf_counter() - started)


def baseline_forecasts(data: ForecastData) -> dict[str, torch.Tensor]:
    """The forecasts to beat on the test split, each (M_test,) in percent."""
    n = len(data.test.last)
    return {"zero (random walk)": torch.zeros(n),  # tomorrow's price = today's price
            "last return": data.test.last.clone(),  # tomorrow's return = today's return
            "train mean": torch.full((n,), float(data.mean[0]))}  # the historical drift


def forecast_metrics(predicted: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """MSE and MAE (percent units) and directional accuracy.

    Directional accuracy is the share of days with a non-zero forecast whose sign matches the
    actual return's; a forecast of exactly 0 calls no direction (NaN if it is 0 every day).
    """
    error = predicted - actual
    called = predicted != 0
    direction = (torch.sign(predicted[called]) == torch.sign(actual[called])).float().mean() \
        if called.any() else torch.tensor(float("nan"))
    return {"mse": error.pow(2).mean().item(), "mae": error.abs().mean().item(),
            "direction": direction.item()}


def diebold_mariano(loss_a: torch.Tensor, loss_b: torch.Tensor, lags: int = 5
                    ) -> tuple[float, float]:
    """Diebold-Mariano test of equal expected loss; return (statistic, two-sided p-value).

    ``d_t = loss_a - loss_b``; the statistic is mean(d) over its standard error, with a
    Newey-West (Bartlett) long-run variance over ``lags`` lags, since loss differences of daily
    returns are autocorrelated through volatility clustering. Negative: ``a`` has lower loss.
    """
    d = (loss_a - loss_b).double()
    n = len(d)
    if n < 2 * (lags + 1):
        raise ValueError(f"need at least {2 * (lags + 1)} paired losses, got {n}")
    centred = d - d.mean()
    variance = centred.pow(2).mean()
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)  # Bartlett kernel keeps the variance positive
        variance += 2 * weight * (centred[lag:] * centred[:-lag]).mean()
    statistic = (d.mean() / torch.sqrt(variance / n)).item()
    return statistic, math.erfc(abs(statistic) / math.sqrt(2))  # normal approximation


def block_bootstrap_ci(d: torch.Tensor, block: int = 20, samples: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Moving-block bootstrap confidence interval for the mean of a time series ``d``."""
    n = len(d)
    if not 0 < block <= n:
        raise ValueError(f"block must be in [1, {n}] for a series of length {n}, got {block}")
    gen = torch.Generator().manual_seed(seed)
    blocks = math.ceil(n / block)
    starts = torch.randint(0, n - block + 1, (samples, blocks), generator=gen)  # (S, K)
    index = (starts.unsqueeze(-1) + torch.arange(block)).flatten(1)[:, :n]  # (S, n)
    means = d.double()[index].mean(1)  # (S,) resampled means keep within-block dependence
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return low.item(), high.item()

"""A class-balanced data set of candlestick charts labelled by pattern rules.

Introduced in Project 4 (``m04-l06``). Backgrounds are windows cut from the book's generated
market (:func:`neuralarch.data.market.generate_market`, Project 1), so the candles have realistic
gaps, wicks and volatility clusters. To make the rare patterns common enough to learn, most
windows get a pattern *planted* on their last candles, drawn from ranges that straddle the rules'
thresholds, and often a trend bent into the context before it. Planting only proposes: the
rules of :mod:`~neuralarch.projects.market.candlestick_patterns` decide every label, so a planted
hammer that misses a threshold, or lacks its down-trend, becomes a "none" (or a doji), a near miss
that teaches the network where the boundary lies. :func:`build_dataset` keeps sampling until
every class has ``per_class`` examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field, model_validator
from torch.utils.data import TensorDataset

from neuralarch.config import ArchConfig
from neuralarch.data.market import generate_market
from neuralarch.projects.market.candlestick_patterns import (
    CLOSE,
    OPEN,
    PATTERNS,
    PatternRules,
    candle_parts,
    check_windows,
    label_windows,
    mirror_windows,
)
from neuralarch.projects.market.candlestick_render import ChartStyle, render_windows

MARKET_ASSETS = 64  # assets per generated market; each is cut into consecutive windows
PLANT_SIZE = (1.5, 3.0)  # range of a planted candle, in median candle ranges of its window
TILT = (0.25, 0.8)  # slope of a bent context, in median candle ranges per candle


class CandlestickDataConfig(ArchConfig):
    """What :func:`build_dataset` makes: window length, class size, rules, drawing, seed."""

    window: int = Field(8, gt=0, description="candles per chart")
    per_class: int = Field(200, gt=0, description="examples of each of the six classes")
    plant_probability: float = Field(
        0.85, ge=0, le=1, description="share of windows that get a pattern planted at the end")
    context_probability: float = Field(
        0.7, ge=0, le=1, description="share of planted windows whose context is bent into the "
                                     "trend the pattern needs")
    candidates: int = Field(2048, gt=0, description="windows sampled per round")
    max_rounds: int = Field(100, gt=0, description="give up after this many rounds")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds markets, plants and the order")
    rules: PatternRules = Field(PatternRules(), description="the labelling rules")
    style: ChartStyle = Field(ChartStyle(), description="how charts are drawn")

    @model_validator(mode="after")
    def _window_fits_rules(self) -> CandlestickDataConfig:
        if self.window < self.rules.trend_days + 3:
            raise ValueError(f"window ({self.window}) must be at least rules.trend_days + 3 = "
                             f"{self.rules.trend_days + 3}: the context plus a two-candle pattern")
        return self


@dataclass(frozen=True)
class CandlestickData:
    """Windows, their chart images and rule labels, plus which pattern was planted in each."""

    windows: torch.Tensor  # (N, W, 4) open, high, low, close (float64)
    images: torch.Tensor  # (N, C, H, W * cell) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64 index into PATTERNS, decided by the rules
    planted: torch.Tensor  # (N,) int64 index into PATTERNS of the plant (0: none planted)
    config: CandlestickDataConfig

    def dataset(self) -> TensorDataset:
        """Return ``TensorDataset(images, labels)`` for :func:`neuralarch.train.loop.fit`."""
        return TensorDataset(self.images, self.labels)


def market_windows(n: int, window: int, seed: int) -> torch.Tensor:
    """Cut ``n`` consecutive, non-overlapping windows (n, window, 4) from a generated market."""
    if n <= 0 or window <= 0:
        raise ValueError(f"n and window must be positive, got n={n}, window={window}")
    per_asset = -(-n // MARKET_ASSETS)  # ceil
    market = generate_market(MARKET_ASSETS, per_asset * window, seed, dtype=torch.float64)
    ohlc = market.prices[..., :4]  # (A, T, 4) open, high, low, close
    return ohlc.reshape(MARKET_ASSETS * per_asset, window, 4)[:n]


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _candle(open_: torch.Tensor, size: torch.Tensor, body: torch.Tensor, upper: torch.Tensor,
            rising: torch.Tensor) -> torch.Tensor:
    """Build candles (n, 4) from the open, the range, and body and upper shadow as fractions."""
    direction = rising.double() * 2 - 1
    body = body.clamp(0, 1)
    upper = torch.minimum(upper, 1 - body)  # body and shadows must fit in the range
    close = open_ + direction * body * size
    top = torch.maximum(open_, close)
    high = top + upper * size
    low = high - size
    return torch.stack([open_, high, low, close], dim=1)


def plant_patterns(windows: torch.Tensor, kinds: torch.Tensor, rules: PatternRules,
                   generator: torch.Generator, context_probability: float = 0.7
                   ) -> torch.Tensor:
    """Return a copy of ``windows`` (N, W, 4) with a pattern of class ``kinds`` (N,) planted.

    Shapes are drawn in units of the window's median candle range, from intervals that straddle
    the rules' thresholds, so some plants fail; kind 0 ("none") leaves a window unchanged.
    Shooting stars and bearish engulfings are hammers and bullish engulfings planted in the
    mirrored window (:func:`~neuralarch.projects.market.candlestick_patterns.mirror_windows`). With
    ``context_probability`` the candles before the pattern are tilted into the trend the
    pattern needs.
    """
    check_windows(windows, rules)
    n, w = windows.shape[:2]
    if kinds.shape != (n,) or kinds.is_floating_point() or not (
            (kinds >= 0) & (kinds < len(PATTERNS))).all():
        raise ValueError(f"kinds must be an integer tensor of shape ({n},) with values in "
                         f"[0, {len(PATTERNS)}), indices into PATTERNS; got shape "
                         f"{tuple(kinds.shape)}, dtype {kinds.dtype}")
    g = generator
    mirrored = (kinds == PATTERNS.index("shooting_star")) | \
        (kinds == PATTERNS.index("bearish_engulfing"))
    out = torch.where(mirrored[:, None, None], mirror_windows(windows), windows.double())
    scale = candle_parts(out[:, :-2]).range.median(1).values  # (N,) typical candle range
    two = (kinds == PATTERNS.index("bullish_engulfing")) | \
        (kinds == PATTERNS.index("bearish_engulfing"))
    first = torch.where(two, w - 2, w - 1)  # (N,) first pattern candle

    # Context: tilt the candles before the pattern down into it (before mirroring back).
    tilt = (kinds >= PATTERNS.index("hammer")) & (torch.rand(n, generator=g) < context_probability)
    slope = _uniform(n, *TILT, g) * scale * tilt  # (N,) rise per candle, in price units
    steps_before = (first[:, None] - 1 - torch.arange(w)).clamp_min(0)  # (N, W) 0 at the end
    out = out + (slope[:, None] * steps_before)[..., None]

    anchor = out[torch.arange(n), first - 1, CLOSE] + 0.1 * scale * torch.randn(
        n, generator=g, dtype=torch.float64)  # (N,) the pattern opens near the previous close
    size = _uniform(n, *PLANT_SIZE, g) * scale  # (N,) range of the planted candles
    up = torch.rand(n, generator=g) < 0.5
    d = rules.doji_body
    # doji: a body from 0 to twice the doji threshold, the rest split between the shadows
    body = _uniform(n, 0.0, 2.0 * d, g)
    doji = _candle(anchor, size, body, (1 - body) * _uniform(n, 0.1, 0.9, g), up)
    # hammer: a body from half the doji threshold to just past the long-shadow limit, and an
    # upper shadow from 0 to 2.5 times its limit
    body = _uniform(n, 0.5 * d, 1.3 / (rules.long_shadow + 1), g)
    hammer = _candle(anchor, size, body, _uniform(n, 0.0, 2.5 * rules.short_shadow, g), up)
    # bullish engulfing: a falling candle, then a rising one that opens below its close and
    # closes above its open (negative margins are near misses)
    body = _uniform(n, 0.3, 0.8, g)
    falling = _candle(anchor, size, body, (1 - body) * _uniform(n, 0.0, 1.0, g),
                      torch.zeros(n, dtype=torch.bool))
    margin = _uniform(n, -0.3, 0.4, g) * scale, _uniform(n, -0.3, 0.4, g) * scale
    open2, close2 = falling[:, CLOSE] - margin[0], falling[:, OPEN] + margin[1]
    shadows = _uniform(n, 0.0, 0.3, g) * scale, _uniform(n, 0.0, 0.3, g) * scale
    rising = torch.stack([open2, torch.maximum(open2, close2) + shadows[0],
                          torch.minimum(open2, close2) - shadows[1], close2], dim=1)

    rows = torch.arange(n)
    for name, candle in (("doji", doji), ("hammer", hammer), ("shooting_star", hammer)):
        hit = kinds == PATTERNS.index(name)
        out[rows[hit], w - 1] = candle[hit]
    for name in ("bullish_engulfing", "bearish_engulfing"):
        hit = kinds == PATTERNS.index(name)
        out[rows[hit], w - 2] = falling[hit]
        out[rows[hit], w - 1] = rising[hit]
    return torch.where(mirrored[:, None, None], mirror_windows(out), out)


def build_dataset(config: CandlestickDataConfig | None = None) -> CandlestickData:
    """Sample, plant and label windows until every class has ``per_class`` examples; render them.

    Deterministic: the same config gives bit-identical windows, labels and images. Raises a
    ``RuntimeError`` if some class is still short after ``max_rounds`` rounds (rules too strict).
    """
    config = config or CandlestickDataConfig()
    g = torch.Generator().manual_seed(config.seed)
    k = len(PATTERNS)
    kept: list[list[torch.Tensor]] = [[] for _ in range(k)]  # per class: windows
    planted: list[list[torch.Tensor]] = [[] for _ in range(k)]  # per class: planted kinds
    need = [config.per_class] * k
    for _ in range(config.max_rounds):
        seed = int(torch.randint(2**31 - 1, (), generator=g))
        windows = market_windows(config.candidates, config.window, seed)  # (M, W, 4)
        kinds = torch.randint(1, k, (len(windows),), generator=g)
        kinds[torch.rand(len(windows), generator=g) >= config.plant_probability] = 0
        windows = plant_patterns(windows, kinds, config.rules, g, config.context_probability)
        labels = label_windows(windows, config.rules)
        for c in range(k):
            take = (labels == c).nonzero()[:need[c], 0]
            kept[c].append(windows[take])
            planted[c].append(kinds[take])
            need[c] -= len(take)
        if not any(need):
            break
    else:
        short = {PATTERNS[c]: need[c] for c in range(k) if need[c]}
        raise RuntimeError(f"after max_rounds={config.max_rounds} rounds of "
                           f"{config.candidates} windows these classes are still short (missing "
                           f"examples): {short}; loosen the rules or lower per_class")
    windows = torch.cat([torch.cat(parts) for parts in kept])  # (K * per_class, W, 4)
    kinds = torch.cat([torch.cat(parts) for parts in planted])
    labels = torch.arange(k).repeat_interleave(config.per_class)
    order = torch.randperm(len(labels), generator=g)
    windows, kinds, labels = windows[order], kinds[order], labels[order]
    images = render_windows(windows, config.style).float()
    return CandlestickData(windows, images, labels, kinds, config)

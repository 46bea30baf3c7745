"""Candlestick patterns as explicit rules: doji, hammer, shooting star, bullish/bearish engulfing.

Introduced in Project 4 (``m04-l06``). A batch of chart windows is a tensor (N, W, 4) whose last
axis holds open, high, low and close, in that order. Every rule is a small pure function that looks
at the last one or two candles of each window; the hammer, the shooting star and the engulfing
patterns also need the *context*, the trend of the ``trend_days`` candles before the pattern. All
thresholds live in :class:`PatternRules`, and :func:`label_windows` applies the rules in the fixed
order ``PRIORITY``, so every window gets exactly one label. All rules are written with
products instead of ratios, so a candle with zero range needs no special case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import Field

from neuralarch.config import ArchConfig

PATTERNS = ("none", "doji", "hammer", "shooting_star", "bullish_engulfing", "bearish_engulfing")
# The first rule that fires decides the label: two-candle patterns before one-candle patterns,
# and the plain doji last, because it is the least specific.
PRIORITY = ("bullish_engulfing", "bearish_engulfing", "hammer", "shooting_star", "doji")
OPEN, HIGH, LOW, CLOSE = range(4)
FEATURE_NAMES = (
    *(f"{part} {which}" for which in ("prev", "last")
      for part in ("body", "upper", "lower", "rising")),
    "open last - close prev", "close last - open prev", "trend before last",
    "trend before last two",
)


class PatternRules(ArchConfig):
    """Named thresholds of the pattern rules (fractions of a candle's high-low range)."""

    doji_body: float = Field(0.1, gt=0, lt=1,
                             description="doji: body at most this fraction of the range")
    long_shadow: float = Field(2.0, gt=0,
                               description="hammer/star: long shadow at least this many bodies")
    short_shadow: float = Field(0.1, ge=0, lt=1, description=(
        "hammer/star: opposite shadow at most this fraction of the range"))
    trend_days: int = Field(5, gt=0, description="candles of context before a pattern")
    trend_min: float = Field(1.0, gt=0, description=(
        "a context move of at least this many mean candle ranges counts as a trend"))


@dataclass(frozen=True)
class CandleParts:
    """The anatomy of candles: real body, upper and lower shadow, range, direction."""

    body: torch.Tensor  # |close - open|
    upper: torch.Tensor  # high - max(open, close)
    lower: torch.Tensor  # min(open, close) - low
    range: torch.Tensor  # high - low
    rising: torch.Tensor  # bool, close > open


def candle_parts(candles: torch.Tensor) -> CandleParts:
    """Split candles (..., 4) in OHLC order into body, shadows, range and direction."""
    o, h, low, c = candles.unbind(-1)
    return CandleParts(body=(c - o).abs(), upper=h - torch.maximum(o, c),
                       lower=torch.minimum(o, c) - low, range=h - low, rising=c > o)


def check_windows(windows: torch.Tensor, rules: PatternRules | None = None) -> torch.Tensor:
    """Return ``windows`` if it is a valid float (N, W, 4) OHLC batch long enough for the rules."""
    rules = rules or PatternRules()
    if windows.ndim != 3 or windows.shape[-1] != 4 or not windows.is_floating_point():
        raise ValueError(f"windows must be a float tensor (N, W, 4) of open, high, low, close; "
                         f"got shape {tuple(windows.shape)} and dtype {windows.dtype}")
    if windows.shape[1] < rules.trend_days + 3:
        raise ValueError(f"windows must have at least trend_days + 3 = {rules.trend_days + 3} "
                         f"candles (context plus a two-candle pattern); got {windows.shape[1]}")
    o, h, low, c = windows.unbind(-1)
    broken = (h < torch.maximum(o, c)) | (low > torch.minimum(o, c))  # (N, W)
    if broken.any():
        n, t = (int(i) for i in broken.nonzero()[0])
        raise ValueError(f"{int(broken.sum())} candle(s) have high < max(open, close) or "
                         f"low > min(open, close), the first in window {n}, candle {t}")
    return windows


def mirror_windows(windows: torch.Tensor) -> torch.Tensor:
    """Flip the price axis: negate prices and swap high and low, so rises become falls."""
    return -windows[..., [OPEN, LOW, HIGH, CLOSE]]


def prior_trend(windows: torch.Tensor, pattern_length: int, rules: PatternRules) -> torch.Tensor:
    """Return (N,) the close-to-close move of the context before the last ``pattern_length``
    candles, in units of the context's mean candle range (negative: a down-trend)."""
    end = windows.shape[1] - pattern_length - 1  # the last context candle
    start = end - rules.trend_days
    move = windows[:, end, CLOSE] - windows[:, start, CLOSE]  # (N,)
    scale = candle_parts(windows[:, start + 1:end + 1]).range.mean(1)  # (N,)
    return move / scale.clamp_min(torch.finfo(windows.dtype).tiny)


def is_doji(windows: torch.Tensor, rules: PatternRules) -> torch.Tensor:
    """Doji: the last candle's body is at most ``doji_body`` of its range (open ≈ close)."""
    last = candle_parts(windows[:, -1])
    return last.body <= rules.doji_body * last.range


def _long_lower_shadow(parts: CandleParts, rules: PatternRules) -> torch.Tensor:
    real = parts.body > rules.doji_body * parts.range  # a real body, not a doji
    long = parts.lower >= rules.long_shadow * parts.body
    short = parts.upper <= rules.short_shadow * parts.range  # body at the top of the range
    return real & long & short


def is_hammer(windows: torch.Tensor, rules: PatternRules) -> torch.Tensor:
    """Hammer: after a down-trend, a small body at the top and a long lower shadow."""
    shape = _long_lower_shadow(candle_parts(windows[:, -1]), rules)
    return shape & (prior_trend(windows, 1, rules) <= -rules.trend_min)


def is_shooting_star(windows: torch.Tensor, rules: PatternRules) -> torch.Tensor:
    """Shooting star: after an up-trend, a small body at the bottom and a long upper shadow."""
    parts = candle_parts(windows[:, -1])
    real = parts.body > rules.doji_body * parts.range
    long = parts.upper >= rules.long_shadow * parts.body
    short = parts.lower <= rules.short_shadow * parts.range
    return real & long & short & (prior_trend(windows, 1, rules) >= rules.trend_min)


def _engulfs(windows: torch.Tensor, rules: PatternRules, rising: bool) -> torch.Tensor:
    """The last body engulfs the previous one, the two have opposite colours, both are real."""
    first, second = candle_parts(windows[:, -2]), candle_parts(windows[:, -1])
    o1, c1 = windows[:, -2, OPEN], windows[:, -2, CLOSE]
    o2, c2 = windows[:, -1, OPEN], windows[:, -1, CLOSE]
    real = (first.body > rules.doji_body * first.range) & \
        (second.body > rules.doji_body * second.range)
    if rising:  # a falling candle, then a rising one whose body covers it
        colours, covers = (c1 < o1) & (c2 > o2), (o2 <= c1) & (c2 >= o1)
    else:  # a rising candle, then a falling one whose body covers it
        colours, covers = (c1 > o1) & (c2 < o2), (o2 >= c1) & (c2 <= o1)
    return real & colours & covers & (second.body > first.body)


def is_bullish_engulfing(windows: torch.Tensor, rules: PatternRules) -> torch.Tensor:
    """Bullish engulfing: after a down-trend, a rising body that covers the falling one before."""
    return _engulfs(windows, rules, rising=True) & \
        (prior_trend(windows, 2, rules) <= -rules.trend_min)


def is_bearish_engulfing(windows: torch.Tensor, rules: PatternRules) -> torch.Tensor:
    """Bearish engulfing: after an up-trend, a falling body that covers the rising one before."""
    return _engulfs(windows, rules, rising=False) & \
        (prior_trend(windows, 2, rules) >= rules.trend_min)


RULES: dict[str, Callable[[torch.Tensor, PatternRules], torch.Tensor]] = {
    "doji": is_doji,
    "hammer": is_hammer,
    "shooting_star": is_shooting_star,
    "bullish_engulfing": is_bullish_engulfing,
    "bearish_engulfing": is_bearish_engulfing,
}


def pattern_matches(windows: torch.Tensor, rules: PatternRules | None = None) -> torch.Tensor:
    """Return (N, len(PATTERNS)) bools: which rules fire; column 0 ("none") when none does."""
    rules = rules or PatternRules()
    check_windows(windows, rules)
    fired = torch.stack([RULES[name](windows, rules) for name in PATTERNS[1:]], dim=1)  # (N, 5)
    return torch.cat([~fired.any(1, keepdim=True), fired], dim=1)


def label_windows(windows: torch.Tensor, rules: PatternRules | None = None) -> torch.Tensor:
    """Return (N,) class indices into ``PATTERNS``: the first rule in PRIORITY that fires."""
    matches = pattern_matches(windows, rules)  # (N, K)
    labels = torch.zeros(len(windows), dtype=torch.long)
    for name in reversed(PRIORITY):  # later writes win, so the highest priority writes last
        k = PATTERNS.index(name)
        labels[matches[:, k]] = k
    return labels


def hand_features(windows: torch.Tensor, rules: PatternRules | None = None) -> torch.Tensor:
    """Return (N, 12) features a trader reads off the numbers (see ``FEATURE_NAMES``).

    For the last two candles: body, upper and lower shadow as fractions of the candle's range,
    and the direction (+1 rising, -1 otherwise); the last open minus the previous close and the
    last close minus the previous open, in ranges of the previous candle; then the trend before
    the last candle and before the last two, in mean candle ranges.
    """
    rules = rules or PatternRules()
    check_windows(windows, rules)
    tiny = torch.finfo(windows.dtype).tiny
    parts = candle_parts(windows[:, -2:])  # each (N, 2)
    scale = parts.range.clamp_min(tiny)
    per_candle = torch.stack([parts.body / scale, parts.upper / scale, parts.lower / scale,
                              parts.rising.to(windows.dtype) * 2 - 1], dim=-1)  # (N, 2, 4)
    prev, last = windows[:, -2], windows[:, -1]  # (N, 4) each
    gaps = torch.stack([last[:, OPEN] - prev[:, CLOSE], last[:, CLOSE] - prev[:, OPEN]], dim=1)
    trends = torch.stack([prior_trend(windows, 1, rules), prior_trend(windows, 2, rules)], dim=1)
    return torch.cat([per_candle.flatten(1), gaps / scale[:, :1], trends], dim=1)  # (N, 12)

"""Project 4's candlestick data: pattern rules, labeller, data set, renderer and CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralarch.config import ConfigError
from neuralarch.projects.market.candlestick import (
    CandlestickDataConfig,
    build_dataset,
    market_windows,
    plant_patterns,
)
from neuralarch.projects.market.candlestick_net import ChartCNN, ChartCNNConfig
from neuralarch.projects.market.candlestick_patterns import (
    FEATURE_NAMES,
    PATTERNS,
    PRIORITY,
    RULES,
    PatternRules,
    candle_parts,
    check_windows,
    hand_features,
    label_windows,
    mirror_windows,
    pattern_matches,
    prior_trend,
)
from neuralarch.projects.market.candlestick_render import ChartStyle, price_rows, render_windows

RULE = PatternRules()
SMALL = CandlestickDataConfig(per_class=30, candidates=512)


def candle(o: float, h: float, low: float, c: float) -> list[float]:
    return [o, h, low, c]


def window(step: float, *pattern: list[float], n: int = 8) -> torch.Tensor:
    """Context candles of range 1 whose close moves by ``step`` per candle, then ``pattern``."""
    rows, close = [], 100.0
    for _ in range(n - len(pattern)):
        o, close = close, close + step
        rows.append(candle(o, max(o, close) + 0.25, min(o, close) - 0.25, close))
    last = rows[-1][3]  # the pattern's prices are given relative to the last context close
    rows += [[last + p for p in part] for part in pattern]
    return torch.tensor([rows], dtype=torch.float64)  # (1, n, 4)


HAMMER = candle(0.0, 0.2, -0.8, 0.15)  # body 0.15, upper 0.05, lower 0.8, range 1.0
STAR = candle(0.0, 0.8, -0.2, -0.15)  # the hammer upside down
DOJI = candle(0.0, 0.5, -0.5, 0.05)  # body 0.05 of a range of 1
FALLING = candle(0.0, 0.1, -0.7, -0.6)  # body 0.6
# bullish engulfing: a falling body 0 -> -0.6, then a rising body -0.7 -> 0.1
ENGULF_UP = (FALLING, candle(-0.7, 0.2, -0.8, 0.1))
# bearish engulfing: a rising body 0 -> 0.6, then a falling body 0.7 -> -0.1
ENGULF_DOWN = (candle(0.0, 0.7, -0.1, 0.6), candle(0.7, 0.8, -0.2, -0.1))

CASES = [
    ("doji, flat context", window(0.0, DOJI), "doji"),
    ("doji exactly at the threshold", window(0.0, candle(0.0, 0.5, -0.5, 0.1)), "doji"),
    ("body just above the doji threshold", window(0.0, candle(0.0, 0.5, -0.5, 0.11)), "none"),
    ("four-price doji (zero range)", window(0.0, candle(0.0, 0.0, 0.0, 0.0)), "doji"),
    ("hammer after a down-trend", window(-1.0, HAMMER), "hammer"),
    ("hammer shape after an up-trend", window(1.0, HAMMER), "none"),
    ("hammer shape without a trend", window(0.0, HAMMER), "none"),
    ("hammer after a too weak down-trend", window(-0.1, HAMMER), "none"),
    ("hammer with a too long upper shadow", window(-1.0, candle(0.0, 0.3, -0.7, 0.15)), "none"),
    ("hammer with a too short lower shadow", window(-1.0, candle(0.0, 0.45, -0.2, 0.4)),
     "none"),
    ("dragonfly doji after a down-trend", window(-1.0, candle(0.0, 0.0, -1.0, 0.0)), "doji"),
    ("shooting star after an up-trend", window(1.0, STAR), "shooting_star"),
    ("inverted hammer (star shape after a down-trend)", window(-1.0, STAR), "none"),
    ("bullish engulfing after a down-trend", window(-1.0, *ENGULF_UP), "bullish_engulfing"),
    ("bullish engulfing without a trend", window(0.0, *ENGULF_UP), "none"),
    ("rising body that does not cover the falling one",
     window(-1.0, FALLING, candle(-0.5, 0.2, -0.6, 0.1)), "none"),
    ("bearish engulfing after an up-trend", window(1.0, *ENGULF_DOWN), "bearish_engulfing"),
    ("bearish engulfing after a down-trend", window(-1.0, *ENGULF_DOWN), "none"),
    ("falling body that does not cover the rising one",
     window(1.0, candle(0.0, 0.7, -0.1, 0.6), candle(0.7, 0.8, 0.2, 0.3)), "none"),
]


@pytest.mark.parametrize(("name", "windows", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hand_built_windows_get_the_rule_label(name, windows, expected):
    assert PATTERNS[int(label_windows(windows)[0])] == expected, name
    matches = pattern_matches(windows)[0]
    assert matches[PATTERNS.index(expected)], name


def test_priority_engulfing_beats_hammer():
    # a falling candle, then a rising one that covers it *and* has a hammer's shadows
    both = window(-1.0, candle(0.0, 0.05, -0.1, -0.05), candle(-0.06, 0.06, -0.5, 0.05))
    matches = pattern_matches(both)[0]
    assert matches[PATTERNS.index("hammer")] and matches[PATTERNS.index("bullish_engulfing")]
    assert PATTERNS[int(label_windows(both)[0])] == "bullish_engulfing"
    assert PRIORITY.index("bullish_engulfing") < PRIORITY.index("hammer")


def test_candle_parts_and_prior_trend_against_numpy():
    windows = build_dataset(SMALL).windows  # (180, 8, 4)
    o, h, low, c = (windows[..., i].numpy() for i in range(4))
    parts = candle_parts(windows)
    np.testing.assert_allclose(parts.body.numpy(), np.abs(c - o))
    np.testing.assert_allclose(parts.upper.numpy(), h - np.maximum(o, c))
    np.testing.assert_allclose(parts.lower.numpy(), np.minimum(o, c) - low)
    np.testing.assert_allclose(parts.range.numpy(), h - low)
    for length in (1, 2):
        end = 8 - length - 1
        ranges = (h - low)[:, end - RULE.trend_days + 1:end + 1].mean(1)
        expected = (c[:, end] - c[:, end - RULE.trend_days]) / ranges
        torch.testing.assert_close(prior_trend(windows, length, RULE), torch.from_numpy(expected))


@pytest.mark.parametrize("rules", [PatternRules(), PatternRules(doji_body=0.05, trend_days=3),
                                   PatternRules(long_shadow=1.5, short_shadow=0.2, trend_min=0.5)])
def test_rules_are_mirror_symmetric(rules):
    windows = build_dataset(SMALL.replace(rules=rules, seed=3)).windows
    mirrored = mirror_windows(windows)
    torch.testing.assert_close(mirror_windows(mirrored), windows)
    pairs = [("doji", "doji"), ("hammer", "shooting_star"),
             ("bullish_engulfing", "bearish_engulfing")]
    for a, b in pairs:
        assert torch.equal(RULES[a](windows, rules), RULES[b](mirrored, rules))
        assert torch.equal(RULES[b](windows, rules), RULES[a](mirrored, rules))
    swap = torch.tensor([PATTERNS.index(n) for n in ("none", "doji", "shooting_star", "hammer",
                                                     "bearish_engulfing", "bullish_engulfing")])
    assert torch.equal(label_windows(mirrored, rules), swap[label_windows(windows, rules)])


@pytest.mark.parametrize("config", [SMALL, SMALL.replace(window=10, seed=5),
                                    SMALL.replace(rules=PatternRules(trend_days=3), window=6)])
def test_every_generated_label_obeys_its_rule_and_no_higher_one(config):
    data = build_dataset(config)
    matches = pattern_matches(data.windows, config.rules)  # (N, K)
    for i, label in enumerate(data.labels.tolist()):
        assert matches[i, label]
        name = PATTERNS[label]
        higher = PRIORITY[:PRIORITY.index(name)] if name in PRIORITY else PRIORITY
        assert not any(matches[i, PATTERNS.index(h)] for h in higher)
    assert torch.equal(data.labels, label_windows(data.windows, config.rules))
    assert torch.equal(torch.bincount(data.labels, minlength=6),
                       torch.full((6,), config.per_class))


def test_build_is_deterministic_and_seed_dependent():
    a, b = build_dataset(SMALL), build_dataset(SMALL)
    for field in ("windows", "images", "labels", "planted"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    c = build_dataset(SMALL.replace(seed=1))
    assert not torch.equal(a.windows, c.windows)
    ds = a.dataset()
    assert len(ds) == 180 and ds[0][0].shape == (1, 32, 32) and ds[0][0].dtype == torch.float32


def test_plants_are_proposals_and_the_rules_decide():
    data = build_dataset(SMALL.replace(per_class=60))
    failed = (data.planted != 0) & (data.labels != data.planted)
    assert failed.sum() > 20  # near misses: planted, but a threshold or the trend says no
    unplanted = build_dataset(SMALL.replace(plant_probability=0.0, rules=PatternRules(
        trend_min=0.3), per_class=3, max_rounds=100))
    assert (unplanted.planted == 0).all()  # every class found in the raw market alone


def test_plant_patterns_none_leaves_windows_unchanged():
    windows = market_windows(64, 8, seed=0)
    kinds = torch.zeros(64, dtype=torch.long)
    out = plant_patterns(windows, kinds, RULE, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, windows)
    kinds[:] = PATTERNS.index("bullish_engulfing")
    out = plant_patterns(windows, kinds, RULE, torch.Generator().manual_seed(0), 1.0)
    assert (prior_trend(out, 2, RULE) < prior_trend(windows, 2, RULE)).all()  # tilted down
    check_windows(out)


def test_market_windows_shape_and_validity():
    windows = market_windows(100, 9, seed=4)
    assert windows.shape == (100, 9, 4) and windows.dtype == torch.float64
    check_windows(windows)
    torch.testing.assert_close(windows, market_windows(100, 9, seed=4))
    with pytest.raises(ValueError, match="n and window must be positive"):
        market_windows(0, 8, seed=0)


def test_impossible_rules_raise_after_max_rounds():
    config = SMALL.replace(rules=PatternRules(trend_min=1000.0), max_rounds=2, candidates=128)
    with pytest.raises(RuntimeError, match="hammer"):
        build_dataset(config)


def test_hand_features_of_a_hammer():
    features = hand_features(window(-1.0, HAMMER))
    assert features.shape == (1, len(FEATURE_NAMES)) == (1, 12)
    named = dict(zip(FEATURE_NAMES, features[0].tolist(), strict=True))
    assert named["body last"] == pytest.approx(0.15)
    assert named["upper last"] == pytest.approx(0.05)
    assert named["lower last"] == pytest.approx(0.8)
    assert named["rising last"] == 1.0 and named["rising prev"] == -1.0
    assert named["trend before last"] == pytest.approx(-5.0 / 1.5)  # 5 steps of -1, range 1.5
    assert named["open last - close prev"] == pytest.approx(0.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"doji_body": 1.5}, "doji_body"),
    ({"short_shadow": -0.1}, "short_shadow"),
    ({"trend_days": 0}, "trend_days"),
    ({"long_shadow": 0}, "long_shadow"),
])
def test_rule_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PatternRules(**kwargs)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: CandlestickDataConfig(window=6), "window .6. must be at least"),
    (lambda: CandlestickDataConfig(per_class=0), "per_class"),
    (lambda: CandlestickDataConfig(plant_probability=1.5), "plant_probability"),
    (lambda: ChartStyle(candle_width=4), "odd"),
    (lambda: ChartStyle(channels=2), "1 .black and white. or 3"),
    (lambda: ChartCNNConfig(height=30), "divisible"),
    (lambda: ChartCNNConfig(channels=()), "non-empty"),
])
def test_config_errors(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize(("windows", "match"), [
    (torch.zeros(2, 8, 5), r"\(N, W, 4\)"),
    (torch.zeros(2, 8, 4, dtype=torch.long), "float"),
    (torch.zeros(2, 6, 4), "at least trend_days"),
    (window(0.0, candle(0.0, 0.5, -0.5, 0.7)), "high < max"),
])
def test_window_errors(windows, match):
    with pytest.raises(ValueError, match=match):
        label_windows(windows)


def test_plant_patterns_rejects_bad_kinds():
    windows = market_windows(4, 8, seed=0)
    for kinds in (torch.zeros(3, dtype=torch.long), torch.full((4,), 6), torch.zeros(4)):
        with pytest.raises(ValueError, match="kinds must be an integer tensor"):
            plant_patterns(windows, kinds, RULE, torch.Generator())


# --- the renderer -------------------------------------------------------------------------------

def chart(*candles: list[float]) -> torch.Tensor:
    """A window whose prices span exactly 0..31, so price p lands on row 31 - p (height 32)."""
    rows = [candle(15.0, 31.0, 0.0, 16.0), *candles]
    return torch.tensor([rows], dtype=torch.float64)


def test_rising_candle_is_a_hollow_body_with_wicks():
    image = render_windows(chart(candle(10.0, 25.0, 5.0, 20.0)))[0, 0]  # (32, 8)
    cell = image[:, 4:8]  # the second candle
    rows = torch.arange(32)
    body = (rows >= 11) & (rows <= 21)  # close 20 -> row 11, open 10 -> row 21
    wick = ((rows >= 6) & (rows <= 10)) | ((rows >= 22) & (rows <= 26))  # high 25, low 5
    assert torch.equal(cell[:, 0].bool(), body) and torch.equal(cell[:, 2].bool(), body)
    assert torch.equal(cell[:, 1].bool(), wick | (rows == 11) | (rows == 21))  # hollow middle
    assert not cell[:, 3].any()  # the gap


def test_falling_candle_is_a_filled_body():
    image = render_windows(chart(candle(20.0, 25.0, 5.0, 10.0)))[0, 0]
    rows = torch.arange(32)
    body = (rows >= 11) & (rows <= 21)
    wick = ((rows >= 6) & (rows <= 10)) | ((rows >= 22) & (rows <= 26))
    for col in (4, 6):
        assert torch.equal(image[:, col].bool(), body)
    assert torch.equal(image[:, 5].bool(), body | wick)
    assert image[:, 7].sum() == 0


def test_window_extremes_map_to_first_and_last_row():
    windows = build_dataset(SMALL).windows
    rows = price_rows(windows, windows[..., 2].amin(1), windows[..., 1].amax(1), 32)
    assert (rows[..., 1].amin(1) == 0).all() and (rows[..., 2].amax(1) == 31).all()
    assert ((rows >= 0) & (rows <= 31)).all()


@pytest.mark.parametrize("style", [ChartStyle(), ChartStyle(height=20, candle_width=5, gap=2),
                                   ChartStyle(height=48, candle_width=1, gap=0),
                                   ChartStyle(channels=3)])
def test_body_and_wick_rows_of_every_candle(style):
    windows = build_dataset(SMALL.replace(style=style)).windows[:40]
    images = render_windows(windows, style)
    cell = style.candle_width + style.gap
    assert images.shape == (40, style.channels, style.height, 8 * cell)
    assert images.shape[-1] == style.image_width(8)
    ink = images.sum(1) > 0  # (N, H, W * cell)
    rows = price_rows(windows, windows[..., 2].amin(1), windows[..., 1].amax(1), style.height)
    r = torch.arange(style.height)
    width = style.candle_width
    for n in range(len(windows)):
        for k in range(8):
            o, h, low, c = rows[n, k].tolist()
            body = (r >= min(o, c)) & (r <= max(o, c))  # rows from open to close
            wick = (r >= h) & (r <= low)  # rows from high to low
            mid = ink[n, :, k * cell + width // 2]
            assert torch.equal(mid | body, wick)  # the wick runs from high to low
            if width > 1:
                assert torch.equal(ink[n, :, k * cell], body)  # the body's left edge
            rising = bool(windows[n, k, 3] > windows[n, k, 0])
            if style.channels == 1 and rising and width > 2:  # hollow: only the outline
                assert torch.equal(mid & body, (r == min(o, c)) | (r == max(o, c)))
            else:
                assert torch.equal(mid, wick)
            assert not ink[n, :, k * cell + width:(k + 1) * cell].any()  # the gap


def test_colour_channels_encode_direction():
    windows = build_dataset(SMALL).windows[:20]
    rgb = render_windows(windows, ChartStyle(channels=3))
    assert not rgb[:, 2].any()  # blue is never used
    rising = (windows[..., 3] > windows[..., 0]).repeat_interleave(4, dim=1)  # (N, W * cell)
    assert not (rgb[:, 0] * rising[:, None]).any()  # no red on rising candles
    assert not (rgb[:, 1] * ~rising[:, None]).any()  # no green on falling ones
    mono = render_windows(windows)[:, 0].bool()
    coloured = rgb.sum(1).bool()
    assert not (mono & ~coloured).any()  # colour draws everything the black-and-white chart does
    assert torch.equal(mono[~rising[:, None].expand_as(mono)],
                       coloured[~rising[:, None].expand_as(mono)])  # falling: identical


def test_render_rejects_bad_windows():
    with pytest.raises(ValueError, match=r"\(N, W, 4\)"):
        render_windows(torch.zeros(8, 4))


# --- the CNN ------------------------------------------------------------------------------------

def reference_forward(model: ChartCNN, x: torch.Tensor) -> torch.Tensor:
    """The same network written with torch.nn.functional calls (eval mode)."""
    for i, stage in enumerate(model.features):
        conv, bn = stage[0], stage[1]
        x = F.conv2d(x, conv.weight, padding=1)
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False)
        x = F.relu(x)
        if i < len(model.features) - 1:
            x = F.max_pool2d(x, 2)
    hidden, out = model.head[1], model.head[3]
    x = F.relu(F.linear(x.flatten(1), hidden.weight, hidden.bias))
    return F.linear(x, out.weight, out.bias)


@pytest.mark.parametrize("config", [ChartCNNConfig(),
                                    ChartCNNConfig(in_channels=3, height=24, width=40,
                                                   channels=(4, 8), hidden=10, num_classes=3)])
def test_chart_cnn_matches_functional_reference(config):
    torch.manual_seed(0)
    model = ChartCNN(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial running statistics
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        x = torch.rand(5, config.in_channels, config.height, config.width)
        torch.testing.assert_close(model(x), reference_forward(model, x))
        assert model.features(x).shape == (5, config.channels[-1],
                                           config.height // config.stride,
                                           config.width // config.stride)
    assert config.flat_features == model.head[1].in_features


def test_chart_cnn_columns_follow_candles():
    torch.manual_seed(0)
    model = ChartCNN().eval()
    x = torch.rand(2, 1, 32, 32)
    changed = x.clone()
    changed[:, :, :, 0:4] = 1 - changed[:, :, :, 0:4]  # redraw the first candle's cell
    with torch.no_grad():
        a, b = model.features(x), model.features(changed)  # (2, 32, 8, 8)
    assert not torch.equal(a[..., 0], b[..., 0])
    torch.testing.assert_close(a[..., 3:], b[..., 3:], rtol=0, atol=0)  # 2 cells away: untouched


def test_chart_cnn_rejects_wrong_image_size():
    with pytest.raises(ValueError, match="ChartCNNConfig"):
        ChartCNN()(torch.zeros(2, 1, 32, 48))

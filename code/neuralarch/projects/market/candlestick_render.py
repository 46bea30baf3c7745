"""Draw candlestick charts into image tensors with torch ops only (no plotting library).

Introduced in Project 4 (``m04-l06``). Each window of W candles (N, W, 4), in open, high, low,
close order, becomes an image of ``height`` rows and ``W * (candle_width + gap)`` columns. The
window's lowest low maps to the bottom row and its highest high to the top row. Every candle
owns a cell of ``candle_width + gap`` columns: the real body fills the first ``candle_width``
columns between the open and close rows, the wick is one pixel wide in the body's middle column,
and the gap stays empty. With one channel, rising candles are drawn hollow and falling ones
filled, the black-and-white convention of printed charts; with three channels, rising candles are
green and falling ones red.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from neuralarch.config import ArchConfig

RISING_RGB = (0.0, 1.0, 0.0)  # green
FALLING_RGB = (1.0, 0.0, 0.0)  # red


class ChartStyle(ArchConfig):
    """How a window of candles is drawn: image height, candle and gap widths, channels."""

    height: int = Field(32, ge=4, description="image rows; the price axis is scaled to fit")
    candle_width: int = Field(3, ge=1, description="body width in pixels; odd, to centre the wick")
    gap: int = Field(1, ge=0, description="empty columns after each candle")
    channels: int = Field(1, description="1: hollow rising / filled falling; 3: green / red")

    @field_validator("candle_width")
    @classmethod
    def _odd(cls, width: int) -> int:
        if width % 2 == 0:
            raise ValueError(f"must be odd so that the wick sits in the middle column; got "
                             f"{width}, use {width - 1} or {width + 1}")
        return width

    @field_validator("channels")
    @classmethod
    def _one_or_three(cls, channels: int) -> int:
        if channels not in (1, 3):
            raise ValueError(f"must be 1 (black and white) or 3 (RGB), got {channels}")
        return channels

    def image_width(self, window: int) -> int:
        """Columns of the image of a ``window``-candle chart."""
        return window * (self.candle_width + self.gap)


def price_rows(prices: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
               height: int) -> torch.Tensor:
    """Map prices (N, ...) to image rows: ``high`` (N,) to row 0, ``low`` (N,) to ``height - 1``."""
    shape = (-1,) + (1,) * (prices.ndim - 1)
    span = (high - low).clamp_min(torch.finfo(prices.dtype).tiny).reshape(shape)
    return torch.round((high.reshape(shape) - prices) / span * (height - 1)).long()


def render_windows(windows: torch.Tensor, style: ChartStyle | None = None) -> torch.Tensor:
    """Draw (N, W, 4) OHLC windows as float images (N, channels, height, W * cell) in [0, 1]."""
    style = style or ChartStyle()
    if windows.ndim != 3 or windows.shape[-1] != 4 or not windows.is_floating_point():
        raise ValueError(f"windows must be a float tensor (N, W, 4) of open, high, low, close; "
                         f"got shape {tuple(windows.shape)} and dtype {windows.dtype}")
    o, h, low, c = windows.unbind(-1)  # each (N, W)
    rows = price_rows(windows, low.amin(1), h.amax(1), style.height)  # (N, W, 4)
    row_o, row_h, row_l, row_c = rows.unbind(-1)
    body_top, body_bottom = torch.minimum(row_o, row_c), torch.maximum(row_o, row_c)  # (N, W)
    filled = (c <= o)[..., None, None]  # (N, W, 1, 1) falling (or flat) candles are filled

    r = torch.arange(style.height)[:, None]  # (H, 1) row index
    in_body = (r >= body_top[..., None, None]) & (r <= body_bottom[..., None, None])  # (N, W, H, 1)
    in_wick = (r >= row_h[..., None, None]) & (r <= row_l[..., None, None])
    body_edge_row = (r == body_top[..., None, None]) | (r == body_bottom[..., None, None])

    j = torch.arange(style.candle_width + style.gap)  # (cell,) column inside a candle's cell
    body_col = j < style.candle_width
    wick_col = j == style.candle_width // 2
    edge_col = (j == 0) | (j == style.candle_width - 1)
    if style.channels == 1:  # hollow rising bodies: only the outline of the rectangle is drawn
        body = in_body & body_col & (filled | edge_col | body_edge_row)
    else:
        body = in_body & body_col
    ink = body | (in_wick & ~in_body & wick_col)  # (N, W, H, cell), the wick stops at the body
    n, w = windows.shape[:2]
    ink = ink.permute(0, 2, 1, 3).reshape(n, style.height, w * len(j))  # (N, H, W * cell)
    if style.channels == 1:
        return ink[:, None].to(windows.dtype)  # (N, 1, H, W * cell)
    rising = (c > o).repeat_interleave(len(j), dim=1)[:, None, None, :]  # (N, 1, 1, W * cell)
    colour = torch.where(rising, torch.tensor(RISING_RGB, dtype=windows.dtype)[:, None, None],
                         torch.tensor(FALLING_RGB, dtype=windows.dtype)[:, None, None])
    return ink[:, None].to(windows.dtype) * colour  # (N, 3, H, W * cell)

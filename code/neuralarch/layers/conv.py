"""2-D convolution from scratch: copy every patch into a column (im2col), then do one matmul.

Introduced in lesson 3.2 (``m03-l02``). ``im2col_loops`` is the readable reference, ``im2col``
the fast version built on ``F.unfold``; ``conv2d_im2col`` and ``Conv2d`` equal ``F.conv2d`` and
``nn.Conv2d`` (stride, padding, dilation, groups, bias), forward and backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _pair(value: object, name: str, minimum: int) -> tuple[int, int]:
    """Turn ``3`` into ``(3, 3)`` and check both entries are ints >= ``minimum``."""
    pair = (value, value) if isinstance(value, int) else value
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair)):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair (height, width) of "
                         f"them, got {value!r}")
    return pair


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Return the output length along one axis: floor((size + 2p - d(k - 1) - 1) / s) + 1."""
    for name, value, low in (("size", size, 1), ("kernel_size", kernel_size, 1),
                             ("stride", stride, 1), ("padding", padding, 0),
                             ("dilation", dilation, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    span = dilation * (kernel_size - 1) + 1  # pixels one kernel application covers
    padded = size + 2 * padding
    if padded < span:
        raise ValueError(f"the kernel spans {span} pixels (kernel_size={kernel_size}, "
                         f"dilation={dilation}) but the padded input has only {padded} "
                         f"(size={size}, padding={padding}); use more padding or a smaller kernel")
    return (padded - span) // stride + 1


def _check_image(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, C, H, W), got {shape}")


def _geometry(x: torch.Tensor, kernel_size: object, stride: object, padding: object,
              dilation: object) -> tuple[tuple[int, int], ...]:
    """Validate the hyperparameters; return them as pairs plus the output size (H_out, W_out)."""
    _check_image(x)
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    d = _pair(dilation, "dilation", 1)
    out = tuple(conv_output_size(x.shape[2 + a], k[a], s[a], p[a], d[a]) for a in (0, 1))
    return k, s, p, d, out


def im2col(x: torch.Tensor, kernel_size: int | tuple[int, int],
           stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
           dilation: int | tuple[int, int] = 1) -> torch.Tensor:
    """Unfold every patch of ``x`` (B, C, H, W) into a column: (B, C * kh * kw, H_out * W_out)."""
    k, s, p, d, _ = _geometry(x, kernel_size, stride, padding, dilation)
    return F.unfold(x, kernel_size=k, dilation=d, padding=p, stride=s)  # (B, C*kh*kw, L)


def im2col_loops(x: torch.Tensor, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1) -> torch.Tensor:
    """The same columns as :func:`im2col`, cut out one output position at a time (reference)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (h_out, w_out) = _geometry(
        x, kernel_size, stride, padding, dilation)
    batch = x.shape[0]
    xp = F.pad(x, (pw, pw, ph, ph))  # (B, C, H + 2ph, W + 2pw): zeros around the border
    columns = []
    for i in range(h_out):  # output row i reads input rows i*sh, i*sh + dh, ...
        for j in range(w_out):
            top, left = i * sh, j * sw
            patch = xp[:, :, top:top + dh * (kh - 1) + 1:dh,
                       left:left + dw * (kw - 1) + 1:dw]  # (B, C, kh, kw)
            columns.append(patch.reshape(batch, -1))  # (B, C*kh*kw), channel-major like unfold
    return torch.stack(columns, dim=2)  # (B, C*kh*kw, L), L = H_out*W_out in row-major order


_UNFOLDS = {"unfold": im2col, "loops": im2col_loops}


def conv2d_im2col(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, groups: int = 1,
                  method: str = "unfold") -> torch.Tensor:
    """2-D convolution like ``F.conv2d``, computed as im2col followed by one (batched) matmul.

    ``method="unfold"`` builds the columns with ``F.unfold``; ``"loops"`` with the
    :func:`im2col_loops` reference.
    """
    if method not in _UNFOLDS:
        raise ValueError(f"method must be one of {sorted(_UNFOLDS)}, got {method!r}")
    _check_image(x)
    if weight.ndim != 4:
        raise ValueError(f"weight must have shape (C_out, C_in / groups, kh, kw), got "
                         f"{tuple(weight.shape)}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    batch, c_in = x.shape[:2]
    c_out, c_group, kh, kw = weight.shape
    if c_out % groups or c_group * groups != c_in:
        raise ValueError(f"with groups={groups}, weight {tuple(weight.shape)} needs C_out "
                         f"divisible by {groups} and C_in = {c_group} * {groups} = "
                         f"{c_group * groups}, but x has C_in = {c_in}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    *_, (h_out, w_out) = _geometry(x, (kh, kw), stride, padding, dilation)

    cols = _UNFOLDS[method](x, (kh, kw), stride, padding, dilation)  # (B, C_in*kh*kw, L)
    cols = cols.reshape(batch, groups, c_group * kh * kw, -1)  # (B, G, K, L), K = C_in/G*kh*kw
    w = weight.reshape(groups, c_out // groups, c_group * kh * kw)  # (G, C_out/G, K)
    out = w @ cols  # (G, C_out/G, K) @ (B, G, K, L) -> (B, G, C_out/G, L)
    out = out.reshape(batch, c_out, h_out, w_out)  # (B, C_out, H_out, W_out)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)  # one bias per output channel
    return out


class Conv2d(nn.Module):
    """A from-scratch ``nn.Conv2d`` (zero padding) whose forward pass is im2col + matmul."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.dilation = _pair(dilation, "dilation", 1)
        factory = {"device": device, "dtype": dtype}
        shape = (out_channels, in_channels // groups, *self.kernel_size)  # (C_out, C_in/G, kh, kw)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch does."""
        fan_in = self.weight[0].numel()  # inputs one output pixel sees: C_in/G * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, H_out, W_out)``."""
        return conv2d_im2col(x, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, self.groups)

    def extra_repr(self) -> str:
        """Describe the layer in ``print(module)`` like ``nn.Conv2d`` does."""
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text if self.bias is not None else text + ", bias=False"

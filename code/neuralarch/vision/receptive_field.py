"""Receptive fields of convolutional networks: computed layer by layer, and measured by gradients.

Introduced in lesson 4.2 (``m04-l02``). :func:`receptive_field` walks a network and applies, per
spatial axis, the recurrences of Araujo et al. (2019) for size ``r``, jump ``j`` and start ``u``::

    r_l = r_{l-1} + (k_l - 1) d_l j_{l-1},    j_l = j_{l-1} s_l,    u_l = u_{l-1} - p_l j_{l-1}

:func:`gradient_receptive_field` measures the same region by backpropagating from one output unit
through a copy of the network in which every path carries a positive gradient, and
:func:`effective_receptive_field` keeps the real weights and returns where the gradient is large
(Luo et al., 2016).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.vision.antialias import BlurPool2d
from neuralarch.vision.resnet import BasicBlock, ResNet

Pair = tuple[int, int]

# Layers that act on every position separately (BatchNorm: in eval mode) leave the field unchanged.
POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid,
             nn.Identity, nn.Dropout, nn.Dropout2d)
# Layers after which every unit sees the whole input: the walk stops there.
GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


def _pair(value: int | tuple[int, ...] | str, name: str) -> Pair:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class LayerSpec:
    """Geometry of one sliding-window layer, per axis (height, width)."""

    kind: str  # "conv", "maxpool", "avgpool" or "blurpool"
    kernel: Pair
    stride: Pair
    padding: Pair  # zeros added before the first pixel (top, left)
    dilation: Pair = (1, 1)
    padding_end: Pair | None = None  # after the last pixel (bottom, right); None: = padding
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        for name in ("kernel", "stride", "dilation"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1 on both axes, got {getattr(self, name)}")
        if min(self.padding) < 0 or min(self.end_padding) < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding} and {self.end_padding}")

    @property
    def end_padding(self) -> Pair:
        """Padding after the last pixel (bottom, right)."""
        return self.padding if self.padding_end is None else self.padding_end


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False, padding_end: int | None = None) -> int:
    """Output length of a sliding window: floor((n + 2p - d(k - 1) - 1) / s) + 1."""
    padding_end = padding if padding_end is None else padding_end
    span = n + padding + padding_end - dilation * (kernel - 1) - 1  # room left for the window
    if n < 1 or span < 0:
        raise ValueError(f"a window of kernel={kernel}, dilation={dilation} does not fit an input "
                         f"of length n={n} with padding ({padding}, {padding_end})")
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= n + padding:  # torch: the last window must start inside the input
        out -= 1
    return out


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the units after one layer, per axis (height, width), in input pixels."""

    name: str  # dotted module name, "input" for the image itself
    size: Pair  # r: pixels one unit sees along each axis
    jump: Pair  # j: input pixels between two neighbouring units
    start: Pair  # u: first input pixel seen by unit (0, 0); negative means it lies in the padding
    out_size: Pair | None = None  # (H', W') of the feature map, if the input size was given
    layer: LayerSpec | None = None  # the layer that produced it

    @property
    def center(self) -> tuple[float, float]:
        """Input coordinate of the centre of unit (0, 0)'s field."""
        return (self.start[0] + (self.size[0] - 1) / 2, self.start[1] + (self.size[1] - 1) / 2)

    def box(self, unit: Pair, input_size: Pair | None = None) -> tuple[int, int, int, int]:
        """(top, bottom, left, right), inclusive, of unit (i, j)'s field; clipped to the image."""
        top, left = (u + i * j for u, i, j in zip(self.start, unit, self.jump, strict=True))
        bottom, right = top + self.size[0] - 1, left + self.size[1] - 1
        if input_size is None:
            return top, bottom, left, right
        h, w = input_size
        return max(top, 0), min(bottom, h - 1), max(left, 0), min(right, w - 1)


def apply_layer(prev: ReceptiveField, layer: LayerSpec, name: str) -> ReceptiveField:
    """One step of the recurrence: the field after ``layer``, given the field before it."""
    size = tuple(r + (k - 1) * d * j for r, k, d, j in
                 zip(prev.size, layer.kernel, layer.dilation, prev.jump, strict=True))
    jump = tuple(j * s for j, s in zip(prev.jump, layer.stride, strict=True))
    start = tuple(u - p * j for u, p, j in zip(prev.start, layer.padding, prev.jump, strict=True))
    out_size = None
    if prev.out_size is not None:
        out_size = tuple(conv_output_size(n, k, s, p, d, layer.ceil_mode, e) for n, k, s, p, d, e
                         in zip(prev.out_size, layer.kernel, layer.stride, layer.padding,
                                layer.dilation, layer.end_padding, strict=True))
    return ReceptiveField(name, size, jump, start, out_size, layer)  # type: ignore[arg-type]


def merge_receptive_fields(a: ReceptiveField, b: ReceptiveField, name: str) -> ReceptiveField:
    """Field of the sum of two branches (a residual block): the union of the two fields."""
    if a.jump != b.jump or a.out_size != b.out_size:
        raise ValueError(f"branches of {name!r} do not align: jumps {a.jump} and {b.jump}, "
                         f"output sizes {a.out_size} and {b.out_size}")
    start = tuple(min(sa, sb) for sa, sb in zip(a.start, b.start, strict=True))
    end = tuple(max(sa + ra, sb + rb) for sa, ra, sb, rb in
                zip(a.start, a.size, b.start, b.size, strict=True))
    size = tuple(e - s for e, s in zip(end, start, strict=True))
    return ReceptiveField(name, size, a.jump, start, a.out_size)  # type: ignore[arg-type]


def layer_spec(module: nn.Module) -> LayerSpec | None:
    """Geometry of a sliding-window layer; None for a pointwise one; ValueError if unknown."""
    if isinstance(module, nn.Conv2d):
        kernel = _pair(module.kernel_size, "kernel_size")
        dilation = _pair(module.dilation, "dilation")
        padding = module.padding
        if isinstance(padding, str):  # "valid" or "same" (stride 1)
            total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            before = (0, 0) if padding == "valid" else (total[0] // 2, total[1] // 2)
            after = (0, 0) if padding == "valid" else (total[0] - before[0], total[1] - before[1])
            return LayerSpec("conv", kernel, _pair(module.stride, "stride"), before, dilation,
                             after)
        return LayerSpec("conv", kernel, _pair(module.stride, "stride"), _pair(padding, "padding"),
                         dilation)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kind = "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool"
        kernel = _pair(module.kernel_size, "kernel_size")
        stride = kernel if module.stride is None else _pair(module.stride, "stride")
        dilation = _pair(getattr(module, "dilation", 1), "dilation")
        return LayerSpec(kind, kernel, stride, _pair(module.padding, "padding"), dilation,
                         ceil_mode=module.ceil_mode)
    if isinstance(module, BlurPool2d):
        before, after = module.padding
        return LayerSpec("blurpool", (module.filter_size,) * 2, (module.stride,) * 2,
                         (before, before), padding_end=(after, after))
    if isinstance(module, POINTWISE):
        return None
    raise ValueError(f"no receptive-field rule for {type(module).__name__}; supported: Conv2d, "
                     f"MaxPool2d, AvgPool2d, BlurPool2d, Sequential, BasicBlock, ResNet and "
                     f"pointwise layers ({', '.join(t.__name__ for t in POINTWISE)})")


def receptive_field(model: nn.Module, input_size: int | Pair | None = None
                    ) -> list[ReceptiveField]:
    """Receptive field after the input and after every sliding-window layer, in forward order.

    A residual block contributes the layers of its longest path, plus a merge row if the
    shortcut widens the field. The walk stops at the first layer that mixes all positions
    (global pooling, Flatten, Linear; the ResNet's head): after it every unit sees everything.
    """
    size = None if input_size is None else _pair(input_size, "input_size")
    rows = [ReceptiveField("input", (1, 1), (1, 1), (0, 0), size)]
    _walk(model, "", rows)
    return rows


def _walk(module: nn.Module, name: str, rows: list[ReceptiveField]) -> bool:
    """Append the rows of ``module``; return False when a global layer ends the walk."""
    def child(part: str) -> str:
        return f"{name}.{part}" if name else part

    if isinstance(module, ResNet):
        return _walk(module.stem, child("stem"), rows) and _walk(module.stages, child("stages"),
                                                                 rows)
    if isinstance(module, BasicBlock):
        entry = rows[-1]
        _walk(module.conv1, child("conv1"), rows)  # main path: the longest one
        _walk(module.conv2, child("conv2"), rows)
        if module.residual:
            skip = [entry]
            _walk(module.shortcut, child("shortcut"), skip)
            merged = merge_receptive_fields(rows[-1], skip[-1], name)
            if (merged.size, merged.start) != (rows[-1].size, rows[-1].start):
                rows.append(merged)
        return True
    if isinstance(module, nn.Sequential):
        return all(_walk(sub, child(part), rows) for part, sub in module.named_children())
    if isinstance(module, GLOBAL):
        return False
    spec = layer_spec(module)
    if spec is not None:
        rows.append(apply_layer(rows[-1], spec, name))
    return True


class _WindowSum(nn.Module):
    """Sum over each pooling window, with the pool's geometry: a max-pool whose gradient reaches
    every pixel of the window, not only the arg-max."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        out = [conv_output_size(n, k, st, p, d, s.ceil_mode) for n, k, st, p, d in
               zip(x.shape[2:], s.kernel, s.stride, s.padding, s.dilation, strict=True)]
        # pad the end so that a plain convolution makes exactly the pool's windows (ceil_mode)
        end = [(o - 1) * st + d * (k - 1) + 1 - n - p for o, st, d, k, n, p in
               zip(out, s.stride, s.dilation, s.kernel, x.shape[2:], s.padding, strict=True)]
        x = F.pad(x, (s.padding[1], max(end[1], 0), s.padding[0], max(end[0], 0)))
        ones = x.new_ones(x.shape[1], 1, *s.kernel)  # (C, 1, kh, kw)
        return F.conv2d(x, ones, stride=s.stride, dilation=s.dilation, groups=x.shape[1])


def positive_copy(model: nn.Module) -> nn.Module:
    """A float64 copy in eval mode whose every input-output path carries a positive gradient.

    Convolution weights become 1 / fan-in and biases 0, BatchNorm becomes the identity, and
    max/avg pooling becomes a window sum. With a positive input every ReLU is active, so the
    gradient of a unit is positive exactly on the pixels it can depend on: no cancellation,
    no arg-max routing, no zero-initialised gain can hide one.
    """
    probe = copy.deepcopy(model).double().eval()
    for name, module in list(probe.named_modules()):
        if isinstance(module, nn.Conv2d):
            with torch.no_grad():
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()  # mean 0, variance 1, gain 1, shift 0
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
            parent, _, attr = name.rpartition(".")
            setattr(probe.get_submodule(parent), attr, _WindowSum(layer_spec(module)))
    return probe


class _Stop(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


def _feature_map(model: nn.Module, x: torch.Tensor, layer: str | None) -> torch.Tensor:
    """Run ``model`` on ``x`` and return the output of submodule ``layer`` (or of the model)."""
    if layer is None:
        out = model(x)
    else:
        try:
            target = model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n][:12]
            raise ValueError(f"model has no submodule {layer!r}; names include {names}") from None
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            captured.append(output)
            raise _Stop

        handle = target.register_forward_hook(hook)
        try:
            model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        out = captured[0]
    if out.ndim != 4:
        raise ValueError(f"the output of {layer or 'the model'} has shape {tuple(out.shape)}, not "
                         f"a feature map (N, C, H, W); pass layer=, e.g. 'stages' for a ResNet")
    return out


def _unit(fmap: torch.Tensor, unit: Pair | None) -> Pair:
    h, w = fmap.shape[2:]
    i, j = (h // 2, w // 2) if unit is None else unit
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"unit {unit} lies outside the feature map of size {(h, w)}")
    return i, j


def _in_channels(model: nn.Module) -> int:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return 1 if conv is None else conv.in_channels


@dataclass(frozen=True)
class MeasuredField:
    """Input pixels that one output unit depends on, found by backpropagation."""

    mask: torch.Tensor  # (H, W) bool: True where the gradient is non-zero
    box: tuple[int, int, int, int]  # (top, bottom, left, right), inclusive bounding box

    @property
    def size(self) -> Pair:
        """Height and width of the bounding box."""
        return self.box[1] - self.box[0] + 1, self.box[3] - self.box[2] + 1

    @property
    def is_box(self) -> bool:
        """True if every pixel of the bounding box is in the field (no holes)."""
        top, bottom, left, right = self.box
        return bool(self.mask[top:bottom + 1, left:right + 1].all())


def gradient_receptive_field(model: nn.Module, input_size: int | Pair, layer: str | None = None,
                             unit: Pair | None = None, in_channels: int | None = None
                             ) -> MeasuredField:
    """Measure unit ``unit`` (default: the centre) of ``layer``'s output by backpropagation.

    With zero padding the result equals the analytic box; reflect or replicate padding also
    lets units at the border see the mirrored pixels.
    """
    h, w = _pair(input_size, "input_size")
    probe = positive_copy(model)
    c = in_channels or _in_channels(probe)
    x = torch.ones(1, c, h, w, dtype=torch.float64, requires_grad=True)  # (1, C, H, W)
    fmap = _feature_map(probe, x, layer)  # (1, C', H', W')
    i, j = _unit(fmap, unit)
    (grad,) = torch.autograd.grad(fmap[0, :, i, j].sum(), x)
    mask = grad[0].abs().sum(0) > 0  # (H, W)
    if not mask.any():
        raise ValueError(f"unit {(i, j)} of {layer or 'the output'} sees only padding: no input "
                         f"pixel of an image of size {(h, w)} reaches it")
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    box = (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]))
    return MeasuredField(mask, box)


def effective_receptive_field(model: nn.Module, images: torch.Tensor, layer: str | None = None,
                              unit: Pair | None = None) -> torch.Tensor:
    """Mean ``|d y_unit / d x|`` over ``images``, summed over channels, normalised to sum 1: (H, W).

    The model runs in eval mode (restored afterwards), so each image's unit depends on that
    image alone and one backward pass gives every image's gradient.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got shape {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    try:
        x = images.detach().clone().requires_grad_(True)  # (N, C, H, W)
        fmap = _feature_map(model, x, layer)  # (N, C', H', W')
        i, j = _unit(fmap, unit)
        (grad,) = torch.autograd.grad(fmap[:, :, i, j].sum(), x)
    finally:
        model.train(was_training)
    erf = grad.abs().sum(1).mean(0)  # (H, W)
    return erf / erf.sum()



def erf_spread(erf: torch.Tensor) -> tuple[float, float]:
    """Standard deviation, in pixels, of an ERF (H, W) read as a distribution, per axis."""
    if erf.ndim != 2 or bool((erf < 0).any()) or float(erf.sum()) <= 0:
        raise ValueError(f"erf must be a non-negative (H, W) map with a positive sum, got shape "
                         f"{tuple(erf.shape)}")
    p = erf / erf.sum()
    spreads = []
    for marginal in (p.sum(1), p.sum(0)):  # over rows (height), over columns (width)
        pos = torch.arange(len(marginal), dtype=p.dtype)
        mean = (marginal * pos).sum()
        spreads.append(float((marginal * (pos - mean) ** 2).sum().sqrt()))
    return spreads[0], spreads[1]

"""Weight initialisation: fans, gains, Xavier/Glorot, He/Kaiming and LeCun, and a depth probe.

Introduced in lesson 3.3 (``m03-l03``). Each initialiser computes the scale its paper derives
from the layer's fan-in / fan-out and then draws with the same primitive (``Tensor.uniform_`` or
``Tensor.normal_``) that ``torch.nn.init`` uses, so with the same ``generator`` seed the results
are bit-identical to ``nn.init.xavier_uniform_`` and friends (the tests check this).
:func:`activation_statistics` records the mean and std of every layer's output with forward
hooks: the measurement that shows whether a scheme keeps the signal alive through depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

FAN_MODES = ("fan_in", "fan_out")
LINEAR_NAMES = ("linear", "conv1d", "conv2d", "conv3d",
                "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")
NONLINEARITIES = (*LINEAR_NAMES, "tanh", "relu", "leaky_relu", "selu")
SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
           "lecun_uniform", "lecun_normal")
INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # weight is (out, in, *kernel)


def fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """Return (fan_in, fan_out) of a Linear ``(out, in)`` or Conv ``(out, in, *kernel)`` weight."""
    if tensor.dim() < 2:
        raise ValueError(f"tensor must have at least 2 dimensions (out, in, *kernel) to have a "
                         f"fan-in and fan-out, got shape {tuple(tensor.shape)}")
    receptive_field = math.prod(tensor.shape[2:])  # k_1 * k_2 * ... ; 1 for a Linear weight
    fan_in = tensor.shape[1] * receptive_field  # inputs that feed one output unit
    fan_out = tensor.shape[0] * receptive_field  # outputs that one input unit feeds
    return fan_in, fan_out


def gain(nonlinearity: str, param: float | None = None) -> float:
    """Return the factor that undoes the variance change of ``nonlinearity`` (``calculate_gain``).

    ``param`` is the negative slope of ``"leaky_relu"`` (default 0.01) and is ignored otherwise.
    """
    if nonlinearity in LINEAR_NAMES:
        return 1.0  # linear maps and convolutions keep the variance; sigmoid by convention
    if nonlinearity == "tanh":
        return 5.0 / 3  # empirical: tanh shrinks a unit-variance input by about this much
    if nonlinearity == "relu":
        return math.sqrt(2.0)  # ReLU zeroes half the inputs: E[relu(z)^2] = Var(z) / 2
    if nonlinearity == "leaky_relu":
        if param is None:
            param = 0.01
        if isinstance(param, bool) or not isinstance(param, int | float):
            raise ValueError(f"param (the negative slope of leaky_relu) must be a number, "
                             f"got {param!r}")
        return math.sqrt(2.0 / (1 + param**2))
    if nonlinearity == "selu":
        return 3.0 / 4  # torch's empirical value; self-normalising nets want "linear" (1)
    raise ValueError(f"nonlinearity must be one of {list(NONLINEARITIES)}, got {nonlinearity!r}")


def _check_tensor(tensor: torch.Tensor) -> tuple[int, int]:
    """Check that ``tensor`` is a floating-point weight and return its (fan_in, fan_out)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"tensor must be a floating-point tensor, got dtype {tensor.dtype}")
    return fan_in_and_fan_out(tensor)


def _check_gain(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"gain must be a finite number > 0, got {value!r}")


def _check_mode(mode: str) -> None:
    if mode not in FAN_MODES:
        raise ValueError(f"mode must be one of {list(FAN_MODES)}, got {mode!r}")


def _fill_uniform(tensor: torch.Tensor, std: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Fill with U(-b, b), b = sqrt(3) std: a uniform on [-b, b] has variance b^2 / 3."""
    bound = math.sqrt(3.0) * std
    with torch.no_grad():  # an init is not part of the graph, even for a leaf Parameter
        return tensor.uniform_(-bound, bound, generator=generator)


def _fill_normal(tensor: torch.Tensor, std: float,
                 generator: torch.Generator | None) -> torch.Tensor:
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def xavier_std(tensor: torch.Tensor, gain: float = 1.0) -> float:
    """Return Glorot's weight std, gain * sqrt(2 / (fan_in + fan_out)), for ``tensor``."""
    fan_in, fan_out = _check_tensor(tensor)
    _check_gain(gain)
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def kaiming_std(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in",
                nonlinearity: str = "leaky_relu") -> float:
    """Return He's weight std, gain(nonlinearity, a) / sqrt(fan), for ``tensor``."""
    fan_in, fan_out = _check_tensor(tensor)
    _check_mode(mode)
    return gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def _check_kaiming(tensor: torch.Tensor, a: float, mode: str, nonlinearity: str) -> None:
    """Validate every argument even when ``tensor`` is empty (and its std undefined)."""
    _check_tensor(tensor)
    _check_mode(mode)
    gain(nonlinearity, a)


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place from U(-b, b), Var = gain^2 2 / (fan_in + fan_out) (Glorot)."""
    _check_tensor(tensor)
    _check_gain(gain)
    if tensor.numel() == 0:
        return tensor  # nothing to fill (and fan_in + fan_out may be 0)
    return _fill_uniform(tensor, xavier_std(tensor, gain), generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, gain^2 2 / (fan_in + fan_out)) (Glorot normal)."""
    _check_tensor(tensor)
    _check_gain(gain)
    if tensor.numel() == 0:
        return tensor
    return _fill_normal(tensor, xavier_std(tensor, gain), generator)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place from U(-b, b) with He's variance gain(nonlinearity, a)^2 / fan."""
    _check_kaiming(tensor, a, mode, nonlinearity)
    if tensor.numel() == 0:
        return tensor  # torch warns and does nothing; the fan may be 0
    return _fill_uniform(tensor, kaiming_std(tensor, a, mode, nonlinearity), generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, gain(nonlinearity, a)^2 / fan) (He normal)."""
    _check_kaiming(tensor, a, mode, nonlinearity)
    if tensor.numel() == 0:
        return tensor
    return _fill_normal(tensor, kaiming_std(tensor, a, mode, nonlinearity), generator)


def lecun_uniform_(tensor: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place from U(-b, b) with LeCun's variance 1 / fan_in."""
    _check_tensor(tensor)
    if tensor.numel() == 0:
        return tensor
    return _fill_uniform(tensor, kaiming_std(tensor, nonlinearity="linear"), generator)


def lecun_normal_(tensor: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, 1 / fan_in) (LeCun normal; the SELU network's init)."""
    _check_tensor(tensor)
    if tensor.numel() == 0:
        return tensor
    return _fill_normal(tensor, kaiming_std(tensor, nonlinearity="linear"), generator)


def init_model(model: nn.Module, scheme: str, *, gain: float = 1.0, nonlinearity: str = "relu",
               std: float = 1.0, generator: torch.Generator | None = None) -> list[str]:
    """Re-initialise every Linear/Conv weight of ``model`` with ``scheme``, zero the biases.

    ``"normal"`` draws N(0, std^2) whatever the layer size; ``"xavier_*"`` use ``gain``;
    ``"kaiming_*"`` use ``nonlinearity`` (fan_in mode); ``"lecun_*"`` need nothing else.
    Returns the names of the layers it initialised, in model order.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    if scheme == "normal" and (isinstance(std, bool) or not isinstance(std, int | float)
                               or not (math.isfinite(std) and std > 0)):
        raise ValueError(f"std must be a finite number > 0 for scheme 'normal', got {std!r}")
    fill = {
        "normal": lambda w: _fill_normal(w, float(std), generator),
        "xavier_uniform": lambda w: xavier_uniform_(w, gain, generator),
        "xavier_normal": lambda w: xavier_normal_(w, gain, generator),
        "kaiming_uniform": lambda w: kaiming_uniform_(w, 0.0, "fan_in", nonlinearity, generator),
        "kaiming_normal": lambda w: kaiming_normal_(w, 0.0, "fan_in", nonlinearity, generator),
        "lecun_uniform": lambda w: lecun_uniform_(w, generator),
        "lecun_normal": lambda w: lecun_normal_(w, generator),
    }[scheme]
    names = []
    for name, module in model.named_modules():
        if isinstance(module, INIT_LAYERS):
            fill(module.weight)  # (out, in, *kernel)
            if module.bias is not None:
                with torch.no_grad():
                    module.bias.zero_()
            names.append(name)
    if not names:
        raise ValueError(f"model ({type(model).__name__}) has no layer of type "
                         f"{[t.__name__ for t in INIT_LAYERS]} to initialise")
    return names


@dataclass
class ActivationStats:
    """What :func:`activation_statistics` returns: one entry per recorded layer, in call order."""

    names: list[str] = field(default_factory=list)  # module names, e.g. "3" or "encoder.fc"
    mean: list[float] = field(default_factory=list)  # mean over all elements of the output
    std: list[float] = field(default_factory=list)  # population std over all output elements


def activation_statistics(model: nn.Module, x: torch.Tensor,
                          layer_types: tuple[type[nn.Module], ...] | None = None
                          ) -> ActivationStats:
    """Run ``model(x)`` once (eval mode, no grad) and record each layer output's mean and std.

    ``layer_types`` picks the modules to record (e.g. ``(nn.ReLU,)`` for post-activations);
    ``None`` records every leaf module. Hooks are removed and the train/eval mode is restored.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor batch, got {type(x).__name__}")
    if layer_types is not None and (
            not isinstance(layer_types, tuple) or not layer_types
            or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in layer_types)):
        raise ValueError(f"layer_types must be a non-empty tuple of nn.Module classes or None, "
                         f"got {layer_types!r}")
    stats = ActivationStats()

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"module {name!r} ({type(module).__name__}) returned a "
                                 f"{type(output).__name__}, not a tensor; leave it out of "
                                 f"layer_types")
            out = output.detach().double()  # (B, ...) in float64: tiny/huge stds stay accurate
            stats.names.append(name)
            stats.mean.append(out.mean().item())
            stats.std.append(out.std(correction=0).item())
        return hook

    chosen = [(name, module) for name, module in model.named_modules()
              if (isinstance(module, layer_types) if layer_types is not None
                  else next(module.children(), None) is None)]
    if not chosen:
        raise ValueError(f"model ({type(model).__name__}) has no module of type {layer_types}")
    handles = [module.register_forward_hook(record(name)) for name, module in chosen]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return stats

"""Gradient health: per-layer gradient norms from hooks, NaN/inf detection, and clipping.

Introduced in lesson 2.5 (``m02-l05``). :class:`GradientMonitor` records how large the gradient is
at every layer on every step, :func:`first_nonfinite_grad` names the parameter whose gradient went
bad, and :func:`clip_grad_norm` / :func:`clip_grad_value` are from-scratch versions of
``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (tested against them).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

MODES = ("parameters", "modules")
CLIP_EPS = 1e-6  # added to the total norm before dividing, as torch does

Tensors = torch.Tensor | Iterable[torch.Tensor]


def _check_norm_type(norm_type: object) -> float:
    valid = isinstance(norm_type, int | float) and not isinstance(norm_type, bool)
    if not valid or not float(norm_type) > 0:  # also rejects NaN
        raise ValueError(f"norm_type must be a number > 0 (or math.inf), got {norm_type!r}")
    return float(norm_type)


def _check_limit(value: object, name: str) -> float:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not float(value) >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be a number >= 0 (inf: no clipping), got {value!r}")
    return float(value)


def _as_tensor_list(tensors: Tensors, name: str) -> list[torch.Tensor]:
    items = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise ValueError(
                f"{name}[{index}] is a {type(item).__name__}; pass a tensor or an iterable of "
                f"tensors (e.g. model.parameters())"
            )
    return items


def total_norm(tensors: Tensors, norm_type: float = 2.0) -> torch.Tensor:
    """Return the ``norm_type``-norm of all ``tensors`` as if they were one concatenated vector."""
    p = _check_norm_type(norm_type)
    items = _as_tensor_list(tensors, "tensors")
    if not items:
        return torch.tensor(0.0)
    with torch.no_grad():
        # ||concat(g_1, ..., g_k)||_p = ||(||g_1||_p, ..., ||g_k||_p)||_p, also for p = inf.
        norms = [torch.linalg.vector_norm(t, p).to(items[0].device) for t in items]  # k x ()
        return torch.linalg.vector_norm(torch.stack(norms), p)  # ()


def clip_grad_norm(parameters: Tensors, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> torch.Tensor:
    """Rescale all gradients together so their total norm is at most ``max_norm``; return it.

    Same contract as ``torch.nn.utils.clip_grad_norm_``: the returned norm is the one *before*
    clipping, parameters whose ``grad`` is ``None`` are skipped, and a NaN/inf total norm raises
    ``RuntimeError`` when ``error_if_nonfinite`` is true (otherwise the gradients become NaN).
    """
    max_norm = _check_limit(max_norm, "max_norm")
    params = _as_tensor_list(parameters, "parameters")
    grads = [p.grad for p in params if p.grad is not None]
    norm = total_norm(grads, norm_type)  # ()
    if error_if_nonfinite and not torch.isfinite(norm):
        bad = [i for i, p in enumerate(params)
               if p.grad is not None and not torch.isfinite(p.grad).all()]
        cause = (f"parameters[{bad[0]}] is the first with a NaN/inf gradient" if bad else
                 "every gradient is finite, but the norm overflows their dtype")
        raise RuntimeError(
            f"the total gradient norm (norm_type={norm_type}) is non-finite ({norm.item()}), so "
            f"it cannot be clipped: {cause}. Pass error_if_nonfinite=False to scale by it anyway"
        )
    # min(1, c / (||g|| + eps)) without a Python branch: no host-device sync on a GPU.
    scale = torch.clamp(max_norm / (norm + CLIP_EPS), max=1.0)  # ()
    with torch.no_grad():
        for grad in grads:
            grad.mul_(scale.to(grad.device))
    return norm


def clip_grad_value(parameters: Tensors, clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place."""
    clip_value = _check_limit(clip_value, "clip_value")
    with torch.no_grad():
        for p in _as_tensor_list(parameters, "parameters"):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def grad_norms(model: nn.Module, norm_type: float = 2.0) -> dict[str, float]:
    """Return ``{parameter name: norm of its .grad}`` for every parameter that has a gradient."""
    p = _check_norm_type(norm_type)
    return {name: torch.linalg.vector_norm(param.grad, p).item()
            for name, param in model.named_parameters() if param.grad is not None}


def nonfinite_grads(model: nn.Module) -> list[str]:
    """Return the names of the parameters whose ``.grad`` holds a NaN or inf, in model order."""
    return [name for name, param in model.named_parameters()
            if param.grad is not None and not torch.isfinite(param.grad).all()]


def first_nonfinite_grad(model: nn.Module) -> str | None:
    """Return the first parameter (in model order) with a NaN/inf gradient, or ``None``."""
    bad = nonfinite_grads(model)
    return bad[0] if bad else None


@dataclass
class StepRecord:
    """Gradient norms of one step, in the order backward produced them (output layer first)."""

    norms: dict[str, float] = field(default_factory=dict)
    nonfinite: list[str] = field(default_factory=list)  # names that saw a NaN/inf, in that order

    @property
    def first_nonfinite(self) -> str | None:
        """Name of the first parameter backward reached with a NaN/inf gradient (the culprit)."""
        return self.nonfinite[0] if self.nonfinite else None


class GradientMonitor:
    """Record per-layer gradient norms with hooks on every step; remove the hooks on exit.

    ``mode="parameters"`` hooks every trainable parameter and records the norm of its ``.grad``
    after accumulation, i.e. what the optimizer will see. ``mode="modules"`` puts a full backward
    hook on every leaf module (or on those of ``module_types``) and records the norm of the
    gradient with respect to the module's output; a module called several times in one step
    gets the norm of all those gradients together. Norms are computed in float64. Attach before
    the forward pass (module hooks are wired in during forward); call :meth:`end_step` after
    each step's backward pass(es).
    """

    def __init__(self, model: nn.Module, mode: str = "parameters",
                 module_types: tuple[type[nn.Module], ...] | None = None,
                 norm_type: float = 2.0) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if module_types is not None and not (
                isinstance(module_types, tuple)
                and all(isinstance(t, type) and issubclass(t, nn.Module) for t in module_types)):
            raise ValueError(
                f"module_types must be a tuple of nn.Module classes or None, got {module_types!r}"
            )
        self.model, self.mode, self.module_types = model, mode, module_types
        self.norm_type = _check_norm_type(norm_type)
        self.targets = self._targets()
        if not self.targets:
            wanted = "trainable parameters" if mode == "parameters" else f"modules {module_types}"
            raise ValueError(f"model has no {wanted} to monitor")
        self.steps: list[StepRecord] = []
        self._current = StepRecord()
        self._handles: list[RemovableHandle] = []

    def _targets(self) -> list[tuple[str, nn.Parameter | nn.Module]]:
        if self.mode == "parameters":
            return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        types = self.module_types
        return [(n, m) for n, m in self.model.named_modules()
                if (isinstance(m, types) if types else not any(m.children()))]

    @property
    def attached(self) -> bool:
        """Whether the hooks are currently registered."""
        return bool(self._handles)

    def attach(self) -> GradientMonitor:
        """Register the hooks (done by ``with``); raise if they are already registered."""
        if self.attached:
            raise RuntimeError("GradientMonitor is already attached; call remove() first")
        for name, target in self.targets:
            if isinstance(target, nn.Parameter):
                handle = target.register_post_accumulate_grad_hook(self._parameter_hook(name))
            else:
                handle = target.register_full_backward_hook(self._module_hook(name))
            self._handles.append(handle)
        return self

    def remove(self) -> None:
        """Remove every hook this monitor registered; the model is as it was before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> GradientMonitor:
        return self.attach()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.remove()

    def _norm(self, tensors: list[torch.Tensor]) -> float:
        # float64, so that the norm of tiny or huge float32 gradients neither underflows to 0
        # nor overflows to inf: the monitor must not invent a vanishing or exploding gradient.
        return total_norm([t.detach().double() for t in tensors], self.norm_type).item()

    def _mark(self, name: str, finite: bool) -> None:
        if not finite and name not in self._current.nonfinite:
            self._current.nonfinite.append(name)

    def _parameter_hook(self, name: str) -> Callable[[torch.Tensor], None]:
        def hook(param: torch.Tensor) -> None:
            grad = param.grad  # already accumulated: overwrite, do not combine
            self._current.norms[name] = self._norm([grad])
            self._mark(name, bool(torch.isfinite(grad).all()))

        return hook

    def _module_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, grad_input: tuple[torch.Tensor | None, ...],
                 grad_output: tuple[torch.Tensor | None, ...]) -> None:
            outputs = [g for g in grad_output if g is not None]
            norm = self._norm(outputs)
            previous = self._current.norms.get(name)
            if previous is not None:  # a module called again: combine as one long vector
                p = self.norm_type
                norm = max(previous, norm) if math.isinf(p) else (previous**p + norm**p) ** (1 / p)
            self._current.norms[name] = norm
            seen = outputs + [g for g in grad_input if g is not None]
            self._mark(name, all(bool(torch.isfinite(g).all()) for g in seen))

        return hook

    def end_step(self) -> StepRecord:
        """Close the current step: store and return its record, and start an empty one."""
        record, self._current = self._current, StepRecord()
        self.steps.append(record)
        return record

    def history(self) -> dict[str, list[float]]:
        """Return ``{name: [norm at step 0, step 1, ...]}`` (NaN where a name got no gradient)."""
        return {name: [step.norms.get(name, math.nan) for step in self.steps]
                for name, _ in self.targets}


def build_deep_mlp(depth: int, width: int, activation: type[nn.Module], scale: float,
                   in_features: int = 784, n_classes: int = 10) -> nn.Sequential:
    """Return ``depth`` x (Linear, activation) + a Linear head, weights ~ N(0, scale^2 / fan_in).

    Biases start at zero and the head uses ``scale = 1``, so ``scale`` alone sets the gain of
    the hidden layers: the knob that makes gradients vanish or explode through depth.
    """
    for name, value in (("depth", depth), ("width", width), ("in_features", in_features),
                        ("n_classes", n_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    layers: list[nn.Module] = []
    sizes = [in_features] + [width] * depth
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), activation()]  # (B, fan_in) -> (B, fan_out)
    layers.append(nn.Linear(width, n_classes))  # (B, n_classes) logits
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                gain = 1.0 if layer is layers[-1] else float(scale)
                layer.weight.normal_(0.0, gain / math.sqrt(layer.in_features))
                layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), *layers)

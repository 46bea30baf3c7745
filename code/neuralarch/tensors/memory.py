"""Memory accounting for training: estimate params, grads, optimizer state and activations
analytically, and measure the same four numbers from one real training step.

Book: Lesson 1.2, "Hardware acceleration and GPU memory" (label ``m01-l02``).

The estimate walks an ``nn.Sequential`` layer by layer and applies a rule for what each layer's
backward pass needs autograd to keep ("saved tensors"). The measurement runs one real step under
``torch.autograd.graph.saved_tensors_hooks`` and counts the unique storages that autograd actually
kept, plus the parameters, ``.grad`` tensors and ``optimizer.state`` tensors. On CPU the two agree
to the byte; on CUDA the measurement also reports the caching allocator's peak.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
LOSSES = ("cross_entropy", "mse")
PRECISIONS = ("fp32", "bf16", "mixed")
_SAVES_OUTPUT = (nn.ReLU, nn.Tanh, nn.Sigmoid)  # backward uses y: relu' = [y > 0], tanh' = 1 - y²
_SAVES_INPUT = (nn.GELU, nn.SiLU, nn.LeakyReLU)  # backward needs the pre-activation x
_VIEWS = (nn.Flatten, nn.Identity)  # no new storage, nothing saved
SUPPORTED_LAYERS = tuple(c.__name__ for c in (nn.Linear, nn.LayerNorm, *_SAVES_OUTPUT,
                                               *_SAVES_INPUT, *_VIEWS))


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes held by one training step, by component; ``total`` is their sum."""

    params: int
    grads: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        """Sum of the four components in bytes."""
        return self.params + self.grads + self.optimizer_state + self.activations

    def as_dict(self) -> dict[str, int]:
        """The four components and the total, in bytes."""
        return {"params": self.params, "grads": self.grads,
                "optimizer_state": self.optimizer_state, "activations": self.activations,
                "total": self.total}


@dataclass(frozen=True)
class MemoryMeasurement(MemoryEstimate):
    """Bytes counted from the live tensors of a real step; on CUDA also the allocator's peak."""

    device: str = "cpu"
    start_allocated: int | None = None  # CUDA bytes allocated before the step (None on CPU)
    peak_allocated: int | None = None  # CUDA high-water mark during the step (None on CPU)


def format_bytes(n: int) -> str:
    """Format a byte count with binary prefixes: ``1536 -> '1.50 KiB'``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int number of bytes, got {n!r}")
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.2f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def per_parameter_bytes(optimizer: str = "adam", precision: str = "fp32") -> dict[str, int]:
    """Bytes per trainable parameter for weights, grads and optimizer state (ZeRO's accounting).

    ``"mixed"`` is the fp16/bf16 recipe of large-model training: 2-byte working weights and
    grads, plus an fp32 master copy of the weights kept by the optimizer next to its moments.
    """
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("precision", precision, PRECISIONS)
    size = 4 if precision == "fp32" else 2
    moments = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}[optimizer]
    state = moments * size if precision != "mixed" else 4 * (1 + moments)
    return {"params": size, "grads": size, "optimizer_state": state,
            "total": 2 * size + state}


def make_mlp(sizes: Sequence[int], activation: str = "relu",
             layer_norm: bool = False) -> nn.Sequential:
    """Build ``Linear -> [LayerNorm] -> act -> ... -> Linear`` for ``sizes = [in, ..., out]``."""
    acts: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                                        "sigmoid": nn.Sigmoid, "silu": nn.SiLU}
    _check_choice("activation", activation, tuple(acts))
    if len(sizes) < 2 or any(not isinstance(s, int) or s <= 0 for s in sizes):
        raise ValueError(f"sizes must list at least 2 positive ints [in, ..., out], got {sizes!r}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:  # no norm or activation after the output layer
            layers += [nn.LayerNorm(d_out)] if layer_norm else []
            layers.append(acts[activation]())
    return nn.Sequential(*layers)


def estimate_training_memory(model: nn.Module, input_shape: Sequence[int],
                             optimizer: str = "adam", loss: str = "cross_entropy",
                             dtype: torch.dtype | None = None) -> MemoryEstimate:
    """Predict the bytes of one training step of an ``nn.Sequential`` without running it.

    ``input_shape`` is the batch shape, e.g. ``(B, in_features)``; the input is assumed to have
    ``dtype`` (default: the parameters' dtype) and the targets to be int64 class ids
    (``"cross_entropy"``) or a tensor shaped like the output (``"mse"``). ``dtype`` casts the
    whole model, as in pure-bf16 training.
    """
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("loss", loss, LOSSES)
    if len(input_shape) == 0 or any(not isinstance(s, int) or s <= 0 for s in input_shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got "
                         f"{tuple(input_shape)!r}")
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("model has no trainable parameters (requires_grad=True); nothing to train")
    if dtype is None:
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"model mixes parameter dtypes {sorted(map(str, dtypes))}; pass dtype")
        dtype = dtypes.pop()
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    size = dtype.itemsize

    def nbytes(tensors: Iterable[torch.Tensor]) -> int:
        return sum(t.numel() for t in tensors) * size

    moments = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}[optimizer]
    steps = 4 * len(trainable) if optimizer in ("adam", "adamw") else 0  # one fp32 scalar each
    return MemoryEstimate(params=nbytes(params), grads=nbytes(trainable),
                          optimizer_state=moments * nbytes(trainable) + steps,
                          activations=_activation_bytes(model, tuple(input_shape), loss, size))


def _activation_bytes(model: nn.Module, shape: tuple[int, ...], loss: str, size: int) -> int:
    """Bytes of the unique tensors that autograd saves in forward, loss included."""
    # The tensor flowing between layers is an "edge". A storage counts once, however many
    # ops save it: ReLU saves its output, and the next Linear saves that same tensor as input.
    saved = 0
    requires_grad = False  # the input batch does not require grad
    counted = False  # is the current edge's storage already counted?
    for layer in _layers(model):
        numel = math.prod(shape)
        if isinstance(layer, nn.Linear):
            if shape[-1] != layer.in_features:
                raise ValueError(f"{layer} expects {layer.in_features} input features, "
                                 f"but the input reaching it has shape {shape}")
            if layer.weight.requires_grad and not counted:  # dL/dW = grad_out^T @ x needs x
                saved, counted = saved + numel * size, True
            shape = (*shape[:-1], layer.out_features)
            requires_grad = requires_grad or any(p.requires_grad for p in layer.parameters())
            counted = False
        elif isinstance(layer, nn.LayerNorm):
            norm_dims = len(layer.normalized_shape)
            if shape[-norm_dims:] != tuple(layer.normalized_shape):
                raise ValueError(f"{layer} normalises shape {tuple(layer.normalized_shape)}, "
                                 f"but the input reaching it has shape {shape}")
            requires_grad = requires_grad or any(p.requires_grad for p in layer.parameters())
            if requires_grad:  # saves x, plus a mean and 1/std per normalised row
                rows = math.prod(shape[:-norm_dims])
                saved += (0 if counted else numel * size) + 2 * rows * size
            counted = False
        elif isinstance(layer, _SAVES_OUTPUT):
            inplace = getattr(layer, "inplace", False)
            if requires_grad and not (inplace and counted):
                saved += numel * size
            counted = counted if inplace and not requires_grad else requires_grad
        elif isinstance(layer, _SAVES_INPUT):
            if getattr(layer, "inplace", False):
                raise ValueError(f"{layer} is in-place; only nn.ReLU(inplace=True) is supported")
            if requires_grad and not counted:
                saved += numel * size
            counted = False
        elif isinstance(layer, nn.Flatten):
            shape = tuple(torch.empty(shape, device="meta").flatten(
                layer.start_dim, layer.end_dim).shape)
    numel = math.prod(shape)
    if loss == "mse":  # saves the prediction and the target (same shape and dtype)
        return saved + (0 if counted else numel * size) + numel * size
    if len(shape) != 2:
        raise ValueError(f"cross_entropy expects 2-D logits (B, classes), got shape {shape}")
    # log_softmax saves its output (B, C); nll_loss saves it too, the int64 targets (B,)
    # and a 0-dim total_weight in the logits' dtype.
    return saved + numel * size + shape[0] * 8 + size


def _layers(model: nn.Module) -> Iterator[nn.Module]:
    """The leaf layers of a (possibly nested) ``nn.Sequential``, in execution order."""
    if isinstance(model, nn.Sequential):
        for child in model:
            yield from _layers(child)
    elif isinstance(model, (nn.Linear, nn.LayerNorm, *_SAVES_OUTPUT, *_SAVES_INPUT, *_VIEWS)):
        yield model
    else:
        raise ValueError(f"cannot estimate activations of {type(model).__name__}; supported: "
                         f"nn.Sequential of {', '.join(SUPPORTED_LAYERS)} "
                         "(use measure_training_memory for any model)")


def measure_training_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            optimizer: torch.optim.Optimizer) -> MemoryMeasurement:
    """Run one real training step and count the bytes of every tensor it keeps alive.

    Counts unique storages (``untyped_storage()``), so views and tensors saved twice count once:
    parameters, their ``.grad``, ``optimizer.state`` tensors, and the tensors autograd saved
    for backward (the input batch and targets included, parameters excluded). On CUDA also
    records ``torch.cuda.max_memory_allocated`` over the step.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"x and y must be tensors, got {type(x).__name__} and "
                         f"{type(y).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got "
                         f"{type(optimizer).__name__}")
    devices = {p.device for p in model.parameters()}
    if devices != {x.device}:
        raise ValueError(f"x is on {x.device} but the model's parameters are on "
                         f"{sorted(map(str, devices))}; move both to the same device")
    saved: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[(str(t.device), storage.data_ptr())] = storage.nbytes()
        return t  # keep autograd's behaviour unchanged: we only look

    optimizer.zero_grad(set_to_none=True)
    tracker = _cuda_peak(x.device) if x.device.type == "cuda" else contextlib.nullcontext({})
    with tracker as cuda_stats:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(x), y)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        loss.backward()
        optimizer.step()

    params = _storages(model.parameters())
    grads = _storages(p.grad for p in model.parameters() if p.grad is not None)
    state = _storages(v for s in optimizer.state.values() for v in s.values()
                      if isinstance(v, torch.Tensor))
    activations = sum(n for key, n in saved.items() if key not in params)
    return MemoryMeasurement(
        params=sum(params.values()), grads=sum(grads.values()),
        optimizer_state=sum(state.values()), activations=activations, device=str(x.device),
        start_allocated=cuda_stats.get("start"), peak_allocated=cuda_stats.get("peak"))


def _storages(tensors: Iterable[torch.Tensor]) -> dict[tuple[str, int], int]:
    """Map each unique storage (device, address) to its size in bytes."""
    out = {}
    for t in tensors:
        storage = t.untyped_storage()
        if storage.nbytes():
            out[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return out


@contextlib.contextmanager
def _cuda_peak(device: torch.device) -> Iterator[dict[str, int]]:
    """Record CUDA bytes allocated at the start and the peak reached inside the block."""
    stats: dict[str, int] = {}
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    stats["start"] = torch.cuda.memory_allocated(device)
    yield stats
    torch.cuda.synchronize(device)  # kernels run asynchronously; wait before reading the peak
    stats["peak"] = torch.cuda.max_memory_allocated(device)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

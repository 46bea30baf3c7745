"""Backpropagation by hand in NumPy: Dense, ReLU and softmax-cross-entropy layers, an N-layer MLP,
and numerical gradient checks.

The reference solution of week 01 of the course track (``w01``). Every layer caches what its
``backward`` needs during ``forward``; ``backward`` takes dL/d(output) and returns dL/d(input),
storing the parameter gradients next to the parameters. Weights are stored ``(in, out)`` so that a
batch of row vectors goes through ``x @ W + b``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from neuralarch.progress import progress_disabled

Array = np.ndarray


def _check_batch(name: str, x: object, features: int) -> Array:
    """Return ``x`` if it is a float array of shape (B, features) with B >= 1, else raise."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != features:
        shape = x.shape if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{name} must be a NumPy array of shape (batch, {features}) with "
                         f"batch >= 1, got {shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def _check_labels(labels: object, batch: int, n_classes: int) -> Array:
    """Return ``labels`` if it is an int array of shape (batch,) with values in [0, n_classes)."""
    if (not isinstance(labels, np.ndarray) or labels.shape != (batch,)
            or not np.issubdtype(labels.dtype, np.integer)):
        got = f"{labels.shape} {labels.dtype}" if isinstance(labels, np.ndarray) else labels
        raise ValueError(f"labels must be an integer array of shape ({batch},), got {got}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got values from "
                         f"{labels.min()} to {labels.max()}")
    return labels


class Dense:
    """A fully connected layer ``y = x W + b`` with He-initialised ``W`` of shape (in, out)."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator,
                 dtype: type = np.float32) -> None:
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        scale = np.sqrt(2.0 / in_features)  # He et al.: keeps ReLU activations' variance steady
        self.W = (rng.standard_normal((in_features, out_features)) * scale).astype(dtype)
        self.b = np.zeros(out_features, dtype=dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._x: Array | None = None

    def forward(self, x: Array) -> Array:
        """Return ``x @ W + b`` for a batch ``x`` of shape (B, in); cache ``x`` for backward."""
        self._x = _check_batch("x", x, self.W.shape[0])
        return x @ self.W + self.b  # (B, out)

    def backward(self, grad_out: Array) -> Array:
        """Store dL/dW and dL/db from dL/dy (B, out); return dL/dx (B, in)."""
        if self._x is None:
            raise ValueError("Dense.backward called before forward; run forward on a batch first")
        _check_batch("grad_out", grad_out, self.W.shape[1])
        if grad_out.shape[0] != self._x.shape[0]:
            raise ValueError(f"grad_out has batch {grad_out.shape[0]} but forward saw batch "
                             f"{self._x.shape[0]}")
        self.dW = self._x.T @ grad_out  # (in, out): sums the per-example outer products
        self.db = grad_out.sum(axis=0)  # (out,)
        return grad_out @ self.W.T  # (B, in)

    def parameters(self) -> list[tuple[str, Array, Array]]:
        """Return ``(name, value, gradient)`` for W and b."""
        return [("W", self.W, self.dW), ("b", self.b, self.db)]


class ReLU:
    """The rectifier ``max(x, 0)``; its gradient passes where the input was positive."""

    def __init__(self) -> None:
        self._mask: Array | None = None

    def forward(self, x: Array) -> Array:
        """Return ``max(x, 0)`` elementwise; cache where ``x > 0``."""
        self._mask = x > 0
        return x * self._mask

    def backward(self, grad_out: Array) -> Array:
        """Return dL/dx = dL/dy where the input was positive, else 0."""
        if self._mask is None:
            raise ValueError("ReLU.backward called before forward; run forward on a batch first")
        if grad_out.shape != self._mask.shape:
            raise ValueError(f"grad_out has shape {grad_out.shape} but forward saw "
                             f"{self._mask.shape}")
        return grad_out * self._mask

    def parameters(self) -> list[tuple[str, Array, Array]]:
        """ReLU has no parameters."""
        return []


def log_softmax(logits: Array) -> Array:
    """Return ``log softmax`` along the last axis, shifting by the row maximum so exp cannot
    overflow."""
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (B, K), every row's max is 0
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class SoftmaxCrossEntropy:
    """Softmax followed by the mean negative log-likelihood of the labels, fused for stability."""

    def __init__(self) -> None:
        self._probs: Array | None = None
        self._labels: Array | None = None

    def forward(self, logits: Array, labels: Array) -> float:
        """Return the mean cross-entropy of integer ``labels`` (B,) under ``logits`` (B, K)."""
        if not isinstance(logits, np.ndarray) or logits.ndim != 2:
            raise ValueError(f"logits must be a 2-D array (batch, classes), got "
                             f"{getattr(logits, 'shape', type(logits).__name__)}")
        _check_labels(labels, logits.shape[0], logits.shape[1])
        log_probs = log_softmax(logits)  # (B, K)
        self._probs, self._labels = np.exp(log_probs), labels
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    def backward(self) -> Array:
        """Return dL/dlogits = (softmax - one_hot) / B, shape (B, K)."""
        if self._probs is None or self._labels is None:
            raise ValueError("SoftmaxCrossEntropy.backward called before forward")
        grad = self._probs.copy()  # (B, K)
        grad[np.arange(len(self._labels)), self._labels] -= 1.0
        return grad / len(self._labels)  # the loss is a mean, so every example weighs 1/B


class MLP:
    """An N-layer perceptron ``Dense → ReLU → … → Dense`` with a softmax-cross-entropy loss."""

    def __init__(self, sizes: Sequence[int], seed: int = 0, dtype: type = np.float32) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least input and output widths, got {sizes!r}")
        rng = np.random.default_rng(seed)
        self.layers: list[Dense | ReLU] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            self.layers.append(Dense(n_in, n_out, rng, dtype))
            if i < len(sizes) - 2:  # no ReLU after the last layer: it outputs logits
                self.layers.append(ReLU())
        self.loss_fn = SoftmaxCrossEntropy()

    def forward(self, x: Array) -> Array:
        """Return the logits (B, K) for a batch ``x`` (B, D)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: Array, labels: Array) -> float:
        """Run the forward pass and return the mean cross-entropy of ``labels``."""
        return self.loss_fn.forward(self.forward(x), labels)

    def backward(self) -> None:
        """Backpropagate the last ``loss`` through every layer, filling the gradients."""
        grad = self.loss_fn.backward()  # (B, K)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    def named_parameters(self) -> list[tuple[str, Array, Array]]:
        """Return ``(name, value, gradient)`` per parameter, e.g. ``("layers.0.W", W, dW)``."""
        return [(f"layers.{i}.{name}", value, grad) for i, layer in enumerate(self.layers)
                for name, value, grad in layer.parameters()]

    def parameters(self) -> list[Array]:
        """Return the parameter arrays (updated in place by an optimizer)."""
        return [value for _, value, _ in self.named_parameters()]

    def gradients(self) -> list[Array]:
        """Return the gradients of the last ``backward``, in the order of ``parameters()``."""
        return [grad for _, _, grad in self.named_parameters()]

    def predict(self, x: Array, batch_size: int = 1000) -> Array:
        """Return the predicted class (B,) of every row of ``x``, in batches."""
        return np.concatenate([self.forward(x[i:i + batch_size]).argmax(axis=1)
                               for i in range(0, len(x), batch_size)])


def accuracy(model: MLP, x: Array, labels: Array) -> float:
    """Return the fraction of rows of ``x`` whose predicted class equals ``labels``."""
    return float((model.predict(x) == labels).mean())


def numerical_gradient(f: Callable[[], float], x: Array, eps: float = 1e-5) -> Array:
    """Return df/dx by central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.

    ``f`` takes no arguments and reads ``x``, which is perturbed in place one entry at a time and
    restored afterwards.
    """
    if not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    grad = np.zeros_like(x, dtype=np.float64)
    for i in range(x.size):
        grad.flat[i] = _partial(f, x, i, eps)
    return grad


def _partial(f: Callable[[], float], x: Array, i: int, eps: float) -> float:
    """Return the central difference of ``f`` along flat entry ``i`` of ``x``."""
    old = x.flat[i]
    x.flat[i] = old + eps
    f_plus = f()
    x.flat[i] = old - eps
    f_minus = f()
    x.flat[i] = old  # restore exactly: the caller's array must not change
    return (f_plus - f_minus) / (2 * eps)


def relative_error(a: Array, b: Array, floor: float = 1e-8) -> float:
    """Return the normwise relative error ``||a - b|| / max(||a|| + ||b||, floor)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    scale = max(float(np.linalg.norm(a) + np.linalg.norm(b)), floor)  # floor: 0/0 when both are 0
    return float(np.linalg.norm(a - b)) / scale


@dataclass
class GradientCheck:
    """Relative error between backprop and central differences, per parameter."""

    errors: dict[str, float]
    checked_entries: int

    @property
    def max_error(self) -> float:
        """The worst relative error over all parameters."""
        return max(self.errors.values())


def gradient_check(model: MLP, x: Array, labels: Array, eps: float = 1e-5,
                   max_entries: int | None = None, seed: int = 0) -> GradientCheck:
    """Compare ``model.backward`` with :func:`numerical_gradient` on one batch.

    ``max_entries`` checks only that many randomly chosen entries of every parameter (all if
    ``None``). Use a float64 model: float32 rounding swamps the finite differences.
    """
    if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
        raise ValueError(f"max_entries must be None or an int >= 1, got {max_entries!r}")
    model.loss(x, labels)
    model.backward()
    analytic = {name: grad.copy() for name, _, grad in model.named_parameters()}
    rng = np.random.default_rng(seed)
    errors, checked = {}, 0
    for name, value, _ in model.named_parameters():
        n = value.size if max_entries is None else min(max_entries, value.size)
        entries = rng.choice(value.size, size=n, replace=False)
        numeric = [_partial(lambda: model.loss(x, labels), value, int(i), eps) for i in entries]
        errors[name] = relative_error(analytic[name].flat[entries], np.array(numeric))
        checked += n
    return GradientCheck(errors=errors, checked_entries=checked)


class ParameterUpdater(Protocol):
    """Anything with ``step(grads)`` that updates the parameters it was built with."""

    def step(self, grads: Sequence[Array]) -> None:
        """Update the parameters in place from their gradients."""


@dataclass
class TrainHistory:
    """What :func:`fit` returns: per-epoch mean training loss and validation accuracy."""

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def best_val_accuracy(self) -> float:
        """Validation accuracy of the epoch whose weights :func:`fit` kept."""
        return self.val_accuracy[self.best_epoch]


def fit(model: MLP, optimizer: ParameterUpdater, x: Array, labels: Array, x_val: Array,
        labels_val: Array, epochs: int = 10, batch_size: int = 64,
        seed: int = 0) -> TrainHistory:
    """Train with shuffled minibatches; keep the weights of the epoch with the best val accuracy."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    history, best = TrainHistory(), [p.copy() for p in model.parameters()]
    for epoch in tqdm(range(epochs), desc="epochs", disable=progress_disabled()):
        order = rng.permutation(len(x))  # a new shuffle every epoch
        losses = []
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            losses.append(model.loss(x[batch], labels[batch]))
            model.backward()
            optimizer.step(model.gradients())
        history.train_loss.append(float(np.mean(losses)))
        history.val_accuracy.append(accuracy(model, x_val, labels_val))
        if history.val_accuracy[-1] > history.val_accuracy[history.best_epoch] or epoch == 0:
            history.best_epoch = epoch
            best = [p.copy() for p in model.parameters()]
    for param, saved in zip(model.parameters(), best, strict=True):
        param[...] = saved  # in place: the optimizer keeps references to these arrays
    return history


_PROC_MAPS = Path("/proc/self/maps")  # Linux: the shared libraries this process has loaded
_BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                 "openblas_set_num_threads")
_BLAS_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                 "openblas_get_num_threads")


def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """Return (get, set) for the thread count of the OpenBLAS that NumPy loaded, if found."""
    if not _PROC_MAPS.exists():  # not Linux: leave BLAS alone
        return None
    lines = _PROC_MAPS.read_text().splitlines()
    paths = {line.split()[-1] for line in lines if "openblas" in line}
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        getter = next((getattr(library, n) for n in _BLAS_GETTERS if hasattr(library, n)), None)
        setter = next((getattr(library, n) for n in _BLAS_SETTERS if hasattr(library, n)), None)
        if getter is not None and setter is not None:
            return getter, setter
    return None


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[bool]:
    """Run NumPy's OpenBLAS with ``n`` threads inside the block; yield whether that was possible.

    Minibatch matrices are small, and on a busy machine BLAS threads spend more time waiting for
    each other than computing; one thread is then many times faster.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    blas = _openblas()
    if blas is None:
        yield False
        return
    get, set_threads = blas
    previous = get()
    set_threads(n)
    try:
        yield True
    finally:
        set_threads(previous)

"""SGD, momentum, RMSProp and Adam for NumPy arrays, and logistic regression to try them on.

The reference solution of week 01 of the course track (``w01``). Each optimizer holds references
to the parameter arrays it was built with and updates them in place from a list of gradients, with
the same update rules (and defaults) as ``torch.optim.SGD``, ``RMSprop`` and ``Adam``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray


def _check_number(name: str, value: object, low: float, high: float = math.inf,
                  include_low: bool = True) -> float:
    """Return ``value`` as a float if it lies in [low, high) (or (low, high)), else raise."""
    ok = (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
          and (low <= value if include_low else low < value) and value < high)
    if not ok:
        interval = f"{'[' if include_low else '('}{low}, {high})"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: validates the parameters and, on every ``step``, the gradients."""

    def __init__(self, params: Sequence[Array], lr: float) -> None:
        params = list(params)
        if not params:
            raise ValueError("params is empty; pass the list of parameter arrays to update")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"params[{i}] must be a floating NumPy array, got "
                                 f"{getattr(p, 'dtype', type(p).__name__)}")
        self.params = params
        self.lr = _check_number("lr", lr, 0.0, include_low=False)
        self.steps = 0

    def step(self, grads: Sequence[Array]) -> None:
        """Update every parameter in place from its gradient (same order as ``params``)."""
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"got {len(grads)} gradients for {len(self.params)} parameters")
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has "
                                 f"shape {p.shape}")
        self.steps += 1
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            self._update(i, p, g)

    def _update(self, i: int, p: Array, g: Array) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _update(i, p, g)")


class SGD(Optimizer):
    """Stochastic gradient descent, with Polyak (heavy-ball) momentum when ``momentum > 0``.

    ``v = momentum * v + g`` (``v = g`` on the first step), then ``p -= lr * v``, as in
    ``torch.optim.SGD``.
    """

    def __init__(self, params: Sequence[Array], lr: float = 0.01,
                 momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0)
        self.velocity: list[Array | None] = [None] * len(self.params)

    def _update(self, i: int, p: Array, g: Array) -> None:
        if self.momentum == 0:
            p -= self.lr * g
            return
        v = self.velocity[i]
        v = g.copy() if v is None else self.momentum * v + g  # a running sum of past gradients
        self.velocity[i] = v
        p -= self.lr * v


class RMSProp(Optimizer):
    """RMSProp: divide the gradient by the root of a running mean of its square.

    ``s = alpha * s + (1 - alpha) * g**2`` and ``p -= lr * g / (sqrt(s) + eps)``, as in
    ``torch.optim.RMSprop``.
    """

    def __init__(self, params: Sequence[Array], lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.alpha = _check_number("alpha", alpha, 0.0, 1.0)
        self.eps = _check_number("eps", eps, 0.0, include_low=False)
        self.square_avg = [np.zeros_like(p) for p in self.params]

    def _update(self, i: int, p: Array, g: Array) -> None:
        s = self.square_avg[i]
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        p -= self.lr * g / (np.sqrt(s) + self.eps)  # each coordinate gets its own step size


class Adam(Optimizer):
    """Adam: momentum on the gradient, RMSProp scaling, and bias correction of both averages.

    With ``m`` and ``v`` the running means of ``g`` and ``g**2`` after ``t`` steps,
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` where ``m_hat = m / (1 - beta1**t)`` and
    ``v_hat = v / (1 - beta2**t)``, as in ``torch.optim.Adam``.
    """

    def __init__(self, params: Sequence[Array], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
        self.beta1 = _check_number("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = _check_number("betas[1]", betas[1], 0.0, 1.0)
        self.eps = _check_number("eps", eps, 0.0, include_low=False)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def _update(self, i: int, p: Array, g: Array) -> None:
        m, v, t = self.m[i], self.v[i], self.steps
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1**t)  # both averages start at 0: undo that bias
        v_hat = v / (1 - self.beta2**t)
        p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def sigmoid(z: Array) -> Array:
    """Return ``1 / (1 + exp(-z))`` without overflow for large ``|z|``."""
    return np.exp(-np.logaddexp(0.0, -z))


def logistic_loss_and_grad(w: Array, b: Array, x: Array,
                           y: Array) -> tuple[float, Array, Array]:
    """Return the mean binary cross-entropy of logistic regression and its gradients (dw, db).

    ``x`` is (N, D), ``y`` (N,) holds 0/1 labels, ``w`` is (D,) and ``b`` is (1,).
    """
    if x.ndim != 2 or w.shape != (x.shape[1],) or b.shape != (1,) or y.shape != (x.shape[0],):
        raise ValueError(f"need x (N, D), w (D,), b (1,), y (N,); got x {x.shape}, w {w.shape}, "
                         f"b {b.shape}, y {y.shape}")
    z = x @ w + b  # (N,) logits
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))  # = -[y log p + (1-y) log(1-p)]
    grad_z = (sigmoid(z) - y) / len(y)  # (N,)
    return loss, x.T @ grad_z, np.array([grad_z.sum()], dtype=w.dtype)


@dataclass
class LogisticRun:
    """What :func:`train_logistic_regression` returns: the loss after every step, the weights."""

    losses: list[float] = field(default_factory=list)
    w: Array | None = None
    b: Array | None = None


def train_logistic_regression(make_optimizer: Callable[[list[Array]], Optimizer], x: Array,
                              y: Array, steps: int = 200, batch_size: int | None = 64,
                              seed: int = 0) -> LogisticRun:
    """Fit logistic regression from zero weights; record the full-data loss after each step.

    ``make_optimizer`` gets ``[w, b]`` and returns an optimizer for them; ``batch_size=None``
    uses the whole data set every step (deterministic gradient descent).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
    w, b = np.zeros(x.shape[1], dtype=x.dtype), np.zeros(1, dtype=x.dtype)
    optimizer = make_optimizer([w, b])
    rng = np.random.default_rng(seed)
    run = LogisticRun(w=w, b=b)
    for _ in range(steps):
        batch = slice(None) if batch_size is None else rng.integers(0, len(x), batch_size)
        _, dw, db = logistic_loss_and_grad(w, b, x[batch], y[batch])
        optimizer.step([dw, db])
        run.losses.append(logistic_loss_and_grad(w, b, x, y)[0])
    return run

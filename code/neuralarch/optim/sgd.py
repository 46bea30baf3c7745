"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, from scratch.

Introduced in lesson 2.3 (``m02-l03``). :class:`SGD` is a real ``torch.optim.Optimizer``
subclass: it has param groups, per-parameter ``state``, ``state_dict``/``load_state_dict`` and
``zero_grad``, and it reproduces ``torch.optim.SGD`` step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from neuralarch.optim.hyperparameters import (
    Params,
    require_flag,
    require_fraction,
    require_nonnegative,
)


class SGD(Optimizer):
    """SGD with optional (Polyak or Nesterov) momentum, dampening and L2 weight decay.

    For each parameter ``p`` with gradient ``g`` it computes ``g += weight_decay * p``, then
    ``buf = momentum * buf + (1 - dampening) * g`` (``buf = g`` on the first step), then steps
    along ``g + momentum * buf`` (Nesterov) or ``buf`` (heavy ball), scaled by ``-lr``.
    """

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (own values or defaults), then add it."""
        group = {**self.defaults, **param_group}
        require_nonnegative("lr", group["lr"])
        require_nonnegative("weight_decay", group["weight_decay"])
        require_fraction("momentum", group["momentum"])
        require_fraction("dampening", group["dampening"], include_one=True)
        require_flag("nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue  # frozen or unused parameter: no update, no state
                d_p = p.grad
                if group["weight_decay"] != 0:
                    d_p = d_p.add(p, alpha=group["weight_decay"])  # g + λθ (L2 penalty)
                if mu != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:  # first step: the buffer starts at the gradient itself
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(mu).add_(d_p, alpha=1 - group["dampening"])  # b = μb + (1-τ)g
                    d_p = d_p.add(buf, alpha=mu) if group["nesterov"] else buf
                p.add_(d_p, alpha=-lr)  # θ = θ - η d
        return loss

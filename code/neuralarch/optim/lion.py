"""Lion (EvoLved Sign Momentum), from scratch, following Chen et al. (2023), Algorithm 2.

Introduced in lesson 2.3 (``m02-l03``). Lion keeps one momentum buffer (Adam keeps two) and
moves every coordinate by exactly ``lr`` per step: the update is the *sign* of an interpolation
between the momentum and the current gradient. ``torch.optim`` has no Lion, so the tests check
it against the paper's update rule on hand-computed steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from neuralarch.optim.hyperparameters import Params, require_betas, require_nonnegative


class Lion(Optimizer):
    """Lion: ``θ ← θ - η (sign(β1 m + (1 - β1) g) + λ θ)``, then ``m ← β2 m + (1 - β2) g``."""

    def __init__(self, params: Params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (own values or defaults), then add it."""
        group = {**self.defaults, **param_group}
        require_nonnegative("lr", group["lr"])
        require_betas(group["betas"], 2)
        require_nonnegative("weight_decay", group["weight_decay"])
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)  # m, same shape as p
                m = state["exp_avg"]
                c = torch.lerp(grad, m, beta1)  # c = β1 m + (1 - β1) g, the update direction
                p.mul_(1 - lr * wd)  # decoupled weight decay, as in AdamW
                p.add_(torch.sign(c), alpha=-lr)  # every coordinate moves by exactly ±η (or 0)
                m.lerp_(grad, 1 - beta2)  # m = β2 m + (1 - β2) g, a *slower* average than c
        return loss

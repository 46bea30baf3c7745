"""Adam (with optional AMSGrad) and AdamW, from scratch, equal to ``torch.optim`` step for step.

Introduced in lesson 2.3 (``m02-l03``). The only difference between :class:`Adam` and
:class:`AdamW` is *where* weight decay enters: Adam adds ``λθ`` to the gradient (an L2 penalty
that then passes through the adaptive scaling), AdamW shrinks the weights directly by
``η λ θ`` (decoupled weight decay).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from neuralarch.optim.hyperparameters import (
    Params,
    require_betas,
    require_flag,
    require_nonnegative,
)


class Adam(Optimizer):
    """Adam: momentum on the gradient, divided by the root of a running mean of its square.

    With ``decoupled_weight_decay=True`` it is AdamW (see :class:`AdamW`); with
    ``amsgrad=True`` the denominator uses the running maximum of the second moment.
    """

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (own values or defaults), then add it."""
        group = {**self.defaults, **param_group}
        require_nonnegative("lr", group["lr"])
        require_betas(group["betas"], 2)
        require_nonnegative("eps", group["eps"])
        require_nonnegative("weight_decay", group["weight_decay"])
        for flag in ("amsgrad", "decoupled_weight_decay"):
            require_flag(flag, group[flag])
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:  # lazy init: moments start at zero, hence the bias correction
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)  # m, same shape as p
                    state["exp_avg_sq"] = torch.zeros_like(p)  # v
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)  # running max of v
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * wd)  # AdamW: θ = θ - ηλθ, outside the adaptive scaling
                    else:
                        grad = grad.add(p, alpha=wd)  # Adam + L2: g = g + λθ
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)  # m = β1 m + (1 - β1) g
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = β2 v + (1 - β2) g²
                if group["amsgrad"]:
                    torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    v = state["max_exp_avg_sq"]
                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                denom = (v.sqrt() / bias_correction2**0.5).add_(eps)  # sqrt(v̂) + ε
                p.addcdiv_(m, denom, value=-lr / bias_correction1)  # θ = θ - η m̂ / (sqrt(v̂) + ε)
        return loss


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay ``θ ← θ (1 - η λ)``; default ``λ = 0.01``."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, decoupled_weight_decay=True)

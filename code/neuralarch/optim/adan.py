"""Adan (Adaptive Nesterov momentum), from scratch, following Xie et al. (2022/2024), Algorithm 1.

Introduced in lesson 2.3 (``m02-l03``). Adan estimates Nesterov momentum without evaluating the
gradient at a look-ahead point: it adds a moving average of gradient *differences*
``g_k - g_{k-1}`` to Adam-style momentum. Like the authors' reference implementation, the betas
are decay rates (``0.98, 0.92, 0.99``, i.e. the paper's ``1 - β``), the moments start at zero
with Adam-style bias correction, and weight decay is the paper's proximal step
``θ ← θ / (1 + η λ)``. ``torch.optim`` has no Adan, so the tests check hand-computed steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from neuralarch.optim.hyperparameters import Params, require_betas, require_nonnegative


class Adan(Optimizer):
    """Adan: Adam-like scaling of ``m̂ + β2 v̂``, where ``v`` averages gradient differences."""

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (own values or defaults), then add it."""
        group = {**self.defaults, **param_group}
        require_nonnegative("lr", group["lr"])
        require_betas(group["betas"], 3)
        require_nonnegative("eps", group["eps"])
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
            lr, (beta1, beta2, beta3), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)  # m: gradients
                    state["exp_avg_diff"] = torch.zeros_like(p)  # v: gradient differences
                    state["exp_avg_sq"] = torch.zeros_like(p)  # n: squared Nesterov gradients
                    state["prev_grad"] = grad.detach().clone()  # g_0 := g_1, so v_1 = 0
                state["step"] += 1
                t = state["step"]
                m, v, n = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"]
                diff = grad - state["prev_grad"]  # g_k - g_{k-1}
                nesterov_grad = grad + beta2 * diff  # g_k + (1 - β2_paper)(g_k - g_{k-1})
                m.lerp_(grad, 1 - beta1)  # m = β1 m + (1 - β1) g
                v.lerp_(diff, 1 - beta2)  # v = β2 v + (1 - β2)(g_k - g_{k-1})
                n.mul_(beta3).addcmul_(nesterov_grad, nesterov_grad, value=1 - beta3)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                n_hat = n / (1 - beta3**t)
                update = (m_hat + beta2 * v_hat) / (n_hat.sqrt() + eps)
                p.add_(update, alpha=-lr)  # θ - η (m̂ + β2 v̂) / (sqrt(n̂) + ε)
                p.div_(1 + lr * group["weight_decay"])  # proximal weight decay
                state["prev_grad"].copy_(grad)
        return loss

"""AdaBelief: Adam whose step size follows our *belief* in the gradient, as a real optimizer.

Built in Project 2 (``m02-l06``). Adam divides the averaged gradient ``m`` by the root of the
averaged *squared* gradient; AdaBelief (Zhuang et al., 2020) divides by the root of the averaged
squared *deviation* ``(g - m)**2`` of the gradient from its prediction ``m``. Consistent
gradients give big steps, surprising ones small steps. With ``belief=False`` the same class is
Adam (``decoupled_weight_decay=False``) or AdamW (``True``), which the tests check against
``torch.optim`` step for step.
"""

from __future__ import annotations

import math
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


class AdaBelief(Optimizer):
    """AdaBelief (Zhuang et al., 2020) with param groups, closures, state_dict and weight decay.

    ``eps`` defaults to 1e-16, the authors' choice: it is added to the *variance* ``s`` (and
    once more to its root), so it plays the role that 1e-8 plays in Adam's denominator.
    ``decoupled_weight_decay=True`` shrinks the weights directly, as in AdamW; ``False`` adds
    ``weight_decay * p`` to the gradient (L2 regularisation), as in Adam.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-16,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = True,
        belief: bool = True,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, belief=belief)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (its own or the defaults), then add it."""
        group = {**self.defaults, **param_group}
        require_nonnegative("lr", group["lr"])
        require_betas(group["betas"], 2)
        require_nonnegative("eps", group["eps"])
        require_nonnegative("weight_decay", group["weight_decay"])
        for flag in ("decoupled_weight_decay", "belief"):
            require_flag(flag, group[flag])
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient; return ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():  # the closure runs forward and backward
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse or p.is_complex():
                    raise ValueError(
                        f"AdaBelief supports dense real gradients only; got a "
                        f"{'sparse' if grad.is_sparse else 'complex'} one for a parameter of "
                        f"shape {tuple(p.shape)} (use torch.optim.SparseAdam for sparse ones)"
                    )
                state = self.state[p]
                if not state:  # lazy init: the state has the parameter's shape and device
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)  # m, the gradient's prediction
                    state["exp_avg_var"] = torch.zeros_like(p)  # s, the belief's variance
                state["step"] += 1
                t = state["step"]

                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)  # AdamW: shrink the weights themselves
                    else:
                        grad = grad.add(p, alpha=weight_decay)  # L2: decay enters m and s

                m, s = state["exp_avg"], state["exp_avg_var"]
                m.lerp_(grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
                if group["belief"]:
                    residual = grad - m  # how far the gradient lands from its prediction
                    s.mul_(beta2).addcmul_(residual, residual, value=1 - beta2).add_(eps)
                else:
                    s.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # Adam's v

                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                denom = (s.sqrt() / math.sqrt(bias_correction2)).add_(eps)
                p.addcdiv_(m, denom, value=-lr / bias_correction1)
        return loss

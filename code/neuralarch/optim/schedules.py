"""Learning-rate schedules as closed-form formulas, packaged as real ``torch.optim`` schedulers.

Introduced in lesson 2.4 (``m02-l04``). Each schedule is one formula ``lr_at(step, base_lr)``.
:class:`ClosedFormLR` turns such a formula into a ``torch.optim.lr_scheduler.LRScheduler``, so the
schedules plug into any training loop, compose with ``SequentialLR``, and resume exactly from
``state_dict()``: the state is the step counter and the hyperparameters, nothing else. The tests
check every schedule against its ``torch.optim.lr_scheduler`` counterpart.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_number(name: str, value: object, low: float, high: float = math.inf,
                  closed: str = "[]") -> float:
    """Check ``low <= value <= high``; ``closed`` says which ends are included, e.g. ``"(]"``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low <= value if closed[0] == "[" else low < value) and (
            value <= high if closed[1] == "]" else value < high)
    if not ok:
        rule = f"{'>=' if closed[0] == '[' else '>'} {low}"
        if math.isfinite(high):
            rule += f" and {'<=' if closed[1] == ']' else '<'} {high}"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")
    return float(value)


def _per_group(name: str, value: float | Sequence[float], n_groups: int) -> list[float]:
    """Broadcast one number to every param group, or check a list has one entry per group."""
    values = list(value) if isinstance(value, list | tuple) else [value] * n_groups
    if len(values) != n_groups:
        raise ValueError(f"{name} has {len(values)} values but the optimizer has {n_groups} "
                         f"param groups; pass one number or one per group")
    return values


class ClosedFormLR(LRScheduler):
    """Base class: a scheduler whose lr at step ``t`` is a formula of ``t`` and the base lr.

    Subclasses set their hyperparameters, call ``super().__init__(optimizer)`` and implement
    :meth:`lr_at`. Nothing is computed from the previous lr, so values never drift, calling
    ``get_lr`` twice is harmless, and ``last_epoch`` alone says where the schedule is.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        for i, group in enumerate(getattr(optimizer, "param_groups", [])):
            if isinstance(group["lr"], torch.Tensor):
                raise ValueError(f"param_groups[{i}]['lr'] is a tensor; these schedules need "
                                 f"float learning rates, e.g. lr={group['lr'].item()}")
        super().__init__(optimizer)  # sets base_lrs, last_epoch = 0 and the step-0 lrs

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return the learning rate at ``step`` for a param group whose base lr is ``base_lr``."""
        raise NotImplementedError(f"{type(self).__name__} must implement lr_at(step, base_lr)")

    def get_lr(self) -> list[float]:
        """Return every group's learning rate at step ``last_epoch``."""
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        # What torch calls for step(epoch) and at a SequentialLR milestone.
        return self.get_lr()


class StepSchedule(ClosedFormLR):
    """Multiply the lr by ``gamma`` every ``step_size`` steps; equals ``StepLR``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _check_int("step_size", step_size, 1)
        self.gamma = _check_number("gamma", gamma, 0.0, closed="(]")
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return ``base_lr * gamma ** (step // step_size)``."""
        return base_lr * self.gamma ** (step // self.step_size)


class ExponentialSchedule(ClosedFormLR):
    """Multiply the lr by ``gamma`` every step; equals ``ExponentialLR``."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _check_number("gamma", gamma, 0.0, closed="(]")
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return ``base_lr * gamma ** step``."""
        return base_lr * self.gamma**step


def _cosine(step: float, total: float, high: float, low: float) -> float:
    """Half a cosine from ``high`` at ``step = 0`` to ``low`` at ``step = total``."""
    return low + (high - low) * (1.0 + math.cos(math.pi * step / total)) / 2.0


class CosineSchedule(ClosedFormLR):
    """Cosine annealing from the base lr to ``min_lr`` over ``total_steps``; equals
    ``CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)``, which rises again after
    ``total_steps``."""

    def __init__(self, optimizer: Optimizer, total_steps: int, min_lr: float = 0.0) -> None:
        self.total_steps = _check_int("total_steps", total_steps, 1)
        self.min_lr = _check_number("min_lr", min_lr, 0.0)
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return the cosine between ``base_lr`` and ``min_lr`` at ``step``."""
        return _cosine(step, self.total_steps, base_lr, self.min_lr)


class LinearSchedule(ClosedFormLR):
    """Scale the lr linearly from ``start_factor`` to ``end_factor`` times the base lr over
    ``total_steps``, then hold (a linear warmup when ``end_factor = 1``); equals ``LinearLR``."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_steps: int = 5) -> None:
        self.start_factor = _check_number("start_factor", start_factor, 0.0, 1.0, closed="(]")
        self.end_factor = _check_number("end_factor", end_factor, 0.0, 1.0)
        self.total_steps = _check_int("total_steps", total_steps, 1)
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return ``base_lr`` times the factor interpolated at ``min(step, total_steps)``."""
        fraction = min(step, self.total_steps) / self.total_steps
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * fraction)


class WarmupCosineSchedule(ClosedFormLR):
    """Linear warmup for ``warmup_steps``, then cosine annealing to ``min_lr`` at
    ``total_steps``; equals ``SequentialLR([LinearLR, CosineAnnealingLR], [warmup_steps])``."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 start_factor: float = 0.01, min_lr: float = 0.0) -> None:
        self.total_steps = _check_int("total_steps", total_steps, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        if warmup_steps >= total_steps:
            raise ValueError(f"warmup_steps={warmup_steps} must be < total_steps={total_steps}: "
                             f"the warmup would leave no steps for the cosine decay")
        self.start_factor = _check_number("start_factor", start_factor, 0.0, 1.0, closed="(]")
        self.min_lr = _check_number("min_lr", min_lr, 0.0)
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return the warmup value before ``warmup_steps`` and the cosine value after."""
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return base_lr * (self.start_factor + (1.0 - self.start_factor) * fraction)
        return _cosine(step - self.warmup_steps, self.total_steps - self.warmup_steps,
                       base_lr, self.min_lr)


class OneCycleSchedule(ClosedFormLR):
    """The 1cycle policy: lr up from ``max_lr / div_factor`` to ``max_lr``, then down to
    ``max_lr / (div_factor * final_div_factor)``, momentum the other way; equals ``OneCycleLR``.

    Step ``t`` may go up to ``total_steps``, as in ``OneCycleLR``; beyond that it raises.
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 cycle_momentum: bool = True, base_momentum: float | Sequence[float] = 0.85,
                 max_momentum: float | Sequence[float] = 0.95) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.total_steps = _check_int("total_steps", total_steps, 2)
        self.pct_start = _check_number("pct_start", pct_start, 0.0, 1.0, closed="()")
        self.div_factor = _check_number("div_factor", div_factor, 0.0, closed="(]")
        self.final_div_factor = _check_number("final_div_factor", final_div_factor, 0.0,
                                              closed="(]")
        T, p, peak, floor = self.total_steps, self.pct_start, self.div_factor, 1 / final_div_factor
        # (last step of the phase, lr at its start and end as multiples of the initial lr,
        #  momentum at its start and end); the step bookkeeping follows OneCycleLR exactly.
        if three_phase:
            self.phases = [(p * T - 1, 1.0, peak, "max", "base"),
                           (2 * p * T - 2, peak, 1.0, "base", "max"),
                           (T - 1.0, 1.0, floor, "max", "max")]
        else:
            self.phases = [(p * T - 1, 1.0, peak, "max", "base"),
                           (T - 1.0, peak, floor, "base", "max")]
        ends = [phase[0] for phase in self.phases]
        if min(b - a for a, b in zip([0.0, *ends], ends, strict=False)) <= 0:
            raise ValueError(f"pct_start={pct_start} with total_steps={total_steps} leaves a "
                             f"phase of the cycle with no steps; pct_start * total_steps must "
                             f"be > 1 and leave room for the later phase(s)")
        groups = optimizer.param_groups
        max_lrs = [_check_number("max_lr", v, 0.0, closed="(]")
                   for v in _per_group("max_lr", max_lr, len(groups))]
        self.momenta = [
            {"base": _check_number("base_momentum", b, 0.0, 1.0),
             "max": _check_number("max_momentum", m, 0.0, 1.0)}
            for b, m in zip(_per_group("base_momentum", base_momentum, len(groups)),
                            _per_group("max_momentum", max_momentum, len(groups)), strict=True)]
        self.cycle_momentum = cycle_momentum
        if cycle_momentum and not {"momentum", "betas"} & optimizer.defaults.keys():
            raise ValueError(f"cycle_momentum=True needs an optimizer with 'momentum' or "
                             f"'betas', not {type(optimizer).__name__}; pass "
                             f"cycle_momentum=False")
        for group, top in zip(groups, max_lrs, strict=True):
            group["initial_lr"] = top / self.div_factor  # becomes base_lr in every formula
        super().__init__(optimizer)

    def _phase(self, step: int) -> tuple[tuple[float, float, float, str, str], float]:
        """Return the phase that ``step`` falls in and the fraction of it that has passed."""
        if step > self.total_steps:
            raise ValueError(f"step {step} is past total_steps={self.total_steps}; build the "
                             f"schedule with the number of optimizer steps you will take")
        start = 0.0
        for phase in self.phases[:-1]:
            if step <= phase[0]:
                return phase, (step - start) / (phase[0] - start)
            start = phase[0]
        last = self.phases[-1]  # also takes step == total_steps, as OneCycleLR does
        return last, (step - start) / (last[0] - start)

    def _interpolate(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return _cosine(pct, 1.0, start, end)
        return start + (end - start) * pct

    def lr_at(self, step: int, base_lr: float) -> float:
        """Return the lr at ``step``; ``base_lr`` is the initial lr ``max_lr / div_factor``."""
        phase, pct = self._phase(step)
        return self._interpolate(base_lr * phase[1], base_lr * phase[2], pct)

    def momentum_at(self, step: int, group: int) -> float:
        """Return param group ``group``'s momentum (or Adam's beta1) at ``step``."""
        phase, pct = self._phase(step)
        levels = self.momenta[group]
        return self._interpolate(levels[phase[3]], levels[phase[4]], pct)

    def get_lr(self) -> list[float]:
        """Set each group's momentum (or beta1) for this step and return the learning rates."""
        if self.cycle_momentum:
            for i, group in enumerate(self.optimizer.param_groups):
                momentum = self.momentum_at(self.last_epoch, i)
                if "betas" in group:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return super().get_lr()


def throwaway_optimizer(lrs: Sequence[float], kind: str = "sgd") -> Optimizer:
    """Return an SGD-with-momentum or AdamW optimizer with one param group per lr and no
    gradients, for tracing a schedule with :func:`record_schedule`."""
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lrs[0])
    raise ValueError(f"kind must be 'sgd' or 'adamw', got {kind!r}")


def _momentum(group: dict[str, Any]) -> float:
    return group["betas"][0] if "betas" in group else group.get("momentum", 0.0)


def record_schedule(scheduler: LRScheduler, steps: int) -> dict[str, torch.Tensor]:
    """Trace ``steps`` steps of ``scheduler``: ``lr`` and ``momentum``, each ``(steps, groups)``.

    Row ``t`` holds the values that optimizer step ``t`` uses, i.e. after ``t`` calls of
    ``scheduler.step()`` (row 0: as constructed).
    The optimizer is stepped too, so it must be a throwaway one whose parameters have no
    gradients (see :func:`throwaway_optimizer`).
    """
    _check_int("steps", steps, 1)
    optimizer = scheduler.optimizer
    if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("record_schedule steps the optimizer, which would update parameters "
                         "that have gradients; trace the schedule on throwaway_optimizer(...)")
    lrs, momenta = [], []
    for step in range(steps):
        if step > 0:
            optimizer.step()  # a no-op without gradients; keeps torch's call-order check quiet
            scheduler.step()
        lrs.append([group["lr"] for group in optimizer.param_groups])
        momenta.append([_momentum(group) for group in optimizer.param_groups])
    return {"lr": torch.tensor(lrs, dtype=torch.float64),  # (steps, groups)
            "momentum": torch.tensor(momenta, dtype=torch.float64)}  # (steps, groups)


def lr_range_test(model: nn.Module, optimizer: Optimizer, batches: Iterable, max_lr: float,
                  steps: int = 100, loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
                  smoothing: float = 0.9, stop_factor: float = 4.0) -> dict[str, list[float]]:
    """Smith's LR range test: raise the lr exponentially from the optimizer's lr to ``max_lr``
    over ``steps`` mini-batches and record the loss.

    Stops early once the smoothed loss exceeds ``stop_factor`` times its best value. The model
    and optimizer are restored afterwards. Returns ``lr``, ``loss`` and ``smoothed`` (one entry
    per step taken).
    """
    _check_int("steps", steps, 2)
    _check_number("smoothing", smoothing, 0.0, 1.0, closed="[)")
    _check_number("stop_factor", stop_factor, 1.0, closed="(]")
    min_lr = optimizer.param_groups[0]["lr"]
    _check_number("max_lr", max_lr, min_lr, closed="(]")
    saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)  # else the schedule would start from an old scheduler's lr
    schedule = ExponentialSchedule(optimizer, gamma=(max_lr / min_lr) ** (1 / (steps - 1)))
    result: dict[str, list[float]] = {"lr": [], "loss": [], "smoothed": []}
    average, best, iterator, was_training = 0.0, math.inf, iter(batches), model.training
    model.train()
    for step in range(steps):
        try:
            x, y = next(iterator)
        except StopIteration:  # fewer batches than steps: start another pass
            iterator = iter(batches)
            x, y = next(iterator)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        result["lr"].append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
        average = smoothing * average + (1 - smoothing) * loss.item()
        smoothed = average / (1 - smoothing ** (step + 1))  # bias-corrected moving average
        result["loss"].append(loss.item())
        result["smoothed"].append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > stop_factor * best:
            break
    model.load_state_dict(saved[0])
    model.train(was_training)
    optimizer.load_state_dict(saved[1])  # restores every group's lr (and drops initial_lr)
    return result

"""Sanity checks for attribution maps: parameter randomisation and pixel deletion / insertion.

Introduced in the interpretability lesson (``extra-interp``). Two questions an attribution map
must survive. *Does it depend on the model?* Adebayo et al. (2018) randomise the layers of a
trained network from the top down (:func:`cascading_randomization`) and measure how similar the
maps stay (:func:`rank_correlation`, Spearman's rho per example); a method whose maps survive the
destruction of the weights explains the image, not the model. *Does it point at what the model
uses?* Deleting the pixels it ranks highest should make the class probability fall fast, and
inserting them into a blank image should make it rise fast (Samek et al., 2017; Petsiuk et al.,
2018): :func:`deletion_curve` and :func:`area_under_curve`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from neuralarch.vision.attribution import Target, check_inputs, evaluation_mode, select_scores

Explainer = Callable[[nn.Module, torch.Tensor], torch.Tensor]
CURVE_MODES = ("deletion", "insertion")


def _as_rows(a: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(a, torch.Tensor) or a.ndim < 2 or not a.is_floating_point():
        detail = (f"shape {tuple(a.shape)}, dtype {a.dtype}" if isinstance(a, torch.Tensor)
                  else type(a).__name__)
        raise ValueError(f"{name} must be a float tensor (N, ...) of maps, got {detail}")
    if not torch.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a.detach().flatten(1).double()  # (N, P)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Return the ranks 1..P of each row of ``values`` (N, P); tied values share their mean rank."""
    n, p = values.shape
    ordered, order = values.sort(dim=1, stable=True)  # (N, P)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # True where a run of equal values begins
    group = starts.cumsum(dim=1) - 1 + p * torch.arange(n, device=values.device)[:, None]
    position = torch.arange(1, p + 1, dtype=torch.float64, device=values.device).expand(n, p)
    mean_position = torch.zeros(n * p, dtype=torch.float64, device=values.device).scatter_reduce(
        0, group.flatten(), position.flatten(), "mean", include_self=False)
    return torch.empty_like(position).scatter_(1, order, mean_position[group])  # (N, P)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return Spearman's rank correlation between the maps ``a[n]`` and ``b[n]``, shape (N,).

    A constant map has no ranking, so its correlation is NaN (as in ``scipy.stats.spearmanr``).
    """
    ra, rb = average_ranks(_as_rows(a, "a")), average_ranks(_as_rows(b, "b"))
    if ra.shape != rb.shape:
        raise ValueError(f"a and b must hold the same number of maps of the same size, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = ra - ra.mean(dim=1, keepdim=True), rb - rb.mean(dim=1, keepdim=True)
    return (ra * rb).sum(dim=1) / (ra.norm(dim=1) * rb.norm(dim=1))  # Pearson of the ranks


@torch.no_grad()
def randomize_parameters(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Overwrite every parameter of ``module`` with Gaussian noise of the same mean and std.

    Matching each tensor's mean and spread keeps the activations in their usual range (a
    BatchNorm gain stays near its trained size) while destroying everything learned in it.
    """
    for param in module.parameters():
        std, mean = torch.std_mean(param, correction=0)
        noise = torch.randn(param.shape, generator=generator, dtype=param.dtype,
                            device=param.device)
        param.copy_(mean + std * noise)


def cascading_randomization(model: nn.Module, x: torch.Tensor, explain: Explainer,
                            layer_names: Sequence[str], generator: torch.Generator | None = None
                            ) -> list[tuple[str, torch.Tensor]]:
    """Explain ``x`` with the trained model, then after randomising each layer cumulatively.

    ``layer_names`` are submodule names (``model.get_submodule``) ordered from the output
    down, e.g. ``["head", "stages.2", "stages.1", "stages.0", "stem"]``. Returns
    ``[("original", maps), (layer_names[0], maps), ...]`` where entry i has the first i layers
    randomised; ``explain(model, x)`` computes the maps. ``model`` itself is left unchanged.
    """
    check_inputs(model, x)
    if isinstance(layer_names, str) or not len(layer_names):
        raise ValueError(f"layer_names must be a non-empty sequence of submodule names, got "
                         f"{layer_names!r}")
    names = dict(model.named_modules())
    unknown = [name for name in layer_names if name not in names or not name]
    if unknown:
        raise ValueError(f"layer_names {unknown} are not submodules of the model; choose from "
                         f"{[name for name in names if name][:12]}")
    randomized = copy.deepcopy(model)
    results = [("original", explain(model, x).detach())]
    for name in layer_names:
        randomize_parameters(randomized.get_submodule(name), generator)
        results.append((name, explain(randomized, x).detach()))
    return results


def _pixel_ranks(attribution: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Rank (0 = most important) of every pixel position, (N, H * W); channels are summed."""
    n, _, h, w = x.shape
    if attribution.shape in {x.shape, (n, h, w)}:
        scores = attribution.reshape(n, -1, h * w).sum(dim=1)  # (N, H * W)
    else:
        raise ValueError(f"attribution must have the shape of x {tuple(x.shape)} or "
                         f"(N, H, W) = {(n, h, w)}, got {tuple(attribution.shape)}")
    order = scores.detach().argsort(dim=1, descending=True, stable=True)  # (N, P)
    positions = torch.arange(h * w, device=x.device).expand(n, -1)
    return torch.empty_like(order).scatter_(1, order, positions)


@torch.no_grad()
def deletion_curve(model: nn.Module, x: torch.Tensor, attribution: torch.Tensor,
                   target: Target = None, mode: str = "deletion", steps: int = 28,
                   baseline: torch.Tensor | float = 0.0, batch_size: int = 256
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the fraction of pixels changed (S + 1,) and the target probability (N, S + 1).

    ``"deletion"`` replaces the pixels in order of decreasing attribution by ``baseline`` (a
    value or an image broadcast to ``x``); ``"insertion"`` starts from ``baseline`` and puts the
    pixels of ``x`` back in the same order. The probability is the softmax of the target class
    (default: the class predicted for ``x``).
    """
    check_inputs(model, x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W), got {tuple(x.shape)}")
    if mode not in CURVE_MODES:
        raise ValueError(f"mode must be one of {CURVE_MODES}, got {mode!r}")
    n, _, h, w = x.shape
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= h * w:
        raise ValueError(f"steps must be an int in [1, {h * w}] (the number of pixels), "
                         f"got {steps!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    ranks = _pixel_ranks(attribution, x).view(n, 1, h, w)
    fill = torch.broadcast_to(torch.as_tensor(baseline, dtype=x.dtype, device=x.device), x.shape)
    counts = torch.div(torch.arange(steps + 1) * h * w, steps, rounding_mode="floor")  # (S + 1,)
    with evaluation_mode(model):
        _, classes = select_scores(model(x), target)
        probs = []
        per_batch = max(1, batch_size // n)  # curve points per forward pass
        for start in range(0, steps + 1, per_batch):
            # (S', N, 1, H, W): True for the pixels already deleted (or inserted) at each point
            chosen = ranks < counts[start:start + per_batch].view(-1, 1, 1, 1, 1)
            images = torch.where(chosen, fill, x) if mode == "deletion" else \
                torch.where(chosen, x, fill)  # (S', N, C, H, W)
            logits = model(images.flatten(0, 1))
            scores = logits.softmax(dim=1).gather(1, classes.repeat(len(chosen))[:, None])
            probs.append(scores.view(len(chosen), n))
    return counts.to(x.dtype) / (h * w), torch.cat(probs).T  # (S + 1,), (N, S + 1)


def area_under_curve(fractions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Return the trapezoidal area under each curve ``values`` (N, S) over ``fractions`` (S,)."""
    if fractions.ndim != 1 or values.shape[-1] != len(fractions) or len(fractions) < 2:
        raise ValueError(f"fractions must be (S,) with S >= 2 and values (..., S), got "
                         f"{tuple(fractions.shape)} and {tuple(values.shape)}")
    widths = fractions[1:] - fractions[:-1]  # (S - 1,)
    return (widths * (values[..., 1:] + values[..., :-1]) / 2).sum(dim=-1)

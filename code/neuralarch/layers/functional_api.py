"""Functional vs modular API: pure-function models, ``torch.func`` transforms, per-sample gradients.

Introduced in lesson 3.5 (``m03-l05``). A module *holds* its parameters; a function *receives*
them. ``torch.func.functional_call`` turns any module into the function ``f(params, x)``, and the
transforms ``grad`` and ``vmap`` then give one gradient per example (``per_sample_gradients_vmap``),
checked against one backward pass per example (``per_sample_gradients_loop``). The applications
are per-example gradient norms, a DP-SGD step and a vectorised model ensemble.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]


# --- a model that is only a function -------------------------------------------------------------

def init_mlp_params(sizes: Sequence[int], generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32) -> Params:
    """Return MLP parameters ``{"layer{i}.weight", "layer{i}.bias"}`` drawn like ``nn.Linear``'s."""
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1
                             for s in sizes):
        raise ValueError(f"sizes must list at least two ints >= 1 (input, ..., output), "
                         f"got {sizes!r}")
    params: Params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        bound = fan_in ** -0.5  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        for name, shape in (("weight", (fan_out, fan_in)), ("bias", (fan_out,))):
            uniform = torch.rand(shape, generator=generator, dtype=dtype)  # in [0, 1)
            params[f"layer{i}.{name}"] = (2 * uniform - 1) * bound
    return params


def mlp_apply(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Pure MLP ``f(x; params)``: Linear, ReLU, ..., Linear; ``x`` is (B, d_in) or (d_in,)."""
    n_layers = 0
    while f"layer{n_layers}.weight" in params:
        n_layers += 1
    if n_layers == 0:
        raise ValueError(f"params must hold 'layer0.weight', 'layer0.bias', ... (see "
                         f"init_mlp_params), got keys {sorted(params)}")
    d_in = params["layer0.weight"].shape[1]
    if x.shape[-1] != d_in:
        raise ValueError(f"x has {x.shape[-1]} features in its last dim (shape "
                         f"{tuple(x.shape)}), but layer0.weight expects {d_in}")
    h = x  # (B, d_in)
    for i in range(n_layers):
        h = F.linear(h, params[f"layer{i}.weight"], params[f"layer{i}.bias"])  # (B, d_i+1)
        if i < n_layers - 1:
            h = F.relu(h)
    return h  # (B, d_out)


# --- per-sample gradients -------------------------------------------------------------------------

def _check_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Reject what per-sample gradients cannot handle, before any work is done."""
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size in dim 0, got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (0 examples); pass at least one example")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True, "
                         f"so there is no gradient to compute")
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(f"module {name!r} is a {type(module).__name__} in training mode: it "
                             f"mixes the examples of a batch, so per-sample gradients are not "
                             f"defined; call model.eval() or use GroupNorm/LayerNorm")


def per_sample_gradients_loop(model: nn.Module, loss_fn: LossFn, x: torch.Tensor,
                              y: torch.Tensor) -> Params:
    """Reference per-sample gradients: one forward and one backward pass per example.

    Returns ``{name: (B, *param.shape)}`` for every parameter that requires grad; ``.grad`` is
    left untouched. ``loss_fn`` must return a scalar (a batch mean or sum).
    """
    _check_batch(model, x, y)
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad],
                        strict=True)
    rows: list[tuple[torch.Tensor, ...]] = []
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i:i + 1]), y[i:i + 1])  # a batch of one example
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}; "
                             f"use reduction='mean' or 'sum'")
        rows.append(torch.autograd.grad(loss, params))
    return {name: torch.stack([row[k] for row in rows])  # (B, *param.shape)
            for k, name in enumerate(names)}


def per_sample_gradients_vmap(model: nn.Module, loss_fn: LossFn, x: torch.Tensor,
                              y: torch.Tensor, chunk_size: int | None = None) -> Params:
    """Per-sample gradients in one vectorised call: ``vmap(grad(loss of one example))``.

    Same result as :func:`per_sample_gradients_loop`. ``chunk_size`` bounds how many examples
    ``vmap`` processes at once (less memory, a little slower); ``None`` does all at once.
    """
    _check_batch(model, x, y)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def example_loss(params: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        # vmap hands us one example without its batch dim; the model wants a batch of one.
        out = functional_call(model, (params, frozen, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    # grad differentiates w.r.t. argument 0 (params); vmap maps over dim 0 of x and y only.
    per_example_grad = vmap(grad(example_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
    return per_example_grad(params, x, y)  # {name: (B, *param.shape)}


def stacked_grad_norms(grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Return the (B,) L2 norm of each example's gradient over all parameters together."""
    if not grads:
        raise ValueError("grads is empty; pass {name: (B, *param.shape)} per-sample gradients")
    sizes = {name: g.shape[0] if g.ndim else None for name, g in grads.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"every gradient needs the same batch size in dim 0, got {sizes}")
    squares = [g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads.values()]  # (B,) each
    return torch.stack(squares).sum(dim=0).sqrt()  # (B,)


def per_sample_grad_norms(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                          batch_size: int = 512) -> torch.Tensor:
    """Return the (N,) per-example gradient norms of a whole data set, ``batch_size`` at a time."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    _check_batch(model, x, y)
    norms = [stacked_grad_norms(per_sample_gradients_vmap(model, loss_fn, xb, yb))
             for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)]
    return torch.cat(norms)  # (N,)


# --- application: differentially private SGD ------------------------------------------------------

def privatize_gradients(grads: Mapping[str, torch.Tensor], max_norm: float,
                        noise_multiplier: float,
                        generator: torch.Generator | None = None) -> Params:
    """DP-SGD's gradient: clip each example's gradient to ``max_norm``, sum, add noise, average.

    The noise is Gaussian with standard deviation ``noise_multiplier * max_norm`` on the sum.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be a number >= 0, got {noise_multiplier!r}")
    norms = stacked_grad_norms(grads)  # (B,)
    scale = (max_norm / (norms + 1e-12)).clamp(max=1.0)  # (B,) 1 where the norm is small
    batch = norms.shape[0]
    private: Params = {}
    for name, g in grads.items():
        clipped_sum = torch.einsum("b,b...->...", scale, g)  # (*param.shape)
        noise = torch.randn(clipped_sum.shape, generator=generator, dtype=g.dtype,
                            device=g.device)
        private[name] = (clipped_sum + noise_multiplier * max_norm * noise) / batch
    return private


def dp_sgd_step(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                lr: float, max_norm: float, noise_multiplier: float,
                generator: torch.Generator | None = None) -> dict[str, float]:
    """One DP-SGD update of ``model`` in place; returns the batch loss and clipping statistics."""
    if not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    grads = per_sample_gradients_vmap(model, loss_fn, x, y)  # {name: (B, *shape)}
    norms = stacked_grad_norms(grads)  # (B,)
    private = privatize_gradients(grads, max_norm, noise_multiplier, generator)
    with torch.no_grad():
        loss = loss_fn(model(x), y)
        for name, p in model.named_parameters():
            if name in private:
                p.sub_(lr * private[name])
    return {"loss": float(loss), "mean_grad_norm": float(norms.mean()),
            "clipped_fraction": float((norms > max_norm).float().mean())}


# --- application: a vectorised ensemble -----------------------------------------------------------

def ensemble_forward(models: Sequence[nn.Module], x: torch.Tensor, *,
                     x_per_model: bool = False) -> torch.Tensor:
    """Run M models of one architecture as one vectorised call; returns (M, B, ...) outputs.

    ``x`` is one batch shared by all models, or with ``x_per_model=True`` a stack (M, B, ...)
    giving each model its own batch. Dropout in training mode draws a different mask per model.
    """
    models = list(models)
    if not models:
        raise ValueError("models is empty; pass at least one nn.Module")
    reference = {n: (tuple(t.shape), t.dtype) for n, t in models[0].state_dict().items()}
    for k, model in enumerate(models[1:], start=1):
        spec = {n: (tuple(t.shape), t.dtype) for n, t in model.state_dict().items()}
        if spec != reference:
            raise ValueError(f"models[{k}] does not have the architecture of models[0] (its "
                             f"parameter and buffer names, shapes or dtypes differ)")
    if x_per_model and (x.ndim == 0 or x.shape[0] != len(models)):
        raise ValueError(f"with x_per_model=True, x needs one batch per model in dim 0: "
                         f"expected {len(models)}, got shape {tuple(x.shape)}")
    params, buffers = stack_module_state(models)  # {name: (M, *shape)}
    # A stateless copy on the meta device: functional_call only borrows its code and structure.
    skeleton = copy.deepcopy(models[0]).to("meta")

    def one_model(params: Params, buffers: Params, xb: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (params, buffers), (xb,))

    in_dims = (0, 0, 0 if x_per_model else None)
    return vmap(one_model, in_dims=in_dims, randomness="different")(params, buffers, x)

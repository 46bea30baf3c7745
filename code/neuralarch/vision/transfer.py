"""Transfer learning: reuse a pretrained network's weights for a new task with few labels.

Introduced in lesson 4.3 (``m04-l03``). The pieces, in the order a transfer run uses them:
load pretrained weights the way model hubs do (:func:`save_hub_checkpoint`,
:func:`load_pretrained`), swap the classifier (:func:`replace_head`), pick a few labelled
examples per class (:func:`few_shot_subset`), then either keep the backbone fixed and fit a
logistic regression on its features (:func:`extract_features`, :func:`linear_probe`) or train
the whole network with smaller learning rates for earlier layers
(:func:`discriminative_param_groups`), optionally freezing parts of it (:func:`freeze`,
:func:`unfreeze`, :class:`FrozenBatchNorm2d`) and training with :func:`fine_tune`. Week 04
(``w04``) uses the same functions, and its target data come from
:mod:`neuralarch.data.sklearn_digits`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.train.loop import BatchTransform, History, TrainConfig, fit
from neuralarch.vision.resnet import ResNetConfig

# ----------------------------------------------------------------------- freezing


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients for every parameter of ``module`` (``requires_grad=False``); return it."""
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Let every parameter of ``module`` train again (``requires_grad=True``); return it."""
    for param in module.parameters():
        param.requires_grad_(True)
    return module


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return the parameters of ``model`` that receive gradients."""
    return [p for p in model.parameters() if p.requires_grad]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine terms: eval-mode BatchNorm in every mode.

    ``model.train()`` switches an ``nn.BatchNorm2d`` back to batch statistics and running
    average updates; this layer ignores the mode, so a frozen backbone stays frozen.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """Copy the statistics and affine terms of a trained ``nn.BatchNorm2d``."""
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("cannot freeze a BatchNorm2d built with track_running_stats=False: "
                             "it has no running statistics to freeze")
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
        return frozen.to(bn.running_mean.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)  # (C,)
        shift = self.bias - self.running_mean * scale  # (C,)
        return x * scale[:, None, None] + shift[:, None, None]  # (N, C, H, W)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a :class:`FrozenBatchNorm2d`."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d.from_batchnorm(child))
        else:
            freeze_batchnorm(child)
    return module


# ------------------------------------------------------------- heads and learning rates


def _check_resnet_like(model: nn.Module) -> None:
    missing = [name for name in ("stem", "stages", "head") if not hasattr(model, name)]
    if missing:
        raise ValueError(f"model must have .stem, .stages and .head like the book's ResNet; "
                         f"{type(model).__name__} lacks {missing}")


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised linear ``head`` with ``num_classes`` outputs."""
    if num_classes <= 0:
        raise ValueError(f"num_classes must be > 0, got {num_classes}")
    old = getattr(model, "head", None)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"model.head must be an nn.Linear to replace, got {type(old).__name__}")
    model.head = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    config = getattr(model, "config", None)
    if isinstance(config, ResNetConfig):  # keep the recorded shape honest
        model.config = config.model_copy(update={"num_classes": num_classes})
    return model


def discriminative_param_groups(model: nn.Module, base_lr: float,
                                decay: float) -> list[dict[str, object]]:
    """Optimizer parameter groups with layer-wise learning rates for a stem/stages/head model.

    The head trains at ``base_lr``, the last stage at ``base_lr * decay``, the stage before at
    ``base_lr * decay**2``, and so on down to the stem. Frozen parameters are included (an
    optimizer skips parameters without gradients), so unfreezing later needs no new optimizer.
    """
    _check_resnet_like(model)
    if base_lr <= 0:
        raise ValueError(f"base_lr must be > 0, got {base_lr}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1] (1 = one learning rate), got {decay}")
    blocks = [("head", model.head)]
    blocks += [(f"stages.{i}", stage) for i, stage in reversed(list(enumerate(model.stages)))]
    blocks.append(("stem", model.stem))
    groups = [{"name": name, "params": list(part.parameters()), "lr": base_lr * decay**depth}
              for depth, (name, part) in enumerate(blocks)]
    counted = sum(len(g["params"]) for g in groups)
    if counted != len(list(model.parameters())):
        raise ValueError(f"model has parameters outside .stem, .stages and .head "
                         f"({len(list(model.parameters())) - counted} tensors); add them to a "
                         f"group by hand")
    return groups


def fine_tune(model: nn.Module, data: torch.utils.data.Dataset,
              param_groups: list[dict[str, object]], steps: int = 40, batch_size: int = 32,
              seed: int = 0, weight_decay: float = 1e-4,
              augment: BatchTransform | None = None) -> History:
    """Train ``model`` for ``steps`` AdamW steps on ``data`` with a cosine decay to zero.

    Each group of ``param_groups`` keeps its own learning rate (the cosine scales them all by
    the same factor), so discriminative rates keep their ratios. Small data sets are repeated
    for as many epochs as the step budget needs; a batch never exceeds the data set. ``fit``
    trains on the book's device; the model is returned to the device it came on.
    """
    if steps <= 0 or batch_size <= 0:
        raise ValueError(f"steps and batch_size must be > 0, got {steps} and {batch_size}")
    batch_size = min(batch_size, len(data))
    per_epoch = -(-len(data) // batch_size)
    home = next(model.parameters()).device
    model.to(memory_format=torch.channels_last)  # faster convolutions on CPU

    def batch_transform(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if augment is not None:
            x, y = augment(x, y)
        return x.contiguous(memory_format=torch.channels_last), y

    history = fit(model, data, None, F.cross_entropy,
                  lambda _: torch.optim.AdamW(param_groups, weight_decay=weight_decay),
                  TrainConfig(epochs=-(-steps // per_epoch), batch_size=batch_size, seed=seed,
                              max_steps=steps, log_every=min(10, steps)),
                  scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
                  batch_transform=batch_transform, progress=False)
    model.to(home, memory_format=torch.contiguous_format)
    return history


# --------------------------------------------------------------- features and probes


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor,
                     batch_size: int = 500) -> torch.Tensor:
    """Return ``model.embed(images)`` (N, D) in eval mode, without gradients, in batches."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    was_training = model.training
    model.eval()  # BatchNorm must use its running statistics, not the batch's
    try:
        return torch.cat([model.embed(chunk) for chunk in images.split(batch_size)])
    finally:
        model.train(was_training)


class LinearProbe(nn.Module):
    """Logistic regression on standardised features: ``linear((features - mean) / std)``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = linear

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)  # (N, K) logits

    def as_head(self) -> nn.Linear:
        """Fold the standardisation into one ``nn.Linear`` that can replace a model's head."""
        weight = self.linear.weight / self.std  # (K, D)
        head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(self.linear.bias - weight @ self.mean)
        return head


def linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None,
                 c: float = 1.0, standardize: bool = True, max_iter: int = 200,
                 tol: float = 1e-9) -> LinearProbe:
    """Fit multinomial logistic regression with L2 penalty on frozen ``features`` (N, D).

    Minimises ``c * sum_i CE(W f_i + b, y_i) + ||W||^2 / 2`` (the bias is not penalised),
    scikit-learn's ``LogisticRegression(C=c)`` objective, with full-batch L-BFGS in float64.
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be (N, D) and labels (N,), got "
                         f"{tuple(features.shape)} and {tuple(labels.shape)}")
    if c <= 0:
        raise ValueError(f"c (inverse regularisation strength) must be > 0, got {c}")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    x = features.detach().double()  # (N, D)
    mean, std = torch.zeros(x.shape[1], dtype=x.dtype), torch.ones(x.shape[1], dtype=x.dtype)
    if standardize:  # population std (ddof 0), like sklearn's StandardScaler
        mean, std = x.mean(0), x.std(0, correction=0).clamp_min(1e-6)
    z = (x - mean) / std
    weight = torch.zeros(k, x.shape[1], dtype=x.dtype, requires_grad=True)  # convex: start at 0
    bias = torch.zeros(k, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter,
                                  tolerance_grad=tol, tolerance_change=tol * 1e-3,
                                  history_size=20, line_search_fn="strong_wolfe")
    n = len(labels)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # the objective divided by c * n: same minimiser, gradients of order 1
        loss = F.cross_entropy(z @ weight.T + bias, labels) + weight.pow(2).sum() / (2 * c * n)
        loss.backward()
        return loss

    optimizer.step(closure)
    linear = nn.Linear(x.shape[1], k)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return LinearProbe(mean.float(), std.float(), linear)


def few_shot_subset(labels: torch.Tensor, per_class: int, seed: int = 0,
                    classes: list[int] | None = None) -> torch.Tensor:
    """Return indices of ``per_class`` random examples of each class, grouped by class.

    For one seed, the subsets for growing ``per_class`` are nested: 5 shots are the first 5 of
    the 10, so a curve over ``per_class`` adds data instead of redrawing it.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if per_class <= 0:
        raise ValueError(f"per_class must be > 0, got {per_class}")
    wanted = sorted(labels.unique().tolist()) if classes is None else list(classes)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in wanted:
        members = (labels == cls).nonzero().flatten()  # (n_cls,)
        if len(members) < per_class:
            raise ValueError(f"class {cls} has only {len(members)} examples, fewer than "
                             f"per_class={per_class}")
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:per_class]])
    return torch.cat(chosen)


# ------------------------------------------------------------------ hub-style loading


def save_hub_checkpoint(state_dict: dict[str, torch.Tensor], folder: str | Path,
                        name: str) -> Path:
    """Save ``state_dict`` as ``name-<first 8 hex of sha256>.pth``, the torchvision convention.

    ``torch.hub.load_state_dict_from_url(..., check_hash=True)`` reads the hash prefix from the
    file name and refuses a download whose sha256 does not start with it.
    """
    if not name or "-" in name or "/" in name:
        raise ValueError(f"name must be non-empty without '-' or '/' (the hash follows the "
                         f"first '-'), got {name!r}")
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    data = buffer.getvalue()
    path = Path(folder) / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@dataclass
class LoadReport:
    """What :func:`load_pretrained` loaded and what it left alone."""

    loaded: list[str]  # keys copied into the model
    missing: list[str]  # model keys not in the (filtered) checkpoint: they keep their init
    unexpected: list[str]  # checkpoint keys the model lacks: ignored
    mismatched: list[str]  # keys in both but with different shapes (e.g. another head): skipped


def load_pretrained(model: nn.Module, url: str, model_dir: str | Path,
                    exclude: tuple[str, ...] = (), check_hash: bool = True) -> LoadReport:
    """Download a state dict like a model hub does and load what fits into ``model``.

    Uses ``torch.hub.load_state_dict_from_url`` (cached in ``model_dir``, sha256-checked on
    download, ``weights_only`` unpickling), drops keys starting with a prefix in ``exclude``
    (e.g. ``("head.",)`` for a new classifier) and tensors whose shape differs from the model's
    (a head for another number of classes), loads the rest with ``strict=False`` and reports.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Downloading: ..." to stdout
        state = torch.hub.load_state_dict_from_url(url, model_dir=str(model_dir),
                                                   map_location="cpu", progress=False,
                                                   check_hash=check_hash, weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(exclude)}
    own = model.state_dict()
    mismatched = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    fitting = {k: v for k, v in state.items() if k not in mismatched}
    result = model.load_state_dict(fitting, strict=False)
    loaded = sorted(k for k in fitting if k in own)
    missing = sorted(set(result.missing_keys) - set(mismatched))
    return LoadReport(loaded, missing, sorted(result.unexpected_keys), mismatched)

"""The anatomy of ``nn.Module``, rebuilt: a tree of named state (parameters, buffers, submodules)
plus a function, with ``state_dict``, train/eval and forward hooks.

Introduced in lesson 3.1 (``m03-l01``). :class:`TinyModule` reimplements the core of
``torch.nn.Module`` in plain Python so that nothing about it is magic; the tests check that it
names, saves, loads and calls exactly like the real thing. :func:`describe_module` and
:func:`capture_activations` work on both.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

PreHook = Callable[[Any, tuple], Any]  # hook(module, args) -> None or new args
ForwardHook = Callable[[Any, tuple, Any], Any]  # hook(module, args, output) -> None or new output
_hook_ids = itertools.count()


class HookHandle:
    """Returned by ``register_forward_*hook``: ``remove()`` (or leaving a ``with``) unhooks."""

    def __init__(self, hooks: dict[int, Callable]) -> None:
        self.hooks, self.id = hooks, next(_hook_ids)

    def remove(self) -> None:
        """Unregister the hook; removing twice is harmless."""
        self.hooks.pop(self.id, None)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class LoadResult(NamedTuple):
    """What :meth:`TinyModule.load_state_dict` returns (like torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class TinyModule:
    """A from-scratch ``nn.Module``: registers state on assignment and runs hooks around forward."""

    def __init__(self) -> None:
        # object.__setattr__ because our own __setattr__ needs these dicts to exist already.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())  # name -> Parameter | None
        object.__setattr__(self, "_buffers", OrderedDict())  # name -> Tensor | None
        object.__setattr__(self, "_non_persistent", set())  # buffer names left out of saves
        object.__setattr__(self, "_modules", OrderedDict())  # name -> TinyModule | None
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())  # id -> hook
        object.__setattr__(self, "_forward_hooks", OrderedDict())  # id -> hook

    # --- registration -----------------------------------------------------------------------

    def _check_name(self, name: object, what: str, registry: dict) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{what} name must be a non-empty str without '.', got {name!r}")
        if hasattr(self, name) and name not in registry:  # re-registering the same kind is fine
            raise ValueError(f"cannot register {what} {name!r}: {type(self).__name__} already "
                             f"has an attribute of that name; delete it first")

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        """Add a trainable tensor: it is returned by ``parameters()`` and saved."""
        self._check_name(name, "parameter", self._parameters)
        if param is not None and not isinstance(param, nn.Parameter):
            raise ValueError(f"parameter {name!r} must be an nn.Parameter or None, got "
                             f"{type(param).__name__}; wrap it as nn.Parameter(tensor)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: torch.Tensor | None,
                        persistent: bool = True) -> None:
        """Add non-trainable state that moves with ``to()``; saved only if ``persistent``."""
        self._check_name(name, "buffer", self._buffers)
        if tensor is not None and not isinstance(tensor, torch.Tensor):
            raise ValueError(f"buffer {name!r} must be a torch.Tensor or None, got "
                             f"{type(tensor).__name__}")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: TinyModule | None) -> None:
        """Add a child module under ``name``; its state joins the tree with prefix ``name.``."""
        self._check_name(name, "module", self._modules)
        if module is not None and not isinstance(module, TinyModule):
            raise ValueError(f"module {name!r} must be a TinyModule or None, got "
                             f"{type(module).__name__}")
        self._modules[name] = module

    def __setattr__(self, name: str, value: Any) -> None:
        def forget(keep: dict) -> None:  # a name lives in one place; `keep` keeps its order
            for registry in (self._parameters, self._buffers, self._modules, self.__dict__):
                if registry is not keep:
                    registry.pop(name, None)
            self._non_persistent.discard(name)

        if isinstance(value, nn.Parameter):
            forget(keep=self._parameters)
            self.register_parameter(name, value)
        elif isinstance(value, TinyModule):
            forget(keep=self._modules)
            self.add_module(name, value)
        elif name in self._parameters:  # only a Parameter (above) or None may replace one
            self.register_parameter(name, value)
        elif name in self._modules:
            self.add_module(name, value)
        elif name in self._buffers:  # assigning to a buffer keeps it a buffer
            self.register_buffer(name, value, persistent=name not in self._non_persistent)
        else:
            object.__setattr__(self, name, value)  # a plain attribute: invisible to the tree

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for registered state.
        for registry in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(registry, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- walking the tree ---------------------------------------------------------------------

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True,
                      _memo: set[int] | None = None) -> Iterator[tuple[str, TinyModule]]:
        """Yield ``(dotted name, module)`` for this module and all descendants, depth first."""
        memo = set() if _memo is None else _memo
        if id(self) in memo:
            return  # a module reached twice is listed once
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                child_prefix = f"{prefix}.{name}" if prefix else name
                yield from child.named_modules(child_prefix, remove_duplicate, memo)

    def named_children(self) -> Iterator[tuple[str, TinyModule]]:
        """Yield ``(name, module)`` for the direct children."""
        yield from ((n, m) for n, m in self._modules.items() if m is not None)

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[tuple[str, torch.Tensor]]:
        seen: set[int] = set()  # tensor ids: a tied weight is yielded under its first name only
        modules = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, tensor in getattr(module, registry).items():
                if tensor is None or id(tensor) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(tensor))
                yield (f"{module_prefix}.{name}" if module_prefix else name), tensor

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Parameter]]:
        """Yield ``(dotted name, parameter)``; a shared parameter appears once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Yield every distinct parameter (what an optimizer needs)."""
        yield from (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(dotted name, buffer)``, persistent or not."""
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    # --- saving and loading -------------------------------------------------------------------

    def state_dict(self, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
        """Return every parameter and persistent buffer by dotted name, detached.

        Like torch, shared tensors are *not* de-duplicated: a tied weight is saved under each
        name that reaches it, so the file can be loaded into an untied model too.
        """
        state: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, param in self._parameters.items():  # own parameters, then buffers, then kids
            if param is not None:
                state[prefix + name] = param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent:
                state[prefix + name] = buf.detach()
        for name, child in self._modules.items():
            if child is not None:
                state.update(child.state_dict(prefix=f"{prefix}{name}."))
        return state

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor],
                        strict: bool = True) -> LoadResult:
        """Copy tensors in by name; report missing/unexpected keys (errors if ``strict``).

        A shape mismatch is always an error: a checkpoint for a different architecture must
        never be half-loaded.
        """
        own = self.state_dict()  # detached tensors that share storage with ours
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = [f"size mismatch for {key}: the checkpoint has shape "
                  f"{tuple(state_dict[key].shape)}, the model has {tuple(own[key].shape)}"
                  for key in own if key in state_dict and state_dict[key].shape != own[key].shape]
        if strict and missing:
            errors.append(f"missing keys {missing}")
        if strict and unexpected:
            errors.append(f"unexpected keys {unexpected}")
        if errors:
            raise ValueError(f"cannot load state_dict into {type(self).__name__}: "
                             + "; ".join(errors)
                             + ("" if strict else " (strict=False skips only missing and "
                                                  "unexpected keys)"))
        with torch.no_grad():
            for key, target in own.items():
                if key in state_dict:
                    target.copy_(state_dict[key])  # in place: optimizers keep their tensors
        return LoadResult(missing, unexpected)

    # --- modes and devices --------------------------------------------------------------------

    def train(self, mode: bool = True) -> TinyModule:
        """Set ``training`` on this module and every descendant; return self."""
        if not isinstance(mode, bool):
            raise ValueError(f"mode must be a bool, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for child in self._modules.values():
            if child is not None:
                child.train(mode)
        return self

    def eval(self) -> TinyModule:
        """Shorthand for ``train(False)``."""
        return self.train(False)

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> TinyModule:
        """Move every parameter and buffer; ``dtype`` casts only floating-point tensors."""
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")

        def convert(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, dtype if t.is_floating_point() else None)  # int counters stay

        for _, module in self.named_modules():
            for param in module._parameters.values():
                if param is not None:
                    param.data = convert(param.data)  # same Parameter object: ties survive
                    if param.grad is not None:
                        param.grad = convert(param.grad)
            for name, buf in module._buffers.items():
                if buf is not None:
                    module._buffers[name] = convert(buf)
        return self

    # --- calling ------------------------------------------------------------------------------

    def register_forward_pre_hook(self, hook: PreHook) -> HookHandle:
        """Run ``hook(module, args)`` before forward; a non-None result replaces the args."""
        handle = HookHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: ForwardHook) -> HookHandle:
        """Run ``hook(module, args, output)`` after forward; a non-None result replaces output."""
        handle = HookHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; every subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for hook in list(self._forward_pre_hooks.values()):  # list(): a hook may remove itself
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output


class TinyLinear(TinyModule):
    """``y = x W^T + b``, initialised exactly like ``nn.Linear`` (same random draws)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))  # (out, in)
        self.register_parameter("bias", nn.Parameter(torch.empty(out_features)) if bias else None)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default; see 3.3
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)  # (B, in) -> (B, out)


class TinyReLU(TinyModule):
    """``max(0, x)`` element-wise; no state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


class TinyDropout(TinyModule):
    """Zero each element with probability ``p`` in training, scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not isinstance(p, int | float) or not 0.0 <= p < 1.0:
            raise ValueError(f"p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=self.training)  # identity in eval mode


class TinySequential(TinyModule):
    """Call children ``"0"``, ``"1"``, ... in order, feeding each the previous output."""

    def __init__(self, *modules: TinyModule) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            self.add_module(str(index), module)

    def __getitem__(self, index: int) -> TinyModule:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x: Any) -> Any:
        for _, module in self.named_children():
            x = module(x)
        return x


@dataclass(frozen=True)
class TensorRow:
    """One row of :func:`describe_module`: a tensor the module holds, and how it holds it."""

    name: str
    kind: str  # "parameter", "buffer" or "plain tensor" (not registered: the classic bug)
    shape: tuple[int, ...]
    numel: int
    dtype: str
    requires_grad: bool
    persistent: bool  # in state_dict()?
    shared_with: str  # first name of the same tensor object if it is tied, else ""


def describe_module(model: nn.Module | TinyModule) -> list[TensorRow]:
    """List every tensor a module tree holds: parameters, buffers and unregistered tensors."""
    if not isinstance(model, nn.Module | TinyModule):
        raise ValueError(f"model must be an nn.Module or TinyModule, got {type(model).__name__}")
    saved = set(model.state_dict())
    first_name: dict[int, str] = {}
    rows = []
    members = [("parameter", model.named_parameters(remove_duplicate=False)),
               ("buffer", model.named_buffers(remove_duplicate=False)),
               ("plain tensor", _plain_tensors(model))]
    for kind, named in members:
        for name, tensor in named:
            shared = first_name.setdefault(id(tensor), name)
            rows.append(TensorRow(name, kind, tuple(tensor.shape), tensor.numel(),
                                  str(tensor.dtype).removeprefix("torch."),
                                  tensor.requires_grad, name in saved,
                                  shared if shared != name else ""))
    return rows


def _plain_tensors(model: nn.Module | TinyModule) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors stored as ordinary attributes: ``to()`` and ``state_dict()`` never see them."""
    for prefix, module in model.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                yield (f"{prefix}.{name}" if prefix else name), value


def capture_activations(model: nn.Module | TinyModule, *inputs: Any,
                        module_types: tuple[type, ...] = (nn.ReLU, TinyReLU),
                        ) -> dict[str, torch.Tensor]:
    """Run ``model(*inputs)`` once and return each matching submodule's output, by name.

    Forward hooks copy the outputs (detached, on the CPU); they are removed again even if the
    forward pass fails. The model's train/eval mode is left as it is.
    """
    if not isinstance(module_types, tuple) or not module_types:
        raise ValueError(f"module_types must be a non-empty tuple of classes, got "
                         f"{module_types!r}")
    captured: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> ForwardHook:
        def hook(module: Any, args: tuple, output: torch.Tensor) -> None:
            captured[name] = output.detach().to("cpu", copy=True)
        return hook

    handles = [module.register_forward_hook(recorder(name))
               for name, module in model.named_modules() if isinstance(module, module_types)]
    if not handles:
        raise ValueError(f"no submodule of {type(model).__name__} is an instance of "
                         f"{[t.__name__ for t in module_types]}")
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return captured

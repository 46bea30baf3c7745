"""A scalar reverse-mode autodiff engine: every number remembers how it was made.

Introduced in lesson 2.1 (``m02-l01``). A :class:`Value` holds one float, the values it was
computed from (its *parents*) and the partial derivative of its operation with respect to each
parent (its *local gradients*), all evaluated in the forward pass. :meth:`Value.backward` visits
the graph in reverse topological order and applies the chain rule: each node passes
``local * adjoint`` to each parent. The idea follows Karpathy's micrograd; storing local
derivatives as numbers instead of closures makes the backward pass one generic loop.

Also here: :class:`ScalarMLP`, a tiny network made of Values with a ``torch.nn`` twin, and
:func:`random_program`, random expression graphs (Wengert lists) that run on Values and on torch
tensors alike, used to test the engine against ``torch.autograd``.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


def _check_real(x: object, name: str) -> float:
    """Return ``x`` as a finite float, or raise a ValueError naming it ``name``."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a real number (int or float), got {x!r}")
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return float(x)


class Value:
    """A scalar node of a computation graph that can backpropagate gradients to its inputs."""

    __slots__ = ("data", "grad", "label", "local_grads", "op", "parents")

    def __init__(self, data: float, parents: tuple[Value, ...] = (),
                 local_grads: tuple[float, ...] = (), op: str = "", label: str = "") -> None:
        if type(data) is not float or not math.isfinite(data):  # fast path: a finite float
            data = _check_real(data, f"Value data (result of {op!r})" if op else "Value data")
        self.data = float(data)
        if len(parents) != len(local_grads):
            raise ValueError(f"got {len(parents)} parents but {len(local_grads)} local_grads; "
                             f"give one local derivative per parent")
        self.grad = 0.0  # d(output)/d(self), accumulated by backward()
        self.parents = parents
        self.local_grads: tuple[float, ...] | None = local_grads  # None once backward freed it
        self.op = op
        self.label = label

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g}, op={self.op!r})"

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Value | float) -> Value:
        other = _lift(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __sub__(self, other: Value | float) -> Value:
        other = _lift(other)
        return Value(self.data - other.data, (self, other), (1.0, -1.0), "-")

    def __mul__(self, other: Value | float) -> Value:
        other = _lift(other)
        # d(ab)/da = b and d(ab)/db = a: each factor's derivative is the *other* factor
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __truediv__(self, other: Value | float) -> Value:
        other = _lift(other)
        if other.data == 0.0:
            raise ValueError(f"division by zero: {self.data!r} / 0")
        b = other.data
        return Value(self.data / b, (self, other), (1.0 / b, -self.data / b**2), "/")

    def __pow__(self, other: Value | float) -> Value:
        a = self.data
        if isinstance(other, Value):  # a ** b with both inputs differentiable
            if a <= 0.0:
                raise ValueError(f"a ** b with a Value exponent needs base a > 0, got a = {a!r}")
            b, out = other.data, a**other.data
            return Value(out, (self, other), (b * a ** (b - 1), out * math.log(a)), "**")
        k = _check_real(other, "exponent")
        if a < 0.0 and not k.is_integer():
            raise ValueError(f"a ** k needs an integer k when a < 0, got a = {a!r}, k = {k!r}")
        if a == 0.0 and k < 1.0 and k != 0.0:
            raise ValueError(f"0 ** k is not differentiable for k < 1, got k = {k!r}")
        local = k * a ** (k - 1) if k != 0.0 else 0.0
        return Value(a**k, (self,), (local,), f"**{k:g}")

    def __neg__(self) -> Value:
        return Value(-self.data, (self,), (-1.0,), "neg")

    def __radd__(self, other: float) -> Value:
        return _lift(other) + self

    def __rsub__(self, other: float) -> Value:
        return _lift(other) - self

    def __rmul__(self, other: float) -> Value:
        return _lift(other) * self

    def __rtruediv__(self, other: float) -> Value:
        return _lift(other) / self

    def __rpow__(self, other: float) -> Value:
        return _lift(other) ** self

    # ------------------------------------------------------------------ elementary functions
    def exp(self) -> Value:
        """Return e ** self."""
        if self.data > 709.0:  # math.exp overflows float64 just above 709.78
            raise ValueError(f"exp({self.data!r}) overflows float64; inputs must be <= 709")
        out = math.exp(self.data)
        return Value(out, (self,), (out,), "exp")

    def log(self) -> Value:
        """Return the natural logarithm of self (which must be > 0)."""
        if self.data <= 0.0:
            raise ValueError(f"log needs an input > 0, got {self.data!r}")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self) -> Value:
        """Return tanh(self)."""
        out = math.tanh(self.data)
        return Value(out, (self,), (1.0 - out**2,), "tanh")

    def relu(self) -> Value:
        """Return max(self, 0); its derivative at 0 is taken to be 0, as in PyTorch."""
        positive = self.data > 0.0
        return Value(self.data if positive else 0.0, (self,), (float(positive),), "relu")

    def sigmoid(self) -> Value:
        """Return 1 / (1 + e ** -self), computed without overflow for large ``|self|``."""
        a = self.data
        out = 1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a))
        return Value(out, (self,), (out * (1.0 - out),), "sigmoid")

    # ------------------------------------------------------------------ reverse mode
    def backward(self, grad: float = 1.0, retain_graph: bool = False) -> None:
        """Add ``grad`` times d(self)/d(node) to ``node.grad`` for every node self depends on.

        Like ``torch.Tensor.backward``, gradients accumulate across calls, and the graph's local
        derivatives are freed afterwards unless ``retain_graph=True``.
        """
        seed = _check_real(grad, "grad")
        order = topological_order(self)
        freed = [node for node in order if node.local_grads is None]
        if freed:
            raise RuntimeError(
                f"backward through a graph a second time: node {freed[0]!r} was freed by an "
                f"earlier backward(); pass retain_graph=True to the first call to keep it"
            )
        adjoint = {self: seed}  # node -> d(self)/d(node) * seed, for this call only
        for node in reversed(order):  # every child is finished before its parents
            node_adjoint = adjoint.pop(node, 0.0)
            node.grad += node_adjoint
            for parent, local in zip(node.parents, node.local_grads, strict=True):
                adjoint[parent] = adjoint.get(parent, 0.0) + local * node_adjoint
            if node.parents and not retain_graph:
                node.local_grads = None


def _lift(x: Value | float) -> Value:
    """Wrap a plain number as a constant leaf so it can join an operation."""
    if isinstance(x, Value):
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"cannot combine a Value with {type(x).__name__} {x!r}; "
                         f"use a Value or a real number")
    return Value(x)


def value_sum(values: Iterable[Value | float]) -> Value:
    """Return the sum of ``values`` as one n-ary node (a shallower graph than chained ``+``)."""
    terms = tuple(_lift(v) for v in values)
    if not terms:
        raise ValueError("value_sum needs at least one value, got an empty iterable")
    return Value(math.fsum(t.data for t in terms), terms, (1.0,) * len(terms), "sum")


def topological_order(root: Value) -> list[Value]:
    """Return every node ``root`` depends on, each one after all of its parents (root last)."""
    order: list[Value] = []
    visited: set[Value] = set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep graphs cannot hit the recursion limit
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))  # revisited after all of its parents are in `order`
        stack.extend((p, False) for p in node.parents if p not in visited)
    return order


# ---------------------------------------------------------------------- a tiny MLP of Values
class ScalarMLP:
    """A multilayer perceptron of Values: ``activation`` between layers, a linear last layer."""

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", seed: int = 0) -> None:
        if len(sizes) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                 for n in sizes):
            raise ValueError(f"sizes must list >= 2 ints >= 1 (inputs, …, outputs), got {sizes!r}")
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.sizes, self.activation = tuple(sizes), activation
        rng = random.Random(seed)
        self.weights: list[list[list[Value]]] = []  # weights[l][j][i]: input i -> unit j
        self.biases: list[list[Value]] = []
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            bound = 1.0 / math.sqrt(fan_in)  # the range nn.Linear initialises with
            self.weights.append([[Value(rng.uniform(-bound, bound), label=f"W{layer}[{j},{i}]")
                                  for i in range(fan_in)] for j in range(fan_out)])
            self.biases.append([Value(rng.uniform(-bound, bound), label=f"b{layer}[{j}]")
                                for j in range(fan_out)])

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        """Return the outputs (one Value per output unit) for one input vector ``x``."""
        if len(x) != self.sizes[0]:
            raise ValueError(f"x has {len(x)} entries, but this MLP takes {self.sizes[0]} inputs")
        h = list(x)
        last = len(self.weights) - 1
        for layer, (rows, biases) in enumerate(zip(self.weights, self.biases, strict=True)):
            pre = [value_sum([b, *(w * xi for w, xi in zip(row, h, strict=True))])
                   for row, b in zip(rows, biases, strict=True)]  # z_j = b_j + sum_i W_ji h_i
            h = pre if layer == last else [getattr(z, self.activation)() for z in pre]
        return h

    def parameters(self) -> list[Value]:
        """Return every weight and bias, layer by layer (weights row-major, then biases)."""
        return [w for rows, bs in zip(self.weights, self.biases, strict=True)
                for w in [*(w for row in rows for w in row), *bs]]

    def zero_grad(self) -> None:
        """Reset the gradient of every parameter to 0."""
        for p in self.parameters():
            p.grad = 0.0

    def to_torch(self, dtype: torch.dtype = torch.float64) -> nn.Sequential:
        """Return an ``nn.Sequential`` with the same architecture and a copy of these weights."""
        layers: list[nn.Module] = []
        for rows, biases in zip(self.weights, self.biases, strict=True):
            # skip_init: no random init, so building the twin leaves torch's RNG untouched
            linear = nn.utils.skip_init(nn.Linear, len(rows[0]), len(rows), dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.tensor([[w.data for w in r] for r in rows], dtype=dtype))
                linear.bias.copy_(torch.tensor([b.data for b in biases], dtype=dtype))
            layers += [linear, nn.Tanh() if self.activation == "tanh" else nn.ReLU()]
        return nn.Sequential(*layers[:-1])  # no activation after the last layer


# ---------------------------------------------------------------------- random expression graphs
_BINARY: dict[str, Callable] = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
                                "div": operator.truediv, "pow": operator.pow}
_UNARY: dict[str, Callable] = {name: operator.methodcaller(name)
                               for name in ("exp", "log", "tanh", "relu", "sigmoid")}
OPS = (*_BINARY, "powc", *_UNARY)
_EXPONENTS = (2.0, 3.0, -1.0, 0.5, 1.5)


@dataclass(frozen=True)
class Instruction:
    """One step of a :class:`Program`: apply ``op`` to earlier slots ``args``."""

    op: str  # one of OPS, or "sum" for the final output
    args: tuple[int, ...]  # indices of earlier slots; slots 0..n_inputs-1 are the inputs
    exponent: float = 0.0  # used by "powc" (slot ** exponent) only


@dataclass(frozen=True)
class Program:
    """A straight-line program (a Wengert list) that runs on Values or 0-d torch tensors."""

    n_inputs: int
    instructions: tuple[Instruction, ...]

    def run(self, inputs: Sequence) -> object:
        """Evaluate the program on ``inputs`` and return its last slot (the output)."""
        if len(inputs) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(inputs)}")
        slots = list(inputs)
        for ins in self.instructions:
            args = [slots[i] for i in ins.args]
            if ins.op == "sum":
                out = args[0]
                for a in args[1:]:
                    out = out + a
            elif ins.op == "powc":
                out = args[0] ** ins.exponent
            else:
                out = (_BINARY.get(ins.op) or _UNARY[ins.op])(*args)
            slots.append(out)
        return slots[-1]


def random_program(n_inputs: int, n_ops: int, seed: int) -> tuple[Program, list[float]]:
    """Return a random program of ``n_ops`` operations, and inputs on which all ops are defined.

    Operands are drawn from all earlier slots, so intermediate results are shared by several
    later operations. Ops are rejected where they are undefined, badly conditioned, or close to
    a kink (relu near 0). The output sums every slot that no operation used, so each input
    influences it.
    """
    for name, value in (("n_inputs", n_inputs), ("n_ops", n_ops)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    rng = random.Random(seed)
    inputs = [round(rng.uniform(-2.0, 2.0), 3) for _ in range(n_inputs)]
    slots = [Value(x) for x in inputs]
    instructions: list[Instruction] = []
    while len(instructions) < n_ops:
        op = rng.choice(OPS)
        args = tuple(rng.randrange(len(slots)) for _ in range(2 if op in _BINARY else 1))
        a = slots[args[0]].data
        b = slots[args[-1]].data
        exponent = rng.choice(_EXPONENTS) if op == "powc" else 0.0
        if ((op == "div" and abs(b) < 0.2) or (op == "pow" and (a < 0.2 or abs(b) > 3))
                or (op == "powc" and (abs(a) < 0.2 or (a < 0 and not exponent.is_integer())))
                or (op == "log" and a < 0.1) or (op == "exp" and a > 3.0)
                or (op == "relu" and abs(a) < 1e-3)):
            continue  # undefined, too steep or too close to a kink here: draw another op
        instruction = Instruction(op, args, exponent)
        out = Program(len(slots), (instruction,)).run(slots)
        if abs(out.data) > 50.0:  # keep values moderate so later exp/pow cannot overflow
            continue
        slots.append(out)
        instructions.append(instruction)
    used = {i for ins in instructions for i in ins.args}
    sinks = tuple(i for i in range(len(slots)) if i not in used)
    instructions.append(Instruction("sum", sinks))
    return Program(n_inputs, tuple(instructions)), inputs

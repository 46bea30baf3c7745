"""Tests for lesson 2.1: the scalar engine, custom autograd Functions and graph drawing."""

from __future__ import annotations

import collections
import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from neuralarch.autograd.custom_function import (
    LogSumExp,
    Swish,
    logsumexp,
    saved_tensor_bytes,
    swish,
)
from neuralarch.autograd.graph_view import (
    Graph,
    draw_graph,
    layered_layout,
    torch_graph,
    value_graph,
)
from neuralarch.autograd.scalar_engine import (
    OPS,
    Instruction,
    Program,
    ScalarMLP,
    Value,
    random_program,
    topological_order,
    value_sum,
)


def leaves64(values):
    return [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in values]


# ---------------------------------------------------------------- the engine vs torch.autograd


def run_both(program, inputs):
    """Run ``program`` on Values and on float64 tensors; return both outputs and leaf grads."""
    values = [Value(x) for x in inputs]
    out = program.run(values)
    out.backward()
    tensors = leaves64(inputs)
    reference = program.run(tensors)
    grads = torch.autograd.grad(reference, tensors)
    return out, [v.grad for v in values], reference, torch.stack(grads)


@pytest.mark.parametrize("chunk", range(4))
def test_random_expression_graphs_match_torch_autograd(chunk):
    for seed in range(chunk * 75, (chunk + 1) * 75):
        program, inputs = random_program(1 + seed % 6, 3 + seed % 50, seed)
        out, grads, reference, reference_grads = run_both(program, inputs)
        assert_close(torch.tensor(out.data, dtype=torch.float64), reference.detach(),
                     rtol=1e-10, atol=1e-12)
        assert_close(torch.tensor(grads, dtype=torch.float64), reference_grads,
                     rtol=1e-9, atol=1e-12, msg=lambda m, s=seed: f"seed {s}: {m}")


def test_random_programs_use_every_op_and_share_subexpressions():
    counts, shared = collections.Counter(), 0
    for seed in range(100):
        program, inputs = random_program(3, 30, seed)
        assert len(program.instructions) == 31 and program.instructions[-1].op == "sum"
        assert len(inputs) == 3 and all(-2 <= x <= 2 for x in inputs)
        counts.update(ins.op for ins in program.instructions)
        uses = collections.Counter(i for ins in program.instructions for i in ins.args)
        shared += sum(1 for n in uses.values() if n > 1)
    assert set(OPS) <= set(counts)
    assert shared > 100  # many slots feed more than one later operation


def test_random_program_is_deterministic_per_seed():
    assert random_program(2, 10, seed=5) == random_program(2, 10, seed=5)
    assert random_program(2, 10, seed=5) != random_program(2, 10, seed=6)


def test_output_sums_the_unused_slots_so_every_input_matters():
    program = Program(2, (Instruction("exp", (0,)), Instruction("sum", (1, 2))))
    values = [Value(0.5), Value(-1.0)]
    out = program.run(values)
    out.backward()
    assert out.data == pytest.approx(math.exp(0.5) - 1.0)
    assert [v.grad for v in values] == pytest.approx([math.exp(0.5), 1.0])


OP_CASES = {
    "add": (lambda a, b: a + b, [0.7, -1.3]),
    "sub": (lambda a, b: a - b, [0.7, -1.3]),
    "mul": (lambda a, b: a * b, [0.7, -1.3]),
    "div": (lambda a, b: a / b, [0.7, -1.3]),
    "pow": (lambda a, b: a**b, [1.7, -1.3]),
    "pow_int_negative_base": (lambda a: a**3, [-1.2]),
    "pow_half": (lambda a: a**0.5, [2.3]),
    "pow_zero_exponent": (lambda a: a**0, [2.3]),
    "pow_zero_base": (lambda a: a**2, [0.0]),
    "neg": (lambda a: -a, [0.4]),
    "radd": (lambda a: 2 + a, [0.4]),
    "rsub": (lambda a: 2 - a, [0.4]),
    "rmul": (lambda a: 2.5 * a, [0.4]),
    "rtruediv": (lambda a: 3 / a, [0.4]),
    "rpow": (lambda a: 2.0**a, [0.4]),
    "exp": (lambda a: a.exp(), [1.1]),
    "log": (lambda a: a.log(), [1.1]),
    "tanh": (lambda a: a.tanh(), [-0.8]),
    "relu_positive": (lambda a: a.relu(), [0.8]),
    "relu_negative": (lambda a: a.relu(), [-0.8]),
    "relu_at_zero": (lambda a: a.relu(), [0.0]),  # both take the subgradient 0
    "sigmoid": (lambda a: a.sigmoid(), [-0.8]),
    "sigmoid_far_negative": (lambda a: a.sigmoid(), [-800.0]),
    "sigmoid_far_positive": (lambda a: a.sigmoid(), [800.0]),
    "shared": (lambda a, b: (a * b + a).tanh() * a, [0.5, -1.5]),
    "square_by_mul": (lambda a: a * a, [-1.5]),
}


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_every_operation_matches_torch(name):
    fn, inputs = OP_CASES[name]
    values = [Value(x) for x in inputs]
    out = fn(*values)
    out.backward()
    tensors = leaves64(inputs)
    reference = fn(*tensors)
    reference.backward()
    assert out.data == pytest.approx(reference.item(), rel=1e-12, abs=1e-300)
    assert_close(torch.tensor([v.grad for v in values], dtype=torch.float64),
                 torch.stack([t.grad for t in tensors]), rtol=1e-12, atol=1e-15)


def test_gradients_accumulate_across_backward_calls_like_torch():
    a, b = Value(0.5), Value(-1.5)
    out = (a * b + a).tanh()
    out.backward(retain_graph=True)
    out.backward(grad=2.0)
    ta, tb = leaves64([0.5, -1.5])
    reference = torch.tanh(ta * tb + ta)
    reference.backward(retain_graph=True)
    reference.backward(torch.tensor(2.0, dtype=torch.float64))
    assert (a.grad, b.grad) == pytest.approx((ta.grad.item(), tb.grad.item()), rel=1e-12)
    assert out.grad == 3.0


def test_backward_twice_without_retain_graph_raises():
    a = Value(0.3)
    out = (a * a).exp()
    out.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        out.backward()
    assert a.grad == pytest.approx(2 * 0.3 * math.exp(0.09))  # the first call still counted


def test_backward_on_a_leaf_sets_its_grad():
    a = Value(4.0)
    a.backward(grad=0.5)
    assert a.grad == 0.5 and a.local_grads == ()


def test_topological_order_puts_parents_first_and_each_node_once():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    e = d * c
    order = topological_order(e)
    assert order[-1] is e and len(order) == len(set(order)) == 5
    position = {node: i for i, node in enumerate(order)}
    assert all(position[p] < position[n] for n in order for p in n.parents)


def test_deep_chain_needs_no_recursion():
    x = Value(0.1)
    y = x
    for _ in range(5000):  # deeper than Python's default recursion limit
        y = y * 1.0 + 0.0
    y.backward()
    assert len(topological_order(y)) == 1 + 5000 * 4  # x, then 2 consts and 2 ops per step
    assert x.grad == pytest.approx(1.0)


def test_value_sum_is_one_node_with_unit_local_gradients():
    xs = [Value(float(i)) for i in range(5)]
    total = value_sum([*xs, 10])
    total.backward()
    assert total.data == 20.0 and total.op == "sum" and len(total.parents) == 6
    assert [x.grad for x in xs] == [1.0] * 5


def test_repr_shows_data_grad_and_op():
    assert repr(Value(2.0) * 3) == "Value(data=6, grad=0, op='*')"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Value("1.0"), "real number"),
        (lambda: Value(True), "real number"),
        (lambda: Value(float("nan")), "finite"),
        (lambda: Value(1e300) * Value(1e300), r"'\*'.*must be finite"),
        (lambda: Value(1.0, parents=(Value(2.0),)), "one local derivative per parent"),
        (lambda: Value(1.0) / 0, "division by zero"),
        (lambda: Value(0.0).log(), "log needs an input > 0"),
        (lambda: Value(-1.0).log(), "log needs an input > 0"),
        (lambda: Value(710.0).exp(), "overflows"),
        (lambda: Value(-2.0) ** 0.5, "integer k"),
        (lambda: Value(0.0) ** -1, "not differentiable"),
        (lambda: Value(0.0) ** Value(2.0), "base a > 0"),
        (lambda: Value(2.0) ** "x", "exponent must be a real number"),
        (lambda: Value(1.0) + "x", "cannot combine a Value with str"),
        (lambda: [1.0] * Value(2.0), "cannot combine a Value with list"),
        (lambda: Value(1.0).backward(grad=float("inf")), "grad must be finite"),
        (lambda: value_sum([]), "at least one value"),
    ],
)
def test_bad_inputs_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- the MLP and its torch twin


@pytest.mark.parametrize(("sizes", "activation"),
                         [((2, 8, 8, 1), "tanh"), ((3, 5, 2), "relu"), ((4, 1), "tanh")])
def test_scalar_mlp_matches_its_torch_twin(sizes, activation):
    mlp = ScalarMLP(sizes, activation=activation, seed=3)
    twin = mlp.to_torch()
    x = [0.3 * (i + 1) * (-1) ** i for i in range(sizes[0])]
    outputs = mlp(x)
    value_sum([o * (k + 1) for k, o in enumerate(outputs)]).backward()
    reference = twin(torch.tensor([x], dtype=torch.float64))  # (1, outputs)
    (reference * torch.arange(1.0, sizes[-1] + 1, dtype=torch.float64)).sum().backward()
    assert_close(torch.tensor([[o.data for o in outputs]], dtype=torch.float64), reference.detach())
    ours = torch.tensor([p.grad for p in mlp.parameters()], dtype=torch.float64)
    theirs = torch.cat([p.grad.reshape(-1) for p in twin.parameters()])
    assert ours.shape == theirs.shape
    assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    mlp.zero_grad()
    assert all(p.grad == 0.0 for p in mlp.parameters())


def test_scalar_mlp_init_is_seeded_and_in_the_linear_range():
    a, b, c = ScalarMLP((4, 3), seed=1), ScalarMLP((4, 3), seed=1), ScalarMLP((4, 3), seed=2)
    data = [[p.data for p in m.parameters()] for m in (a, b, c)]
    assert data[0] == data[1] != data[2]
    assert all(abs(w) <= 0.5 for w in data[0])  # 1/sqrt(fan_in) with fan_in = 4
    state = torch.get_rng_state()
    twin = a.to_torch(torch.float32)
    assert torch.equal(torch.get_rng_state(), state)  # building the twin draws no random numbers
    assert twin[0].weight.dtype == torch.float32
    assert_close(twin[0].weight.detach(), torch.tensor([data[0][:4], data[0][4:8], data[0][8:12]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sizes": (2,)}, "sizes must list"), ({"sizes": (2, 0, 1)}, "sizes must list"),
     ({"sizes": (2, 1.5)}, "sizes must list"), ({"sizes": (2, 1), "activation": "gelu"},
                                                "activation must be")],
)
def test_scalar_mlp_rejects_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScalarMLP(**kwargs)


def test_scalar_mlp_and_program_reject_wrong_input_lengths():
    with pytest.raises(ValueError, match="takes 2 inputs"):
        ScalarMLP((2, 1))([1.0, 2.0, 3.0])
    program, _ = random_program(2, 3, seed=0)
    with pytest.raises(ValueError, match="expected 2 inputs, got 1"):
        program.run([Value(1.0)])


@pytest.mark.parametrize(("kwargs", "match"),
                         [({"n_inputs": 0, "n_ops": 3}, "n_inputs"),
                          ({"n_inputs": 2, "n_ops": 2.0}, "n_ops")])
def test_random_program_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_program(seed=0, **kwargs)


# ---------------------------------------------------------------- custom autograd Functions


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "dim"), [((7,), 0), ((3, 5), -1), ((3, 5), 0), ((2, 4, 6), 1)])
def test_logsumexp_matches_torch(shape, dim, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = logsumexp(ours_in, dim), torch.logsumexp(ref_in, dim)
    assert_close(ours, ref)
    weights = torch.linspace(-1, 2, ours.numel(), dtype=dtype).reshape(ours.shape)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    assert_close(ours_in.grad, ref_in.grad)


def test_logsumexp_is_stable_where_the_naive_formula_overflows():
    x = torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -999.0]])
    naive = x.exp().sum(-1).log()
    assert torch.isinf(naive).all()  # overflow to +inf, underflow to log(0) = -inf
    assert_close(logsumexp(x), torch.logsumexp(x, -1))
    rows = torch.full((2, 3), -math.inf)
    assert_close(logsumexp(rows), torch.full((2,), -math.inf))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_logsumexp_passes_gradcheck_and_gradgradcheck(dim):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(dim + 5))
    assert torch.autograd.gradcheck(LogSumExp.apply, (x, dim % 2))
    assert torch.autograd.gradgradcheck(lambda t: logsumexp(t, dim), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4)])
def test_swish_matches_silu(shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = swish(ours_in), F.silu(ref_in)
    assert_close(ours, ref)
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    ours.backward(grad_out)
    ref.backward(grad_out)
    assert_close(ours_in.grad, ref_in.grad)


def test_swish_passes_gradcheck_and_gradgradcheck():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(3))
    assert torch.autograd.gradcheck(Swish.apply, (x,))
    assert torch.autograd.gradgradcheck(Swish.apply, (x,))


def test_fused_swish_saves_half_the_memory_of_the_composition():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    fused = saved_tensor_bytes(swish, x)
    composed = saved_tensor_bytes(lambda t: t * torch.sigmoid(t), x)
    assert fused == x.numel() * 8 and composed == 2 * fused
    assert saved_tensor_bytes(swish, x.detach()) == 0  # nothing requires grad: nothing saved


@pytest.mark.parametrize(
    ("call", "match"),
    [(lambda: logsumexp([1.0, 2.0]), "must be a torch.Tensor"),
     (lambda: logsumexp(torch.arange(3)), "floating-point"),
     (lambda: logsumexp(torch.tensor(1.0)), "at least one dimension"),
     (lambda: logsumexp(torch.ones(2, 3), dim=2), r"dim must be an int in \[-2, 2\)"),
     (lambda: logsumexp(torch.ones(2, 3), dim=True), "dim must be an int"),
     (lambda: swish(torch.arange(3)), "x.double()")],
)
def test_custom_functions_reject_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- drawing graphs


def example_values():
    a, b = Value(0.5, label="a"), Value(-1.5, label="b")
    e = a * b
    e.label = "e"
    out = (e + a).tanh()
    return a, b, out


def test_value_graph_lists_every_node_and_edge():
    a, _, out = example_values()
    out.backward()
    graph = value_graph(out)
    assert len(graph.labels) == len(topological_order(out)) == 5
    assert graph.kinds.count("leaf") == 2 and graph.kinds[-1] == "output"
    assert len(graph.edges) == 5  # a->e, b->e, e->d, a->d, d->out
    assert graph.labels[0].startswith("a\n0.5\ngrad") and "e = *" in graph.labels[2]
    assert f"grad {a.grad:.3g}" in graph.labels[0]
    assert "grad" not in value_graph(out, show_grad=False).labels[0]
    x = Value(3.0)
    assert len(value_graph(x * x).edges) == 1  # the two identical edges are drawn once
    assert value_graph(x + 1).labels[1].startswith("const")


def test_torch_graph_follows_grad_fn_and_next_functions():
    a, b = leaves64([0.5, -1.5])
    out = torch.tanh(a * b + a) * torch.tensor(2.0, dtype=torch.float64)  # constant: no node
    graph = torch_graph(out, names={"a": a, "b": b})
    names = [label.split("\n")[-1] for label in graph.labels]
    assert names[0] == "MulBackward0" and graph.kinds[0] == "output"
    assert {"TanhBackward0", "AddBackward0", "MulBackward0"} <= set(names)
    assert names.count("AccumulateGrad") == 2 and graph.kinds.count("leaf") == 2
    assert any(label.startswith("a ()") for label in graph.labels)
    assert len(graph.edges) == 6  # out<-tanh<-add, add<-mul, add<-a, mul<-a, mul<-b
    unnamed = torch_graph(a * 3)
    assert unnamed.labels[1].startswith("leaf ()")


@pytest.mark.parametrize(
    ("call", "match"),
    [(lambda: torch_graph(torch.ones(2, requires_grad=True)), "no grad_fn"),
     (lambda: torch_graph(1.0), "must be a torch.Tensor"),
     (lambda: value_graph(1.0), "root must be a Value"),
     (lambda: layered_layout(Graph(("a", "b"), ("op", "op"), ((0, 1), (1, 0)))), "cycle"),
     (lambda: draw_graph(Graph((), (), ()), column_gap=0), "column_gap")],
)
def test_graph_helpers_reject_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_layout_puts_every_node_right_of_its_inputs():
    program, inputs = random_program(3, 25, seed=7)
    graph = value_graph(program.run([Value(x) for x in inputs]))
    positions = layered_layout(graph)
    assert all(positions[i][0] < positions[j][0] for i, j in graph.edges)
    columns = collections.defaultdict(list)
    for x, y in positions:
        columns[x].append(y)
    assert all(len(set(ys)) == len(ys) for ys in columns.values())  # no two boxes overlap
    assert layered_layout(Graph((), (), ())) == []


def test_draw_graph_draws_one_box_per_node_and_one_arrow_per_edge():
    _, _, out = example_values()
    graph = value_graph(out)
    fig, ax = plt.subplots()
    assert draw_graph(graph, ax, title="t", column_gap=1.5) is ax
    assert len(ax.texts) == len(graph.labels) + len(graph.edges)
    assert ax.get_title() == "t" and ax.get_xlim()[1] == pytest.approx(3 * 1.5 + 0.6 * 1.5)
    plt.close(fig)
    ax = draw_graph(graph)  # makes its own figure
    assert len(ax.texts) == 10
    plt.close(ax.figure)

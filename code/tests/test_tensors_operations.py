"""Tests for lesson 1.3: broadcasting, reshape/view/permute layouts and einsum, against torch."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from neuralarch.tensors.broadcasting import (
    as_shape,
    broadcast_shape,
    broadcast_strides,
    expand_as_strided,
)
from neuralarch.tensors.einsum_ops import (
    ATTENTION_SCORE_METHODS,
    attention_scores,
    attention_scores_bmm,
    attention_scores_loop,
    batched_outer,
    bilinear,
    einsum_broadcast,
    explain_einsum,
    matmul_einsum,
    time_attention_scores,
)
from neuralarch.tensors.reshaping import infer_shape, permute_layout, view_strides

# ---------------------------------------------------------------- broadcasting


@pytest.mark.parametrize(
    "shapes",
    [
        ((3, 1), (1, 4)),
        ((5, 3, 1), (4,)),
        ((2, 1, 7), (6, 1), (1,)),
        ((8, 1, 6, 1), (7, 1, 5)),
        ((0,), (1,)),
        ((2, 0, 3), (1, 3)),
        ((), (4, 2)),
        ((3,),),
        (),
    ],
)
def test_broadcast_shape_matches_torch(shapes):
    assert broadcast_shape(*shapes) == tuple(torch.broadcast_shapes(*shapes))


def test_broadcast_shape_matches_torch_on_random_shapes():
    rng = random.Random(0)
    for _ in range(200):
        ndim = rng.randint(0, 4)
        base = [rng.randint(1, 4) for _ in range(ndim)]
        shapes = []
        for _ in range(rng.randint(1, 3)):
            keep = rng.randint(0, ndim)  # drop leading dims, set some to 1
            shapes.append(tuple(1 if rng.random() < 0.4 else n for n in base[ndim - keep :]))
        assert broadcast_shape(*shapes) == tuple(torch.broadcast_shapes(*shapes))


@pytest.mark.parametrize(("a", "b"), [((3, 2), (4,)), ((2, 3), (3, 2)), ((0,), (2,))])
def test_broadcast_shape_rejects_incompatible_shapes(a, b):
    with pytest.raises(RuntimeError):
        torch.broadcast_shapes(a, b)
    with pytest.raises(ValueError, match=r"cannot be broadcast: at dimension -\d"):
        broadcast_shape(a, b)


def test_broadcast_shape_names_the_failing_dimension():
    with pytest.raises(ValueError, match=r"dimension -2 .* sizes are \[2, 3\]"):
        broadcast_shape((2, 5), (3, 5))


@pytest.mark.parametrize("bad", [(3, -1), (2.0, 3), "ab", 7, (True, 2)])
def test_broadcast_shape_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match=r"shapes\[1\]"):
        broadcast_shape((1,), bad)


def test_as_shape_accepts_torch_size_and_lists():
    assert as_shape(torch.Size([2, 3])) == (2, 3)
    assert as_shape([4]) == (4,)


@pytest.mark.parametrize(
    ("shape", "target"),
    [((3, 1), (3, 4)), ((1,), (2, 5)), ((4,), (3, 2, 4)), ((1, 1), (1, 6)), ((2, 3), (2, 3))],
)
@pytest.mark.parametrize("transpose", [False, True])
def test_expand_as_strided_matches_expand(shape, target, transpose):
    x = torch.randn(shape[::-1]).T if transpose and len(shape) == 2 else torch.randn(shape)
    ours = expand_as_strided(x, target)
    reference = x.expand(target)
    assert ours.stride() == reference.stride()
    assert broadcast_strides(x.shape, x.stride(), target) == reference.stride()
    assert ours.data_ptr() == x.data_ptr()  # a view: nothing copied
    assert_close(ours, reference)


def test_expand_as_strided_keeps_storage_offset():
    base = torch.arange(12.0)
    x = base[5:8].view(3, 1)
    assert_close(expand_as_strided(x, (3, 4)), x.expand(3, 4))


def test_broadcast_strides_rejects_bad_input():
    with pytest.raises(ValueError, match="cannot be broadcast to target"):
        broadcast_strides((3, 2), (2, 1), (3, 4))
    with pytest.raises(ValueError, match="cannot be broadcast to target"):
        broadcast_strides((3, 1), (1, 1), (4,))
    with pytest.raises(ValueError, match="one entry per dimension"):
        broadcast_strides((3, 1), (1,), (3, 4))


# ---------------------------------------------------------------- reshape / view / permute


def _layouts():
    """Tensors with many layouts: contiguous, permuted, sliced with steps, expanded."""
    base = torch.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2)
    yield base
    for dims in itertools.permutations(range(4)):
        yield base.permute(dims)
    yield base[:, ::2]
    yield base[:, 1:, ::3]
    yield base.transpose(1, 2)[:, :, :2]
    yield base[:1]
    yield torch.arange(6).view(1, 6, 1).expand(3, 6, 2)
    yield torch.arange(4).view(4, 1).expand(4, 3).T
    yield torch.zeros(0, 3).T
    yield torch.tensor(5)


def _factorisations(n: int, parts: int) -> list[tuple[int, ...]]:
    if parts == 1:
        return [(n,)]
    return [
        (d, *rest)
        for d in range(1, n + 1)
        if n % d == 0
        for rest in _factorisations(n // d, parts - 1)
    ]


def test_view_strides_matches_torch_view_everywhere():
    checked = views = 0
    for x in _layouts():
        n = x.numel()
        candidates = [(n,), (1, n), (n, 1)] if n else [(0,), (3, 0), (0, 3)]
        if n:
            for parts in (2, 3, 4):
                candidates += _factorisations(n, parts)[:40]
        for new_shape in candidates:
            ours = view_strides(x.shape, x.stride(), new_shape)
            try:
                expected = x.view(new_shape).stride()
            except RuntimeError:
                expected = None
            assert ours == expected, (tuple(x.shape), x.stride(), new_shape)
            checked += 1
            views += expected is not None
    assert views > 50 and checked - views > 50  # both outcomes were exercised


def test_view_strides_on_the_head_split_example():
    x = torch.zeros(2, 5, 12)  # (B, T, C)
    heads = x.view(2, 5, 3, 4).transpose(1, 2)  # (B, H, T, D), not contiguous
    assert heads.stride() == (60, 4, 12, 1)
    assert view_strides(heads.shape, heads.stride(), (2, 3, 20)) is None  # merge T, D: no
    assert view_strides(heads.shape, heads.stride(), (6, 5, 4)) is None  # merge B, H: no
    assert view_strides(heads.shape, heads.stride(), (2, 3, 5, 2, 2)) == (60, 4, 12, 2, 1)
    back = heads.transpose(1, 2)
    assert view_strides(back.shape, back.stride(), (2, 5, 12)) == (60, 12, 1)


@pytest.mark.parametrize(
    ("new_shape", "numel", "expected"),
    [((-1,), 6, (6,)), ((2, -1), 6, (2, 3)), ((-1, 1, 3), 6, (2, 1, 3)), ((0, 3), 0, (0, 3))],
)
def test_infer_shape(new_shape, numel, expected):
    assert infer_shape(new_shape, numel) == expected
    if numel:
        assert tuple(torch.zeros(numel).view(new_shape).shape) == expected


@pytest.mark.parametrize(
    ("new_shape", "numel", "match"),
    [
        ((-1, -1), 6, "more than one -1"),
        ((0, -1), 0, "cannot be inferred"),
        ((4, -1), 6, "cannot hold 6"),
        ((4, 2), 6, "holds 8 elements"),
        ((2, -3), 6, "new_shape"),
    ],
)
def test_infer_shape_rejects_bad_shapes(new_shape, numel, match):
    with pytest.raises(ValueError, match=match):
        infer_shape(new_shape, numel)


def test_view_strides_rejects_mismatched_strides():
    with pytest.raises(ValueError, match="one entry per dimension"):
        view_strides((2, 3), (1,), (6,))


@pytest.mark.parametrize("dims", [(1, 0, 2), (2, 0, 1), (-1, 0, 1), (0, 1, 2)])
def test_permute_layout_matches_torch(dims):
    x = torch.zeros(2, 3, 4)[:, ::2]
    shape, strides = permute_layout(x.shape, x.stride(), dims)
    y = x.permute(dims)
    assert shape == tuple(y.shape)
    assert strides == y.stride()


@pytest.mark.parametrize(
    ("strides", "dims", "match"),
    [
        ((12, 4), (0, 1, 2), "one entry per dimension"),
        ((12, 4, 1), (0, 1), "exactly once"),
        ((12, 4, 1), (0, 0, 1), "exactly once"),
        ((12, 4, 1), (0, 1, 3), r"in \[-3, 3\)"),
        ((12, 4, 1), (0, 1, 1.0), r"in \[-3, 3\)"),
    ],
)
def test_permute_layout_rejects_bad_input(strides, dims, match):
    with pytest.raises(ValueError, match=match):
        permute_layout((2, 3, 4), strides, dims)


# ---------------------------------------------------------------- einsum


EQUATIONS = [
    ("ij,jk->ik", [(3, 5), (5, 2)]),
    ("bhtd,bhsd->bhts", [(2, 3, 5, 4), (2, 3, 7, 4)]),
    ("bi,oij,bj->bo", [(4, 3), (6, 3, 5), (4, 5)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->ji", [(2, 3)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("bii->b", [(2, 3, 3)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("ij,jk", [(3, 5), (5, 2)]),
    ("ba,ab", [(2, 3), (3, 2)]),
    ("bij->", [(2, 3, 4)]),
    ("i,i->i", [(3,), (1,)]),
    ("ij,jk->ki", [(1, 5), (5, 2)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EQUATIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_einsum_broadcast_matches_torch_einsum(equation, shapes, dtype):
    generator = torch.Generator().manual_seed(0)
    operands = [torch.randint(-3, 4, s, generator=generator).to(dtype) for s in shapes]
    expected = torch.einsum(equation, *operands)
    plan = explain_einsum(equation, *operands)
    assert plan.output_shape == tuple(expected.shape)
    assert_close(einsum_broadcast(equation, *operands), expected)


def test_einsum_broadcast_returns_its_own_memory():
    x = torch.randn(3)
    out = einsum_broadcast("i->i", x)
    assert_close(out, x)
    assert out.data_ptr() != x.data_ptr()


def test_explain_einsum_describes_matmul_and_attention():
    plan = explain_einsum("ij,jk->ik", (3, 5), (5, 2))
    assert plan.summed == ("j",)
    assert plan.output == "ik"
    assert plan.multiply_adds == 3 * 5 * 2
    assert plan.formula() == "out[i,k] = sum_j A[i,j] * B[j,k]"
    scores = explain_einsum("bhtd,bhsd->bhts", (2, 3, 5, 4), (2, 3, 7, 4))
    assert scores.summed == ("d",)
    assert scores.output_shape == (2, 3, 5, 7)
    outer = explain_einsum("i,j->ij", (3,), (4,))
    assert outer.summed == ()
    assert outer.formula() == "out[i,j] = A[i] * B[j]"
    many = explain_einsum(",".join("abcdefghi"), *[(2,)] * 9)
    assert many.formula().endswith("X8[i]")
    assert many.output == "abcdefghi"


@pytest.mark.parametrize(
    ("equation", "shapes", "match"),
    [
        ("ij,jk->ik", [(3, 5)], "names 2 operand"),
        ("ij,jk->ik", [(3, 5), (4, 2)], "letter 'j' has size 5"),
        ("ij,jk->ik", [(3, 5, 1), (5, 2)], "operand 0 has 3 dims"),
        ("ii->i", [(3, 4)], "repeated letter 'i'"),
        ("i1,jk->ik", [(3, 5), (5, 2)], "subscripts must be letters"),
        ("...ij->ij", [(3, 5)], "not supported"),
        ("ij->i->j", [(3, 5)], "more than one '->'"),
        ("ij->ii", [(3, 3)], "repeats a letter"),
        ("ij->iz", [(3, 3)], r"\['z'\] are in no input"),
    ],
)
def test_explain_einsum_rejects_bad_equations(equation, shapes, match):
    with pytest.raises(ValueError, match=match):
        explain_einsum(equation, *shapes)


def test_einsum_rejects_non_string_and_non_tensor():
    with pytest.raises(ValueError, match="equation must be a string"):
        explain_einsum(["ij"], (2, 2))
    with pytest.raises(ValueError, match="needs tensors"):
        einsum_broadcast("ij->ji", [[1, 2]])


@pytest.mark.parametrize(
    ("a_shape", "b_shape"), [((3, 5), (5, 2)), ((1, 7), (7, 1)), ((4, 3, 5), (4, 5, 6))]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matmul_einsum_matches_matmul(a_shape, b_shape, dtype):
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(a_shape, generator=generator, dtype=dtype)
    b = torch.randn(b_shape, generator=generator, dtype=dtype)
    assert_close(matmul_einsum(a, b), a @ b)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "match"),
    [
        ((3, 5), (4, 5, 2), "both be 2-D or both 3-D"),
        ((2,), (2,), "both be 2-D or both 3-D"),
        ((3, 5), (4, 2), "inner sizes differ"),
        ((2, 3, 5), (4, 5, 2), "batch sizes differ"),
    ],
)
def test_matmul_einsum_rejects_bad_shapes(a_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        matmul_einsum(torch.zeros(a_shape), torch.zeros(b_shape))


@pytest.mark.parametrize(
    ("b", "h", "t", "s", "d"), [(2, 3, 5, 7, 4), (1, 1, 1, 1, 1), (3, 2, 8, 8, 16)]
)
@pytest.mark.parametrize("method", list(ATTENTION_SCORE_METHODS))
def test_attention_score_methods_match_reference(b, h, t, s, d, method):
    generator = torch.Generator().manual_seed(2)
    q = torch.randn(b, h, t, d, generator=generator, dtype=torch.float64)
    k = torch.randn(b, h, s, d, generator=generator, dtype=torch.float64)
    expected = q @ k.transpose(-2, -1) / math.sqrt(d)
    assert_close(ATTENTION_SCORE_METHODS[method](q, k), expected)
    assert_close(ATTENTION_SCORE_METHODS[method](q, k, scale=1.0), expected * math.sqrt(d))


def test_attention_scores_give_sdpa_after_softmax():
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=generator) for _ in range(3))
    out = torch.softmax(attention_scores(q, k), dim=-1) @ v  # (B, H, T, D)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("fn", [attention_scores, attention_scores_bmm, attention_scores_loop])
def test_attention_scores_reject_bad_shapes(fn):
    with pytest.raises(ValueError, match="must be 4-D"):
        fn(torch.zeros(2, 5, 4), torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="must agree on B, H and D"):
        fn(torch.zeros(2, 3, 5, 4), torch.zeros(2, 3, 5, 8))
    with pytest.raises(ValueError, match="must agree on B, H and D"):
        fn(torch.zeros(2, 3, 5, 4), torch.zeros(2, 1, 5, 4))


@pytest.mark.parametrize(
    ("lead", "i", "j", "o"), [((5,), 3, 4, 6), ((2, 3), 4, 4, 1), ((1,), 1, 2, 3)]
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_bilinear_matches_functional(lead, i, j, o, with_bias):
    generator = torch.Generator().manual_seed(4)
    x1 = torch.randn(*lead, i, generator=generator, dtype=torch.float64)
    x2 = torch.randn(*lead, j, generator=generator, dtype=torch.float64)
    weight = torch.randn(o, i, j, generator=generator, dtype=torch.float64)
    bias = torch.randn(o, generator=generator, dtype=torch.float64) if with_bias else None
    assert_close(bilinear(x1, weight, x2, bias), F.bilinear(x1, x2, weight, bias))


@pytest.mark.parametrize(
    ("x1", "w", "x2", "bias", "match"),
    [
        ((5, 3), (3, 4), (5, 4), None, "weight must be 3-D"),
        ((5, 3), (6, 3, 4), (4, 4), None, "share all leading"),
        ((5, 2), (6, 3, 4), (5, 4), None, r"needs x1 \(\.\.\., 3\)"),
        ((5, 3), (6, 3, 4), (5, 3), None, r"x2 \(\.\.\., 4\)"),
        ((5, 3), (6, 3, 4), (5, 4), (5,), r"bias must have shape \(6,\)"),
    ],
)
def test_bilinear_rejects_bad_shapes(x1, w, x2, bias, match):
    with pytest.raises(ValueError, match=match):
        bilinear(
            torch.zeros(x1),
            torch.zeros(w),
            torch.zeros(x2),
            None if bias is None else torch.zeros(bias),
        )


@pytest.mark.parametrize(("b", "i", "j"), [(4, 3, 5), (1, 1, 1), (3, 6, 2)])
def test_batched_outer_matches_vmap_outer(b, i, j):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(b, i, generator=generator)
    y = torch.randn(b, j, generator=generator)
    assert_close(batched_outer(x, y), torch.vmap(torch.outer)(x, y))


@pytest.mark.parametrize(("a", "b"), [((4, 3), (5, 2)), ((4,), (4, 2)), ((2, 3, 1), (2, 3))])
def test_batched_outer_rejects_bad_shapes(a, b):
    with pytest.raises(ValueError, match=r"\(B, I\) and \(B, J\)"):
        batched_outer(torch.zeros(a), torch.zeros(b))


def test_time_attention_scores_returns_one_row_per_method_and_length():
    rows = time_attention_scores([4, 8], batch=1, heads=2, head_dim=4, repeats=3,
                                 block_time=0.0005)
    assert len(rows) == 2 * len(ATTENTION_SCORE_METHODS)
    assert {row["method"] for row in rows} == set(ATTENTION_SCORE_METHODS)
    assert all(0 < row["median_s"] < 1 for row in rows)
    few = time_attention_scores([4], methods=["einsum"], repeats=1, block_time=1e-4)
    assert [(row["method"], row["seq_len"]) for row in few] == [("einsum", 4)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_lens": [8], "methods": ["fast"]}, r"unknown methods \['fast'\]"),
        ({"seq_lens": []}, "non-empty list"),
        ({"seq_lens": [0]}, "ints >= 1"),
        ({"seq_lens": [8], "repeats": 0}, "repeats >= 1"),
        ({"seq_lens": [8], "block_time": 0.0}, "block_time > 0"),
    ],
)
def test_time_attention_scores_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_attention_scores(**kwargs)

"""Tests for neuralarch.tensors.anatomy: every from-scratch layout rule against PyTorch's own."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.testing import assert_close

from neuralarch.tensors import anatomy
from neuralarch.tensors.anatomy import (
    contiguous_strides,
    describe,
    dispatch_keys,
    flat_index,
    flat_storage,
    has_kernel,
    is_contiguous_layout,
    min_storage_size,
    shares_storage,
    storage_indices,
    strided_gather,
)

SHAPES = [(), (5,), (3, 4), (2, 3, 4), (4, 1, 3), (2, 0, 3), (1, 1), (2, 3, 1, 5)]


def _views() -> dict[str, torch.Tensor]:
    """A zoo of views of one 4x6 (or 2x3x4) base: transposes, steps, expand, permute, offsets."""
    base = torch.arange(24.0).reshape(4, 6)
    cube = torch.arange(24.0).reshape(2, 3, 4)
    return {
        "base": base,
        "transpose": base.T,
        "row": base[2],
        "column": base[:, 3],
        "step_slice": base[1::2, ::3],
        "offset_block": base[1:3, 2:5],
        "expand": base[1:2].expand(5, 6),
        "unsqueeze_expand": base[:, 0].unsqueeze(1).expand(4, 3),
        "permute": cube.permute(2, 0, 1),
        "permute_slice": cube.permute(1, 2, 0)[:, 1:, :],
        "diagonal": base[:, :4].diagonal(),
        "unfold": torch.arange(10.0).unfold(0, 4, 2),
        "size_one": base[:1, :].T[:, :1],
        "empty": base[:0],
    }


VIEWS = _views()


@pytest.mark.parametrize("shape", SHAPES)
def test_contiguous_strides_match_torch(shape):
    assert contiguous_strides(shape) == torch.empty(shape).stride()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool])
def test_describe_matches_tensor_attributes(shape, dtype):
    t = torch.zeros(shape, dtype=dtype)
    info = describe(t)
    assert info.shape == tuple(t.shape)
    assert info.stride == contiguous_strides(shape)
    assert info.storage_offset == 0
    assert info.dtype == dtype
    assert info.itemsize == torch.empty((), dtype=dtype).element_size()
    assert info.numel == t.numel()
    assert info.nbytes == t.nbytes
    assert info.storage_nbytes == t.numel() * info.itemsize
    assert info.is_contiguous
    assert info.device == torch.device("cpu")


def test_describe_of_a_view_reports_the_shared_storage():
    big = torch.zeros(100, 10)
    small = big[3:5, 2:4]
    info = describe(small)
    assert info.shape == (2, 2)
    assert info.stride == (10, 1)
    assert info.storage_offset == 32
    assert info.nbytes == 4 * 4
    assert info.storage_nbytes == 100 * 10 * 4  # the slice keeps the whole block alive
    assert not info.is_contiguous


def test_as_dict_uses_strings_for_dtype_and_device():
    row = describe(torch.ones(2, 3, dtype=torch.float16)).as_dict()
    assert row["dtype"] == "float16"
    assert row["device"] == "cpu"
    assert row["shape"] == (2, 3)
    assert row["storage_nbytes"] == 12


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_is_contiguous_layout_matches_torch(name):
    t = VIEWS[name]
    assert is_contiguous_layout(t.shape, t.stride()) == t.is_contiguous()


@pytest.mark.parametrize(
    ("shape", "strides", "expected"),
    [((3, 4), (4, 1), True), ((3, 4), (1, 3), False), ((3, 1), (1, 99), True),
     ((0, 5), (7, 3), True), ((), (), True), ((2, 2), (2, 2), False)],
)
def test_is_contiguous_layout_against_as_strided(shape, strides, expected):
    storage = torch.zeros(64)
    view = torch.as_strided(storage, shape, strides)
    assert is_contiguous_layout(shape, strides) == view.is_contiguous() == expected


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_flat_index_points_at_the_element(name):
    t = VIEWS[name]
    flat = flat_storage(t)
    for index in itertools.islice(itertools.product(*(range(n) for n in t.shape)), 50):
        position = flat_index(index, t.stride(), t.storage_offset())
        assert flat[position].item() == t[index].item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.float64])
def test_flat_storage_is_the_whole_shared_block(dtype):
    base = torch.arange(20).to(dtype)
    view = base.reshape(4, 5)[1:3, ::2]
    flat = flat_storage(view)
    assert flat.shape == (20,)
    assert flat.dtype == dtype
    assert shares_storage(flat, base)
    assert_close(flat, base, rtol=0, atol=0)
    flat[7] = 99  # writes go through to the base and to the view
    assert base[7].item() == 99
    assert view[0, 1].item() == 99


def test_flat_index_formula_by_hand():
    assert flat_index((2, 3), (4, 1)) == 11
    assert flat_index((2, 3), (1, 3), offset=5) == 5 + 2 + 9
    assert flat_index((), ()) == 0


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_strided_gather_reproduces_every_view(name):
    t = VIEWS[name]
    storage = flat_storage(t)
    gathered = strided_gather(storage, t.shape, t.stride(), t.storage_offset())
    assert_close(gathered, t, rtol=0, atol=0)
    reference = torch.as_strided(storage, t.shape, t.stride(), t.storage_offset())
    assert_close(gathered, reference, rtol=0, atol=0)
    if t.numel():
        assert not shares_storage(gathered, t)  # a gather is a copy


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.bfloat16])
@pytest.mark.parametrize(
    ("shape", "strides", "offset"),
    [((3, 3), (2, 0), 1), ((4, 2), (1, 4), 0), ((2, 3, 2), (1, 2, 6), 3), ((5,), (3,), 2)],
)
def test_strided_gather_matches_as_strided(dtype, shape, strides, offset):
    storage = (torch.arange(40) * 3 - 7).to(dtype)
    expected = torch.as_strided(storage, shape, strides, offset)
    assert_close(strided_gather(storage, shape, strides, offset), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("shape", "strides", "offset"),
    [((3, 4), (4, 1), 0), ((3, 4), (1, 3), 2), ((2, 2), (0, 0), 5), ((0, 4), (4, 1), 3)],
)
def test_min_storage_size_is_the_tight_bound(shape, strides, offset):
    needed = min_storage_size(shape, strides, offset)
    torch.as_strided(torch.zeros(needed), shape, strides, offset)  # fits exactly
    if needed:
        with pytest.raises(RuntimeError):
            torch.as_strided(torch.zeros(needed - 1), shape, strides, offset)
    farthest = sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    assert needed == (0 if 0 in shape else offset + farthest + 1)


def test_storage_indices_of_a_transpose():
    expected = torch.tensor([[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]])
    assert torch.equal(storage_indices((4, 3), (1, 4)), expected)
    assert storage_indices((), (), offset=7).item() == 7


def test_shares_storage_views_and_copies():
    x = torch.arange(12.0).reshape(3, 4)
    assert shares_storage(x, x.T)
    assert shares_storage(x, x[1:, ::2])
    assert shares_storage(x, x.view(-1))
    assert not shares_storage(x, x.clone())
    assert not shares_storage(x, x.T.contiguous())
    assert shares_storage(x, x.contiguous())  # already contiguous: no copy
    assert not shares_storage(x, x[[0, 2]])  # advanced indexing copies
    assert not shares_storage(torch.empty(0), torch.empty(0))
    assert not shares_storage(x, x.to(torch.float64))


def test_writes_through_a_view_change_the_base():
    x = torch.zeros(3, 4)
    x.T[1, 2] = 7.0
    assert x[2, 1].item() == 7.0


def test_dispatch_keys_follow_device_and_grad():
    cpu_keys = dispatch_keys(torch.ones(2))
    assert "CPU" in cpu_keys
    assert "AutogradCPU" in cpu_keys
    meta_keys = dispatch_keys(torch.ones(2, device="meta"))
    assert "Meta" in meta_keys
    assert "CPU" not in meta_keys
    assert all(isinstance(k, str) and k for k in cpu_keys)


def test_has_kernel_reports_registrations():
    assert has_kernel("aten::add.Tensor", "CPU")
    assert has_kernel("aten::add.Tensor", "Meta")
    assert has_kernel("aten::add.Tensor", "Autograd")
    assert has_kernel("aten::add.Tensor", "CUDA") == torch.backends.cuda.is_built()


def test_dispatch_api_exists_in_this_torch():
    assert callable(torch._C._dispatch_keys)
    assert callable(torch._C._dispatch_has_kernel_for_dispatch_key)


def test_missing_dispatch_api_raises_clearly(monkeypatch):
    monkeypatch.delattr(torch._C, "_dispatch_keys")
    with pytest.raises(RuntimeError, match="_dispatch_keys is not available"):
        dispatch_keys(torch.ones(1))


def test_unparseable_dispatch_key_set(monkeypatch):
    monkeypatch.setattr(anatomy, "_dispatch_api", lambda name: lambda t: "something else")
    with pytest.raises(RuntimeError, match="cannot parse"):
        dispatch_keys(torch.ones(1))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: describe([1, 2]), "t must be a torch.Tensor, got list"),
        (lambda: flat_storage((1, 2)), "t must be a torch.Tensor, got tuple"),
        (lambda: dispatch_keys(3.0), "t must be a torch.Tensor, got float"),
        (lambda: contiguous_strides((2, -1)), "shape must hold non-negative ints"),
        (lambda: contiguous_strides((2.0, 3)), "shape must hold non-negative ints"),
        (lambda: is_contiguous_layout((2, 3), (1,)), "same length"),
        (lambda: flat_index((1, 2), (3, -1)), "strides must hold non-negative ints"),
        (lambda: flat_index((1,), (1,), offset=-2), "offset must be a non-negative int"),
        (lambda: flat_index((1,), (1,), offset=True), "offset must be a non-negative int"),
        (lambda: min_storage_size((True,), (1,)), "shape must hold non-negative ints"),
        (lambda: storage_indices((2,), (1, 1)), "same length"),
        (lambda: strided_gather(torch.zeros(2, 2), (2,), (1,)), "storage must be a 1-D tensor"),
        (lambda: strided_gather([0.0, 1.0], (2,), (1,)), "got list"),
        (lambda: strided_gather(torch.zeros(5), (3,), (3,)), "reach storage position 6"),
        (lambda: shares_storage(torch.zeros(1), None), "got Tensor and NoneType"),
        (lambda: has_kernel("aten::no_such_op", "CPU"), "cannot look up op 'aten::no_such_op'"),
        (lambda: has_kernel("aten::add.Tensor", "NotAKey"), "dispatch key 'NotAKey'"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()

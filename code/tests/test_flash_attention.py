"""Tests of the tiled (FlashAttention-style) attention of lesson 6.4 against SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuralarch.lm.flash_attention import flash_attention, memory_table, peak_memory


@pytest.mark.parametrize("t, s, block_q, block_k", [
    (37, 37, 8, 16), (50, 23, 16, 7), (5, 64, 4, 64), (64, 64, 64, 64), (33, 41, 100, 3),
])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_sdpa_forward_and_backward(t: int, s: int, block_q: int, block_k: int,
                                           causal: bool) -> None:
    gen = torch.Generator().manual_seed(t * s)
    q = torch.randn(2, 3, t, 16, generator=gen, requires_grad=True)
    k = torch.randn(2, 3, s, 16, generator=gen, requires_grad=True)
    v = torch.randn(2, 3, s, 12, generator=gen, requires_grad=True)  # d_v != d
    grad = torch.randn(2, 3, t, 12, generator=gen)
    ours = flash_attention(q, k, v, is_causal=causal, block_q=block_q, block_k=block_k)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    got = torch.autograd.grad(ours, (q, k, v), grad)
    expected = torch.autograd.grad(ref, (q, k, v), grad)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_custom_scale_and_gradcheck_in_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    fn = lambda q, k, v: flash_attention(q, k, v, is_causal=True, block_q=3, block_k=2,  # noqa: E731
                                         scale=0.3)
    torch.testing.assert_close(fn(q, k, v), F.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=0.3))
    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_rejects_bad_blocks_and_shapes() -> None:
    q = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="block_q"):
        flash_attention(q, q, q, block_q=0)
    with pytest.raises(ValueError, match="need q"):
        flash_attention(q, torch.randn(1, 4, 6), q)


def test_tiled_uses_much_less_memory_at_long_lengths() -> None:
    rows = memory_table([256, 2048], dim=32, block=128)
    assert rows[-1]["ratio"] > 10  # the (T, T) scores dominate the naive peak
    assert rows[-1]["naive_bytes"] >= 2048 * 2048 * 4  # at least one float32 score matrix
    assert all(r["max_abs_diff"] < 1e-5 for r in rows)


def test_peak_memory_sees_a_large_temporary() -> None:
    def make_and_drop() -> None:
        big = torch.ones(1_000_000)  # 4 MB, freed before the function returns
        del big

    assert peak_memory(make_and_drop) >= 4_000_000

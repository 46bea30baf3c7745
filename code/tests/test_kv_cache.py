"""Tests of grouped-query attention and the key-value cache (lessons 6.1 and 6.4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuralarch.layers.attention import KVCache, MultiHeadAttention, causal_mask
from neuralarch.lm import KVCache as ReExported
from neuralarch.lm.model import DecoderLM, LMConfig
from neuralarch.sequence.positional import RotaryEmbedding


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (6, 3), (4, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_grouped_query_attention_matches_sdpa_with_gqa(heads: int, kv_heads: int,
                                                       causal: bool) -> None:
    torch.manual_seed(0)
    dim, b, t = 8 * heads, 2, 7
    mha = MultiHeadAttention(dim, heads, kv_heads=kv_heads, causal=causal, bias=False)
    assert mha.k_proj.out_features == kv_heads * 8
    x = torch.randn(b, t, dim)
    q = mha.q_proj(x).view(b, t, heads, 8).transpose(1, 2)  # (B, heads, T, d)
    k = mha.k_proj(x).view(b, t, kv_heads, 8).transpose(1, 2)  # (B, kv_heads, T, d)
    v = mha.v_proj(x).view(b, t, kv_heads, 8).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    expected = mha.out_proj(ref.transpose(1, 2).reshape(b, t, dim))
    torch.testing.assert_close(mha(x)[0], expected, atol=1e-5, rtol=1e-5)


def test_kv_heads_must_divide_heads() -> None:
    with pytest.raises(ValueError, match="divisor of heads"):
        MultiHeadAttention(24, 6, kv_heads=4)


def test_bottom_right_causal_mask() -> None:
    mask = causal_mask(2, 5, offset=3)  # two new queries at positions 3 and 4 of 5 keys
    assert mask.tolist() == [[True, True, True, True, False], [True] * 5]


@pytest.mark.parametrize("max_len", [None, 16])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_attention_with_cache_equals_full_pass(max_len: int | None, kv_heads: int) -> None:
    torch.manual_seed(1)
    mha = MultiHeadAttention(32, 4, kv_heads=kv_heads, causal=True,
                             rotary=RotaryEmbedding(8)).eval()
    x = torch.randn(2, 10, 32)
    full = mha(x)[0]
    cache = KVCache(1, max_len)
    pieces = [mha(x[:, :4], cache=cache)[0]]  # a prefill of 4, then chunks of 1, 2, 3
    for a, b in ((4, 5), (5, 7), (7, 10)):
        pieces.append(mha(x[:, a:b], cache=cache)[0])
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length(0) == 10 and cache.offset == 10
    assert cache.k[0].shape[1] == kv_heads  # the cache holds the un-repeated kv heads


@pytest.mark.parametrize("n_kv_heads", [None, 1])
def test_model_with_cache_equals_full_pass(n_kv_heads: int | None) -> None:
    torch.manual_seed(2)
    model = DecoderLM(LMConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4,
                               n_kv_heads=n_kv_heads, ffn_dim=48, max_seq_len=24)).eval()
    tokens = torch.randint(0, 50, (3, 12))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache(24)
        steps = [model(tokens[:, :5], cache)] + [model(tokens[:, i:i + 1], cache)
                                                 for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_reset_full_and_errors() -> None:
    cache = KVCache(2, max_len=3)
    k = torch.zeros(1, 2, 2, 4)
    cache.update(0, k, k)
    with pytest.raises(ValueError, match="full"):
        cache.update(0, k, k)
    cache.reset()
    assert cache.offset == 0
    out_k, _ = cache.update(0, k + 1, k + 1)
    assert out_k.shape == (1, 2, 2, 4) and bool((out_k == 1).all())
    with pytest.raises(ValueError, match="layer"):
        cache.update(2, k, k)
    with pytest.raises(ValueError, match="n_layers"):
        KVCache(0)
    with pytest.raises(ValueError, match="self-attention"):
        MultiHeadAttention(8, 2)(torch.zeros(1, 2, 8), torch.zeros(1, 3, 8), cache=KVCache(1))
    assert ReExported is KVCache

"""The book's one attention (layers.attention, layers.transformer) against torch's references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from randomised import generator, randomise
from torch import nn

from neuralarch.layers.attention import MultiHeadAttention, attention, causal_mask, combine_masks
from neuralarch.layers.transformer import (
    FeedForward,
    TransformerBlock,
    load_torch_state,
    to_torch_state,
    torch_layer,
)

# --- scaled dot-product attention -----------------------------------------------------------

SHAPES = [((2, 5, 8), (2, 5, 8), 8),  # (B, T, d)
          ((3, 2, 7, 4), (3, 2, 9, 4), 6),  # (B, heads, T, d), S != T, d_v != d
          ((1, 4, 1, 16), (1, 4, 3, 16), 16)]  # one query


def qkv(shape_q, shape_k, d_v, seed=0):
    gen = generator(seed)
    q = torch.randn(shape_q, generator=gen, dtype=torch.float64)
    k = torch.randn(shape_k, generator=gen, dtype=torch.float64)
    v = torch.randn((*shape_k[:-1], d_v), generator=gen, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize("shape_q, shape_k, d_v", SHAPES)
@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive", "causal"])
def test_attention_equals_scaled_dot_product_attention(shape_q, shape_k, d_v, mask_kind):
    q, k, v = qkv(shape_q, shape_k, d_v)
    t, s = shape_q[-2], shape_k[-2]
    mask, causal = None, mask_kind == "causal"
    if mask_kind == "bool":
        mask = torch.rand(t, s, generator=generator(1)) < 0.7
        mask[:, 0] = True  # every query keeps at least one key
    elif mask_kind == "additive":
        mask = torch.randn(t, s, generator=generator(1), dtype=torch.float64)
    out, weights = attention(q, k, v, mask, is_causal=causal)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, mask,
                                                                   is_causal=causal))
    torch.testing.assert_close(weights.sum(-1), torch.ones(shape_q[:-1], dtype=torch.float64))
    if mask_kind == "none":
        logits = q @ k.transpose(-2, -1) / math.sqrt(shape_q[-1])
        torch.testing.assert_close(weights, torch.softmax(logits, dim=-1))


def test_attention_gradients_equal_sdpa():
    q, k, v = qkv((2, 3, 6, 4), (2, 3, 5, 4), 7)
    ours = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = [x.clone().requires_grad_() for x in (q, k, v)]
    attention(*ours, is_causal=True)[0].square().sum().backward()
    F.scaled_dot_product_attention(*ref, is_causal=True).square().sum().backward()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_causal_mask_is_lower_triangular_and_top_left_aligned():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False],
                                       [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]


def test_combine_masks_turns_booleans_into_minus_infinity():
    both = combine_masks(torch.tensor([True, False]), torch.tensor([0.5, 0.5]),
                         dtype=torch.float32)
    assert both.tolist() == [0.5, float("-inf")]
    assert combine_masks(None, None, dtype=torch.float32) is None


def test_attention_dropout_acts_only_in_training():
    q, k, v = (torch.randn(2, 6, 4, generator=generator(i)) for i in range(3))
    torch.testing.assert_close(attention(q, k, v, dropout_p=0.5)[0], attention(q, k, v)[0])
    torch.manual_seed(0)
    dropped = attention(q, k, v, dropout_p=0.5, training=True)[0]
    assert (dropped - attention(q, k, v)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("k_shape, v_shape", [((2, 5, 3), (2, 5, 4)), ((2, 5, 4), (2, 6, 4))])
def test_attention_rejects_mismatched_shapes(k_shape, v_shape):
    with pytest.raises(ValueError, match="need q"):
        attention(torch.zeros(2, 5, 4), torch.zeros(k_shape), torch.zeros(v_shape))


# --- multi-head attention -------------------------------------------------------------------

@pytest.mark.parametrize("dim, heads, t, s, kdim, vdim", [
    (16, 2, 5, 5, None, None), (24, 3, 7, 4, None, None), (8, 8, 1, 3, None, None),
    (12, 1, 4, 6, 5, 7), (16, 4, 3, 9, 16, 10)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("average", [True, False])
def test_multi_head_attention_equals_nn_multihead_attention(dim, heads, t, s, kdim, vdim, bias,
                                                            average):
    ref = randomise(nn.MultiheadAttention(dim, heads, bias=bias, kdim=kdim, vdim=vdim,
                                          batch_first=True))
    ours = MultiHeadAttention(dim, heads, kdim=kdim, vdim=vdim, bias=bias)
    load_torch_state(ours, ref.state_dict())
    gen = generator(1)
    query = torch.randn(3, t, dim, generator=gen)
    key = torch.randn(3, s, kdim or dim, generator=gen)
    value = torch.randn(3, s, vdim or dim, generator=gen)
    padding = torch.zeros(3, s, dtype=torch.bool)
    padding[1, s // 2 + 1:] = True  # the second sequence is shorter
    allowed = torch.rand(t, s, generator=gen) < 0.8
    allowed[:, 0] = True
    out, weights = ours(query, key, value, attn_mask=allowed, key_padding_mask=padding,
                        need_weights=True, average_weights=average)
    ref_out, ref_weights = ref(query, key, value, attn_mask=~allowed, key_padding_mask=padding,
                               average_attn_weights=average)  # torch: True = forbidden
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)
    for name, value in to_torch_state(ours).items():
        torch.testing.assert_close(value, ref.state_dict()[name])


def test_causal_self_attention_equals_torch_with_a_causal_mask():
    ref = randomise(nn.MultiheadAttention(12, 3, batch_first=True))
    ours = MultiHeadAttention(12, 3, causal=True)
    load_torch_state(ours, ref.state_dict())
    x = torch.randn(2, 6, 12, generator=generator(2))
    future = ~causal_mask(6)
    torch.testing.assert_close(ours(x)[0], ref(x, x, x, attn_mask=future)[0])
    # the output at step t does not change when later steps change
    y = x.clone()
    y[:, 4:] = torch.randn(2, 2, 12, generator=generator(3))
    torch.testing.assert_close(ours(x)[0][:, :4], ours(y)[0][:, :4])


def test_per_head_bias_broadcasts_like_alibi():
    ours = randomise(MultiHeadAttention(8, 2))
    x = torch.randn(2, 4, 8, generator=generator(4))
    bias = torch.randn(2, 4, 4, generator=generator(5))  # (heads, T, T)
    _, weights = ours(x, attn_mask=bias, need_weights=True, average_weights=False)
    q, k = ours._split(ours.q_proj(x)), ours._split(ours.k_proj(x))
    expected = (q @ k.transpose(-2, -1) / 2 + bias).softmax(-1)
    torch.testing.assert_close(weights, expected)


def test_rotary_hook_sees_split_queries_and_keys():
    seen = []

    def rotary(q, k):
        seen.append((q.shape, k.shape))
        return -q, -k  # flipping both signs leaves every score unchanged

    plain = randomise(MultiHeadAttention(8, 2))
    hooked = MultiHeadAttention(8, 2, rotary=rotary)
    hooked.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, 8, generator=generator(6))
    torch.testing.assert_close(hooked(x)[0], plain(x)[0])
    assert seen == [((3, 2, 5, 4), (3, 2, 5, 4))]


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=10, heads=4), r"dim \(10\) must be a positive multiple of heads \(4\)"),
    (dict(dim=8, heads=2, dropout=1.0), "dropout must be in"),
])
def test_multi_head_attention_refuses_bad_shapes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


def test_multi_head_attention_checks_its_inputs():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="need query"):
        mha(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="key_padding_mask must be"):
        mha(torch.zeros(2, 3, 8), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))


# --- the transformer block ------------------------------------------------------------------

@pytest.mark.parametrize("dim, heads, ffn_dim, tokens", [(16, 2, 32, 5), (24, 4, 40, 9),
                                                         (12, 3, 12, 1)])
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("direction", ["ours-to-torch", "torch-to-ours"])
def test_encoder_block_equals_transformer_encoder_layer(dim, heads, ffn_dim, tokens, norm_first,
                                                        activation, direction):
    if direction == "ours-to-torch":
        block = randomise(TransformerBlock(dim, heads, ffn_dim, activation=activation,
                                           norm_first=norm_first))
        layer = torch_layer(block)
    else:
        layer = randomise(nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout=0.0,
                                                     activation=activation, batch_first=True,
                                                     norm_first=norm_first), seed=3)
        block = TransformerBlock(dim, heads, ffn_dim, activation=activation,
                                 norm_first=norm_first)
        load_torch_state(block, layer.state_dict())
    x = torch.randn(2, tokens, dim, generator=generator(2))
    padding = torch.zeros(2, tokens, dtype=torch.bool)
    padding[1, -1] = tokens > 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = block(xa, key_padding_mask=padding)
    yb = layer(xb, src_key_padding_mask=padding)
    torch.testing.assert_close(ya, yb)
    upstream = torch.randn(ya.shape, generator=generator(4))
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    grads = to_torch_state_grads(block)
    for name, parameter in layer.named_parameters():
        torch.testing.assert_close(grads[name], parameter.grad)


def to_torch_state_grads(block: nn.Module) -> dict[str, torch.Tensor]:
    """Our gradients in torch's layout: the same map applied to a copy holding the grads."""
    grads = {name: p.grad for name, p in block.named_parameters()}
    with torch.no_grad():
        copy = [(p, p.detach().clone()) for p in block.parameters()]
        for name, p in block.named_parameters():
            p.copy_(grads[name])
        state = to_torch_state(block)
        for p, value in copy:
            p.copy_(value)
    return state


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_equals_transformer_decoder_layer(norm_first):
    block = randomise(TransformerBlock(16, 4, 24, activation="relu", norm_first=norm_first,
                                       causal=True, cross_attention=True))
    layer = torch_layer(block)
    assert isinstance(layer, nn.TransformerDecoderLayer)
    gen = generator(7)
    x, memory = torch.randn(2, 5, 16, generator=gen), torch.randn(2, 7, 16, generator=gen)
    memory_padding = torch.zeros(2, 7, dtype=torch.bool)
    memory_padding[0, 5:] = True
    ours = block(x, memory, memory_key_padding_mask=memory_padding)
    theirs = layer(x, memory, tgt_mask=~causal_mask(5), tgt_is_causal=True,
                   memory_key_padding_mask=memory_padding)
    torch.testing.assert_close(ours, theirs)


def test_block_memory_must_match_cross_attention():
    with pytest.raises(ValueError, match="pass the encoder's memory"):
        TransformerBlock(8, 2, 16, cross_attention=True)(torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="without cross_attention"):
        TransformerBlock(8, 2, 16)(torch.zeros(1, 3, 8), torch.zeros(1, 2, 8))


def test_blocks_are_permutation_equivariant():
    block = randomise(TransformerBlock(16, 4, 32))
    x = torch.randn(2, 7, 16, generator=generator())
    order = torch.randperm(7, generator=generator(5))
    torch.testing.assert_close(block(x)[:, order], block(x[:, order]))


def test_submodules_have_names_not_positions():
    names = {name for name, _ in TransformerBlock(8, 2, 16, cross_attention=True)
             .named_parameters()}
    assert {"self_attn.q_proj.weight", "cross_attn.out_proj.bias", "ffn.up.weight",
            "ffn.down.bias", "attn_norm.weight", "cross_norm.weight", "ffn_norm.bias"} <= names
    assert not any(part.isdigit() for name in names for part in name.split("."))


def test_feed_forward_refuses_unknown_activations():
    with pytest.raises(ValueError, match="activation must be one of"):
        FeedForward(8, 16, activation="swish")


def test_the_torch_map_refuses_other_modules_and_missing_keys():
    with pytest.raises(TypeError, match="no torch equivalent"):
        to_torch_state(nn.Linear(2, 2))
    with pytest.raises(KeyError, match="in_proj_weight"):
        load_torch_state(MultiHeadAttention(8, 2), {})


# --- added with lessons 5.2 and 5.3 ---------------------------------------------------------

def test_a_query_with_no_allowed_key_gives_nan_in_its_own_row_only():
    q, k, v = qkv((2, 4, 3), (2, 5, 3), 3)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2] = False  # query 2 may see nothing: its softmax is 0 / 0
    out, weights = attention(q, k, v, mask)
    assert torch.isnan(out[:, 2]).all() and torch.isnan(weights[:, 2]).all()
    keep = [0, 1, 3]
    assert not torch.isnan(out[:, keep]).any()
    torch.testing.assert_close(out[:, keep], F.scaled_dot_product_attention(q, k, v, mask)[:, keep])


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_attention_scale_argument_equals_sdpa(scale):
    q, k, v = qkv((2, 3, 6, 5), (2, 3, 4, 5), 2)
    torch.testing.assert_close(attention(q, k, v, scale=scale)[0],
                               F.scaled_dot_product_attention(q, k, v, scale=scale))


@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_attention_mask_broadcasts_over_batch_and_heads(mask_kind):
    q, k, v = qkv((3, 2, 5, 4), (3, 2, 6, 4), 4)
    gen = generator(8)
    mask = (torch.rand(3, 1, 5, 6, generator=gen) < 0.7) if mask_kind == "bool" else \
        torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64)
    if mask_kind == "bool":
        mask[..., 0] = True
    torch.testing.assert_close(attention(q, k, v, mask)[0],
                               F.scaled_dot_product_attention(q, k, v, mask))


def test_additive_mask_and_key_padding_combine_like_torch():
    ref = randomise(nn.MultiheadAttention(12, 3, batch_first=True), seed=9)
    ours = MultiHeadAttention(12, 3)
    load_torch_state(ours, ref.state_dict())
    gen = generator(10)
    query, memory = torch.randn(2, 5, 12, generator=gen), torch.randn(2, 7, 12, generator=gen)
    bias = torch.randn(5, 7, generator=gen)  # an additive (T, S) mask: same meaning in both
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[0, 4:] = True
    out, weights = ours(query, memory, attn_mask=bias, key_padding_mask=padding,
                        need_weights=True)
    ref_out, ref_weights = ref(query, memory, memory, attn_mask=bias,
                               key_padding_mask=padding.float().masked_fill(padding, -math.inf))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)
    assert (weights[0, :, 4:] == 0).all(), "padding keys receive no weight"


def test_parameter_count_does_not_depend_on_heads():
    counts = {heads: sum(p.numel() for p in MultiHeadAttention(24, heads).parameters())
              for heads in (1, 2, 3, 4, 6, 8)}
    assert set(counts.values()) == {4 * 24 * 24 + 4 * 24}


@pytest.mark.parametrize("kv_heads, causal, masks", [(4, False, False), (2, True, False),
                                                     (1, False, True), (2, True, True)])
def test_fused_multi_head_attention_equals_the_books(kv_heads, causal, masks):
    torch.manual_seed(3)
    book = MultiHeadAttention(16, 4, kv_heads=kv_heads, causal=causal)
    fused = MultiHeadAttention(16, 4, kv_heads=kv_heads, causal=causal, fused=True)
    fused.load_state_dict(book.state_dict())
    x = torch.randn(2, 6, 16, requires_grad=True)
    kwargs = {}
    if masks:
        kwargs = {"attn_mask": torch.randn(6, 6),  # an additive bias
                  "key_padding_mask": torch.tensor([[False] * 6, [False] * 4 + [True] * 2])}
    out_book, _ = book(x, **kwargs)
    out_fused, none = fused(x, **kwargs)
    assert none is None
    torch.testing.assert_close(out_fused, out_book, atol=1e-6, rtol=1e-5)
    grad_book, = torch.autograd.grad(out_book.square().sum(), x)
    grad_fused, = torch.autograd.grad(out_fused.square().sum(), x)
    torch.testing.assert_close(grad_fused, grad_book, atol=1e-5, rtol=1e-5)
    _, weights = fused(x, need_weights=True, **kwargs)  # weights asked for: the book's path
    _, expected = book(x, need_weights=True, **kwargs)
    torch.testing.assert_close(weights, expected)

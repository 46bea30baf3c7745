"""Tests for the positional encodings of lesson 5.4 (``neuralarch.sequence.positional``)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from neuralarch.layers.attention import MultiHeadAttention
from neuralarch.sequence.positional import (
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    rotate_half,
    sinusoidal_table,
)

# --- sinusoidal -----------------------------------------------------------------------------


@pytest.mark.parametrize(("max_len", "dim"), [(1, 2), (7, 4), (50, 16), (33, 10)])
def test_sinusoidal_table_matches_the_formula(max_len, dim):
    table = sinusoidal_table(max_len, dim)
    assert table.shape == (max_len, dim) and table.dtype == torch.float32
    expected = torch.empty(max_len, dim, dtype=torch.float64)
    for p in range(max_len):
        for i in range(dim // 2):
            angle = p / 10000 ** (2 * i / dim)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    assert_close(table, expected.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("max_len", "dim"), [(10, 3), (10, 0), (0, 4), (-1, 4)])
def test_sinusoidal_table_rejects_bad_sizes(max_len, dim):
    with pytest.raises(ValueError, match="must be"):
        sinusoidal_table(max_len, dim)


@pytest.mark.parametrize("k", [1, 5, 17])
def test_sinusoidal_shift_is_a_fixed_rotation(k):
    """PE[p + k] = M_k PE[p] with M_k block-diagonal 2x2 rotations that do not depend on p."""
    dim = 12
    table = sinusoidal_table(64, dim).double()
    inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    m = torch.zeros(dim, dim, dtype=torch.float64)
    for i, w in enumerate(inv_freq):
        c, s = math.cos(k * w), math.sin(k * w)  # (sin, cos)(a + b) from (sin a, cos a)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=m.dtype)
    assert_close(table[:-k] @ m.T, table[k:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
@pytest.mark.parametrize(("b", "t", "offset"), [(1, 1, 0), (3, 10, 0), (2, 6, 4)])
def test_absolute_encodings_add_one_vector_per_position(cls, b, t, offset):
    torch.manual_seed(0)
    enc = cls(8, max_len=10)
    x = torch.randn(b, t, 8)
    out = enc(x, offset=offset)
    assert out.shape == x.shape
    table = (enc.table if cls is SinusoidalPositionalEncoding else enc.embedding.weight)
    assert_close(out - x, table[offset:offset + t].detach().expand(b, t, 8))


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_absolute_encodings_refuse_positions_past_max_len(cls):
    enc = cls(8, max_len=10)
    enc(torch.zeros(1, 10, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=10"):
        enc(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="max_len=10"):
        enc(torch.zeros(1, 5, 8), offset=6)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        enc(torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match="offset"):
        enc(torch.zeros(1, 5, 8), offset=-1)


def test_sinusoidal_is_a_buffer_and_learned_is_a_parameter():
    sin, learned = SinusoidalPositionalEncoding(8, 16), LearnedPositionalEncoding(8, 16)
    assert list(sin.parameters()) == [] and "table" not in sin.state_dict()
    assert [p.shape for p in learned.parameters()] == [torch.Size([16, 8])]
    learned(torch.zeros(2, 5, 8)).sum().backward()
    grad = learned.embedding.weight.grad
    assert grad[:5].abs().sum() > 0 and grad[5:].abs().sum() == 0  # only used rows learn


# --- RoPE -----------------------------------------------------------------------------------


def rope_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Independent reference: pair (i, i + d/2) is the complex number x_i + 1j x_{i+d/2},
    multiplied by exp(1j * p * base^(-2i/d))."""
    d = x.shape[-1]
    half = d // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / d)  # (d/2,)
    z = torch.complex(x[..., :half].double(), x[..., half:].double())  # (..., T, d/2)
    z = z * torch.polar(torch.ones_like(theta), positions.double()[:, None] * theta)
    return torch.cat((z.real, z.imag), dim=-1).to(x.dtype)


def rope_roformer_matrix(x: torch.Tensor, positions: torch.Tensor,
                         base: float = 10000.0) -> torch.Tensor:
    """Second reference: RoFormer's block-diagonal matrix R_m (eq. 15 of Su et al.) acting on
    interleaved pairs (2i, 2i+1), after permuting our halves into that order and back."""
    d = x.shape[-1]
    half = d // 2
    perm = torch.stack((torch.arange(half), torch.arange(half) + half), dim=1).flatten()
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / d)
    out = torch.empty_like(x, dtype=torch.float64)
    for row, p in enumerate(positions.tolist()):
        r = torch.zeros(d, d, dtype=torch.float64)
        for i in range(half):
            c, s = math.cos(p * theta[i]), math.sin(p * theta[i])
            r[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]])
        interleaved = x[..., row, perm].double()  # (..., d) in the paper's order
        out[..., row, perm] = interleaved @ r.T
    return out.to(x.dtype)


@pytest.mark.parametrize(("shape", "base", "offset"), [
    ((2, 3, 5, 8), 10000.0, 0), ((1, 1, 7, 4), 10000.0, 3), ((2, 2, 4, 16), 500.0, 11),
    ((3, 6, 2), 10000.0, 0)])
def test_rope_matches_complex_and_matrix_references(shape, base, offset):
    torch.manual_seed(1)
    x = torch.randn(shape)
    rope = RotaryEmbedding(shape[-1], base=base)
    positions = torch.arange(offset, offset + shape[-2])
    ours = rope.rotate(x, offset=offset)
    assert_close(ours, rope_complex(x, positions, base), atol=1e-5, rtol=1e-5)
    assert_close(ours, rope_roformer_matrix(x, positions, base), atol=1e-5, rtol=1e-5)


def test_rotate_half_is_a_quarter_turn():
    x = torch.arange(1.0, 7.0)
    assert rotate_half(x).tolist() == [-4.0, -5.0, -6.0, 1.0, 2.0, 3.0]
    assert_close(rotate_half(rotate_half(x)), -x)


@pytest.mark.parametrize("d", [2, 8, 64])
@pytest.mark.parametrize(("m", "n"), [(0, 0), (3, 10), (40, 2)])
@pytest.mark.parametrize("delta", [1, 7, 100, 5000])
def test_rope_score_depends_only_on_the_offset(d, m, n, delta):
    torch.manual_seed(d + m + n)
    rope = RotaryEmbedding(d)
    q, k = torch.randn(1, d), torch.randn(1, d)  # one query and one key vector
    score = rope.rotate(q, m) @ rope.rotate(k, n).T
    shifted = rope.rotate(q, m + delta) @ rope.rotate(k, n + delta).T
    assert_close(shifted, score, atol=1e-3 * d ** 0.5, rtol=1e-4)
    # ... but it does depend on the offset itself: move only the key and the score changes.
    if d > 2 or m != n:
        moved = rope.rotate(q, m) @ rope.rotate(k, n + 1).T
        assert not torch.allclose(moved, score, atol=1e-4)


def test_rope_preserves_norms_and_is_the_identity_at_position_zero():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 50, 16)
    rope = RotaryEmbedding(16)
    out = rope.rotate(x)
    assert_close(out.norm(dim=-1), x.norm(dim=-1))
    assert_close(out[..., 0, :], x[..., 0, :])


@pytest.mark.parametrize(("start", "stop"), [(0, 4), (5, 12), (19, 20)])
def test_rope_offset_equals_slicing_a_longer_sequence(start, stop):
    torch.manual_seed(3)
    q, k = torch.randn(2, 3, 20, 8), torch.randn(2, 3, 20, 8)
    rope = RotaryEmbedding(8)
    full_q, full_k = rope(q, k)
    part_q, part_k = rope(q[:, :, start:stop], k[:, :, start:stop], offset=start)
    assert_close(part_q, full_q[:, :, start:stop])
    assert_close(part_k, full_k[:, :, start:stop])


def test_rope_attention_is_unchanged_by_shifting_every_position():
    """With only RoPE for positions, attention sees relative positions: a global shift is free."""
    torch.manual_seed(4)
    rope = RotaryEmbedding(4)
    mha = MultiHeadAttention(16, 4, causal=True, rotary=rope)
    x = torch.randn(2, 9, 16)
    out, _ = mha(x)
    shifted_mha = MultiHeadAttention(16, 4, causal=True,
                                     rotary=lambda q, k: rope(q, k, offset=37))
    plain_mha = MultiHeadAttention(16, 4, causal=True)
    for other in (shifted_mha, plain_mha):
        other.load_state_dict(mha.state_dict())
    assert_close(shifted_mha(x)[0], out, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(plain_mha(x)[0], out, atol=1e-3)  # so the rotation did matter


def test_rope_rejects_bad_widths():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="base"):
        RotaryEmbedding(8, base=1.0)
    with pytest.raises(ValueError, match="head_dim=8"):
        RotaryEmbedding(8).rotate(torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match="offset"):
        RotaryEmbedding(8).rotate(torch.zeros(1, 3, 8), offset=-2)


def test_rope_keeps_the_dtype_and_has_no_state():
    rope = RotaryEmbedding(8)
    assert rope.state_dict() == {} and list(rope.parameters()) == []
    x = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    assert rope.rotate(x).dtype == torch.float64


# --- ALiBi ----------------------------------------------------------------------------------

# Written out from the official code (ofirpress/attention_with_linear_biases, get_slopes).
EXPECTED_SLOPES = {
    1: [2 ** -8],
    2: [2 ** -4, 2 ** -8],
    4: [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8],
    8: [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256],
    # 6 = 4 + 2: the 4-head slopes, then slopes 1, 3 of the 8-head sequence
    6: [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3],
    # 12 = 8 + 4: the 8-head slopes, then slopes 1, 3, 5, 7 of the 16-head sequence
    12: [2 ** -1, 2 ** -2, 2 ** -3, 2 ** -4, 2 ** -5, 2 ** -6, 2 ** -7, 2 ** -8,
         2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5],
    16: [2 ** (-0.5 * i) for i in range(1, 17)],
}


@pytest.mark.parametrize("heads", sorted(EXPECTED_SLOPES))
def test_alibi_slopes_follow_the_official_recipe(heads):
    slopes = alibi_slopes(heads)
    assert slopes.shape == (heads,)
    assert_close(slopes, torch.tensor(EXPECTED_SLOPES[heads]), rtol=1e-6, atol=0)


def test_alibi_slopes_reject_zero_heads():
    with pytest.raises(ValueError, match="heads"):
        alibi_slopes(0)


@pytest.mark.parametrize(("heads", "t", "s", "offset"), [(8, 5, None, 0), (3, 4, 7, 0),
                                                         (2, 3, 9, 6)])
def test_alibi_bias_values(heads, t, s, offset):
    bias = alibi_bias(heads, t, s, offset=offset)
    s = t if s is None else s
    assert bias.shape == (heads, t, s)
    slopes = alibi_slopes(heads)
    for h in range(heads):
        for i in range(t):
            for j in range(s):
                expected = -slopes[h] * (offset + i - j)
                assert_close(bias[h, i, j], expected)
    if offset == 0:
        assert (bias.diagonal(dim1=1, dim2=2) == 0).all()
    below = torch.ones(t, s, dtype=torch.bool).tril(-1 - offset) if offset == 0 else None
    if below is not None:
        assert (bias[:, below] < 0).all()  # older keys are penalised


def test_alibi_symmetric_penalises_both_directions():
    bias = alibi_bias(2, 4, symmetric=True)
    assert_close(bias, bias.transpose(1, 2))
    assert (bias <= 0).all()


@pytest.mark.parametrize(("heads", "t"), [(4, 6), (6, 10)])
def test_alibi_in_causal_attention_matches_sdpa(heads, t):
    torch.manual_seed(5)
    dim = heads * 4
    mha = MultiHeadAttention(dim, heads, causal=True)
    x = torch.randn(2, t, dim)
    bias = alibi_bias(heads, t)
    out, _ = mha(x, attn_mask=bias)
    q, k, v = (mha._split(p(x)) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
    causal = torch.zeros(t, t).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), -math.inf)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias + causal)
    ref = mha.out_proj(ref.transpose(1, 2).reshape(2, t, dim))
    assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_alibi_bias_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        alibi_bias(4, 0)
    with pytest.raises(ValueError, match="offset"):
        alibi_bias(4, 3, offset=-1)

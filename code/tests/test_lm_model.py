"""Tests of the book's decoder-only language model (lesson 6.1): shapes, config, HF equivalence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.layers.normalization import RMSNorm
from neuralarch.layers.transformer import SwiGLU
from neuralarch.lm.model import (
    DecoderLM,
    LMConfig,
    count_parameters,
    hf_llama_config,
    load_llama_state,
    parameter_breakdown,
)

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=37, dim=24, n_layers=2, n_heads=4, ffn_dim=40, max_seq_len=32)


@pytest.mark.parametrize("changes", [
    {}, {"n_kv_heads": 2}, {"n_kv_heads": 1, "tie_embeddings": False},
    {"n_heads": 2, "dim": 32, "ffn_dim": 20, "n_layers": 3, "rope_base": 500.0},
    {"n_kv_heads": 2, "fused_attention": True},
])
def test_matches_hugging_face_llama(changes: dict) -> None:
    config = LMConfig(**{**SMALL, **changes})
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(hf_llama_config(config)).eval()
    with torch.no_grad():  # HF initialises norm gains to 1: randomise them so they are tested
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    ours = DecoderLM(config).eval()
    load_llama_state(ours, hf.state_dict())
    tokens = torch.randint(0, config.vocab_size, (3, 11))  # non-square: B != T, T != V
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours(tokens)
    assert got.shape == (3, 11, config.vocab_size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_load_rejects_mismatched_shapes_and_untied_head() -> None:
    config = LMConfig(**SMALL)
    hf = transformers.LlamaForCausalLM(hf_llama_config(config.replace(tie_embeddings=False)))
    with pytest.raises(ValueError, match="tie_embeddings=False"):
        load_llama_state(DecoderLM(config), hf.state_dict())
    other = DecoderLM(config.replace(dim=32, tie_embeddings=False))
    with pytest.raises(ValueError, match="shape"):
        load_llama_state(other, hf.state_dict())


@pytest.mark.parametrize("changes", [
    {}, {"n_kv_heads": 2}, {"tie_embeddings": False}, {"n_kv_heads": 1, "n_layers": 3},
])
def test_count_parameters_formula_matches_model(changes: dict) -> None:
    config = LMConfig(**{**SMALL, **changes})
    model = DecoderLM(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())
    assert sum(parameter_breakdown(config).values()) == count_parameters(config)


def test_llama_preset_has_llama_sized_parameter_count() -> None:
    assert count_parameters(LMConfig.preset("llama-3.2-1b")) == 1_235_814_400


def test_tied_embeddings_share_one_tensor() -> None:
    tied = DecoderLM(LMConfig(**SMALL))
    assert tied.lm_head.weight is tied.embed.weight
    untied = DecoderLM(LMConfig(**SMALL, tie_embeddings=False))
    assert untied.lm_head.weight is not untied.embed.weight


@pytest.mark.parametrize("n_kv_heads, fused", [(None, False), (2, False), (2, True)])
def test_causal_mask_future_tokens_do_not_change_past_logits(n_kv_heads: int | None,
                                                             fused: bool) -> None:
    torch.manual_seed(1)
    model = DecoderLM(LMConfig(**SMALL, n_kv_heads=n_kv_heads, fused_attention=fused)).eval()
    tokens = torch.randint(0, 37, (2, 16))
    with torch.no_grad():
        base = model(tokens)
        for t in (0, 5, 14):
            changed = tokens.clone()
            changed[:, t + 1:] = torch.randint(0, 37, changed[:, t + 1:].shape)
            assert not torch.equal(changed, tokens)
            out = model(changed)
            assert torch.equal(out[:, :t + 1], base[:, :t + 1])  # bit-identical up to t
            assert not torch.equal(out[:, t + 1:], base[:, t + 1:])  # and the rest did change


def test_init_weights_scales_residual_projections() -> None:
    torch.manual_seed(0)
    config = LMConfig(dim=256, n_layers=8, n_heads=4, ffn_dim=512)
    model = DecoderLM(config)
    std = model.blocks[0].attn.q_proj.weight.std().item()
    residual = model.blocks[0].ffn.down_proj.weight.std().item()
    assert std == pytest.approx(0.02, rel=0.05)
    assert residual == pytest.approx(0.02 / 4.0, rel=0.05)  # 1 / sqrt(2 * 8) = 1 / 4
    assert torch.equal(model.norm.weight, torch.ones(256))


def test_swiglu_matches_formula() -> None:
    torch.manual_seed(0)
    ffn = SwiGLU(6, 10)
    x = torch.randn(2, 3, 6)
    expected = ffn.down_proj(nn.functional.silu(ffn.gate_proj(x)) * ffn.up_proj(x))
    torch.testing.assert_close(ffn(x), expected)
    assert ffn.gate_proj.bias is None


def test_rmsnorm_matches_llama_rmsnorm() -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    theirs = LlamaRMSNorm(12, eps=1e-5)
    ours = RMSNorm(12, eps=1e-5)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(theirs.weight)
    x = torch.randn(3, 5, 12)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    ({"dim": 30, "n_heads": 4}, "multiple of n_heads"),
    ({"n_kv_heads": 3}, "divisor"),
    ({"dim": 12, "n_heads": 4}, "even"),
    ({"dropout": 1.0}, "dropout"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"rope_base": 1.0}, "rope_base"),
])
def test_config_rejects_bad_values(bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LMConfig(**bad)


def test_forward_rejects_too_long_and_float_input() -> None:
    model = DecoderLM(LMConfig(**SMALL))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 3))


def test_preset_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        LMConfig.preset("gpt-5")


def test_next_token_loss_uses_shifted_targets() -> None:
    from neuralarch.lm.model import next_token_loss

    torch.manual_seed(0)
    model = DecoderLM(LMConfig(**SMALL))
    tokens = torch.randint(0, 37, (2, 9))
    logits = model(tokens[:, :-1])
    expected = nn.functional.cross_entropy(logits.reshape(-1, 37), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(next_token_loss(model, tokens), expected)
    with pytest.raises(ValueError, match="T >= 1"):
        next_token_loss(model, tokens[:, :1])


def test_model_overfits_one_batch() -> None:
    from neuralarch.lm.model import next_token_loss

    torch.manual_seed(0)
    model = DecoderLM(LMConfig(**SMALL))
    tokens = torch.randint(0, 37, (2, 12))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = next_token_loss(model, tokens).item()
    for _ in range(60):
        loss = next_token_loss(model, tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 3.0 and loss.item() < 0.1 * first

"""Tests for neuralarch.layers.torch_decoder: parameter counts from the config, a causal decoder."""

from __future__ import annotations

import pytest
import torch

from neuralarch.layers.torch_decoder import TorchDecoder, TransformerConfig, count_parameters

# ---------------------------------------------------------------- parameter counting


@pytest.mark.parametrize(
    "config",
    [TransformerConfig.preset("tiny"), TransformerConfig.preset("small"),
     TransformerConfig(d_model=48, n_heads=3, n_layers=3, d_ff=100, bias=True),
     TransformerConfig(vocab_size=10, context_length=7, d_model=20, n_heads=5, n_layers=1)],
)
def test_count_parameters_matches_torch_model(config):
    model = TorchDecoder(config)
    counts = count_parameters(config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == sum(counts[k] for k in ("embedding", "attention", "mlp", "norm"))
    assert counts["non_embedding"] == counts["total"] - counts["embedding"]
    block = sum(p.numel() for p in model.blocks.parameters())
    final_norm = sum(p.numel() for p in model.norm.parameters())
    assert block == counts["attention"] + counts["mlp"] + counts["norm"] - final_norm


def test_gpt2_preset_has_gpt2_small_parameter_count():
    config = TransformerConfig.preset("gpt2")
    with torch.device("meta"):  # shapes only, no memory
        model = TorchDecoder(config)
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # GPT-2 small
    assert count_parameters(config)["total"] == 124_439_808


@pytest.mark.parametrize(("n_layers", "d_model"), [(12, 768), (24, 1024), (48, 1600)])
def test_non_embedding_count_is_close_to_twelve_l_d_squared(n_layers, d_model):
    config = TransformerConfig(d_model=d_model, n_heads=d_model // 64, n_layers=n_layers,
                               bias=True)
    ratio = count_parameters(config)["non_embedding"] / (12 * n_layers * d_model**2)
    assert 1.0 < ratio < 1.003  # biases and norms add a few per mille


def test_tied_head_shares_the_embedding_matrix():
    model = TorchDecoder(TransformerConfig.preset("tiny"))
    assert model.head.weight is model.tok_emb.weight
    # state_dict lists the tied tensor twice; parameters() deduplicates it
    assert sum(t.numel() for t in model.state_dict().values()) > sum(
        p.numel() for p in model.parameters()
    )


# ---------------------------------------------------------------- the decoder runs


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (3, 7), (2, 32)])
def test_decoder_output_shape(batch, length):
    config = TransformerConfig.preset("tiny")
    model = TorchDecoder(config).eval()
    idx = torch.randint(0, config.vocab_size, (batch, length))
    assert model(idx).shape == (batch, length, config.vocab_size)


def test_decoder_is_causal():
    torch.manual_seed(0)
    config = TransformerConfig.preset("tiny")
    model = TorchDecoder(config).eval()
    idx = torch.randint(0, config.vocab_size, (2, 10))
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % config.vocab_size  # change only the future
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_decoder_bad_inputs():
    config = TransformerConfig.preset("tiny")
    model = TorchDecoder(config)
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\), got \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="sequence length 33 exceeds context_length=32"):
        model(torch.zeros(1, 33, dtype=torch.long))



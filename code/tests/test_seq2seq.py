"""The encoder-decoder transformer of lesson 5.5 against ``nn.Transformer``."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from randomised import generator, randomise
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.layers.transformer import to_torch_state
from neuralarch.sequence.seq2seq import (
    Seq2SeqConfig,
    Seq2SeqModel,
    Seq2SeqTransformer,
    load_torch_transformer,
    torch_transformer,
)

TINY = dict(src_vocab=11, tgt_vocab=9, dim=16, heads=2, encoder_layers=2, decoder_layers=2,
            ffn_dim=24, dropout=0.0, max_len=12)




def padded_ids(b: int, t: int, vocab: int, lengths: list[int], seed: int) -> tuple[torch.Tensor,
                                                                                   torch.Tensor]:
    """Random ids (B, T) in 1..vocab-1, padded with 0 after each row's length; and the mask."""
    ids = torch.randint(1, vocab, (b, t), generator=generator(seed))
    mask = torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T) True at padding
    return ids.masked_fill(mask, 0), mask


def grads_as_torch_state(block: nn.Module) -> dict[str, torch.Tensor]:
    """Our block's gradients laid out as torch's parameter names (through the package's map)."""
    holder = copy.deepcopy(block)
    with torch.no_grad():
        for ours, grad_of in zip(holder.parameters(), block.parameters(), strict=True):
            ours.copy_(grad_of.grad)
    return to_torch_state(holder)


# --- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(dim=30, heads=4), "divisible by heads"),
    (dict(dim=15, heads=3), "must be even"),
    (dict(pad_id=9), "pad_id"),
    (dict(dropout=1.0), "dropout"),
    (dict(heds=2), "did you mean 'heads'"),
])
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        Seq2SeqConfig(**{**TINY, **changes})


def test_defaults_are_valid_and_cpu_sized():
    model = Seq2SeqTransformer()
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert isinstance(model, Seq2SeqModel)


# --- equality with nn.Transformer -----------------------------------------------------------

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("shape", [
    dict(b=2, s=5, t=4, src_len=[5, 3], tgt_len=[4, 2]),
    dict(b=3, s=7, t=9, src_len=[2, 7, 5], tgt_len=[9, 9, 1], dim=24, heads=3, ffn_dim=20,
         encoder_layers=1, decoder_layers=3, activation="gelu"),
    dict(b=1, s=1, t=6, src_len=[1], tgt_len=[6], dim=8, heads=1, encoder_layers=3,
         decoder_layers=1),
])
def test_core_equals_nn_transformer_forward_and_backward(norm_first, shape):
    shape = dict(shape)
    b, s, t = shape.pop("b"), shape.pop("s"), shape.pop("t")
    src_len, tgt_len = shape.pop("src_len"), shape.pop("tgt_len")
    model = randomise(Seq2SeqTransformer(Seq2SeqConfig(**{**TINY, **shape},
                                                       norm_first=norm_first)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note about nested tensors and norm_first
        reference = torch_transformer(model)
    src, src_mask = padded_ids(b, s, TINY["src_vocab"], src_len, seed=1)
    tgt, tgt_mask = padded_ids(b, t, TINY["tgt_vocab"], tgt_len, seed=2)
    target = torch.randn(b, t, TINY["tgt_vocab"], generator=generator(3))

    ours = model(src, tgt, src_mask, tgt_mask)  # (B, T, V)
    (ours * target).sum().backward()
    our_embed_grad = model.src_embed.weight.grad.clone()
    our_grads = [grads_as_torch_state(block) for block in [*model.encoder, *model.decoder]]
    model.zero_grad()

    # The same embeddings and output layer around torch's core.
    x = model._embed(model.src_embed, src)  # (B, S, D)
    y = model._embed(model.tgt_embed, tgt)  # (B, T, D)
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)  # (T, T), torch: True = may NOT attend
    core = reference(x, y, tgt_mask=causal, src_key_padding_mask=src_mask,
                     tgt_key_padding_mask=tgt_mask, memory_key_padding_mask=src_mask,
                     tgt_is_causal=True)
    theirs = model.out_proj(core)  # (B, T, V)
    (theirs * target).sum().backward()

    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_embed_grad, model.src_embed.weight.grad, atol=1e-5,
                               rtol=1e-4)
    layers = [*reference.encoder.layers, *reference.decoder.layers]
    for grads, layer in zip(our_grads, layers, strict=True):
        their_grads = {name: p.grad for name, p in layer.named_parameters()}
        assert grads.keys() == their_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], their_grads[name], atol=1e-5, rtol=1e-4,
                                       msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("norm_first", [False, True])
def test_load_from_torch_gives_torch_outputs(norm_first):
    ours = Seq2SeqTransformer(Seq2SeqConfig(**TINY, norm_first=norm_first))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = randomise(torch_transformer(Seq2SeqTransformer(ours.config)), seed=5)
    load_torch_transformer(ours, reference)
    src, src_mask = padded_ids(2, 6, TINY["src_vocab"], [6, 4], seed=1)
    tgt = torch.randint(1, TINY["tgt_vocab"], (2, 5), generator=generator(2))
    x, y = ours._embed(ours.src_embed, src), ours._embed(ours.tgt_embed, tgt)
    expected = ours.out_proj(reference(
        x, y, tgt_mask=torch.ones(5, 5, dtype=torch.bool).triu(1),
        src_key_padding_mask=src_mask, memory_key_padding_mask=src_mask, tgt_is_causal=True))
    torch.testing.assert_close(ours(src, tgt, src_mask), expected, atol=1e-5, rtol=1e-5)


def test_load_rejects_mismatched_torch_models():
    ours = Seq2SeqTransformer(Seq2SeqConfig(**TINY, norm_first=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fewer = nn.Transformer(16, 2, num_encoder_layers=1, num_decoder_layers=2,
                               dim_feedforward=24, batch_first=True)
        post_norm = torch_transformer(Seq2SeqTransformer(ours.config.replace(norm_first=False)))
    with pytest.raises(ValueError, match="layer counts differ"):
        load_torch_transformer(ours, fewer)
    with pytest.raises(ValueError, match="final norms do not match"):
        load_torch_transformer(ours, post_norm)
    with pytest.raises(ValueError, match="into must be"):
        load_torch_transformer(ours, fewer, into="theirs")


# --- behaviour ------------------------------------------------------------------------------

def test_encode_then_decode_equals_forward():
    model = randomise(Seq2SeqTransformer(Seq2SeqConfig(**TINY)))
    src, mask = padded_ids(3, 6, TINY["src_vocab"], [6, 2, 4], seed=1)
    tgt = torch.randint(1, TINY["tgt_vocab"], (3, 5), generator=generator(2))
    memory = model.encode(src, mask)
    assert memory.shape == (3, 6, TINY["dim"])
    torch.testing.assert_close(model.decode(tgt, memory, mask), model(src, tgt, mask))


def test_decoder_is_causal():
    model = randomise(Seq2SeqTransformer(Seq2SeqConfig(**TINY)))
    src = torch.randint(1, TINY["src_vocab"], (2, 5), generator=generator(1))
    tgt = torch.randint(1, TINY["tgt_vocab"], (2, 6), generator=generator(2))
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] % (TINY["tgt_vocab"] - 1)) + 1  # new tokens from t = 3 on
    before, after = model(src, tgt), model(src, changed)
    torch.testing.assert_close(before[:, :3], after[:, :3])  # the past cannot see the future
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_source_padding_is_ignored():
    model = randomise(Seq2SeqTransformer(Seq2SeqConfig(**TINY)))
    src, mask = padded_ids(2, 7, TINY["src_vocab"], [4, 7], seed=1)
    tgt = torch.randint(1, TINY["tgt_vocab"], (2, 3), generator=generator(2))
    other = src.masked_fill(mask, 5)  # different ids under the padding
    torch.testing.assert_close(model(src, tgt, mask), model(other, tgt, mask))
    torch.testing.assert_close(model(src[:1, :4], tgt[:1]), model(src, tgt, mask)[:1])


def test_cross_attention_maps_are_distributions_over_real_source_tokens():
    model = randomise(Seq2SeqTransformer(Seq2SeqConfig(**TINY)))
    src, mask = padded_ids(2, 6, TINY["src_vocab"], [3, 6], seed=1)
    tgt = torch.randint(1, TINY["tgt_vocab"], (2, 4), generator=generator(2))
    maps = model.cross_attention_maps(src, tgt, mask)
    assert maps.shape == (TINY["decoder_layers"], 2, TINY["heads"], 4, 6)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert maps[:, 0, :, :, 3:].abs().max() == 0  # no weight on padding
    assert all(not block.cross_attn._forward_hooks for block in model.decoder)  # hooks removed


def test_tied_embeddings_share_one_matrix():
    model = Seq2SeqTransformer(Seq2SeqConfig(**TINY, tie_embeddings=True))
    assert model.out_proj.weight is model.tgt_embed.weight
    untied = Seq2SeqTransformer(Seq2SeqConfig(**TINY))
    n_tied = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n_tied == TINY["tgt_vocab"] * TINY["dim"]


def test_embeddings_are_scaled_and_padding_is_zero():
    model = Seq2SeqTransformer(Seq2SeqConfig(**TINY)).eval()
    ids = torch.tensor([[0, 3]])
    x = model._embed(model.src_embed, ids)
    torch.testing.assert_close(x[0, 0], model.positions[0])  # pad embeds to zero
    torch.testing.assert_close(x[0, 1], model.src_embed.weight[3] * 4.0 + model.positions[1])


def test_too_long_input_is_rejected():
    model = Seq2SeqTransformer(Seq2SeqConfig(**TINY))
    with pytest.raises(ValueError, match="longer than max_len"):
        model(torch.ones(1, 13, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must be \(B, T\)"):
        model.encode(torch.ones(4, dtype=torch.long))

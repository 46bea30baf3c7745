"""Project 5's models: the GRU with attention (shapes, causality, padding), training smoke test."""

import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.projects.translator.corpus import CorpusConfig
from neuralarch.projects.translator.evaluate import translation_scores
from neuralarch.projects.translator.models import (
    GRUTranslatorConfig,
    TransformerTranslatorConfig,
    build_gru,
    build_transformer,
    train_translator,
    translate,
    translator_data,
)
from neuralarch.projects.translator.rnn_attention import GRUAttentionConfig, GRUAttentionSeq2Seq
from neuralarch.sequence.decoding import beam_search, greedy_decode
from neuralarch.sequence.seq2seq import Seq2SeqModel


def make_model(dim=16, layers=1, vocab=(11, 13)):
    torch.manual_seed(0)
    return GRUAttentionSeq2Seq(GRUAttentionConfig(src_vocab=vocab[0], tgt_vocab=vocab[1],
                                                  dim=dim, layers=layers, dropout=0.0)).eval()


def batch(b=3, s=7, t=5, vocab=(11, 13)):
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(4, vocab[0], (b, s), generator=gen)
    mask = torch.zeros(b, s, dtype=torch.bool)
    mask[1, 4:] = True  # the second sentence is 4 tokens long
    src[mask] = 0
    return src, mask, torch.randint(4, vocab[1], (b, t), generator=gen)


@pytest.mark.parametrize("dim, layers", [(16, 1), (24, 2)])
def test_shapes_and_protocol(dim, layers):
    model = make_model(dim, layers)
    src, mask, tgt = batch()
    assert isinstance(model, Seq2SeqModel)
    memory = model.encode(src, mask)
    assert memory.shape == (3, 7, dim)
    assert memory[1, 4:].abs().max() == 0, "packing leaves padding states at zero"
    assert model.decode(tgt, memory, mask).shape == (3, 5, 13)
    torch.testing.assert_close(model(src, tgt, mask), model.decode(tgt, memory, mask))
    assert model.initial_state(memory, mask).shape == (layers, 3, dim)


def test_decoder_is_causal():
    model = make_model()
    src, mask, tgt = batch()
    logits = model(src, tgt, mask)
    changed = tgt.clone()
    changed[:, 3] = (changed[:, 3] + 1 - 4) % 9 + 4  # another real token at position 3
    after = model(src, changed, mask)
    torch.testing.assert_close(after[:, :3], logits[:, :3])
    assert (after[:, 3:] - logits[:, 3:]).abs().max() > 1e-4


def test_padding_does_not_change_the_translation():
    model = make_model()
    src, mask, tgt = batch()
    short = model(src[1:2, :4], tgt[1:2])  # the second sentence alone, without padding
    torch.testing.assert_close(model(src, tgt, mask)[1:2], short, atol=1e-6, rtol=1e-5)
    weights = model.attention_map(src, tgt, mask)  # (B, T, S)
    assert weights.shape == (3, 5, 7)
    assert weights[1, :, 4:].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))


def test_shared_decoders_drive_the_gru():
    model = make_model()
    src, mask, _ = batch()
    greedy = greedy_decode(model, src, mask, bos_id=2, eos_id=3, max_len=6)
    beam = beam_search(model, src, mask, bos_id=2, eos_id=3, max_len=6, beam_size=1)
    assert greedy.tokens == beam.tokens
    assert all(len(tokens) <= 6 for tokens in greedy.tokens)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="even"):
        GRUAttentionConfig(dim=15)
    with pytest.raises(ConfigError, match="pad_id"):
        GRUAttentionConfig(src_vocab=4, pad_id=5)


TINY = CorpusConfig(n_train=160, n_val=40, n_test=20, seed=1)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_tiny_training_run_lowers_the_loss(kind):
    if kind == "gru":
        config = GRUTranslatorConfig(corpus=TINY, dim=32, epochs=6, batch_size=16, warmup=5,
                                     lr=1e-2)
        model = build_gru(config)
    else:
        config = TransformerTranslatorConfig(corpus=TINY, dim=32, ffn_dim=64, epochs=6, lr=1e-2,
                                             batch_size=16, warmup=5)
        model = build_transformer(config)
    assert model.src_embed is model.tgt_embed, "both languages share one embedding table"
    assert 1 / len(translator_data(TINY).vocab) < 0.01
    torch.manual_seed(0)
    metrics = train_translator(model, config)
    curve = [v for k, v in metrics.items() if k.startswith("curve_")]
    assert curve[-1] < 0.8 * curve[0]
    assert metrics["val_loss_epoch_6"] < metrics["val_loss_epoch_1"]
    data = translator_data(TINY)
    pairs = data.corpus["val"][:8]
    hyps = translate(model, data.vocab, [p.source for p in pairs])
    assert len(hyps) == 8 and all(isinstance(h, str) for h in hyps)
    assert len(translate(model, data.vocab, [p.source for p in pairs[:2]], beam_size=2)) == 2
    assert metrics["val_token_accuracy"] > 0.15  # far above chance (1 / vocabulary size)
    assert 0 <= translation_scores(hyps, [p.target for p in pairs])["chrf"] <= 100

"""Project 5's two trained translators, cached: a GRU with attention and a transformer.

Introduced in lesson 5.6 (``m05-l06``). Both read the same corpus and vocabulary
(:func:`translator_data`), train with the same teacher-forcing trainer
(:func:`~neuralarch.sequence.seq2seq_training.train_seq2seq`) and budget of epochs, and are
:func:`~neuralarch.train.artefacts.cached_model` artefacts: the book's build trains each once
and every page loads the weights. :func:`translate` turns jargon into plain English with greedy
(or beam) decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from pydantic import Field
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.projects.translator.corpus import CorpusConfig, Pair, build_corpus
from neuralarch.projects.translator.rnn_attention import GRUAttentionConfig, GRUAttentionSeq2Seq
from neuralarch.projects.translator.tokens import build_vocab, decode_ids, encode_batch, tokenize
from neuralarch.sequence.decoding import beam_search, greedy_decode
from neuralarch.sequence.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from neuralarch.sequence.seq2seq_training import train_seq2seq
from neuralarch.text.vocab import BOS, EOS, Vocabulary
from neuralarch.train.artefacts import TrainedModel, cached_model

MAX_TOKENS = 64  # longest sentence in tokens, with room to spare (the longest target has 49)


@dataclass(frozen=True)
class TranslatorData:
    """The corpus splits and the one vocabulary both languages share."""

    corpus: dict[str, list[Pair]]
    vocab: Vocabulary


@lru_cache(maxsize=4)
def translator_data(config: CorpusConfig | None = None) -> TranslatorData:
    """Build the corpus and the vocabulary of its training split (cached per config)."""
    corpus = build_corpus(config or CorpusConfig())
    vocab = build_vocab(s for p in corpus["train"] for s in (p.source, p.target))
    return TranslatorData(corpus, vocab)


class TranslatorRecipe(ArchConfig):
    """What both translators share: the corpus, the optimiser, the schedule and the seed."""

    corpus: CorpusConfig = Field(CorpusConfig(), description="the generated corpus")
    dim: int = Field(64, gt=0, description="model width D")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability (none: the "
                           "corpus is large for so few epochs)")
    share_embeddings: bool = Field(True, description="one embedding table for both languages")
    epochs: int = Field(6, gt=0, description="passes over the training pairs")
    batch_size: int = Field(32, gt=0, description="pairs per optimizer step")
    lr: float = Field(5e-3, gt=0, description="peak learning rate (warmup, then cosine)")
    warmup: int = Field(100, ge=0, description="linear warmup steps")
    seed: int = Field(0, ge=0, description="seeds initialisation, dropout and data order")


class TransformerTranslatorConfig(TranslatorRecipe):
    """The transformer of lesson 5.5 sized for the corpus (pre-norm, sinusoidal positions)."""

    lr: float = Field(1e-2, gt=0, description="peak learning rate: the better of 5e-3 and 1e-2")
    heads: int = Field(4, gt=0, description="attention heads")
    layers: int = Field(2, gt=0, description="encoder blocks and decoder blocks, each")
    ffn_dim: int = Field(128, gt=0, description="feed-forward width")


class GRUTranslatorConfig(TranslatorRecipe):
    """The GRU encoder-decoder with one-head attention, sized for the corpus."""

    dim: int = Field(96, gt=0, description="embedding and state width D")
    layers: int = Field(1, gt=0, description="stacked GRU layers")


def _share(model: nn.Module, config: TranslatorRecipe) -> nn.Module:
    if config.share_embeddings:  # a digit is the same token on both sides: one vector for it
        model.src_embed = model.tgt_embed
    return model


def build_transformer(config: TransformerTranslatorConfig) -> Seq2SeqTransformer:
    """An untrained transformer whose vocabulary is the corpus's."""
    v = len(translator_data(config.corpus).vocab)
    return _share(Seq2SeqTransformer(Seq2SeqConfig(
        src_vocab=v, tgt_vocab=v, dim=config.dim, heads=config.heads,
        encoder_layers=config.layers, decoder_layers=config.layers, ffn_dim=config.ffn_dim,
        dropout=config.dropout, max_len=MAX_TOKENS)), config)


def build_gru(config: GRUTranslatorConfig) -> GRUAttentionSeq2Seq:
    """An untrained GRU encoder-decoder with attention whose vocabulary is the corpus's."""
    v = len(translator_data(config.corpus).vocab)
    return _share(GRUAttentionSeq2Seq(GRUAttentionConfig(
        src_vocab=v, tgt_vocab=v, dim=config.dim, layers=config.layers,
        dropout=config.dropout)), config)


def id_pairs(vocab: Vocabulary, pairs: Sequence[Pair]) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) without bos/eos: what the trainer takes."""
    return [(vocab.encode(tokenize(p.source)), vocab.encode(tokenize(p.target))) for p in pairs]


def train_translator(model: nn.Module, config: TranslatorRecipe) -> dict[str, float]:
    """Train ``model`` in place on the training split; return the history and val scores."""
    data = translator_data(config.corpus)
    v = data.vocab
    history = train_seq2seq(
        model, id_pairs(v, data.corpus["train"]), bos_id=v.stoi[BOS], eos_id=v.stoi[EOS],
        pad_id=v.pad_id, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        warmup=config.warmup, seed=config.seed, device="cpu",
        val_pairs=id_pairs(v, data.corpus["val"]), log_every=25, progress=False)
    last = history.epochs[-1]
    metrics = {"val_loss": last["val_loss"], "val_token_accuracy": last["val_token_accuracy"],
               "steps": float(history.steps[-1])}
    # the learning curve, for the lesson's figure: the loss every 25 steps, val loss per epoch
    metrics.update({f"curve_{s}": loss for s, loss in zip(history.steps, history.train_loss,
                                                          strict=True)})
    metrics.update({f"val_loss_epoch_{r['epoch']}": r["val_loss"] for r in history.epochs})
    return metrics


def transformer_translator(
        config: TransformerTranslatorConfig | None = None) -> TrainedModel[Seq2SeqTransformer]:
    """Project 5's trained transformer (trained on first use, then loaded from the cache)."""
    return cached_model("translator-transformer", config or TransformerTranslatorConfig(),
                        build_transformer, train_translator)


def gru_translator(config: GRUTranslatorConfig | None = None) -> TrainedModel[GRUAttentionSeq2Seq]:
    """Project 5's trained GRU with attention (trained on first use, then cached)."""
    return cached_model("translator-gru", config or GRUTranslatorConfig(), build_gru,
                        train_translator)


@torch.no_grad()
def translate(model: nn.Module, vocab: Vocabulary, sentences: Sequence[str],
              beam_size: int = 1, batch_size: int = 200) -> list[str]:
    """Translate jargon sentences with greedy decoding (``beam_size`` 1) or beam search."""
    out: list[str] = []
    bos, eos = vocab.stoi[BOS], vocab.stoi[EOS]
    for start in range(0, len(sentences), batch_size):
        src, mask = encode_batch(vocab, sentences[start:start + batch_size])
        if beam_size == 1:
            decoded = greedy_decode(model, src, mask, bos, eos, MAX_TOKENS)
        else:
            decoded = beam_search(model, src, mask, bos, eos, MAX_TOKENS, beam_size=beam_size)
        out += [decode_ids(vocab, ids) for ids in decoded.tokens]
    return out

"""Micro-Gemini and the nanoGPT baseline of lesson 6.6: recipes, extras, caching, scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.lm.gpt_baseline import CharGPT, CharTokenizer, GPTConfig, count_gpt_parameters
from neuralarch.lm.micro_gemini import (
    MicroGemini,
    MicroGeminiRecipe,
    NanoGPT,
    NanoGPTRecipe,
    history_of,
    micro_gemini,
    micro_gemini_parameters,
    nanogpt_baseline,
    nats_per_char_on,
    shakespeare_split,
)
from neuralarch.lm.model import LMConfig
from neuralarch.lm.pretrain import PretrainConfig
from neuralarch.train.artefacts import CACHE_ENV

TINY_TRAIN = PretrainConfig(steps=6, batch_size=2, context=16, lr=3e-3, warmup_steps=2,
                            eval_every=3, eval_windows=2)
TINY_MG = MicroGeminiRecipe(arch=LMConfig(vocab_size=300, dim=16, n_layers=1, n_heads=2,
                                          ffn_dim=32, max_seq_len=16), train=TINY_TRAIN)
TINY_GPT = NanoGPTRecipe(arch=GPTConfig(context=16, dim=16, n_layers=1, n_heads=2),
                         train=TINY_TRAIN)


def test_split_is_nanogpts_ninety_ten():
    train, val = shakespeare_split()
    assert len(train) + len(val) == 1_115_394
    assert len(train) == int(0.9 * 1_115_394)


@pytest.mark.parametrize("dim, heads, layers", [(128, 4, 4), (32, 2, 1), (48, 3, 2)])
def test_gpt_parameter_formula_matches_the_model(dim, heads, layers):
    config = GPTConfig(dim=dim, n_heads=heads, n_layers=layers)
    assert sum(p.numel() for p in CharGPT(config).parameters()) == count_gpt_parameters(config)


def test_gpt_is_causal_and_checks_length():
    torch.manual_seed(0)
    model = CharGPT(GPTConfig(context=8, dim=16, n_layers=2, n_heads=2)).eval()
    x = torch.randint(0, 65, (2, 8))
    y = x.clone()
    y[:, 5:] = (y[:, 5:] + 1) % 65
    assert torch.equal(model(x)[:, :5], model(y)[:, :5])
    assert not torch.equal(model(x)[:, 5:], model(y)[:, 5:])
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_char_tokenizer_round_trip():
    tok = CharTokenizer.train("hello world")
    assert tok.vocab_size == 8 and tok.decode(tok.encode("low here")) == "low here"
    assert CharTokenizer.from_dict(tok.to_dict()).alphabet == tok.alphabet
    with pytest.raises(ValueError, match="not in the alphabet"):
        tok.encode("z")


def test_recipes_validate():
    with pytest.raises(ConfigError, match="max_seq_len"):
        TINY_MG.replace(train=TINY_TRAIN.replace(context=32))
    with pytest.raises(ConfigError, match="256 byte tokens"):
        TINY_MG.replace(arch=TINY_MG.arch.replace(vocab_size=200))
    with pytest.raises(ConfigError, match=r"arch\.context"):
        TINY_GPT.replace(train=TINY_TRAIN.replace(context=32))
    assert micro_gemini_parameters(MicroGeminiRecipe()) == \
        sum(p.numel() for p in MicroGemini(MicroGeminiRecipe().arch).parameters())


def test_extras_travel_in_the_state_dict():
    model = MicroGemini(TINY_MG.arch)
    model.extras = {"history": {"step": [1, 2]}, "note": "é"}
    copy = MicroGemini(TINY_MG.arch)
    copy.load_state_dict(model.state_dict())
    assert copy.extras == model.extras
    assert isinstance(model.state_dict()["_extra_state"], torch.Tensor)


def test_nats_per_char_of_a_uniform_model():
    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 10)

    tokens = np.arange(41) % 10
    scores = nats_per_char_on(Uniform(), tokens, 8, lambda ids: "ab" * len(ids))
    assert scores["val_tokens"] == 40 and scores["val_chars"] == 80
    assert scores["val_nats_per_token"] == pytest.approx(math.log(10))
    assert scores["val_nats_per_char"] == pytest.approx(math.log(10) / 2)


@pytest.mark.parametrize("factory, recipe, kind", [(micro_gemini, TINY_MG, MicroGemini),
                                                   (nanogpt_baseline, TINY_GPT, NanoGPT)])
def test_recipe_trains_once_then_loads_with_its_extras(tmp_path, monkeypatch, factory, recipe,
                                                       kind):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    first = factory(recipe)
    assert first.trained_now and isinstance(first.model, kind)
    history = history_of(first)
    assert history["step"] == [3, 6] and len(history["val_nats_per_char"]) == 2
    assert 0 < first.metrics["val_nats_per_char"] < 6
    assert first.metrics["chars_per_token"] >= 1
    again = factory(recipe)
    assert not again.trained_now and again.fingerprint == first.fingerprint
    assert history_of(again) == history
    text = "ROMEO: hi"
    assert again.model.tokenizer.decode(again.model.tokenizer.encode(text)) == text
    assert len(list((tmp_path / "shards").glob("*.bin"))) == 2

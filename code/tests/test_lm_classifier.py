"""The sequence classifier of week 08 on top of the book's DecoderLM."""

from __future__ import annotations

import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.lm.classifier import (
    ClassifierConfig,
    Encoded,
    FinetuneConfig,
    LMClassifier,
    accuracy,
    encode_texts,
    finetune,
    pretrained_classifier,
    scratch_classifier,
)
from neuralarch.lm.model import DecoderLM, LMConfig

TINY = LMConfig(vocab_size=40, dim=16, n_layers=2, n_heads=2, ffn_dim=24, max_seq_len=32)


def make_lm(seed: int = 0, config: LMConfig = TINY) -> DecoderLM:
    torch.manual_seed(seed)
    return DecoderLM(config).eval()


@pytest.mark.parametrize("config", [TINY, TINY.replace(n_heads=4, n_kv_heads=2, n_layers=3)])
def test_hidden_states_are_what_the_lm_head_reads(config):
    lm = make_lm(config=config)
    classifier = pretrained_classifier(lm, ClassifierConfig(dropout=0.0)).eval()
    tokens = torch.randint(40, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(classifier.lm.lm_head(classifier.hidden_states(tokens)),
                                   lm(tokens))


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_padding_after_the_sentence_changes_nothing(pool):
    classifier = pretrained_classifier(make_lm(), ClassifierConfig(pool=pool)).eval()
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(1, 40, (4, 9), generator=gen)
    lengths = torch.tensor([9, 3, 5, 1])
    other = tokens.clone()
    for row, n in enumerate(lengths):
        other[row, n:] = torch.randint(40, (9 - int(n),), generator=gen)  # different padding
    with torch.no_grad():
        a, b = classifier(tokens, lengths), classifier(other, lengths)
        alone = torch.cat([classifier(tokens[i:i + 1, :n], lengths[i:i + 1])
                           for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, alone, atol=1e-5, rtol=1e-5)  # as if never padded


def test_pooling_picks_the_last_real_token_or_the_mean():
    classifier = pretrained_classifier(make_lm(), ClassifierConfig(pool="last"))
    hidden = torch.randn(2, 4, 3)
    lengths = torch.tensor([2, 4])
    torch.testing.assert_close(classifier.pool(hidden, lengths), hidden[[0, 1], [1, 3]])
    classifier.config = ClassifierConfig(pool="mean")
    torch.testing.assert_close(classifier.pool(hidden, lengths)[0], hidden[0, :2].mean(0))


def test_pretrained_copy_leaves_the_lm_alone_and_scratch_twin_matches_architecture():
    lm = make_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    pretrained = pretrained_classifier(lm)
    scratch = scratch_classifier(TINY, seed=3)
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in before.items())
    shapes = {k: v.shape for k, v in pretrained.state_dict().items()}
    assert shapes == {k: v.shape for k, v in scratch.state_dict().items()}
    assert not torch.equal(scratch.lm.embed.weight, lm.embed.weight)
    again = scratch_classifier(TINY, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(scratch.state_dict().values(),
                                                  again.state_dict().values(), strict=True))


def test_encode_texts_truncates_and_pads_right():
    ids, lengths = encode_texts(lambda t: [ord(c) - 96 for c in t], ["abc", "a", "abcdef"], 4)
    assert lengths.tolist() == [3, 1, 4]
    assert ids.tolist() == [[1, 2, 3, 0], [1, 0, 0, 0], [1, 2, 3, 4]]
    with pytest.raises(ValueError, match="no tokens"):
        encode_texts(lambda t: [], ["x"], 4)


def test_forward_rejects_bad_lengths():
    classifier = pretrained_classifier(make_lm())
    with pytest.raises(ValueError, match=r"lengths must be in 1\.\.5"):
        classifier(torch.zeros(2, 5, dtype=torch.long), torch.tensor([0, 5]))


def toy_task(n: int, seed: int) -> Encoded:
    """Label 1 when most tokens come from the upper half of the vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 10, (n,), generator=gen)
    labels = torch.randint(2, (n,), generator=gen)
    ids = torch.randint(1, 24, (n, 10), generator=gen) + 16 * labels[:, None]  # overlap 17..23
    ids[torch.arange(10) >= lengths[:, None]] = 0
    return Encoded(ids, lengths, labels)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_finetune_learns_a_toy_task_and_keeps_the_best_epoch(pool):
    train, val = toy_task(256, 0), toy_task(128, 1)
    model = scratch_classifier(TINY, ClassifierConfig(pool=pool, dropout=0.0), seed=0)
    before = accuracy(model, val)
    result = finetune(model, train, val, FinetuneConfig(epochs=4, batch_size=16, lr=3e-3))
    assert len(result.history) == 4
    assert result.val_acc == max(r["val_acc"] for r in result.history)
    assert accuracy(model, val) == pytest.approx(result.val_acc)  # the best epoch was restored
    assert result.val_acc > max(0.85, before + 0.2)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_configs_validate():
    with pytest.raises(ConfigError, match="pool"):
        ClassifierConfig(pool="first")
    with pytest.raises(ConfigError, match="num_classes"):
        ClassifierConfig(num_classes=1)
    with pytest.raises(ConfigError, match="warmup"):
        FinetuneConfig(warmup=1.0)
    assert isinstance(LMClassifier(make_lm(), ClassifierConfig()).head, torch.nn.Linear)


def test_sentiment_classifiers_trains_once_and_caches(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import neuralarch.lm.classifier as classifier_module
    from neuralarch.data.text import load_sentiment
    from neuralarch.lm.bpe import ByteLevelBPE
    from neuralarch.lm.classifier import SentimentRecipe, sentiment_classifiers
    from neuralarch.lm.micro_gemini import MicroGemini
    from neuralarch.repro import state_fingerprint
    from neuralarch.text.sentiment import split_sentiment

    monkeypatch.setenv("NEURALARCH_CACHE_DIR", str(tmp_path))
    sentences = load_sentiment()[::10]  # 300 sentences: a small split, fast
    monkeypatch.setattr(classifier_module, "split_sentiment",
                        lambda seed=0: split_sentiment(sentences, seed=seed))
    config = LMConfig(vocab_size=260, dim=16, n_layers=1, n_heads=2, ffn_dim=24, max_seq_len=32)
    torch.manual_seed(0)
    lm = MicroGemini(config).eval()
    lm.extras = {"tokenizer": ByteLevelBPE.train("the good and the bad " * 20, 260).to_dict()}
    fake = SimpleNamespace(model=lm, fingerprint=state_fingerprint(lm))
    monkeypatch.setattr(classifier_module, "micro_gemini", lambda: fake)
    recipe = SentimentRecipe(base=fake.fingerprint, arch=config, seeds=(0, 1), max_len=12,
                             finetune=FinetuneConfig(epochs=1, batch_size=32, lr=1e-3))
    first = sentiment_classifiers(recipe)
    again = sentiment_classifiers(recipe)
    assert first.trained_now and not again.trained_now
    assert sorted(again.model.classifiers) == ["pretrained-0", "pretrained-1", "scratch-0",
                                               "scratch-1"]
    assert set(first.metrics) >= {"pretrained-0-test_acc", "scratch-1-val_acc",
                                  "scratch-0-epoch1-val_acc", "pretrained-1-seconds"}
    encoded = classifier_module.encode_split(lm.tokenizer.encode, split_sentiment(sentences), 12)
    loaded = accuracy(again.model.classifiers["pretrained-1"], encoded["test"])
    assert loaded == pytest.approx(first.metrics["pretrained-1-test_acc"])
    with pytest.raises(ValueError, match="fingerprint"):
        sentiment_classifiers(recipe.replace(base="0" * 16))

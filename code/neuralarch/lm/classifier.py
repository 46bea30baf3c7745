"""A sequence classifier on top of the book's decoder-only language model, and its fine-tuning.

Introduced in week 08 (``w08``). :class:`LMClassifier` runs a
:class:`~neuralarch.lm.model.DecoderLM` without its output layer, pools the final hidden
states of a sentence (the last real token's, or the mean over real tokens) and maps them to
class logits with one linear layer.
:func:`pretrained_classifier` starts from a trained language model (a copy: the original is left
alone); :func:`scratch_classifier` is its twin with the same architecture and fresh weights, the
control that says what pre-training bought. :func:`finetune` trains either with AdamW, a linear
warm-up and decay, and keeps the epoch with the best validation accuracy.
:func:`sentiment_classifiers` is week 08's experiment as a cached artefact: three seeds of both
kinds, fine-tuned on the book's sentiment split (too slow to run inside the page).

Sentences are padded on the right. The model is causal, so the hidden state at a real token
never depends on the padding after it: no attention mask is needed, only the lengths.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.lm.micro_gemini import micro_gemini
from neuralarch.lm.model import DecoderLM, LMConfig
from neuralarch.lm.pretrain import optimizer_step
from neuralarch.text.sentiment import SentimentSplit, length_batches, split_sentiment
from neuralarch.train.artefacts import TrainedModel, cached_model


class ClassifierConfig(ArchConfig):
    """The classification head: classes, pooling and dropout before the linear layer."""

    num_classes: int = Field(2, ge=2, description="number of classes")
    pool: Literal["last", "mean"] = Field("last", description="last real token, or the mean")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the pooled state")


class LMClassifier(nn.Module):
    """Token ids (B, T) and lengths (B,) -> class logits (B, C) through a DecoderLM body."""

    def __init__(self, lm: DecoderLM, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.lm = lm
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(lm.config.dim, config.num_classes)
        nn.init.normal_(self.head.weight, 0.0, 0.02)
        nn.init.zeros_(self.head.bias)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """The language model's final hidden states (B, T, D): everything but ``lm_head``."""
        x = self.lm.drop(self.lm.embed(tokens))  # (B, T, D)
        for block in self.lm.blocks:
            x = block(x)
        return self.lm.norm(x)

    def pool(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One vector per sentence (B, D) from hidden states (B, T, D) and lengths (B,)."""
        if self.config.pool == "last":
            return hidden[torch.arange(len(hidden)), lengths - 1]  # the last real token
        real = torch.arange(hidden.shape[1]) < lengths[:, None]  # (B, T) True at real tokens
        return (hidden * real[..., None]).sum(1) / lengths[:, None]

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) for right-padded ids (B, T) with ``lengths`` real tokens each."""
        if (lengths < 1).any() or (lengths > tokens.shape[1]).any():
            raise ValueError(f"lengths must be in 1..{tokens.shape[1]} (the padded length)")
        return self.head(self.drop(self.pool(self.hidden_states(tokens), lengths)))


def pretrained_classifier(lm: DecoderLM, config: ClassifierConfig | None = None) -> LMClassifier:
    """A classifier whose body is a copy of the trained ``lm`` (which stays unchanged)."""
    return LMClassifier(copy.deepcopy(lm), config or ClassifierConfig())


def scratch_classifier(lm_config: LMConfig, config: ClassifierConfig | None = None,
                       seed: int = 0) -> LMClassifier:
    """The same architecture with freshly initialised weights (seeded)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LMClassifier(DecoderLM(lm_config), config or ClassifierConfig())


def encode_texts(encode: Callable[[str], list[int]], texts: Sequence[str],
                 max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (N, L) and lengths (N,): each text's first ``max_len`` tokens."""
    rows = [encode(text)[:max_len] for text in texts]
    if any(len(row) == 0 for row in rows):
        raise ValueError("a text encoded to no tokens; remove empty texts first")
    ids = torch.zeros(len(rows), max(len(row) for row in rows), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids, torch.tensor([len(row) for row in rows])


@dataclass
class Encoded:
    """A labelled split, tokenised: right-padded ids (N, L), lengths (N,) and labels (N,)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


class FinetuneConfig(ArchConfig):
    """How :func:`finetune` trains: epochs, batches, AdamW and its schedule."""

    epochs: int = Field(3, gt=0, description="passes over the training sentences")
    batch_size: int = Field(32, gt=0, description="sentences per step")
    lr: float = Field(5e-4, gt=0, description="peak learning rate")
    warmup: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW's decoupled weight decay")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the global gradient norm")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds the order of batches and dropout")


@dataclass
class FinetuneResult:
    """Per-epoch history, the best epoch on validation and its accuracy."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    val_acc: float = 0.0
    seconds: float = 0.0


@torch.no_grad()
def accuracy(model: LMClassifier, data: Encoded, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on ``data`` (evaluated in eval mode, batches trimmed)."""
    was_training = model.training
    model.eval()
    correct = 0
    for batch in data.lengths.argsort().split(batch_size):
        lengths = data.lengths[batch]
        logits = model(data.ids[batch][:, :int(lengths.max())], lengths)
        correct += int((logits.argmax(-1) == data.labels[batch]).sum())
    model.train(was_training)
    return correct / len(data)


def finetune(model: LMClassifier, train: Encoded, val: Encoded,
             config: FinetuneConfig | None = None) -> FinetuneResult:
    """Train every weight of ``model`` with cross-entropy; keep the best validation epoch."""
    config = config or FinetuneConfig()
    order = torch.Generator().manual_seed(config.seed)
    n_batches = -(-len(train) // config.batch_size)
    total = config.epochs * n_batches
    warm = max(1, round(config.warmup * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (total - step) / (total - warm))))
    result, best_state = FinetuneResult(), None
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # dropout
        for epoch in range(1, config.epochs + 1):
            started, losses = time.perf_counter(), []
            model.train()
            for batch in length_batches(train.lengths, config.batch_size, order):
                lengths = train.lengths[batch]
                logits = model(train.ids[batch][:, :int(lengths.max())], lengths)  # (b, C)
                loss = F.cross_entropy(logits, train.labels[batch])
                optimizer_step(model, loss, optimizer, scheduler, config.grad_clip)
                losses.append(loss.item())
            result.seconds += time.perf_counter() - started
            val_acc = accuracy(model, val)
            result.history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses),
                                   "val_acc": val_acc})
            if val_acc > result.val_acc or best_state is None:
                result.best_epoch, result.val_acc = epoch, val_acc
                best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return result


# ---------------------------------------------------------------- week 08's cached experiment
def encode_split(encode: Callable[[str], list[int]], split: SentimentSplit,
                 max_len: int) -> dict[str, Encoded]:
    """The train, val and test parts of a sentiment split, tokenised (first ``max_len`` tokens)."""
    return {part: Encoded(*encode_texts(encode, [s.text for s in getattr(split, part)], max_len),
                          torch.tensor([s.label for s in getattr(split, part)]))
            for part in ("train", "val", "test")}


class SentimentRecipe(ArchConfig):
    """Week 08's experiment: Micro-Gemini fine-tuned vs its scratch twin, over seeds."""

    base: str = Field(description="fingerprint of the pre-trained Micro-Gemini's weights")
    arch: LMConfig = Field(description="Micro-Gemini's shape (the scratch twin's too)")
    max_len: int = Field(24, gt=0, description="tokens kept per sentence")
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=2, description="one run per kind each")
    head: ClassifierConfig = Field(ClassifierConfig(), description="pooling and dropout")
    finetune: FinetuneConfig = Field(FinetuneConfig(epochs=2, batch_size=32, lr=5e-4),
                                     description="the recipe of both kinds")
    seed: int = Field(0, ge=0, lt=2**32, description="required by cached_model; runs use seeds")


class ClassifierSet(nn.Module):
    """Several classifiers of one architecture, by name (``"pretrained-0"``, ``"scratch-2"``)."""

    def __init__(self, lm_config: LMConfig, config: ClassifierConfig, names: Sequence[str]) -> None:
        super().__init__()
        self.classifiers = nn.ModuleDict({name: LMClassifier(DecoderLM(lm_config), config)
                                          for name in names})


def _names(recipe: SentimentRecipe) -> list[str]:
    return [f"{kind}-{seed}" for seed in recipe.seeds for kind in ("pretrained", "scratch")]


def _build_set(recipe: SentimentRecipe) -> ClassifierSet:
    return ClassifierSet(recipe.arch, recipe.head, _names(recipe))


def _train_set(models: ClassifierSet, recipe: SentimentRecipe) -> dict[str, float]:
    """Fine-tune Micro-Gemini and train its twin from scratch for every seed; their metrics."""
    gemini = micro_gemini()
    if gemini.fingerprint != recipe.base:
        raise ValueError(f"Micro-Gemini's weights are {gemini.fingerprint}, the recipe was made "
                         f"for {recipe.base}: build the recipe from micro_gemini().fingerprint")
    data = encode_split(gemini.model.tokenizer.encode, split_sentiment(seed=0), recipe.max_len)
    metrics = {}
    for name in _names(recipe):
        kind, seed = name.rsplit("-", 1)
        if kind == "pretrained":
            with torch.random.fork_rng():
                torch.manual_seed(int(seed))  # the new head
                model = pretrained_classifier(gemini.model, recipe.head)
        else:
            model = scratch_classifier(gemini.model.config, recipe.head, seed=int(seed))
        result = finetune(model, data["train"], data["val"],
                          recipe.finetune.replace(seed=int(seed)))
        missing, _ = models.classifiers[name].load_state_dict(model.state_dict(), strict=False)
        if missing:
            raise RuntimeError(f"{name}: the fine-tuned model lacks {missing[:3]}")
        for record in result.history:
            metrics[f"{name}-epoch{int(record['epoch'])}-val_acc"] = record["val_acc"]
        metrics[f"{name}-val_acc"] = result.val_acc
        metrics[f"{name}-test_acc"] = accuracy(model, data["test"])
        metrics[f"{name}-seconds"] = result.seconds
    return metrics


def sentiment_classifiers(recipe: SentimentRecipe | None = None) -> TrainedModel[ClassifierSet]:
    """Week 08's six sentiment classifiers (3 seeds x fine-tuned / scratch), cached."""
    if recipe is None:
        gemini = micro_gemini()
        recipe = SentimentRecipe(base=gemini.fingerprint, arch=gemini.model.config)
    return cached_model("w08-sentiment-classifiers", recipe, _build_set, _train_set)

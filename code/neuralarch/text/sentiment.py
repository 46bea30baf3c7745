"""The sentiment experiment: splits, a TF-IDF baseline, the text CNN, and seeds with intervals.

Introduced in the text-convolutions lesson (``extra-text-convolutions``) and used in week 6. The
data are the 3 x 1,000 labelled review sentences of Kotzias et al. (2015) (Amazon, IMDb, Yelp).
:func:`split_sentiment` draws a train/validation/test split stratified by source and label; the
book's split is ``seed=0`` (2,099 / 301 / 600 sentences). :func:`tfidf_baseline` is TF-IDF
features with a logistic regression (scikit-learn); :func:`train_text_cnn` trains
:class:`~neuralarch.text.text_cnn.TextCNN`; :func:`compare_over_seeds` repeats both over seeds
and :func:`t_interval` summarises them with a 95% confidence interval.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from threadpoolctl import threadpool_limits

from neuralarch.config import ArchConfig
from neuralarch.data.text import Sentence, load_sentiment
from neuralarch.text.text_cnn import TextCNN, TextCNNConfig
from neuralarch.text.vocab import PAD, UNK, Vocabulary, tokenize
from neuralarch.text.word2vec import WordVectors


@dataclass(frozen=True)
class SentimentSplit:
    """Train, validation and test sentences, and the seed that drew them."""

    train: list[Sentence]
    val: list[Sentence]
    test: list[Sentence]
    seed: int

    def sizes(self) -> dict[str, int]:
        """Number of sentences in each part."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_sentiment(sentences: Sequence[Sentence] | None = None, val: float = 0.1,
                    test: float = 0.2, seed: int = 0) -> SentimentSplit:
    """Split the sentences (all 3,000 by default) into train/val/test, stratified.

    Within each (source, label) group a seeded shuffle fills the test split with about
    ``test * n`` sentences, validation with ``val * n`` and training with the rest, so every
    part has the same mix of sources and labels. Repeated texts (the files hold 18, such as
    "Great phone.") always go to the same part, so no test sentence is also a training
    sentence. Each part keeps the file order.
    """
    if not (val > 0 and test > 0 and val + test < 1):
        raise ValueError(f"need val > 0, test > 0 and val + test < 1, got {val} and {test}")
    sentences = list(load_sentiment() if sentences is None else sentences)
    rng = np.random.default_rng(seed)
    copies: dict[str, list[int]] = {}  # text -> positions of all its occurrences
    for i, s in enumerate(sentences):
        copies.setdefault(s.text, []).append(i)
    groups: dict[tuple[str, int], list[str]] = {}  # a text belongs to its first occurrence's
    for text, where in copies.items():
        first = sentences[where[0]]
        groups.setdefault((first.source, first.label), []).append(text)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for key in sorted(groups):
        texts = [groups[key][j] for j in rng.permutation(len(groups[key]))]
        n = sum(len(copies[t]) for t in texts)
        quota = {"test": round(test * n), "val": round(val * n)}
        filled = {"test": 0, "val": 0}
        for text in texts:
            part = next((p for p in ("test", "val") if filled[p] < quota[p]), "train")
            parts[part] += copies[text]
            filled[part] = filled.get(part, 0) + len(copies[text])
    return SentimentSplit(*([sentences[i] for i in sorted(parts[p])]
                            for p in ("train", "val", "test")), seed=seed)


@dataclass
class BaselineResult:
    """The TF-IDF + logistic-regression baseline: the chosen C and its accuracies."""

    pipeline: Pipeline
    C: float
    val_acc: float
    test_acc: float


def tfidf_baseline(split: SentimentSplit,
                   Cs: Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0)) -> BaselineResult:
    """TF-IDF of word uni- and bigrams + logistic regression; C chosen on validation."""
    texts = {part: [s.text for s in getattr(split, part)] for part in ("train", "val", "test")}
    labels = {part: [s.label for s in getattr(split, part)] for part in ("train", "val", "test")}
    # one BLAS/OpenMP thread: on a busy machine, thread pools made these small fits 100x slower
    with threadpool_limits(1):
        tfidf = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                                ngram_range=(1, 2), sublinear_tf=True)
        features = {"train": tfidf.fit_transform(texts["train"])}  # IDF from training only
        features.update({p: tfidf.transform(texts[p]) for p in ("val", "test")})
        best = None
        for C in Cs:
            classifier = LogisticRegression(C=C, solver="liblinear")
            classifier.fit(features["train"], labels["train"])
            val_acc = classifier.score(features["val"], labels["val"])
            if best is None or val_acc > best.val_acc:  # ties: the smaller, more regularised C
                best = BaselineResult(make_pipeline(tfidf, classifier), C, val_acc, 0.0)
        best.test_acc = best.pipeline.score(texts["test"], labels["test"])
    return best


class CNNRecipe(ArchConfig):
    """How the sentiment text CNN is built and trained (Adam, early stopping on validation)."""

    embed_dim: int = Field(50, gt=0, description="word-vector size")
    widths: tuple[int, ...] = Field((3, 4, 5), description="n-gram widths")
    filters: int = Field(32, gt=0, description="filters per width (Kim: 100)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the pooled features")
    freeze_embeddings: bool = Field(False, description="keep the word vectors fixed")
    epochs: int = Field(6, gt=0, description="passes over the training sentences")
    batch_size: int = Field(50, gt=0, description="sentences per step (Kim: 50)")
    lr: float = Field(3e-3, gt=0, description="Adam's learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam's L2 penalty")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds initialisation, order and dropout")

    def arch(self, vocab: Vocabulary) -> TextCNNConfig:
        """The network's config for a vocabulary."""
        return TextCNNConfig(vocab_size=len(vocab), embed_dim=self.embed_dim,
                             widths=self.widths, filters=self.filters, dropout=self.dropout,
                             pad_id=vocab.pad_id, freeze_embeddings=self.freeze_embeddings)


def sentiment_vocabulary(sentences: Sequence[Sentence]) -> Vocabulary:
    """Every token of the (training) sentences, plus ``<pad>`` (id 0) and ``<unk>``."""
    return Vocabulary.build((tokenize(s.text) for s in sentences), specials=(PAD, UNK))


def encode(sentences: Sequence[Sentence], vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids (N, L) and labels (N,) of ``sentences``."""
    ids, _ = vocab.pad_batch([vocab.encode(tokenize(s.text)) for s in sentences])
    return ids, torch.tensor([s.label for s in sentences])


def accuracy_of(model: TextCNN, ids: torch.Tensor, labels: torch.Tensor,
                batch_size: int = 500) -> float:
    """Accuracy of ``model`` (in eval mode) on padded ids (N, L) and labels (N,)."""
    was_training = model.training
    model.eval()
    lengths = ids.ne(model.config.pad_id).sum(1)
    correct = 0
    with torch.no_grad():
        # sentences of similar length together, each batch trimmed to its longest: far less
        # padding to convolve than one (N, L) block (the output does not depend on padding)
        for batch in lengths.argsort().split(batch_size):
            x = ids[batch][:, :int(lengths[batch].max())]
            correct += int((model(x).argmax(-1) == labels[batch]).sum())
    model.train(was_training)
    return correct / len(ids)


def length_batches(lengths: torch.Tensor, batch_size: int,
                   generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled batches of indices whose sentences have similar lengths (less padding).

    A random permutation is cut into pools of 20 batches; each pool is sorted by length and
    cut into batches, and the batches are shuffled: random, but rarely a short sentence
    padded to a long one's length.
    """
    order = torch.randperm(len(lengths), generator=generator)
    batches = []
    for pool in order.split(20 * batch_size):
        batches += list(pool[lengths[pool].argsort(stable=True)].split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


@dataclass
class CNNResult:
    """A trained text CNN (the best epoch on validation) and how it got there."""

    model: TextCNN
    vocab: Vocabulary
    history: list[dict[str, float]]  # per epoch: running train loss/accuracy, val accuracy
    best_epoch: int
    val_acc: float
    test_acc: float
    pretrained_words: int = field(default=0)  # vocabulary words initialised from vectors


def train_text_cnn(split: SentimentSplit, recipe: CNNRecipe | None = None,
                   vectors: WordVectors | None = None) -> CNNResult:
    """Train a text CNN on ``split.train``; keep the epoch with the best validation accuracy.

    With ``vectors`` the embeddings start from those word vectors (frozen if the recipe says
    so). The vocabulary comes from the training sentences only; other words map to ``<unk>``.
    """
    recipe = CNNRecipe() if recipe is None else recipe
    vocab = sentiment_vocabulary(split.train)
    data = {part: encode(getattr(split, part), vocab) for part in ("train", "val", "test")}
    torch.manual_seed(recipe.seed)  # initialisation and dropout
    model = TextCNN(recipe.arch(vocab))
    found = model.load_word_vectors(vocab, vectors) if vectors is not None else 0
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad),
                                 lr=recipe.lr, weight_decay=recipe.weight_decay)
    order_gen = torch.Generator().manual_seed(recipe.seed)
    ids, labels = data["train"]
    lengths = ids.ne(vocab.pad_id).sum(1)  # (N,) tokens per sentence
    history, best_state, best_epoch, best_val = [], None, 0, -1.0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        total, correct = 0.0, 0
        for batch in length_batches(lengths, recipe.batch_size, order_gen):
            x = ids[batch][:, :int(lengths[batch].max())]  # (B, L) trimmed to its longest
            logits = model(x)  # (B, 2)
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            correct += int((logits.argmax(-1) == labels[batch]).sum())
        val_acc = accuracy_of(model, *data["val"])
        # training loss and accuracy are running values over the epoch, with dropout on
        history.append({"epoch": epoch, "train_loss": total / len(ids),
                        "train_acc": correct / len(ids), "val_acc": val_acc})
        if val_acc > best_val:
            best_state, best_epoch, best_val = copy.deepcopy(model.state_dict()), epoch, val_acc
    model.load_state_dict(best_state)
    model.eval()
    return CNNResult(model, vocab, history, best_epoch, best_val,
                     accuracy_of(model, *data["test"]), found)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, low, high)`` of a few numbers."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError(f"need at least 2 values for an interval, got {len(values)}")
    mean = float(values.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1)
                 * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


@dataclass
class SeedRun:
    """One seed of :func:`compare_over_seeds`: its split, the baseline and each CNN variant."""

    seed: int
    split: SentimentSplit
    baseline: BaselineResult
    cnns: dict[str, CNNResult]

    def test_accuracies(self) -> dict[str, float]:
        """Test accuracy of the baseline (``"tfidf"``) and of every CNN variant."""
        return {"tfidf": self.baseline.test_acc,
                **{name: cnn.test_acc for name, cnn in self.cnns.items()}}


def compare_over_seeds(seeds: Sequence[int] = (0, 1, 2, 3, 4), recipe: CNNRecipe | None = None,
                       variants: dict[str, WordVectors | None] | None = None,
                       sentences: Sequence[Sentence] | None = None) -> list[SeedRun]:
    """Per seed: a fresh stratified split, the TF-IDF baseline and one CNN per variant.

    ``variants`` maps a name to the word vectors that initialise that CNN (``None``: random
    vectors); the default is one randomly initialised CNN called ``"cnn"``. The seed draws the
    split *and* seeds the CNNs, so the spread covers both sources of variation; all methods
    see the same split for a seed, so their differences are paired.
    """
    recipe = CNNRecipe() if recipe is None else recipe
    variants = {"cnn": None} if variants is None else variants
    sentences = list(load_sentiment() if sentences is None else sentences)
    runs = []
    for seed in seeds:
        split = split_sentiment(sentences, seed=seed)
        cnns = {name: train_text_cnn(split, recipe.replace(seed=seed), vectors)
                for name, vectors in variants.items()}
        runs.append(SeedRun(seed, split, tfidf_baseline(split), cnns))
    return runs

"""Skip-gram word2vec with negative sampling, and tools to compare word vectors.

Introduced in the word-embeddings lesson (``extra-word-embeddings``), used in week 6 and by the
text CNN (``extra-text-convolutions``), which can start from these vectors. The recipe is that of
Mikolov et al. (2013) as implemented in the original C tool and in gensim: subsampling of
frequent words, a dynamic window, negatives drawn from a unigram^0.75 table, and SGD whose
learning rate falls linearly from ``lr`` to ``min_lr``. :func:`train_gensim` trains gensim's
``Word2Vec`` with the same settings, so the lesson can compare the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from scipy.stats import spearmanr
from torch import nn
from tqdm import tqdm

from neuralarch.config import ArchConfig
from neuralarch.data.text import load_tiny_shakespeare
from neuralarch.progress import progress_disabled
from neuralarch.text.vocab import Vocabulary, tokenize
from neuralarch.train.artefacts import TrainedModel, cached_model


class Word2VecConfig(ArchConfig):
    """Skip-gram with negative sampling: sizes, sampling and the SGD schedule (gensim's names)."""

    dim: int = Field(50, gt=0, description="size of each word vector (gensim: vector_size)")
    window: int = Field(5, gt=0, description="largest distance between centre and context")
    negative: int = Field(5, gt=0, description="negative samples per (centre, context) pair")
    min_count: int = Field(5, ge=1, description="drop words seen fewer times than this")
    sample: float = Field(1e-3, ge=0, description="subsampling threshold; 0 keeps every word")
    ns_exponent: float = Field(0.75, description="negatives ~ count ** ns_exponent")
    epochs: int = Field(5, gt=0, description="passes over the corpus")
    lr: float = Field(0.025, gt=0, description="initial SGD learning rate (gensim: alpha)")
    min_lr: float = Field(1e-4, ge=0, description="final learning rate (gensim: min_alpha)")
    batch_size: int = Field(1024, gt=0, description="(centre, context) pairs per SGD step")
    table_size: int = Field(1_000_000, gt=0, description="entries of the negative table")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds initialisation and all sampling")

    @model_validator(mode="after")
    def _lr_falls(self) -> Word2VecConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= lr ({self.lr}): the learning "
                             f"rate decays linearly from lr to min_lr")
        return self


def word_sentences(text: str) -> list[list[str]]:
    """Split ``text`` at blank lines into passages; keep each passage's word tokens only."""
    passages = (tokenize(block) for block in text.split("\n\n"))
    sentences = [[t for t in tokens if t[0].isalpha()] for tokens in passages]
    return [s for s in sentences if s]


def keep_probabilities(counts: torch.Tensor, sample: float,
                       formula: Literal["word2vec", "paper"] = "word2vec") -> torch.Tensor:
    """Probability of keeping each occurrence of a word with ``counts`` occurrences (V,).

    ``"word2vec"`` is the formula of the C tool and gensim, ``(sqrt(z / s) + 1) * s / z`` with
    ``z`` the word's share of the corpus; ``"paper"`` is Mikolov et al.'s ``sqrt(s / z)``.
    Both are clipped to 1; ``sample = 0`` keeps everything.
    """
    if counts.ndim != 1 or (counts <= 0).any():
        raise ValueError("counts must be a 1-D tensor of positive word counts")
    if sample < 0:
        raise ValueError(f"sample must be >= 0, got {sample}")
    if sample == 0:
        return torch.ones(counts.shape, dtype=torch.float64)
    z = counts.double() / counts.sum()  # (V,) relative frequencies
    if formula == "word2vec":
        keep = ((z / sample).sqrt() + 1) * sample / z
    elif formula == "paper":
        keep = (sample / z).sqrt()
    else:
        raise ValueError(f"formula must be 'word2vec' or 'paper', got {formula!r}")
    return keep.clamp(max=1.0)


def negative_table(counts: torch.Tensor, exponent: float = 0.75,
                   size: int = 1_000_000) -> torch.Tensor:
    """A (size,) table of word ids in which word ``i`` fills a share ``count_i**e / sum``.

    Drawing a uniform entry of the table samples from the smoothed unigram distribution, as in
    the C tool: cheap, and frequent words are down-weighted (e < 1) relative to their counts.
    """
    if counts.ndim != 1 or (counts <= 0).any():
        raise ValueError("counts must be a 1-D tensor of positive word counts")
    weights = counts.double() ** exponent
    cumulative = weights.cumsum(0) / weights.sum()  # (V,) ends of each word's share in [0, 1]
    midpoints = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    ids = torch.searchsorted(cumulative, midpoints)  # entry j -> first word whose share covers it
    return ids.clamp(max=len(counts) - 1)


def skipgram_pairs(ids: np.ndarray, sentence: np.ndarray,
                   reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) id pairs: token ``i`` pairs with every token of its sentence
    within ``reach[i]`` positions (its dynamic window), in both directions."""
    if not ids.shape == sentence.shape == reach.shape or ids.ndim != 1:
        raise ValueError("ids, sentence and reach must be 1-D arrays of the same length")
    centres, contexts = [], []
    for offset in range(1, int(reach.max(initial=0)) + 1):
        same = sentence[offset:] == sentence[:-offset]  # positions i and i + offset share one
        right = same & (reach[:-offset] >= offset)  # centre i reaches forward to i + offset
        left = same & (reach[offset:] >= offset)  # centre i + offset reaches back to i
        centres += [ids[:-offset][right], ids[offset:][left]]
        contexts += [ids[offset:][right], ids[:-offset][left]]
    if not centres:
        return np.zeros(0, dtype=ids.dtype), np.zeros(0, dtype=ids.dtype)
    return np.concatenate(centres), np.concatenate(contexts)


class SkipGramNS(nn.Module):
    """Input ("centre") and output ("context") embeddings scored by a dot product."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        # sparse: a step touches only the rows of a batch's words, as in the C tool
        self.in_embed = nn.Embedding(vocab_size, dim, sparse=True)
        self.out_embed = nn.Embedding(vocab_size, dim, sparse=True)
        with torch.no_grad():  # the C tool's and gensim's initialisation
            self.in_embed.weight.uniform_(-0.5 / dim, 0.5 / dim)
            self.out_embed.weight.zero_()

    def forward(self, centre: torch.Tensor, context: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        """Negative-sampling loss of each pair, (B,), from ids (B,), (B,) and (B, K)."""
        v = self.in_embed(centre)  # (B, D)
        # one lookup for the context and its negatives: a single sparse gradient per step
        targets = torch.cat([context.unsqueeze(-1), negatives], dim=1)  # (B, 1 + K)
        scores = (self.out_embed(targets) * v.unsqueeze(1)).sum(-1)  # (B, 1 + K) dot products
        real = negatives != context.unsqueeze(-1)  # (B, K): the C tool skips a hit of the context
        return -F.logsigmoid(scores[:, 0]) - (F.logsigmoid(-scores[:, 1:]) * real).sum(-1)


@dataclass
class WordVectors:
    """Words and their vectors (V, D), with cosine-similarity queries."""

    words: list[str]
    vectors: torch.Tensor
    index: dict[str, int] = field(init=False, repr=False)
    unit: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.words) != len(self.vectors):
            raise ValueError(f"need one row per word: {len(self.words)} words, vectors of "
                             f"shape {tuple(self.vectors.shape)}")
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unit = F.normalize(self.vectors.float(), dim=1)  # (V, D) rows of length 1

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __len__(self) -> int:
        return len(self.words)

    def _row(self, word: str) -> int:
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(self)} words")
        return self.index[word]

    def __getitem__(self, word: str) -> torch.Tensor:
        return self.vectors[self._row(word)]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words' vectors."""
        return float(self.unit[self._row(a)] @ self.unit[self._row(b)])

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to ``word`` (itself excluded)."""
        row = self._row(word)
        scores = self.unit @ self.unit[row]  # (V,)
        scores[row] = -float("inf")
        top = scores.topk(min(k, len(self) - 1))
        return [(self.words[i], float(s)) for s, i in zip(top.values, top.indices, strict=True)]

    def restrict(self, words: list[str]) -> WordVectors:
        """The vectors of ``words`` only, in that order."""
        return WordVectors(list(words), self.vectors[[self._row(w) for w in words]])


@dataclass
class Word2VecResult:
    """What :func:`train_word2vec` returns: vectors, model, vocabulary and the training record."""

    vectors: WordVectors  # the input embeddings, the usual word vectors
    model: SkipGramNS
    vocab: Vocabulary
    config: Word2VecConfig
    history: list[dict[str, float]]  # one record per epoch: loss, lr, pairs, kept words, seconds
    step_loss: list[float]  # mean loss of every 50 steps
    seconds: float  # time spent in the epochs (not building the vocabulary and tables)
    words_per_second: float  # in-vocabulary corpus words x epochs / seconds


def word2vec_vocabulary(sentences: list[list[str]], min_count: int) -> Vocabulary:
    """The words seen at least ``min_count`` times, most frequent first, with no specials."""
    vocab = Vocabulary.build(sentences, min_count=min_count, specials=())
    if len(vocab) < 2:
        raise ValueError(f"only {len(vocab)} word(s) occur >= min_count={min_count} "
                         f"times; lower min_count or use a bigger corpus")
    return vocab


def train_word2vec(sentences: list[list[str]], config: Word2VecConfig | None = None,
                   model: SkipGramNS | None = None, progress: bool = True) -> Word2VecResult:
    """Train skip-gram with negative sampling on tokenised ``sentences``, on the CPU.

    ``model`` (optional) is trained in place; by default a fresh one is made, seeded by
    ``config.seed``.
    """
    config = Word2VecConfig() if config is None else config
    vocab = word2vec_vocabulary(sentences, config.min_count)
    encoded = [[vocab.stoi[w] for w in s if w in vocab] for s in sentences]  # drop rare words
    ids = np.array([i for s in encoded for i in s], dtype=np.int64)
    sentence = np.repeat(np.arange(len(encoded)), [len(s) for s in encoded])
    counts = torch.tensor([vocab.counts[w] for w in vocab.itos])
    keep = keep_probabilities(counts, config.sample).numpy()[ids]  # (N,) per token
    table = negative_table(counts, config.ns_exponent, config.table_size)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    if model is None:
        torch.manual_seed(config.seed)
        model = SkipGramNS(len(vocab), config.dim)
    elif model.in_embed.weight.shape != (len(vocab), config.dim):
        raise ValueError(f"model has embeddings {tuple(model.in_embed.weight.shape)}, but the "
                         f"corpus and config need ({len(vocab)}, {config.dim})")
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    history, step_loss, window_loss = [], [], []
    bar = tqdm(total=config.epochs, unit="epoch", desc="word2vec",
               disable=not progress or progress_disabled())
    started = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        kept = rng.random(len(ids)) < keep  # subsampling, redrawn every epoch
        reach = rng.integers(1, config.window + 1, size=int(kept.sum()))  # dynamic window
        centres, contexts = skipgram_pairs(ids[kept], sentence[kept], reach)
        order = rng.permutation(len(centres))  # mix pairs, so a batch is not one passage
        centres = torch.from_numpy(centres[order])
        contexts = torch.from_numpy(contexts[order])
        total, n_batches = 0.0, -(-len(centres) // config.batch_size)
        for b in range(n_batches):
            # gensim's schedule: lr falls linearly with the fraction of training done
            done = (epoch + b / n_batches) / config.epochs
            lr = config.lr - (config.lr - config.min_lr) * done
            optimizer.param_groups[0]["lr"] = lr
            batch = slice(b * config.batch_size, (b + 1) * config.batch_size)
            c, o = centres[batch], contexts[batch]
            negatives = table[torch.randint(len(table), (len(c), config.negative), generator=gen)]
            loss = model(c, o, negatives)  # (B,)
            optimizer.zero_grad()
            loss.sum().backward()  # a sum, like per-pair SGD: each pair moves its words by lr
            optimizer.step()
            total += float(loss.detach().sum())
            window_loss.append(float(loss.detach().mean()))
            if len(window_loss) == 50:
                step_loss.append(sum(window_loss) / 50)
                window_loss = []
        history.append({"epoch": epoch + 1, "loss": total / max(len(centres), 1), "lr": lr,
                        "pairs": len(centres), "kept_words": int(kept.sum()),
                        "seconds": time.perf_counter() - epoch_start})
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    seconds = time.perf_counter() - started
    vectors = WordVectors(list(vocab.itos), model.in_embed.weight.detach().clone())
    return Word2VecResult(vectors, model.eval(), vocab, config, history, step_loss, seconds,
                          len(ids) * config.epochs / seconds)


def train_gensim(sentences: list[list[str]],
                 config: Word2VecConfig | None = None) -> tuple[WordVectors, float]:
    """Train gensim's ``Word2Vec`` (skip-gram, one worker) with ``config``'s settings.

    Returns its vectors and its training words per second, counted as for
    :func:`train_word2vec` (in-vocabulary corpus words x epochs / seconds of ``train``).
    """
    from gensim.models import Word2Vec  # imported here: gensim is only needed for comparisons

    config = Word2VecConfig() if config is None else config
    model = Word2Vec(vector_size=config.dim, window=config.window, min_count=config.min_count,
                     sample=config.sample, sg=1, hs=0, negative=config.negative,
                     ns_exponent=config.ns_exponent, alpha=config.lr, min_alpha=config.min_lr,
                     seed=config.seed, workers=1)
    model.build_vocab(sentences)
    words = sum(model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key)
    started = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=config.epochs)
    seconds = time.perf_counter() - started
    vectors = WordVectors(list(model.wv.index_to_key), torch.from_numpy(model.wv.vectors.copy()))
    return vectors, words * config.epochs / seconds


def neighbour_overlap(a: WordVectors, b: WordVectors, queries: list[str], k: int = 10) -> float:
    """Mean share of the ``k`` nearest neighbours that ``a`` and ``b`` agree on, over queries.

    Neighbours are searched among the words both vocabularies share.
    """
    common = [w for w in a.words if w in b]
    a, b = a.restrict(common), b.restrict(common)
    overlaps = []
    for word in queries:
        mine = {w for w, _ in a.most_similar(word, k)}
        theirs = {w for w, _ in b.most_similar(word, k)}
        overlaps.append(len(mine & theirs) / k)
    return float(np.mean(overlaps))


def similarity_correlation(a: WordVectors, b: WordVectors,
                           pairs: list[tuple[str, str]]) -> float:
    """Spearman correlation between the cosine similarities ``a`` and ``b`` give word pairs."""
    if len(pairs) < 3:
        raise ValueError(f"need at least 3 word pairs, got {len(pairs)}")
    first = [a.similarity(x, y) for x, y in pairs]
    second = [b.similarity(x, y) for x, y in pairs]
    return float(spearmanr(first, second).statistic)


def shakespeare_sentences() -> list[list[str]]:
    """Tiny Shakespeare as passages of words (blank-line separated speeches, no punctuation)."""
    return word_sentences(load_tiny_shakespeare())


def train_on_shakespeare(model: SkipGramNS, config: Word2VecConfig) -> dict[str, float]:
    """Train ``model`` in place on tiny Shakespeare; return the loss per epoch and the speed."""
    result = train_word2vec(shakespeare_sentences(), config, model=model, progress=False)
    metrics = {f"loss_epoch_{r['epoch']}": r["loss"] for r in result.history}
    return {**metrics, "seconds": result.seconds, "words_per_second": result.words_per_second}


def shakespeare_word2vec(config: Word2VecConfig | None = None) -> TrainedModel[SkipGramNS]:
    """The book's word2vec on tiny Shakespeare (trained on first use, then loaded from cache)."""
    config = Word2VecConfig() if config is None else config
    vocab_size = len(word2vec_vocabulary(shakespeare_sentences(), config.min_count))
    return cached_model("shakespeare-word2vec", config,
                        lambda c: SkipGramNS(vocab_size, c.dim), train_on_shakespeare)


def shakespeare_vectors(config: Word2VecConfig | None = None) -> WordVectors:
    """The input vectors of :func:`shakespeare_word2vec`, one per vocabulary word."""
    config = Word2VecConfig() if config is None else config
    vocab = word2vec_vocabulary(shakespeare_sentences(), config.min_count)
    trained = shakespeare_word2vec(config)
    return WordVectors(list(vocab.itos), trained.model.in_embed.weight.detach().clone())

"""Small attention experiments: softmax saturation, a key-value lookup, and heads with two jobs.

Introduced in lessons 5.2 and 5.3 (``m05-l02``, ``m05-l03``). :func:`softmax_saturation`
measures why attention divides its scores by ``sqrt(d)``; :class:`KeyValueLookup` is a single
attention read trained to find a query's key among (key, value) pairs; :class:`TwoJobModel` is
one multi-head attention layer trained on a task whose two outputs need two different heads
(the previous token and a marked token). All of them use the book's one attention,
:mod:`neuralarch.layers.attention`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import TensorDataset

from neuralarch.config import ArchConfig
from neuralarch.layers.attention import MultiHeadAttention, attention
from neuralarch.train.loop import History, TrainConfig, accuracy, fit

IGNORE = -100  # target value that F.cross_entropy skips (no previous token at position 0)


# --- why divide by sqrt(d) ------------------------------------------------------------------

@dataclass(frozen=True)
class Saturation:
    """Averages over many random queries: how peaked the softmax of ``keys`` scores is."""

    d: int  # width of queries and keys
    scaled: bool  # whether the scores were divided by sqrt(d)
    score_std: float  # standard deviation of the scores fed to the softmax
    entropy: float  # softmax entropy as a fraction of its maximum, log(keys): 1 = uniform
    max_weight: float  # mean of each row's largest weight: 1 = one-hot
    saturated: float  # fraction of rows whose largest weight exceeds 0.99
    jacobian_norm: float  # median Frobenius norm of d softmax / d scores: the gradient that
    # gets through to the scores (the median: a typical query, not the rare unsaturated one)


def softmax_saturation(d: int, *, keys: int = 16, samples: int = 2048, scaled: bool = True,
                       seed: int = 0) -> Saturation:
    """Score ``samples`` random queries against ``keys`` random keys, all of width d and N(0, 1)."""
    if d <= 0 or keys <= 1 or samples <= 0:
        raise ValueError(f"need d > 0, keys > 1, samples > 0; got d={d}, keys={keys}, "
                         f"samples={samples}")
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(samples, 1, d, generator=gen, dtype=torch.float64)  # (N, 1, d)
    k = torch.randn(samples, keys, d, generator=gen, dtype=torch.float64)  # (N, S, d)
    scores = (q @ k.transpose(-2, -1))[:, 0]  # (N, S): each a sum of d unit-variance products
    if scaled:
        scores = scores / math.sqrt(d)
    p = scores.softmax(dim=-1)  # (N, S)
    jacobian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, S, S): diag(p) - p p^T
    return Saturation(
        d=d, scaled=scaled, score_std=scores.std().item(),
        entropy=(torch.special.entr(p).sum(-1) / math.log(keys)).mean().item(),
        max_weight=p.max(dim=-1).values.mean().item(),
        saturated=(p.max(dim=-1).values > 0.99).double().mean().item(),
        jacobian_norm=torch.linalg.matrix_norm(jacobian).median().item())


# --- a key-value lookup: attention as a soft dictionary -------------------------------------

class LookupConfig(ArchConfig):
    """The key-value lookup task of lesson 5.2 and how :func:`train_lookup` trains on it."""

    pairs: int = Field(8, ge=2, description="(key, value) pairs per example")
    keys: int = Field(16, ge=2, description="key symbols; each example uses distinct ones")
    values: int = Field(10, ge=2, description="value symbols, drawn with replacement")
    dim: int = Field(16, gt=0, description="width of embeddings, queries and keys")
    uniform: bool = Field(False, description="baseline: equal weights, no query-key matching")
    n_train: int = Field(4000, gt=0, description="training examples")
    n_test: int = Field(1000, gt=0, description="test examples, generated separately")
    epochs: int = Field(8, gt=0, description="passes over the training set")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate")
    seed: int = Field(0, ge=0, lt=2**31, description="seeds the data and the initial weights")

    @model_validator(mode="after")
    def _keys_are_distinct(self) -> LookupConfig:
        if self.pairs > self.keys:
            raise ValueError(f"pairs ({self.pairs}) must be <= keys ({self.keys}): the keys of "
                             "one example are distinct")
        return self


def lookup_data(n: int, pairs: int, keys: int, values: int, seed: int) -> TensorDataset:
    """Examples ``x`` (n, 2 * pairs + 1) = [keys..., values..., query] and targets ``y`` (n,).

    The keys of one example are distinct, the query is one of them, and the target is the value
    stored next to it.
    """
    gen = torch.Generator().manual_seed(seed)
    key_ids = torch.rand(n, keys, generator=gen).argsort(dim=1)[:, :pairs]  # (n, P) distinct
    value_ids = torch.randint(values, (n, pairs), generator=gen)  # (n, P)
    slot = torch.randint(pairs, (n,), generator=gen)  # (n,) which pair is asked for
    rows = torch.arange(n)
    x = torch.cat([key_ids, value_ids, key_ids[rows, slot, None]], dim=1)
    return TensorDataset(x, value_ids[rows, slot])


def match_position(x: torch.Tensor) -> torch.Tensor:
    """Index (n,) of the pair whose key equals the query, for lookup examples ``x``."""
    pairs = (x.shape[1] - 1) // 2
    return (x[:, :pairs] == x[:, -1:]).int().argmax(dim=1)


class KeyValueLookup(nn.Module):
    """One attention read: the query symbol's embedding attends over the stored pairs."""

    def __init__(self, config: LookupConfig) -> None:
        super().__init__()
        self.config = config
        self.key_embed = nn.Embedding(config.keys, config.dim)  # for the stored keys and queries
        self.value_embed = nn.Embedding(config.values, config.dim)
        self.q_proj = nn.Linear(config.dim, config.dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.dim, bias=False)
        self.readout = nn.Linear(config.dim, config.values)

    def read(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return what the query reads (n, dim) and its weights over the pairs (n, P)."""
        p = self.config.pairs
        q = self.q_proj(self.key_embed(x[:, 2 * p:]))  # (n, 1, D): one query per example
        k = self.k_proj(self.key_embed(x[:, :p]))  # (n, P, D)
        v = self.value_embed(x[:, p:2 * p])  # (n, P, D)
        if self.config.uniform:
            q = torch.zeros_like(q)  # every score 0: the weights are 1 / P, whatever the keys
        out, weights = attention(q, k, v)  # (n, 1, D), (n, 1, P)
        return out[:, 0], weights[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.read(x)[0])  # (n, values) logits


@dataclass
class LookupResult:
    """A trained lookup model, its history and its test-set scores."""

    model: KeyValueLookup
    history: History
    test_acc: float  # accuracy on n_test fresh examples
    match_weight: float  # mean attention weight on the pair whose key matches the query


def train_lookup(config: LookupConfig | None = None) -> LookupResult:
    """Train :class:`KeyValueLookup` on fresh lookup data; score it on a separate test set."""
    config = LookupConfig() if config is None else config
    data = (config.pairs, config.keys, config.values)
    train = lookup_data(config.n_train, *data, seed=2 * config.seed)
    test = lookup_data(config.n_test, *data, seed=2 * config.seed + 1)
    torch.manual_seed(config.seed)
    model = KeyValueLookup(config)
    history = fit(model, train, None, F.cross_entropy,
                  lambda params: torch.optim.Adam(params, lr=config.lr),
                  TrainConfig(epochs=config.epochs, batch_size=64, seed=config.seed,
                              device="cpu"), progress=False)
    model.eval()
    x, y = test.tensors
    with torch.no_grad():
        _, weights = model.read(x)
        test_acc = accuracy(model(x), y).item()
    match = weights[torch.arange(len(x)), match_position(x)].mean().item()
    return LookupResult(model, history, test_acc, match)


# --- two jobs for two heads -----------------------------------------------------------------

def two_job_data(n: int, length: int, vocab: int, seed: int) -> TensorDataset:
    """Sequences ``x`` (n, T) with one marked token and targets ``y`` (n, T, 2).

    Tokens are ``0 .. vocab - 1``; the marked one is stored as ``token + vocab``. At position
    ``t`` the targets are the previous token (``IGNORE`` at ``t = 0``) and the marked token.
    """
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(vocab, (n, length), generator=gen)  # (n, T)
    marked = torch.randint(length, (n,), generator=gen)  # (n,)
    rows = torch.arange(n)
    x = tokens.clone()
    x[rows, marked] += vocab
    previous = torch.cat([torch.full((n, 1), IGNORE), tokens[:, :-1]], dim=1)  # (n, T)
    target = tokens[rows, marked, None].expand(n, length)  # (n, T)
    return TensorDataset(x, torch.stack([previous, target], dim=-1))


class TwoJobModel(nn.Module):
    """Token + mark + position embeddings, one multi-head attention, one linear readout."""

    def __init__(self, vocab: int, length: int, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, dim)
        self.mark = nn.Parameter(0.1 * torch.randn(dim))  # added to the marked token only
        self.pos = nn.Parameter(0.1 * torch.randn(length, dim))  # learned absolute positions
        self.attn = MultiHeadAttention(dim, heads)
        self.readout = nn.Linear(dim, 2 * vocab)  # both jobs read the same vector, linearly

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, 2, vocab) for the two jobs and the weights (B, heads, T, T)."""
        b, t = x.shape
        marked = (x >= self.vocab).unsqueeze(-1)  # (B, T, 1)
        h = self.embed(x % self.vocab) + marked * self.mark + self.pos[:t]  # (B, T, D)
        read, weights = self.attn(h, need_weights=True, average_weights=False)
        return self.readout(h + read).view(b, t, 2, self.vocab), weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x)[0]


def two_job_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over both jobs and all positions that have a target."""
    return F.cross_entropy(logits.flatten(0, 2), y.flatten(), ignore_index=IGNORE)


def job_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy of each job (previous token, marked token) over the positions with a target."""
    hits = logits.argmax(dim=-1) == y  # (B, T, 2)
    valid = y != IGNORE
    return tuple((hits[..., j] & valid[..., j]).sum().item() / valid[..., j].sum().item()
                 for j in range(2))


def head_roles(weights: torch.Tensor, x: torch.Tensor, vocab: int) -> torch.Tensor:
    """Mean weight (heads, 2) each head puts on the previous position and on the marked one.

    ``weights`` is (B, heads, T, T). Only query positions ``t >= 1`` whose previous position is
    not the marked one count, so that the two jobs point at different keys.
    """
    b, _, t, _ = weights.shape
    marked = (x >= vocab).int().argmax(dim=1)  # (B,)
    query = torch.arange(1, t)  # (T - 1,)
    on_prev = weights[:, :, query, query - 1]  # (B, heads, T - 1)
    on_mark = weights[torch.arange(b)[:, None], :, query[None, :], marked[:, None]]  # (B, T-1, H)
    keep = (query[None, :] - 1 != marked[:, None]).float()  # (B, T - 1)
    share = [(on_prev * keep[:, None]).sum((0, 2)), (on_mark * keep[..., None]).sum((0, 1))]
    return torch.stack(share, dim=1) / keep.sum()  # (heads, 2)


def ablate_head(model: TwoJobModel, head: int) -> TwoJobModel:
    """A copy of ``model`` whose attention head ``head`` no longer reaches the output."""
    d = model.attn.head_dim
    if not 0 <= head < model.attn.heads:
        raise ValueError(f"head must be in [0, {model.attn.heads}), got {head}")
    pruned = copy.deepcopy(model)
    with torch.no_grad():  # out_proj reads the heads side by side: zero this head's columns
        pruned.attn.out_proj.weight[:, head * d:(head + 1) * d] = 0.0
    return pruned


class TwoJobConfig(ArchConfig):
    """The two-job task of lesson 5.3 and how :func:`train_two_jobs` trains on it."""

    vocab: int = Field(16, ge=2, description="token symbols (a marked token is token + vocab)")
    length: int = Field(12, ge=3, description="tokens per sequence")
    dim: int = Field(32, gt=0, description="model width, split evenly over the heads")
    heads: int = Field(2, gt=0, description="attention heads")
    n_train: int = Field(4000, gt=0, description="training sequences")
    n_test: int = Field(1000, gt=0, description="test sequences, generated separately")
    epochs: int = Field(8, gt=0, description="passes over the training set")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate")
    seed: int = Field(0, ge=0, lt=2**31, description="seeds the data and the initial weights")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TwoJobConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


@dataclass
class TwoJobResult:
    """A trained two-job model, its test data and what each head does there."""

    model: TwoJobModel
    history: History
    test: TensorDataset
    accuracy: tuple[float, float]  # test accuracy of (previous token, marked token)
    roles: torch.Tensor  # (heads, 2): mean weight on the previous and on the marked position


def train_two_jobs(config: TwoJobConfig | None = None) -> TwoJobResult:
    """Train :class:`TwoJobModel` on fresh data; score and read its heads on a test set."""
    config = TwoJobConfig() if config is None else config
    data = (config.length, config.vocab)
    train = two_job_data(config.n_train, *data, seed=2 * config.seed)
    test = two_job_data(config.n_test, *data, seed=2 * config.seed + 1)
    torch.manual_seed(config.seed)
    model = TwoJobModel(config.vocab, config.length, config.dim, config.heads)
    history = fit(model, train, None, two_job_loss,
                  lambda params: torch.optim.Adam(params, lr=config.lr),
                  TrainConfig(epochs=config.epochs, batch_size=64, seed=config.seed,
                              device="cpu"), progress=False)
    model.eval()
    x, y = test.tensors
    with torch.no_grad():
        logits, weights = model.forward_with_attention(x)
    return TwoJobResult(model, history, test, job_accuracy(logits, y),
                        head_roles(weights, x, config.vocab))

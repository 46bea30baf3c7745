"""Micro-Gemini, the book's language model on tiny Shakespeare, and nanoGPT's baseline.

Introduced in lesson 6.6 (``m06-l06``). Both models are shared, cached artefacts
(:func:`~neuralarch.train.artefacts.cached_model`): :func:`micro_gemini` trains the book's
:class:`~neuralarch.lm.model.DecoderLM` on a byte-level BPE of tiny Shakespeare, and
:func:`nanogpt_baseline` trains nanoGPT's character-level CPU recipe
(:mod:`neuralarch.lm.gpt_baseline`). The split is nanoGPT's: the first 90 % of the characters train,
the last 10 % validate. Both are trained by :func:`~neuralarch.lm.pretrain.pretrain` for a fixed
number of steps on the machine's two threads, one model after the other (deterministic for a fixed
thread count; the steps were calibrated to about 180 s on the book's 2-core machine), and both are
scored in **nats per character** on the whole validation split, so a BPE model and a character model
compare. Each trained model carries its tokenizer and its training history (``model.extras``),
stored inside the cached file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from neuralarch.config import ArchConfig
from neuralarch.data.text import load_tiny_shakespeare
from neuralarch.lm.bpe import ByteLevelBPE
from neuralarch.lm.gpt_baseline import CharGPT, CharTokenizer, GPTConfig
from neuralarch.lm.model import DecoderLM, LMConfig, count_parameters
from neuralarch.lm.pretrain import PretrainConfig, pretrain
from neuralarch.lm.shards import Shard, sequential_windows, shard_for, tokenizer_hash
from neuralarch.train.artefacts import TrainedModel, cache_dir, cached_model

TRAIN_FRACTION = 0.9  # nanoGPT's split of tiny Shakespeare


def shakespeare_split() -> tuple[str, str]:
    """Return (train, validation) text: the first 90 % and the last 10 % of the characters."""
    text = load_tiny_shakespeare()
    cut = int(TRAIN_FRACTION * len(text))
    return text[:cut], text[cut:]


class _CarriesExtras:
    """Mixin: ``self.extras`` (a JSON-able dict) travels in the state dict as a byte tensor.

    A tensor (not a dict) keeps the state dict loadable with ``weights_only=True`` and
    fingerprintable; it holds the tokenizer and the training history of a cached model.
    """

    extras: dict[str, Any]

    def get_extra_state(self) -> torch.Tensor:
        blob = json.dumps(getattr(self, "extras", {}), sort_keys=True).encode("utf-8")
        return torch.tensor(list(blob), dtype=torch.uint8)  # (bytes,)

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.extras = json.loads(bytes(state.tolist()).decode("utf-8"))


class MicroGemini(_CarriesExtras, DecoderLM):
    """The book's :class:`~neuralarch.lm.model.DecoderLM`, its tokenizer and training history.

    Both are kept in ``extras`` and saved inside the state dict, so the cached file holds them.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__(config)
        self.extras = {}

    @property
    def tokenizer(self) -> ByteLevelBPE:
        """The BPE tokenizer it was trained with."""
        return ByteLevelBPE.from_dict(self.extras["tokenizer"])


class NanoGPT(_CarriesExtras, CharGPT):
    """nanoGPT's character model plus its tokenizer and training history (``extras``)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        self.extras = {}

    @property
    def tokenizer(self) -> CharTokenizer:
        """The character tokenizer it was trained with."""
        return CharTokenizer.from_dict(self.extras["tokenizer"])


class MicroGeminiRecipe(ArchConfig):
    """Micro-Gemini: tokenizer size, architecture and training recipe (see lesson 6.6)."""

    arch: LMConfig = Field(
        LMConfig(vocab_size=1024, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=352,
                 max_seq_len=128, fused_attention=True),
        description="the DecoderLM; vocab_size is the BPE's vocabulary")
    train: PretrainConfig = Field(
        PretrainConfig(steps=1500, batch_size=16, context=128, lr=5e-3, warmup_steps=60,
                       min_lr_ratio=0.05, weight_decay=0.1, beta2=0.99, eval_every=100,
                       eval_windows=32),
        description="steps, batch, context, optimizer and schedule")
    threads: int = Field(2, ge=1, description="CPU threads it trains on (both cores)")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds initialisation and data order")

    @model_validator(mode="after")
    def _context_fits(self) -> MicroGeminiRecipe:
        if self.train.context > self.arch.max_seq_len:
            raise ValueError(f"train.context={self.train.context} exceeds "
                             f"arch.max_seq_len={self.arch.max_seq_len}")
        if self.arch.vocab_size <= 256:
            raise ValueError(f"arch.vocab_size={self.arch.vocab_size} must exceed the 256 "
                             f"byte tokens (it sets the number of BPE merges)")
        return self


class NanoGPTRecipe(ArchConfig):
    """nanoGPT's CPU recipe for tiny Shakespeare (README, "I only have a macbook")."""

    arch: GPTConfig = Field(GPTConfig(), description="4 layers, 128 wide, 4 heads, context 64")
    train: PretrainConfig = Field(
        PretrainConfig(steps=4000, batch_size=12, context=64, lr=1e-3, warmup_steps=100,
                       min_lr_ratio=0.1, weight_decay=0.1, beta2=0.99, eval_every=250,
                       eval_windows=64),
        description="batch 12, AdamW lr 1e-3, warmup and cosine to 1e-4")
    threads: int = Field(2, ge=1, description="CPU threads it trains on (both cores)")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds initialisation and data order")

    @model_validator(mode="after")
    def _context_fits(self) -> NanoGPTRecipe:
        if self.train.context > self.arch.context:
            raise ValueError(f"train.context={self.train.context} exceeds "
                             f"arch.context={self.arch.context}")
        return self


def _shards(tokenizer: ByteLevelBPE | CharTokenizer, name: str) -> tuple[Shard, Shard]:
    """The train and validation shards of tiny Shakespeare for ``tokenizer`` (written once)."""
    train_text, val_text = shakespeare_split()
    digest = tokenizer_hash(tokenizer.to_dict())
    folder = cache_dir() / "shards"
    return tuple(shard_for(folder / f"shakespeare-{name}-{digest}-{split}", text,
                           tokenizer.encode, tokenizer.vocab_size, digest)
                 for split, text in (("train", train_text), ("val", val_text)))


@torch.no_grad()
def nats_per_char_on(model: torch.nn.Module, tokens: np.ndarray, context: int,
                     decode: Any, batch_size: int = 64) -> dict[str, float]:
    """Total validation nats divided by the characters of the predicted tokens.

    Every token after the first is predicted once, within consecutive windows of ``context``
    tokens; the characters are those of the predicted tokens, decoded, so the number compares
    across tokenizers.
    """
    inputs, targets = sequential_windows(tokens, context)  # (N, T) each
    model.eval()
    nats = 0.0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start:start + batch_size])  # (b, T, V)
        nats += F.cross_entropy(logits.flatten(0, 1), targets[start:start + batch_size].flatten(),
                                reduction="sum").item()
    chars = len(decode(targets.flatten().tolist()))
    return {"val_nats_per_token": nats / targets.numel(), "val_nats_per_char": nats / chars,
            "val_chars": float(chars), "val_tokens": float(targets.numel())}


def _train_lm(model: MicroGemini | NanoGPT, train: PretrainConfig,
              tokenizer: ByteLevelBPE | CharTokenizer, name: str,
              tokenizer_seconds: float) -> dict[str, float]:
    """Shared by both recipes: shards, pretraining, the full validation score, the extras."""
    train_shard, val_shard = _shards(tokenizer, name)
    _, val_text = shakespeare_split()
    chars_per_token = len(val_text) / len(val_shard)
    result = pretrain(model, train_shard.tokens, val_shard.tokens, train)
    scores = nats_per_char_on(model, val_shard.tokens, train.context, tokenizer.decode)
    history = result.history.to_dict()
    history["val_nats_per_char"] = [v / chars_per_token for v in history["val_loss"]]
    model.extras = {"tokenizer": tokenizer.to_dict(), "history": history,
                    "chars_per_token": chars_per_token}
    params = sum(p.numel() for p in model.parameters())
    return {**scores, "train_seconds": result.seconds, "tokenizer_seconds": tokenizer_seconds,
            "tokens_per_second": result.tokens_per_second,
            "chars_per_second": result.tokens_per_second * chars_per_token,
            "chars_per_token": chars_per_token, "parameters": float(params),
            "steps": float(result.step), "train_tokens": float(len(train_shard))}


def build_micro_gemini(recipe: MicroGeminiRecipe) -> MicroGemini:
    """An untrained Micro-Gemini of the recipe's shape."""
    return MicroGemini(recipe.arch)


def train_micro_gemini(model: MicroGemini, recipe: MicroGeminiRecipe) -> dict[str, float]:
    """Train the BPE on the training split, then the model; return validation and speed numbers."""
    started = time.perf_counter()
    train_text, _ = shakespeare_split()
    tokenizer = ByteLevelBPE.train(train_text, recipe.arch.vocab_size)
    if tokenizer.vocab_size != recipe.arch.vocab_size:
        raise ValueError(f"the BPE reached {tokenizer.vocab_size} tokens, not "
                         f"{recipe.arch.vocab_size}: lower arch.vocab_size")
    return _train_lm(model, recipe.train, tokenizer, f"bpe{recipe.arch.vocab_size}",
                     time.perf_counter() - started)


def build_nanogpt(recipe: NanoGPTRecipe) -> NanoGPT:
    """An untrained nanoGPT baseline of the recipe's shape."""
    return NanoGPT(recipe.arch)


def train_nanogpt(model: NanoGPT, recipe: NanoGPTRecipe) -> dict[str, float]:
    """Train the character model; return validation and speed numbers."""
    tokenizer = CharTokenizer.train(load_tiny_shakespeare())  # nanoGPT: chars of the whole file
    if tokenizer.vocab_size != recipe.arch.vocab_size:
        raise ValueError(f"the text has {tokenizer.vocab_size} characters, the recipe's "
                         f"vocab_size is {recipe.arch.vocab_size}")
    return _train_lm(model, recipe.train, tokenizer, "char", 0.0)


def micro_gemini(recipe: MicroGeminiRecipe | None = None) -> TrainedModel[MicroGemini]:
    """The book's trained Micro-Gemini (trained on the first call, then loaded from the cache)."""
    return cached_model("micro-gemini", recipe or MicroGeminiRecipe(), build_micro_gemini,
                        train_micro_gemini)


def nanogpt_baseline(recipe: NanoGPTRecipe | None = None) -> TrainedModel[NanoGPT]:
    """nanoGPT's CPU recipe, trained like Micro-Gemini (cached the same way)."""
    return cached_model("nanogpt-baseline", recipe or NanoGPTRecipe(), build_nanogpt,
                        train_nanogpt)


def history_of(trained: TrainedModel) -> Mapping[str, list[float]]:
    """The training history stored in a cached model (seconds, step, losses, ...)."""
    return trained.model.extras["history"]


def micro_gemini_parameters(recipe: MicroGeminiRecipe) -> int:
    """Parameters of the recipe's model, in closed form (``count_parameters``)."""
    return count_parameters(recipe.arch)

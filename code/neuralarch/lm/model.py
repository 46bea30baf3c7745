"""The book's decoder-only language model: a small Llama (RMSNorm, RoPE, GQA, SwiGLU).

Introduced in lesson 6.1 (``m06-l01``) and reused by the rest of the book (pretraining in
lesson 6.5, Module 8, weeks 08/09/12, the capstone). A :class:`DecoderLM` maps token ids
(B, T) to next-token logits (B, T, V) through ``n_layers`` pre-norm :class:`DecoderBlock`\\ s.
Attention is the book's one :class:`~neuralarch.layers.attention.MultiHeadAttention` (causal,
rotary, grouped-query), the feed-forward the :class:`~neuralarch.layers.transformer.SwiGLU`
of :mod:`neuralarch.layers.transformer`. The layout and names follow Hugging Face's
``LlamaForCausalLM`` closely enough that :func:`load_llama_state` copies its weights one to one;
the tests check that both give the same logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import field_validator, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.attention import KVCache, MultiHeadAttention
from neuralarch.layers.normalization import RMSNorm
from neuralarch.layers.transformer import SwiGLU
from neuralarch.sequence.positional import RotaryEmbedding

PRESETS: dict[str, dict[str, Any]] = {
    # The CPU-sized default of this file, for tests and quick experiments.
    "tiny": {},
    # The shape of Meta's Llama 3.2 1B (1.24 B parameters): what a full-size run would use.
    "llama-3.2-1b": dict(vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8,
                         ffn_dim=8192, max_seq_len=131072, rope_base=500000.0, norm_eps=1e-5,
                         tie_embeddings=True),
    # GPT-2 small's width and depth (124 M parameters with GPT-2's own blocks) in Llama form.
    "gpt2-small-shape": dict(vocab_size=50257, dim=768, n_layers=12, n_heads=12,
                             ffn_dim=2048, max_seq_len=1024),
}


class LMConfig(ArchConfig):
    """The shape of a :class:`DecoderLM`; the defaults train on a CPU in seconds.

    ``n_kv_heads`` defaults to ``n_heads`` (plain multi-head attention); fewer key/value heads
    give grouped-query attention. Full-size shapes are presets: ``LMConfig.preset("llama-3.2-1b")``.
    """

    vocab_size: int = 256
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    ffn_dim: int = 352
    max_seq_len: int = 256
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    dropout: float = 0.0
    fused_attention: bool = False  # PyTorch's fused kernel instead of the book's attention()

    @field_validator("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim", "max_seq_len")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be >= 1")
        return value

    @field_validator("rope_base")
    @classmethod
    def _base(cls, value: float) -> float:
        if not value > 1.0:
            raise ValueError("must be > 1 (the slowest rotary frequency is 1 / rope_base)")
        return value

    @field_validator("norm_eps")
    @classmethod
    def _eps(cls, value: float) -> float:
        if not value > 0.0:
            raise ValueError("must be > 0 (it keeps RMSNorm finite on an all-zero input)")
        return value

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError("must be in [0, 1)")
        return value

    @model_validator(mode="after")
    def _shapes(self) -> LMConfig:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of n_heads ({self.n_heads})")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head_dim = dim / n_heads = {self.dim // self.n_heads} must be "
                             "even: rotary embeddings turn pairs of dimensions")
        kv = self.kv_heads
        if kv < 1 or self.n_heads % kv:
            raise ValueError(f"n_kv_heads ({self.n_kv_heads}) must be a positive divisor of "
                             f"n_heads ({self.n_heads})")
        return self

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads (``n_kv_heads``, or ``n_heads`` when it is None)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        """The width of one attention head, ``dim / n_heads``."""
        return self.dim // self.n_heads

    @classmethod
    def preset(cls, name: str, **changes: Any) -> LMConfig:
        """A named shape from ``PRESETS`` ("tiny", "llama-3.2-1b", "gpt2-small-shape")."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **changes})


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: ``x + attn(norm(x))``, then ``x + ffn(norm(x))``."""

    def __init__(self, config: LMConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.attn = MultiHeadAttention(
            config.dim, config.n_heads, bias=False, dropout=config.dropout, causal=True,
            rotary=RotaryEmbedding(config.head_dim, base=config.rope_base),
            kv_heads=config.kv_heads, layer_idx=layer_idx, fused=config.fused_attention)
        self.ffn_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn = SwiGLU(config.dim, config.ffn_dim, bias=False)
        self.drop = nn.Dropout(config.dropout)  # on each sub-layer's output (residual dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Map (B, T, D) to (B, T, D); with a cache, T new tokens after the cached ones."""
        x = x + self.drop(self.attn(self.attn_norm(x), cache=cache)[0])  # (B, T, D)
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class DecoderLM(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V): embed, blocks, final norm, head."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:  # one (V, D) matrix reads tokens in and scores them out
            self.lm_head.weight = self.embed.weight
        init_weights(self)

    def new_cache(self, max_len: int | None = None) -> KVCache:
        """An empty key-value cache with one slot per block (preallocated for ``max_len``)."""
        return KVCache(self.config.n_layers, max_len)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); with a cache, they continue its sequence."""
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be integer ids of shape (B, T), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        start = 0 if cache is None else cache.offset
        if start + tokens.shape[1] > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + tokens.shape[1]} tokens (cached {start}) is "
                             f"longer than max_seq_len={self.config.max_seq_len}")
        x = self.drop(self.embed(tokens))  # (B, T, D)
        for block in self.blocks:
            x = block(x, cache)
        return self.lm_head(self.norm(x))  # (B, T, V)


def next_token_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ``tokens[:, t + 1]`` from ``tokens[:, :t + 1]``.

    A window of T + 1 tokens (B, T + 1) gives T training examples at once: the inputs are its
    first T tokens, the targets the same window shifted left by one (lesson 6.3).
    """
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be (B, T + 1) with T >= 1, got {tuple(tokens.shape)}")
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T) each: targets shifted by one
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


@torch.no_grad()
def init_weights(model: DecoderLM, std: float = 0.02) -> None:
    """GPT-2's initialisation: every weight N(0, std), residual projections N(0, std / sqrt(2L)).

    Each block adds two outputs (``attn.out_proj`` and ``ffn.down_proj``) to the residual
    stream, so after ``L`` blocks its variance has grown by ``2 L`` such terms; scaling those
    two projections by ``1 / sqrt(2 L)`` keeps the stream's scale independent of depth
    (Radford et al., 2019). Norm gains start at 1.
    """
    residual_std = std / math.sqrt(2 * model.config.n_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            last = name.rsplit(".", 1)[-1]
            nn.init.normal_(module.weight, 0.0, residual_std if last in ("out_proj", "down_proj")
                            else std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm) and module.weight is not None:
            nn.init.ones_(module.weight)


def parameter_breakdown(config: LMConfig) -> dict[str, int]:
    """Parameters by part (embedding, attention, feed-forward, norms, head), in closed form."""
    d, v, layers = config.dim, config.vocab_size, config.n_layers
    kv_dim = config.kv_heads * config.head_dim
    return {
        "embedding": v * d,
        "attention": layers * (2 * d * d + 2 * d * kv_dim),  # q, out: D x D; k, v: D x kv_dim
        "feed-forward": layers * 3 * d * config.ffn_dim,  # gate, up, down
        "norms": (2 * layers + 1) * d,  # two RMSNorm gains per block and the final one
        "lm_head": 0 if config.tie_embeddings else v * d,
    }


def count_parameters(config: LMConfig) -> int:
    """The number of distinct trainable parameters of ``DecoderLM(config)``, in closed form."""
    return sum(parameter_breakdown(config).values())


# --- Hugging Face Llama ------------------------------------------------------------------

def hf_llama_config(config: LMConfig) -> Any:
    """The ``transformers.LlamaConfig`` of the same shape (for equivalence checks)."""
    from transformers import LlamaConfig  # imported here: only the checks need transformers

    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim,
        intermediate_size=config.ffn_dim, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim, max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps, tie_word_embeddings=config.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_base},
        attention_bias=False, mlp_bias=False, hidden_act="silu")


def _llama_names(n_layers: int) -> dict[str, str]:
    """Our parameter name for each of Hugging Face's (``LlamaForCausalLM.state_dict()``)."""
    names = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "lm_head.weight"}
    parts = {"self_attn.q_proj": "attn.q_proj", "self_attn.k_proj": "attn.k_proj",
             "self_attn.v_proj": "attn.v_proj", "self_attn.o_proj": "attn.out_proj",
             "mlp.gate_proj": "ffn.gate_proj", "mlp.up_proj": "ffn.up_proj",
             "mlp.down_proj": "ffn.down_proj", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(n_layers):
        for theirs, ours in parts.items():
            names[f"model.layers.{i}.{theirs}.weight"] = f"blocks.{i}.{ours}.weight"
    return names


@torch.no_grad()
def load_llama_state(model: DecoderLM, hf_state: dict[str, torch.Tensor]) -> None:
    """Copy a Hugging Face ``LlamaForCausalLM`` state dict into ``model``, in place.

    Names map one to one (``o_proj`` -> ``attn.out_proj``, ``input_layernorm`` ->
    ``attn_norm``, ...); both keep rotary angles as non-persistent buffers, so only weights
    move. A checkpoint with tied embeddings has no ``lm_head.weight``: the head reuses the
    embedding. Missing or unexpected keys and mismatched shapes raise a ``ValueError``.
    """
    names = _llama_names(model.config.n_layers)
    params = dict(model.named_parameters(remove_duplicate=False))
    unexpected = sorted(set(hf_state) - set(names) - {k for k in hf_state if "rotary" in k})
    if unexpected:
        raise ValueError(f"unexpected keys in the Llama state dict: {unexpected[:5]}; is it a "
                         f"LlamaForCausalLM with {model.config.n_layers} layers?")
    tied = model.config.tie_embeddings
    for theirs, ours in names.items():
        if theirs == "lm_head.weight":
            if theirs not in hf_state:  # a tied checkpoint: the head is the embedding
                if not tied:
                    params[ours].copy_(hf_state["model.embed_tokens.weight"])
                continue
            if tied and not torch.equal(hf_state[theirs], hf_state["model.embed_tokens.weight"]):
                raise ValueError("the checkpoint's lm_head differs from its embedding, but this "
                                 "model ties them: build it with tie_embeddings=False")
            if tied:
                continue
        if theirs not in hf_state:
            raise ValueError(f"the Llama state dict has no {theirs!r}")
        if params[ours].shape != hf_state[theirs].shape:
            raise ValueError(f"{theirs} has shape {tuple(hf_state[theirs].shape)} but {ours} "
                             f"is {tuple(params[ours].shape)}: the configs differ")
        params[ours].copy_(hf_state[theirs])

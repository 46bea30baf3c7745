"""Hyperparameters as validated schemas: pydantic models with clear errors and JSON round-trips.

Introduced in lesson 1.4 (``m01-l04``). Every model in the book is built from one of these configs,
so a bad value fails here, at construction, with a message naming the field, the value and the rule,
instead of deep inside a forward pass.
"""

from __future__ import annotations

import difflib
import itertools
import json
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from torch import nn

C = TypeVar("C", bound="ArchConfig")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and the rule."""


def _explain(cls: type[ArchConfig], error: ValidationError) -> str:
    """Turn pydantic's error list into one line per problem: field = value: rule."""
    lines = [f"invalid {cls.__name__}:"]
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a cross-field (model) rule: its message names the fields itself
            lines.append(f"  - {message}")
            continue
        field = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            names = list(cls.model_fields)
            close = difflib.get_close_matches(field, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {sorted(names)}"
            message = f"unknown field; {hint}"
        lines.append(f"  - {field} = {item.get('input')!r}: {message}")
    return "\n".join(lines)


class ArchConfig(BaseModel):
    """Base class of every config in the book: typed, immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(_explain(type(self), error)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise ConfigError(
            f"{type(self).__name__} is immutable: cannot set {name} = {value!r}; "
            f"use config.replace({name}=...) to get a validated copy"
        )

    @field_validator("*", mode="before")
    @classmethod
    def _no_silent_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode turns True into 1 and "4" into 4; in a config that hides mistakes.
        annotation = cls.model_fields[str(info.field_name)].annotation
        accepted = {annotation, *get_args(annotation)}
        expected = annotation.__name__ if isinstance(annotation, type) else str(annotation)
        if isinstance(value, bool) and bool not in accepted:
            raise ValueError(f"a bool is not allowed here; expected {expected}")
        if isinstance(value, str) and str not in accepted and get_origin(annotation) is not Literal:
            raise ValueError(f"a string is not allowed here; expected {expected} (no quotes)")
        return value

    def replace(self: C, **changes: Any) -> C:
        """Return a validated copy with some fields changed (configs are immutable)."""
        return type(self)(**{**self.model_dump(), **changes})

    def to_json(self) -> str:
        """Return the config as pretty, key-sorted JSON."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON to ``path`` and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read and validate a config saved with :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}")
        try:
            return cls(**data)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """Return the JSON schema (for editors, docs and validation in other languages)."""
        return cls.model_json_schema()


def diff(old: ArchConfig, new: ArchConfig) -> dict[str, tuple[Any, Any]]:
    """Return ``{field: (old value, new value)}`` for every field where two configs differ."""
    if type(old) is not type(new):
        raise ConfigError(
            f"diff needs two configs of the same class, got old={type(old).__name__} "
            f"and new={type(new).__name__}"
        )
    a, b = old.model_dump(), new.model_dump()
    return {name: (a[name], b[name]) for name in a if a[name] != b[name]}


class TransformerConfig(ArchConfig):
    """Shape of a decoder-only transformer; CPU-sized defaults, larger presets by name."""

    vocab_size: int = Field(256, gt=0, description="number of distinct token ids")
    context_length: int = Field(128, gt=0, description="maximum sequence length in tokens")
    d_model: int = Field(128, gt=0, description="width of the residual stream")
    n_heads: int = Field(4, gt=0, description="attention heads; must divide d_model")
    n_layers: int = Field(4, gt=0, description="number of transformer blocks")
    d_ff: int | None = Field(None, gt=0, description="MLP hidden width; default 4 * d_model")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability")
    bias: bool = Field(False, description="use bias vectors in Linear and norm layers")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerConfig:
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                f"allowed n_heads for this d_model include {divisors[:8]}"
            )
        return self

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP hidden layer."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    @classmethod
    def preset(cls, name: str) -> TransformerConfig:
        """Return a named preset: ``"tiny"`` (tests), ``"small"`` (CPU book pages), ``"gpt2"``."""
        presets = {
            "tiny": dict(vocab_size=64, context_length=32, d_model=32, n_heads=2, n_layers=2),
            "small": {},
            "gpt2": dict(vocab_size=50257, context_length=1024, d_model=768, n_heads=12,
                         n_layers=12, dropout=0.1, bias=True),
        }
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return cls(**presets[name])


def count_parameters(config: TransformerConfig) -> dict[str, int]:
    """Count the parameters of :class:`TorchDecoder` from its config alone, part by part."""
    d, f, n_layers = config.d_model, config.hidden_dim, config.n_layers
    b = int(config.bias)
    embedding = (config.vocab_size + config.context_length) * d  # tokens + positions; head is tied
    attention = n_layers * (4 * d * d + 4 * d * b)  # Q, K, V, output projections
    mlp = n_layers * (2 * d * f + (f + d) * b)  # up and down projections
    norm = (2 * n_layers + 1) * d * (1 + b)  # two LayerNorms per block + the final one
    total = embedding + attention + mlp + norm
    return {
        "embedding": embedding,
        "attention": attention,
        "mlp": mlp,
        "norm": norm,
        "non_embedding": total - embedding,
        "total": total,
    }


class TorchDecoder(nn.Module):
    """A GPT-style decoder assembled from ``torch.nn`` layers, shaped entirely by its config."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.d_model, config.n_heads, config.hidden_dim, config.dropout,
                activation="gelu", batch_first=True, norm_first=True, bias=config.bias,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model, bias=config.bias)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying, as in GPT-2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Map token ids ``(B, T)`` to next-token logits ``(B, T, vocab_size)``."""
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        T, limit = idx.shape[1], self.config.context_length
        if limit < T:
            raise ValueError(f"sequence length {T} exceeds context_length={limit}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)  # (T, T)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)  # (B, T, C)
        return self.head(self.norm(x))  # (B, T, vocab_size)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
}


class MLPConfig(ArchConfig):
    """Shape of a multilayer perceptron; defaults fit flattened MNIST (784 inputs, 10 classes)."""

    in_features: int = Field(784, gt=0, description="input width, e.g. 28 * 28 pixels")
    hidden_sizes: tuple[int, ...] = Field(
        (128,), description="hidden layer widths in order; () gives a linear model"
    )
    out_features: int = Field(10, gt=0, description="output width, e.g. number of classes")
    activation: Literal["relu", "gelu", "tanh", "silu"] = Field(
        "relu", description="nonlinearity between layers"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each activation")
    bias: bool = Field(True, description="use bias vectors in the Linear layers")

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_widths(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        bad = [(i, s) for i, s in enumerate(sizes) if s <= 0]
        if bad:
            raise ValueError(f"every hidden width must be > 0; bad (index, width): {bad}")
        return sizes

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. ``(784, 128, 10)``."""
        return (self.in_features, *self.hidden_sizes, self.out_features)


def build_mlp(config: MLPConfig) -> nn.Sequential:
    """Build the ``nn.Sequential`` MLP that an :class:`MLPConfig` describes."""
    sizes = config.layer_sizes
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out, bias=config.bias))
        if i < len(sizes) - 2:  # no activation or dropout after the output layer
            layers.append(_ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
    return nn.Sequential(*layers)

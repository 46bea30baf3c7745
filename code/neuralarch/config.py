"""Hyperparameters as validated schemas: pydantic models with clear errors and JSON round-trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

C = TypeVar("C", bound="ArchConfig")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and the rule."""


def _explain(cls_name: str, error: ValidationError) -> str:
    lines = [f"invalid {cls_name}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(model)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  - {field} = {item.get('input')!r}: {message}")
    return "\n".join(lines)


class ArchConfig(BaseModel):
    """Base class of every config in the book: typed, immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(_explain(type(self).__name__, error)) from None

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
        return cls(**data)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """Return the JSON schema (for editors, docs and validation in other languages)."""
        return cls.model_json_schema()


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

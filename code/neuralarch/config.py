"""Hyperparameters as validated schemas: pydantic models with clear errors and JSON round-trips.

Introduced in lesson 1.4 (``m01-l04``). Every model in the book is built from one of these configs,
so a bad value fails here, at construction, with a message naming the field, the value and the rule,
instead of deep inside a forward pass.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

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

"""Tests for neuralarch.config: validation errors, JSON round-trips, presets, diffs and schemas."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from neuralarch.config import ArchConfig, ConfigError, diff
from neuralarch.layers.mlp import MLPConfig
from neuralarch.layers.torch_decoder import TransformerConfig

# ---------------------------------------------------------------- construction and validation


def test_defaults_are_cpu_sized_and_derived_properties_follow():
    config = TransformerConfig()
    assert (config.d_model, config.n_heads, config.n_layers) == (128, 4, 4)
    assert config.head_dim == 32
    assert config.hidden_dim == 4 * 128
    assert config.replace(d_ff=100).hidden_dim == 100


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError):
        TransformerConfig(d_model=0)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("d_model", 0, "greater than 0"),
        ("n_heads", -2, "greater than 0"),
        ("n_layers", 0, "greater than 0"),
        ("vocab_size", 0, "greater than 0"),
        ("context_length", -1, "greater than 0"),
        ("d_ff", 0, "greater than 0"),
        ("dropout", 1.0, "less than 1"),
        ("dropout", -0.1, "greater than or equal to 0"),
        ("n_heads", 2.5, "valid integer"),
    ],
)
def test_field_constraint_errors_name_field_value_and_rule(field, value, rule):
    with pytest.raises(ConfigError, match=rf"{field} = {value!r}: .*{rule}"):
        TransformerConfig(**{field: value} | ({"n_heads": 1} if field == "d_model" else {}))


def test_all_errors_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        TransformerConfig(d_model=-1, n_heads=0, dropout=2.0)
    message = str(info.value)
    assert message.startswith("invalid TransformerConfig:")
    assert message.count("\n  - ") == 3


@pytest.mark.parametrize(("d_model", "n_heads"), [(100, 3), (128, 6), (30, 4), (768, 5)])
def test_heads_must_divide_width(d_model, n_heads):
    with pytest.raises(ConfigError, match=rf"d_model \({d_model}\) must be divisible by n_heads"):
        TransformerConfig(d_model=d_model, n_heads=n_heads)


def test_divisibility_error_lists_allowed_head_counts():
    with pytest.raises(ConfigError, match=r"include \[1, 2, 4, 5, 10, 20, 25, 50\]"):
        TransformerConfig(d_model=100, n_heads=3)


@pytest.mark.parametrize(("d_model", "n_heads"), [(96, 12), (100, 5), (7, 7), (64, 1)])
def test_valid_width_head_pairs_are_accepted(d_model, n_heads):
    config = TransformerConfig(d_model=d_model, n_heads=n_heads)
    assert config.head_dim * config.n_heads == d_model


def test_unknown_field_suggests_the_closest_name():
    with pytest.raises(ConfigError, match=r"n_head = 8: unknown field; did you mean 'n_heads'\?"):
        TransformerConfig(d_model=256, n_head=8)


def test_unknown_field_without_close_match_lists_allowed_fields():
    with pytest.raises(ConfigError, match=r"colour = 'red': unknown field; allowed: \['bias'"):
        TransformerConfig(colour="red")


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [("n_layers", True, "bool"), ("n_heads", "4", "string"), ("d_ff", "512", "string"),
     ("d_ff", False, "bool"), ("bias", "yes", "string"), ("dropout", "0.1", "string")],
)
def test_no_silent_coercion_of_bools_and_strings(field, value, kind):
    with pytest.raises(ConfigError, match=rf"{field} = {value!r}: a {kind} is not allowed here"):
        TransformerConfig(**{field: value})


def test_lax_numbers_that_are_exact_still_work():
    assert TransformerConfig(n_heads=4.0).n_heads == 4  # an integral float is unambiguous
    assert TransformerConfig(dropout=0).dropout == 0.0


def test_frozen_mutation_raises_with_replace_hint():
    config = TransformerConfig()
    with pytest.raises(ConfigError, match=r"cannot set d_model = 256; use config\.replace"):
        config.d_model = 256
    assert config.d_model == 128


def test_replace_returns_validated_copy_and_leaves_original():
    config = TransformerConfig()
    wide = config.replace(d_model=256, n_heads=8)
    assert (wide.d_model, wide.n_heads) == (256, 8)
    assert config.d_model == 128
    with pytest.raises(ConfigError, match="must be divisible"):
        config.replace(n_heads=6)


def test_configs_are_hashable_comparable_and_picklable():
    a, b = TransformerConfig.preset("gpt2"), TransformerConfig.preset("gpt2")
    assert a == b and hash(a) == hash(b)
    assert len({a, b, TransformerConfig()}) == 2
    assert pickle.loads(pickle.dumps(a)) == a
    assert copy.deepcopy(a) == a


# ---------------------------------------------------------------- presets and diff


@pytest.mark.parametrize(
    ("name", "d_model", "n_layers"), [("tiny", 32, 2), ("small", 128, 4), ("gpt2", 768, 12)]
)
def test_presets(name, d_model, n_layers):
    config = TransformerConfig.preset(name)
    assert (config.d_model, config.n_layers) == (d_model, n_layers)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'gpt5'; choose one of \['gpt2'"):
        TransformerConfig.preset("gpt5")


def test_diff_lists_only_changed_fields():
    small = TransformerConfig.preset("small")
    wide = small.replace(d_model=256, n_heads=8)
    assert diff(small, wide) == {"d_model": (128, 256), "n_heads": (4, 8)}
    assert diff(wide, small) == {"d_model": (256, 128), "n_heads": (8, 4)}
    assert diff(small, small) == {}


def test_diff_rejects_different_config_classes():
    with pytest.raises(ConfigError, match="got old=TransformerConfig and new=MLPConfig"):
        diff(TransformerConfig(), MLPConfig())


# ---------------------------------------------------------------- JSON: save, load, schema


@pytest.mark.parametrize(
    "config",
    [TransformerConfig(), TransformerConfig.preset("gpt2"), TransformerConfig(d_ff=300),
     MLPConfig(), MLPConfig(hidden_sizes=(), activation="tanh", dropout=0.25, bias=False)],
)
def test_save_load_round_trip(tmp_path, config):
    path = config.save(tmp_path / "nested" / "config.json")
    assert path.is_file()
    loaded = type(config).load(path)
    assert loaded == config
    assert loaded.to_json() == config.to_json()


def test_to_json_is_sorted_and_parseable():
    text = TransformerConfig().to_json()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["d_model"] == 128 and data["d_ff"] is None


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformerConfig.load(tmp_path / "nope.json")


def test_load_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{'d_model': 128}", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        TransformerConfig.load(path)


def test_load_non_object_json(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[128, 4]", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a JSON object, found list"):
        TransformerConfig.load(path)


@pytest.mark.parametrize(
    ("data", "match"),
    [({"d_model": 100, "n_heads": 3}, "must be divisible"),
     ({"n_head": 8}, "did you mean 'n_heads'"),
     ({"n_layers": "12"}, "a string is not allowed")],
)
def test_load_invalid_values_names_the_file(tmp_path, data, match):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as info:
        TransformerConfig.load(path)
    assert str(info.value).startswith(f"{path}: invalid TransformerConfig")


def test_json_schema_has_descriptions_constraints_and_forbids_extras():
    schema = TransformerConfig.json_schema()
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert props["d_model"]["exclusiveMinimum"] == 0
    assert props["d_model"]["description"] == "width of the residual stream"
    assert props["dropout"]["minimum"] == 0.0 and props["dropout"]["exclusiveMaximum"] == 1.0
    assert all("description" in p for p in props.values())
    assert isinstance(ArchConfig.json_schema(), dict)


def test_mlp_json_schema_lists_activation_choices():
    props = MLPConfig.json_schema()["properties"]
    assert props["activation"]["enum"] == ["relu", "gelu", "tanh", "silu"]
    assert props["hidden_sizes"]["type"] == "array"

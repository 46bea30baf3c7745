"""Tests for neuralarch.config: validation errors, JSON round-trips, configs that build models."""

from __future__ import annotations

import copy
import itertools
import json
import pickle

import pytest
import torch
from torch import nn

from neuralarch.config import (
    ArchConfig,
    ConfigError,
    MLPConfig,
    TorchDecoder,
    TransformerConfig,
    build_mlp,
    count_parameters,
    diff,
)

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


# ---------------------------------------------------------------- parameter counting


@pytest.mark.parametrize(
    "config",
    [TransformerConfig.preset("tiny"), TransformerConfig.preset("small"),
     TransformerConfig(d_model=48, n_heads=3, n_layers=3, d_ff=100, bias=True),
     TransformerConfig(vocab_size=10, context_length=7, d_model=20, n_heads=5, n_layers=1)],
)
def test_count_parameters_matches_torch_model(config):
    model = TorchDecoder(config)
    counts = count_parameters(config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == sum(counts[k] for k in ("embedding", "attention", "mlp", "norm"))
    assert counts["non_embedding"] == counts["total"] - counts["embedding"]
    block = sum(p.numel() for p in model.blocks.parameters())
    final_norm = sum(p.numel() for p in model.norm.parameters())
    assert block == counts["attention"] + counts["mlp"] + counts["norm"] - final_norm


def test_gpt2_preset_has_gpt2_small_parameter_count():
    config = TransformerConfig.preset("gpt2")
    with torch.device("meta"):  # shapes only, no memory
        model = TorchDecoder(config)
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # GPT-2 small
    assert count_parameters(config)["total"] == 124_439_808


@pytest.mark.parametrize(("n_layers", "d_model"), [(12, 768), (24, 1024), (48, 1600)])
def test_non_embedding_count_is_close_to_twelve_l_d_squared(n_layers, d_model):
    config = TransformerConfig(d_model=d_model, n_heads=d_model // 64, n_layers=n_layers,
                               bias=True)
    ratio = count_parameters(config)["non_embedding"] / (12 * n_layers * d_model**2)
    assert 1.0 < ratio < 1.003  # biases and norms add a few per mille


def test_tied_head_shares_the_embedding_matrix():
    model = TorchDecoder(TransformerConfig.preset("tiny"))
    assert model.head.weight is model.tok_emb.weight
    # state_dict lists the tied tensor twice; parameters() deduplicates it
    assert sum(t.numel() for t in model.state_dict().values()) > sum(
        p.numel() for p in model.parameters()
    )


# ---------------------------------------------------------------- the decoder runs


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (3, 7), (2, 32)])
def test_decoder_output_shape(batch, length):
    config = TransformerConfig.preset("tiny")
    model = TorchDecoder(config).eval()
    idx = torch.randint(0, config.vocab_size, (batch, length))
    assert model(idx).shape == (batch, length, config.vocab_size)


def test_decoder_is_causal():
    torch.manual_seed(0)
    config = TransformerConfig.preset("tiny")
    model = TorchDecoder(config).eval()
    idx = torch.randint(0, config.vocab_size, (2, 10))
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % config.vocab_size  # change only the future
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_decoder_bad_inputs():
    config = TransformerConfig.preset("tiny")
    model = TorchDecoder(config)
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\), got \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="sequence length 33 exceeds context_length=32"):
        model(torch.zeros(1, 33, dtype=torch.long))


# ---------------------------------------------------------------- MLP configs build MLPs


def test_mlp_layer_sizes_and_validation():
    assert MLPConfig().layer_sizes == (784, 128, 10)
    assert MLPConfig(hidden_sizes=[64, 32]).hidden_sizes == (64, 32)  # JSON lists become tuples
    with pytest.raises(ConfigError, match=r"bad \(index, width\): \[\(1, 0\), \(2, -2\)\]"):
        MLPConfig(hidden_sizes=(64, 0, -2))
    with pytest.raises(ConfigError, match=r"activation = 'swish': Input should be 'relu'"):
        MLPConfig(activation="swish")


ACT = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@pytest.mark.parametrize(
    "config",
    [MLPConfig(), MLPConfig(in_features=5, hidden_sizes=(), out_features=3),
     MLPConfig(in_features=7, hidden_sizes=(16, 9), out_features=2, activation="gelu",
               bias=False),
     MLPConfig(in_features=6, hidden_sizes=(11,), out_features=4, activation="tanh"),
     MLPConfig(in_features=3, hidden_sizes=(8, 8, 8), out_features=1, activation="silu")],
)
def test_build_mlp_matches_hand_built_torch_reference(config):
    torch.manual_seed(1)
    model = build_mlp(config)
    sizes = config.layer_sizes
    reference_layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        reference_layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=config.bias))
        if i < len(sizes) - 2:
            reference_layers.append(ACT[config.activation]())
    reference = nn.Sequential(*reference_layers)
    reference.load_state_dict(model.state_dict())  # same keys and shapes, or this raises
    x = torch.randn(4, config.in_features, dtype=torch.float64)
    torch.testing.assert_close(model.double()(x), reference.double()(x))
    expected = sum((n_in + int(config.bias)) * n_out for n_in, n_out in itertools.pairwise(sizes))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_build_mlp_adds_dropout_only_between_hidden_layers():
    model = build_mlp(MLPConfig(hidden_sizes=(32, 16), dropout=0.2))
    dropouts = [m for m in model if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.2, 0.2]
    assert isinstance(model[-1], nn.Linear)

"""The attention experiments of lessons 5.2 and 5.3: saturation, key-value lookup, two-job heads."""

from __future__ import annotations

import math

import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.layers.attention import attention
from neuralarch.sequence.attention_experiments import (
    IGNORE,
    KeyValueLookup,
    LookupConfig,
    TwoJobConfig,
    TwoJobModel,
    ablate_head,
    head_roles,
    job_accuracy,
    lookup_data,
    match_position,
    softmax_saturation,
    train_lookup,
    train_two_jobs,
    two_job_data,
    two_job_loss,
)

# --- softmax saturation ---------------------------------------------------------------------


@pytest.mark.parametrize("d", [4, 64, 512])
def test_scaled_scores_have_unit_spread_and_raw_scores_grow_like_sqrt_d(d):
    raw = softmax_saturation(d, scaled=False)
    scaled = softmax_saturation(d, scaled=True)
    assert scaled.score_std == pytest.approx(1.0, rel=0.05)
    assert raw.score_std == pytest.approx(math.sqrt(d), rel=0.05)
    assert (raw.d, raw.scaled, scaled.scaled) == (d, False, True)


def test_without_scaling_the_softmax_saturates_as_d_grows():
    raw = [softmax_saturation(d, samples=512, scaled=False) for d in (4, 64, 1024)]
    scaled = [softmax_saturation(d, samples=512, scaled=True) for d in (4, 64, 1024)]
    assert raw[0].entropy > raw[1].entropy > raw[2].entropy
    assert raw[0].jacobian_norm > 10 * raw[2].jacobian_norm
    assert raw[2].saturated > 0.5 and raw[2].max_weight > 0.9
    assert max(s.entropy for s in scaled) - min(s.entropy for s in scaled) < 0.02
    assert all(s.saturated < 0.05 for s in scaled)


def test_jacobian_norm_matches_autograd():
    stats = softmax_saturation(8, keys=5, samples=1, scaled=True, seed=3)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 1, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 5, 8, generator=gen, dtype=torch.float64)
    scores = (q @ k.transpose(-2, -1))[0, 0] / math.sqrt(8)
    jacobian = torch.autograd.functional.jacobian(lambda s: s.softmax(-1), scores)
    assert stats.jacobian_norm == pytest.approx(jacobian.norm().item(), rel=1e-9)


@pytest.mark.parametrize("kwargs", [dict(d=0), dict(d=4, keys=1), dict(d=4, samples=0)])
def test_softmax_saturation_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="need d > 0"):
        softmax_saturation(**kwargs)


# --- key-value lookup -----------------------------------------------------------------------

def test_lookup_data_stores_the_query_value_next_to_its_key():
    x, y = lookup_data(500, pairs=6, keys=9, values=4, seed=0).tensors
    assert x.shape == (500, 13) and y.shape == (500,)
    keys, values, query = x[:, :6], x[:, 6:12], x[:, 12]
    assert all(len(set(row.tolist())) == 6 for row in keys), "keys of one example are distinct"
    slot = match_position(x)
    assert torch.equal(keys[torch.arange(500), slot], query)
    assert torch.equal(values[torch.arange(500), slot], y)
    assert int(keys.max()) < 9 and int(values.max()) < 4
    assert len(set(slot.tolist())) == 6, "every slot is asked for"


def test_lookup_weights_are_a_distribution_and_uniform_means_uniform():
    x, _ = lookup_data(20, pairs=5, keys=8, values=3, seed=1).tensors
    for uniform in (False, True):
        torch.manual_seed(0)
        model = KeyValueLookup(LookupConfig(pairs=5, keys=8, values=3, uniform=uniform))
        read, weights = model.read(x)
        assert read.shape == (20, model.config.dim) and weights.shape == (20, 5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(20))
        assert model(x).shape == (20, 3)
    torch.testing.assert_close(weights, torch.full((20, 5), 0.2))
    values = model.value_embed(x[:, 5:10])
    torch.testing.assert_close(read, values.mean(dim=1), msg="uniform reads the mean value")


def test_lookup_config_needs_enough_keys():
    with pytest.raises(ConfigError, match=r"pairs \(9\) must be <= keys \(8\)"):
        LookupConfig(pairs=9, keys=8)


def test_trained_lookup_finds_the_matching_key_and_beats_uniform_weights():
    small = LookupConfig(n_train=2000, n_test=500, epochs=5)
    learned, uniform = train_lookup(small), train_lookup(small.replace(uniform=True))
    assert learned.test_acc > 0.95 and learned.match_weight > 0.9
    assert uniform.match_weight == pytest.approx(1 / small.pairs)
    assert uniform.test_acc < 0.5 < learned.test_acc
    assert learned.history.train_loss[-1] < learned.history.train_loss[0]


# --- two jobs for two heads -----------------------------------------------------------------

def test_two_job_data_targets():
    x, y = two_job_data(200, length=7, vocab=5, seed=0).tensors
    assert x.shape == (200, 7) and y.shape == (200, 7, 2)
    marked = x >= 5
    assert torch.equal(marked.sum(1), torch.ones(200, dtype=torch.long)), "one marked token"
    tokens = x % 5
    assert (y[:, 0, 0] == IGNORE).all()
    assert torch.equal(y[:, 1:, 0], tokens[:, :-1])
    marked_token = tokens[marked]  # (200,): one per row
    assert torch.equal(y[..., 1], marked_token[:, None].expand(200, 7))


def test_head_roles_reads_hand_made_weights():
    x, _ = two_job_data(30, length=6, vocab=4, seed=2).tensors
    marked = (x >= 4).int().argmax(1)
    weights = torch.zeros(30, 3, 6, 6)
    weights[:, 0] = torch.diag(torch.ones(5), -1)  # head 0: query t reads key t - 1
    weights[torch.arange(30), 1, :, marked] = 1.0  # head 1: every query reads the marked key
    weights[:, 2] = 1 / 6  # head 2: uniform
    roles = head_roles(weights, x, vocab=4)
    torch.testing.assert_close(roles, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1 / 6, 1 / 6]]))


def test_job_accuracy_and_loss_skip_the_missing_previous_token():
    y = two_job_data(10, length=5, vocab=3, seed=0).tensors[1]
    perfect = torch.nn.functional.one_hot(y.clamp_min(0), 3).float() * 50
    assert job_accuracy(perfect, y) == (1.0, 1.0)
    assert two_job_loss(perfect, y).item() < 1e-6
    wrong_first = perfect.clone()
    wrong_first[:, 0, 0] = torch.tensor([0.0, 0.0, 50.0])  # position 0 has no target: ignored
    assert job_accuracy(wrong_first, y) == (1.0, 1.0)


def test_ablating_a_head_removes_exactly_its_output():
    torch.manual_seed(0)
    model = TwoJobModel(vocab=4, length=6, dim=12, heads=3)
    x, _ = two_job_data(8, length=6, vocab=4, seed=1).tensors
    pruned = ablate_head(model, 1)
    assert not torch.equal(pruned.attn.out_proj.weight, model.attn.out_proj.weight)
    assert (model.attn.out_proj.weight[:, 4:8] != 0).all(), "the original is left alone"
    # recompute the attention by hand with head 1's output set to zero
    attn = model.attn
    h = model.embed(x % 4) + (x >= 4).unsqueeze(-1) * model.mark + model.pos
    q, k, v = (attn._split(p(h)) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    heads, _ = attention(q, k, v)  # (B, 3, T, 4)
    heads[:, 1] = 0.0
    read = attn.out_proj(heads.transpose(1, 2).reshape(8, 6, 12))
    expected = model.readout(h + read).view(8, 6, 2, 4)
    torch.testing.assert_close(pruned(x), expected)
    with pytest.raises(ValueError, match=r"head must be in \[0, 3\)"):
        ablate_head(model, 3)


def test_two_job_config_checks_the_head_split():
    with pytest.raises(ConfigError, match=r"dim \(30\) must be a multiple of heads \(4\)"):
        TwoJobConfig(dim=30, heads=4)


def test_two_heads_specialise_and_one_head_cannot_do_both_jobs():
    config = TwoJobConfig(n_test=300)  # smaller budgets do not always find the previous token
    two, one = train_two_jobs(config), train_two_jobs(config.replace(heads=1))
    assert min(two.accuracy) > 0.97
    assert min(one.accuracy) < 0.95, "one head of the same width cannot do both jobs well"
    assert two.roles.shape == (2, 2) and one.roles.shape == (1, 2)
    prev_head = int(two.roles[:, 0].argmax())
    assert two.roles[prev_head, 0] > 0.7 and two.roles[1 - prev_head, 1] > 0.7
    assert two.roles[prev_head, 1] < 0.2 and two.roles[1 - prev_head, 0] < 0.2

"""The pre-training loop of lesson 6.5: schedule, weight decay groups, learning, exact resume."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from neuralarch.config import ConfigError
from neuralarch.lm.gpt_baseline import CharGPT, GPTConfig
from neuralarch.lm.pretrain import (
    PretrainConfig,
    make_optimizer,
    make_scheduler,
    nats_per_char,
    parameter_groups,
    perplexity,
    pretrain,
    validation_loss,
)

TINY = GPTConfig(vocab_size=12, context=16, dim=16, n_layers=1, n_heads=2)


def pattern(n: int, seed: int = 0) -> np.ndarray:
    """A learnable stream: a repeated random sentence of 12 symbols with a little noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 12, 23)
    stream = np.tile(base, n // 23 + 1)[:n]
    noise = rng.random(n) < 0.05
    stream[noise] = rng.integers(0, 12, noise.sum())
    return stream.astype(np.uint16)


def tiny_model(seed: int = 0) -> CharGPT:
    torch.manual_seed(seed)
    return CharGPT(TINY)


def test_config_rejects_warmup_longer_than_training():
    with pytest.raises(ConfigError, match="warmup_steps"):
        PretrainConfig(steps=10, warmup_steps=10)


def test_schedule_warms_up_then_decays_to_min_lr():
    config = PretrainConfig(steps=100, warmup_steps=10, lr=1e-2, min_lr_ratio=0.1)
    optimizer = make_optimizer(tiny_model(), config)
    scheduler = make_scheduler(optimizer, config)
    lrs = []
    for _ in range(config.steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-3)  # 1 / warmup of the peak
    assert max(lrs) == pytest.approx(1e-2) and int(np.argmax(lrs)) == 10
    assert all(a <= b for a, b in itertools.pairwise(lrs[:11]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] == pytest.approx(1e-3)
    mid = 10 + 45  # half-way through the cosine: the mean of peak and floor
    assert lrs[mid] == pytest.approx((1e-2 + 1e-3) / 2)


def test_weight_decay_only_on_matrices():
    model = tiny_model()
    decay, keep = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in keep["params"])
    assert sum(p.numel() for g in (decay, keep) for p in g["params"]) == \
        sum(p.numel() for p in model.parameters())  # tied weights counted once


def test_unit_conversions():
    assert nats_per_char(3.0, 2.5) == pytest.approx(1.2)
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)


def test_validation_loss_of_a_uniform_model_is_log_vocab():
    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 12)

    assert validation_loss(Uniform(), pattern(200), 16) == pytest.approx(math.log(12))


def test_loss_goes_down_in_a_few_seconds():
    stream = pattern(4000)
    config = PretrainConfig(steps=120, batch_size=8, context=16, lr=3e-3, warmup_steps=10,
                            eval_every=60, eval_windows=20)
    model = tiny_model()
    before = validation_loss(model, stream[3000:], 16, 20)
    result = pretrain(model, stream[:3000], stream[3000:], config)
    assert result.completed and result.step == 120
    assert result.history.step == [60, 120]
    assert result.history.tokens == [60 * 128, 120 * 128]
    assert result.val_loss < 0.6 * before
    assert result.tokens_per_second > 0
    assert result.history.seconds[-1] == pytest.approx(result.seconds, abs=0.05)


@pytest.mark.parametrize("k", [7, 20])
def test_resume_is_bit_identical(tmp_path, k):
    stream = pattern(3000)
    config = PretrainConfig(steps=30, batch_size=4, context=16, lr=3e-3, warmup_steps=5,
                            eval_every=10, eval_windows=5, seed=2)
    full_model = tiny_model()
    full = pretrain(full_model, stream[:2500], stream[2500:], config)
    path = tmp_path / "ckpt.pt"
    part = pretrain(tiny_model(), stream[:2500], stream[2500:], config,
                    checkpoint_path=path, stop_after=k)
    assert not part.completed and part.step == k
    torch.manual_seed(123)  # a fresh process: other global RNG state, other initial weights
    fresh = tiny_model(seed=5)
    rest = pretrain(fresh, stream[:2500], stream[2500:], config, checkpoint_path=path,
                    resume=True)
    assert rest.completed
    for (name, a), (_, b) in zip(full_model.state_dict().items(), fresh.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert rest.history.val_loss == full.history.val_loss
    assert rest.history.train_loss == full.history.train_loss


def test_resume_with_another_config_fails(tmp_path):
    stream = pattern(2000)
    config = PretrainConfig(steps=10, batch_size=2, context=8, warmup_steps=2, eval_every=5,
                            eval_windows=2)
    pretrain(tiny_model(), stream, stream, config, checkpoint_path=tmp_path / "c.pt",
             stop_after=3)
    with pytest.raises(ValueError, match="another PretrainConfig"):
        pretrain(tiny_model(), stream, stream, config.replace(lr=0.5),
                 checkpoint_path=tmp_path / "c.pt", resume=True)


def test_measure_tokens_per_second_is_positive_and_finite():
    from neuralarch.lm.pretrain import measure_tokens_per_second

    speed = measure_tokens_per_second(tiny_model(), 2, 8, 12, steps=2, repeat=1)
    assert 0 < speed < math.inf

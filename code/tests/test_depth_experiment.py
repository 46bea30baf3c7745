"""The plain-versus-residual experiment: configs, block-input gradients, short training runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from neuralarch.vision.depth_experiment import (
    block_input_gradients,
    deep_config,
    train_for_steps,
    weighted_layers,
)
from neuralarch.vision.lenet import LeNet
from neuralarch.vision.resnet import BasicBlock, ResNet


@pytest.mark.parametrize(("blocks", "layers"), [(1, 8), (3, 20), (5, 32), (18, 110)])
def test_deep_config_depth(blocks, layers):
    config = deep_config(blocks, residual=False)
    assert weighted_layers(config) == layers == 2 + 6 * blocks
    assert config.blocks == (blocks,) * 3 and config.strides == (2, 2, 2)
    assert not config.residual
    assert deep_config(blocks, True, widths=(4, 4, 4)).widths == (4, 4, 4)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_deep_config_rejects_bad_block_counts(bad):
    with pytest.raises(ValueError, match="blocks_per_stage must be an int >= 1"):
        deep_config(bad, residual=True)


def _reference_gradients(model: ResNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Run the blocks by hand, keep each input, and let backward() fill their .grad."""
    h, kept = model.stem(x), []
    for block in (m for m in model.modules() if isinstance(m, BasicBlock)):
        h.retain_grad()
        kept.append(h)
        h = block(h)
    F.cross_entropy(model.head(h.mean(dim=(2, 3))), y).backward()
    return [t.grad.pow(2).mean().sqrt().item() for t in kept]


@pytest.mark.parametrize(("residual", "zero_init"), [(False, False), (True, False), (True, True)])
def test_block_input_gradients_match_manual_backward(residual, zero_init):
    torch.manual_seed(0)
    model = ResNet(deep_config(2, residual, zero_init, widths=(4, 6, 8)))
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 10, (8,))
    ours = block_input_gradients(model, x, y)
    assert all(p.grad is None for p in model.parameters()), "no parameter gradient is written"
    assert len(ours) == 6
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(_reference_gradients(model, x, y)))


def test_zero_init_blocks_pass_the_gradient_unchanged():
    torch.manual_seed(0)
    model = ResNet(deep_config(3, residual=True, zero_init_residual=True, widths=(4, 6, 8)))
    grads = block_input_gradients(model, torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,)))
    for stage in range(3):  # blocks 2 and 3 of a stage are exact identities at init
        first, second, third = grads[3 * stage: 3 * stage + 3]
        assert second == pytest.approx(third, rel=1e-6)
        assert first != pytest.approx(second, rel=1e-3)  # the block with the projection


def test_plain_gradients_grow_towards_the_input():
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 16, 16), torch.randint(0, 10, (32,))
    plain = block_input_gradients(ResNet(deep_config(6, residual=False)), x, y)
    torch.manual_seed(0)
    resnet = block_input_gradients(ResNet(deep_config(6, residual=True)), x, y)
    assert plain[0] / plain[-1] > 10 * (resnet[0] / resnet[-1])


def test_block_input_gradients_needs_basic_blocks():
    with pytest.raises(ValueError, match="model has no BasicBlock"):
        block_input_gradients(LeNet(), torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))


def _tiny_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(80) % 2
    x = torch.randn(80, 1, 8, 8, generator=gen) + 2 * y.view(-1, 1, 1, 1).float()
    return TensorDataset(x, y)


def test_train_for_steps_is_seeded_and_learns():
    data = _tiny_data()
    config = deep_config(1, residual=True, widths=(4, 4, 4)).replace(num_classes=2)
    model, history = train_for_steps(config, data, steps=20, lr=3e-2, batch_size=16,
                                     log_every=5)
    again = train_for_steps(config, data, steps=20, lr=3e-2, batch_size=16, log_every=5)[1]
    assert history.steps == [5, 10, 15, 20]
    assert history.train_loss == again.train_loss  # same seed, same run
    assert history.train_loss[-1] < 0.25 * history.train_loss[0]
    assert isinstance(model, ResNet) and model.config == config


@pytest.mark.parametrize("bad", [0, 1.5, False])
def test_train_for_steps_rejects_bad_step_counts(bad):
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        train_for_steps(deep_config(1, True), _tiny_data(), steps=bad)

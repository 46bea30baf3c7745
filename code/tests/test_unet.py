"""Tests of the diffusion U-Net (lesson 7.1)."""

import pytest
import torch

from neuralarch.generative.unet import AttentionBlock, UNet, UNetConfig
from neuralarch.layers.attention import MultiHeadAttention


@pytest.mark.parametrize("channels, num_classes, patch, size",
                         [((16, 32), 10, 2, 28), ((8, 16, 16), None, 1, 16), ((16,), 3, 2, 12)])
def test_output_has_the_input_shape(channels, num_classes, patch, size):
    cfg = UNetConfig(channels=channels, num_classes=num_classes, patch=patch, time_steps=20,
                     embed_dim=32, heads=2)
    model = UNet(cfg)
    x, t = torch.randn(3, 1, size, size), torch.tensor([0, 5, 19])
    y = None if num_classes is None else torch.tensor([0, 1, 2])
    assert model(x, t, y).shape == x.shape


def test_uses_the_books_attention_and_depends_on_step_and_class():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(16, 32), time_steps=20, embed_dim=32, heads=2)).eval()
    assert isinstance(model.mid_attn, AttentionBlock)
    assert isinstance(model.mid_attn.attn, MultiHeadAttention)
    x = torch.randn(2, 1, 28, 28)
    base = model(x, torch.tensor([3, 3]), torch.tensor([1, 1]))
    assert not torch.allclose(base, model(x, torch.tensor([9, 9]), torch.tensor([1, 1])))
    assert not torch.allclose(base, model(x, torch.tensor([3, 3]), torch.tensor([2, 2])))
    null = model(x, torch.tensor([3, 3]), None)
    torch.testing.assert_close(null, model(x, torch.tensor([3, 3]), torch.tensor([10, 10])))


def test_residuals_enter_the_decoder():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(16, 32), time_steps=20, embed_dim=32, heads=2)).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    skips, h = model.encode(x, model.embed(t))
    zeros = [torch.zeros_like(s) for s in [*skips, h]]
    assert torch.equal(model(x, t, residuals=zeros), model(x, t))
    ones = [torch.ones_like(s) for s in [*skips, h]]
    assert not torch.allclose(model(x, t, residuals=ones), model(x, t))
    with pytest.raises(ValueError, match="residuals"):
        model(x, t, residuals=zeros[:1])


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="channels"):
        UNetConfig(channels=(12, 32))
    with pytest.raises(ValueError, match="heads"):
        UNetConfig(channels=(16, 24), heads=5)

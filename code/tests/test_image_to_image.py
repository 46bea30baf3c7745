"""Tests of SDEdit, inpainting and the ControlNet-style adapter (lesson 7.5)."""

import pytest
import torch

from neuralarch.generative.ddpm import Diffusion
from neuralarch.generative.image_to_image import (
    ControlAdapter,
    Controlled,
    coarse_control,
    inpaint,
    sdedit,
)
from neuralarch.generative.noise_schedules import cosine_schedule
from neuralarch.generative.unet import UNet, UNetConfig


def small_unet(num_classes=10):
    torch.manual_seed(0)
    return UNet(UNetConfig(channels=(16, 32), time_steps=50, embed_dim=32, heads=2,
                           num_classes=num_classes)).eval()


@pytest.mark.parametrize("num_classes", [10, None])
def test_adapter_equals_the_base_model_exactly_at_initialisation(num_classes):
    base = small_unet(num_classes)
    adapter = ControlAdapter(base).eval()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 20, 49])
    y = None if num_classes is None else torch.tensor([1, 2, 3])
    control = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(adapter(x, t, y, control=control), base(x, t, y))
        for conv in adapter.zero_convs:  # once the zero convs move, the control matters
            torch.nn.init.normal_(conv.weight, std=0.1)
        torch.nn.init.normal_(adapter.hint[-1].weight, std=0.1)
        assert not torch.allclose(adapter(x, t, y, control=control), base(x, t, y))


def test_adapter_trains_only_the_copy():
    base = small_unet()
    adapter = ControlAdapter(base).train()
    assert not any(p.requires_grad for p in adapter.base.parameters())
    assert not adapter.base.training
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 4]), torch.tensor([1, 2])
    adapter(x, t, y, control=torch.rand(2, 1, 28, 28)).square().mean().backward()
    assert all(p.grad is None for p in adapter.base.parameters())
    assert all(conv.weight.grad is not None for conv in adapter.zero_convs)
    assert not hasattr(adapter.copy, "up"), "only the encoder is copied"


def test_controlled_repeats_the_control_for_guidance():
    adapter = ControlAdapter(small_unet()).eval()
    bound = Controlled(adapter, torch.rand(2, 1, 28, 28))
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([1, 1, 1, 1])
    assert bound(x, t, torch.tensor([1, 2, 10, 10])).shape == x.shape


def test_coarse_control_is_blockwise_mean():
    img = torch.rand(2, 1, 28, 28)
    ctrl = coarse_control(img)
    assert ctrl.shape == img.shape
    torch.testing.assert_close(ctrl[:, :, :4, :4].mean((2, 3)), img[:, :, :4, :4].mean((2, 3)))
    assert torch.equal(ctrl[:, :, 0, 0], ctrl[:, :, 3, 3])


def test_inpaint_keeps_the_known_pixels_and_sdedit_keeps_the_guide_at_low_strength():
    d = Diffusion(cosine_schedule(50))
    model = small_unet()
    known = torch.rand(2, 1, 28, 28) * 2 - 1
    mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    mask[..., :14, :] = True
    out = inpaint(model, d, known, mask, steps=5, y=torch.tensor([1, 2]))
    assert torch.equal(out[..., :14, :], known[..., :14, :])
    assert not torch.allclose(out[..., 14:, :], known[..., 14:, :])
    with torch.no_grad():
        gentle = sdedit(model, d, known, strength=0.02, steps=2, y=torch.tensor([1, 2]))
        strong = sdedit(model, d, known, strength=1.0, steps=2, y=torch.tensor([1, 2]))
    assert (gentle - known).abs().mean() < (strong - known).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        sdedit(model, d, known, strength=0.0)

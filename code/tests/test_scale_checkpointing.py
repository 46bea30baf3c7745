"""Tests of neuralarch.scale.activation_checkpointing: same gradients, less saved memory."""

from __future__ import annotations

import pytest
import torch

from neuralarch.scale.activation_checkpointing import DeepMLP, saved_tensor_bytes


@pytest.mark.parametrize("width, depth, batch", [(16, 3, 5), (32, 6, 8)])
def test_checkpointing_keeps_gradients_and_saves_memory(width, depth, batch):
    torch.manual_seed(0)
    plain = DeepMLP(width, depth)
    ckpt = DeepMLP(width, depth, checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(batch, width)
    full = saved_tensor_bytes(lambda: plain(x), plain.parameters())
    kept = saved_tensor_bytes(lambda: ckpt(x), ckpt.parameters())
    for p, q in zip(plain.parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    assert kept == depth * batch * width * 4  # only each block's fp32 input
    # per block without checkpointing: LN input + LN output (W), up out + GELU out (4W), stats
    assert full == depth * (batch * width * 4 * (2 + 2 * 4) + 2 * batch * 4)


def test_bad_sizes():
    with pytest.raises(ValueError, match="width"):
        DeepMLP(0, 2)

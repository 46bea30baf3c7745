"""Project 3: the hybrid network's layers against torch references, its shapes, and causality."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from neuralarch.config import ConfigError
from neuralarch.projects.market.hybrid import (
    AttentionMixer,
    CausalConv1d,
    HybridConfig,
    HybridSignalNet,
    LinearWindowModel,
)

# --------------------------------------------------------------------------- the config


def test_config_defaults_and_rules():
    config = HybridConfig()
    assert (config.in_channels, config.mixer, config.out_features) == (10, "gru", 1)
    assert HybridConfig(mixer="gru", hidden=7, n_heads=2).hidden == 7  # heads unused by a GRU
    with pytest.raises(ConfigError, match=r"hidden \(7\) must be divisible by n_heads \(2\)"):
        HybridConfig(mixer="attention", hidden=7, n_heads=2)
    with pytest.raises(ConfigError, match="mixer"):
        HybridConfig(mixer="lstm")
    with pytest.raises(ConfigError, match="kernel_size"):
        HybridConfig(kernel_size=0)
    with pytest.raises(ValueError, match="dropout"):  # ConfigError is a ValueError
        HybridConfig(dropout=1.0)
    with pytest.raises(ValueError, match="config must be a HybridConfig"):
        HybridSignalNet({"in_channels": 3})


# --------------------------------------------------------------------------- causal conv


@pytest.mark.parametrize("c_in,c_out,kernel,dilation,length", [
    (3, 5, 5, 1, 17), (1, 2, 1, 1, 4), (4, 3, 3, 2, 12), (2, 6, 4, 3, 30),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_causal_conv_equals_padded_conv1d_truncated(c_in, c_out, kernel, dilation, length, dtype):
    torch.manual_seed(0)
    conv = CausalConv1d(c_in, c_out, kernel, dilation=dilation).to(dtype)
    x = torch.randn(2, c_in, length, dtype=dtype)
    pad = (kernel - 1) * dilation
    # torch pads both sides; the first `length` outputs are exactly the left-padded ones
    reference = F.conv1d(x, conv.weight, conv.bias, padding=pad, dilation=dilation)[..., :length]
    out = conv(x)
    assert out.shape == (2, c_out, length)
    assert_close(out, reference)


@pytest.mark.parametrize("kernel,dilation", [(5, 1), (3, 2)])
def test_causal_conv_never_sees_the_future(kernel, dilation):
    torch.manual_seed(1)
    conv = CausalConv1d(2, 3, kernel, dilation=dilation, bias=False)
    x = torch.randn(1, 2, 20)
    changed = x.clone()
    changed[..., 11:] += 5.0  # change steps 11 and later
    a, b = conv(x), conv(changed)
    assert torch.equal(a[..., :11], b[..., :11])
    assert not torch.allclose(a[..., 11], b[..., 11])  # step 11 itself does see the change


# --------------------------------------------------------------------------- causal attention


def test_attention_mixer_is_causal_and_checks_the_window_length():
    torch.manual_seed(2)
    mixer = AttentionMixer(4, 8, 2, max_len=12)
    x = torch.randn(2, 10, 4)
    y = x.clone()
    y[:, 6:] = torch.randn(2, 4, 4)  # change the future
    assert_close(mixer(x)[:, :6], mixer(y)[:, :6])
    assert mixer.block.self_attn.causal  # the shared attention, run causally
    with pytest.raises(ValueError, match="window length 13 exceeds max_len=12"):
        mixer(torch.randn(1, 13, 4))


# --------------------------------------------------------------------------- the GRU equations


def gru_by_hand(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """The page's GRU equations (Cho et al. 2014, in PyTorch's gate order r, z, n), one step at a
    time: (B, L, C) -> (B, L, H)."""
    W_r, W_z, W_n = gru.weight_ih_l0.chunk(3)
    U_r, U_z, U_n = gru.weight_hh_l0.chunk(3)
    b_r, b_z, b_n = gru.bias_ih_l0.chunk(3)
    c_r, c_z, c_n = gru.bias_hh_l0.chunk(3)
    h = x.new_zeros(x.shape[0], gru.hidden_size)
    states = []
    for u in x.unbind(1):
        r = torch.sigmoid(u @ W_r.T + b_r + h @ U_r.T + c_r)  # reset gate
        z = torch.sigmoid(u @ W_z.T + b_z + h @ U_z.T + c_z)  # update gate
        n = torch.tanh(u @ W_n.T + b_n + r * (h @ U_n.T + c_n))  # candidate state
        h = (1 - z) * n + z * h
        states.append(h)
    return torch.stack(states, dim=1)


@pytest.mark.parametrize("c_in,hidden,length", [(3, 4, 6), (8, 8, 20), (1, 5, 2)])
def test_gru_equations_equal_nn_gru(c_in, hidden, length):
    torch.manual_seed(4)
    gru = nn.GRU(c_in, hidden, batch_first=True).double()
    x = torch.randn(2, length, c_in, dtype=torch.float64)
    assert_close(gru_by_hand(gru, x), gru(x)[0])


# --------------------------------------------------------------------------- the whole network


@pytest.mark.parametrize("mixer", ["gru", "attention"])
@pytest.mark.parametrize("channels,length,out", [(10, 20, 1), (3, 7, 4), (5, 1, 2)])
def test_shapes_and_last_step_agree(mixer, channels, length, out):
    torch.manual_seed(5)
    config = HybridConfig(in_channels=channels, mixer=mixer, hidden=8, n_heads=2,
                          out_features=out, max_len=32)
    model = HybridSignalNet(config).eval()
    x = torch.randn(4, length, channels)
    assert model.encode(x).shape == (4, length, 8)
    assert model(x).shape == (4, out)
    sequence = model.forward_sequence(x)
    assert sequence.shape == (4, length, out)
    assert_close(model(x), sequence[:, -1])


@pytest.mark.parametrize("mixer", ["gru", "attention"])
def test_every_prediction_uses_the_past_only(mixer):
    torch.manual_seed(6)
    model = HybridSignalNet(HybridConfig(in_channels=4, mixer=mixer, dropout=0.2)).eval()
    x = torch.randn(3, 24, 4)
    changed = x.clone()
    changed[:, 15:] = torch.randn(3, 9, 4)  # a different future from step 15 on
    with torch.no_grad():
        a, b = model.forward_sequence(x), model.forward_sequence(changed)
    assert_close(a[:, :15], b[:, :15], rtol=0, atol=1e-6)  # the past is untouched ...
    assert (a[:, 15:] - b[:, 15:]).abs().amax() > 1e-3  # ... the future is not
    # a window that ends before the change gives the same prediction
    assert_close(model(x[:, :15]), model(changed[:, :15]), rtol=0, atol=0)


def test_gradients_reach_every_parameter_and_training_fits_a_toy_signal():
    torch.manual_seed(7)
    model = HybridSignalNet(HybridConfig(in_channels=2, conv_channels=4, hidden=8))
    x = torch.randn(256, 12, 2)
    y = (x[:, -3:, 0].abs().mean(1) > 0.8).float()  # a short-window volatility rule
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_network_rejects_bad_inputs():
    model = HybridSignalNet(HybridConfig(in_channels=3))
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 3\), got \(2, 5, 4\)"):
        model(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 3\), got \(5, 3\)"):
        model(torch.randn(5, 3))


# --------------------------------------------------------------------------- the linear baseline


@pytest.mark.parametrize("lookback,channels,out", [(20, 10, 1), (3, 2, 4), (1, 1, 1)])
def test_linear_window_model_is_one_affine_map_of_the_window(lookback, channels, out):
    torch.manual_seed(8)
    model = LinearWindowModel(lookback, channels, out)
    x = torch.randn(5, lookback, channels)
    weight = model.linear.weight.view(out, lookback, channels)  # one weight per (day, channel)
    reference = torch.einsum("blc,olc->bo", x, weight) + model.linear.bias
    assert_close(model(x), reference)


def test_linear_window_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lookback must be an int >= 1, got 0"):
        LinearWindowModel(0, 3)
    with pytest.raises(ValueError, match="out_features must be an int >= 1"):
        LinearWindowModel(2, 3, out_features=True)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4, 3\), got \(2, 5, 3\)"):
        LinearWindowModel(4, 3)(torch.randn(2, 5, 3))

"""Tests of neuralarch.scale.precision: formats, underflow, loss scaling, autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuralarch.scale.precision import (
    autocast_dtypes,
    format_info,
    mlp,
    scaled_training_step,
    survival,
    time_training_step,
)


@pytest.mark.parametrize("dtype, maximum, subnormal", [(torch.float16, 65504.0, 2.0**-24),
                                                       (torch.bfloat16, 3.3895e38, 2.0**-133),
                                                       (torch.float32, 3.4028e38, 2.0**-149)])
def test_format_ranges(dtype, maximum, subnormal):
    info = format_info(dtype)
    assert info.max == pytest.approx(maximum, rel=1e-4)
    assert info.smallest_subnormal == subnormal
    assert torch.tensor(subnormal, dtype=torch.float64).to(dtype).item() == subnormal
    assert torch.tensor(subnormal / 2.5, dtype=torch.float64).to(dtype).item() == 0.0


def test_survival_counts_underflow_and_overflow():
    values = torch.tensor([1e-9, 1e-6, 1e-3, 1.0, 0.0, 1e5])
    fp16 = survival(values, torch.float16)
    assert fp16 == {"underflow": 0.2, "subnormal": 0.2, "overflow": 0.2, "kept": 0.6}
    assert survival(values, torch.bfloat16)["kept"] == 1.0
    assert survival(values, torch.float16, scale=1024.0)["underflow"] == 0.0


def test_grad_scaler_skips_overflow_and_grows():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=2)
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    bad = scaled_training_step(model, optimizer, scaler, x * 1e36, y)  # overflows when scaled
    assert bad["skipped"] == 1.0 and scaler.get_scale() == 2.0**15
    steps = [scaled_training_step(model, optimizer, scaler, x, y) for _ in range(2)]
    assert [s["skipped"] for s in steps] == [0.0, 0.0]
    assert scaler.get_scale() == 2.0**16  # doubled after growth_interval good steps


def test_scaled_step_equals_plain_step():
    torch.manual_seed(0)
    a, b = nn.Linear(5, 2), nn.Linear(5, 2)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(8, 5), torch.randn(8, 2)
    scaled_training_step(a, torch.optim.SGD(a.parameters(), lr=0.1),
                         torch.amp.GradScaler("cpu", init_scale=1024.0), x, y)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    nn.functional.mse_loss(b(x), y).backward()
    opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_autocast_runs_linear_in_bf16_and_keeps_close():
    torch.manual_seed(0)
    model, x = mlp(16, depth=2), torch.randn(4, 16)
    assert autocast_dtypes(model, x, torch.bfloat16)[0] == "Linear: bfloat16"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x).float()
    torch.testing.assert_close(low, model(x), atol=0.05, rtol=0.05)
    assert time_training_step(model, x, torch.bfloat16, repeat=1) > 0

"""Tests of neuralarch.scale.memory against the numbers of the ZeRO paper."""

from __future__ import annotations

import pytest
from torch import nn

from neuralarch.scale.memory import communication_per_step, count_parameters, memory_per_gpu


@pytest.mark.parametrize("strategy, gigabytes", [("ddp", 120.0), ("zero1", 31.4),
                                                 ("zero2", 16.6), ("zero3", 1.88)])
def test_zero_paper_figure_1(strategy, gigabytes):
    # Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 GPUs, K = 12
    account = memory_per_gpu(7.5e9, 64, strategy)
    assert account.total / 1e9 == pytest.approx(gigabytes, rel=0.01)


def test_parts_add_up_and_one_gpu_shards_nothing():
    for strategy in ("ddp", "zero1", "zero2", "zero3"):
        account = memory_per_gpu(1000, 1, strategy)
        assert account.total == account.params + account.grads + account.optimizer == 16_000
    zero2 = memory_per_gpu(1000, 8, "zero2")
    assert (zero2.params, zero2.grads, zero2.optimizer) == (2000, 250, 1500)


def test_fp32_adam_is_16_bytes_per_parameter():
    account = memory_per_gpu(10, 4, "ddp", param_bytes=4, grad_bytes=4, optimizer_bytes=8)
    assert account.total == 160


def test_bad_inputs():
    with pytest.raises(ValueError, match="strategy"):
        memory_per_gpu(10, 2, "zero4")
    with pytest.raises(ValueError, match="n_gpus"):
        memory_per_gpu(10, 0, "ddp")


def test_communication_and_parameter_count():
    assert communication_per_step(100, "zero3") == 1.5 * communication_per_step(100, "zero1")
    assert count_parameters(nn.Linear(3, 5)) == 20


def test_fsdp_on_gloo_shards_what_the_account_says(tmp_path):
    import json

    from neuralarch.scale.launch import run_torchrun

    run_torchrun("neuralarch.scale.fsdp_memory", ["--out", str(tmp_path / "m.json")],
                 timeout=120)
    result = json.loads((tmp_path / "m.json").read_text())
    n, world = result["n_params"], result["world_size"]
    ddp = memory_per_gpu(n, world, "ddp", param_bytes=4, grad_bytes=4, optimizer_bytes=8)
    fsdp = memory_per_gpu(n, world, "zero3", param_bytes=4, grad_bytes=4, optimizer_bytes=8)
    for rank in result["ranks"]:
        assert rank["ddp"] == {"params": ddp.params, "grads": ddp.grads,
                               "optimizer": ddp.optimizer}
        assert sum(rank["fsdp"].values()) == pytest.approx(fsdp.total, rel=0.01)
    assert result["max_param_gap"] < 1e-6  # FSDP took the same Adam step as DDP

"""Tests of neuralarch.scale.launch and neuralarch.scale.ddp_train: DDP equals one big batch."""

from __future__ import annotations

import json

import pytest
import torch

from neuralarch.scale.ddp_train import (
    DDPRunConfig,
    build_model,
    train_loop,
    train_single_process,
)
from neuralarch.scale.launch import TorchrunSpec, run_nodes, run_torchrun, torchrun_command

MODULE = "neuralarch.scale.ddp_train"


def test_torchrun_command_has_the_cluster_flags():
    spec = TorchrunSpec(nproc_per_node=4, nnodes=2, node_rank=1, rdzv_endpoint="n0:29500",
                        rdzv_id="job7", max_restarts=2)
    command = torchrun_command(MODULE, ["--steps", "3"], spec)
    assert command[0].endswith("torchrun")
    assert command[1:] == ["--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
                           "--rdzv-endpoint=n0:29500", "--rdzv-id=job7", "--max-restarts=2",
                           "--node-rank=1", "-m", MODULE, "--steps", "3"]
    assert torchrun_command("train.py")[-1] == "train.py"  # a file path runs without -m


@pytest.mark.parametrize("kwargs, field", [({"nproc_per_node": 0}, "nproc_per_node"),
                                           ({"nnodes": 2, "node_rank": 2}, "node_rank"),
                                           ({"rdzv_endpoint": "localhost"}, "rdzv_endpoint"),
                                           ({"max_restarts": -1}, "max_restarts")])
def test_spec_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TorchrunSpec(**kwargs)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="lr"):
        DDPRunConfig(lr=0.0)
    with pytest.raises(ValueError, match="divisible"):
        train_loop(build_model(DDPRunConfig(batch=5)), DDPRunConfig(batch=5), rank=0, world=2)


def _assert_same_as_single_process(path, config):
    reference, losses = train_single_process(config)
    trained = torch.load(path, weights_only=True)
    assert set(trained) == set(reference.state_dict())
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6)
    result = json.loads(path.with_suffix(".json").read_text())
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(losses))
    start = build_model(config).state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # training moved weights
    return result


def test_two_processes_equal_single_process_full_batch(tmp_path):
    config = DDPRunConfig(steps=5, batch=12)
    run_torchrun(MODULE, ["--out", str(tmp_path / "ddp.pt"), "--steps", "5", "--batch", "12"],
                 timeout=120)
    result = _assert_same_as_single_process(tmp_path / "ddp.pt", config)
    assert result["world_size"] == 2 and result["nodes"] == 1


def test_two_nodes_with_c10d_rendezvous(tmp_path):
    out = str(tmp_path / "nodes.pt")
    run_nodes(MODULE, [["--out", out, "--steps", "4"]] * 2, nproc_per_node=1, timeout=120)
    result = _assert_same_as_single_process(tmp_path / "nodes.pt", DDPRunConfig(steps=4))
    assert result["world_size"] == 2 and result["nodes"] == 2

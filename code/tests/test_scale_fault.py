"""Fault tolerance: a worker dies, torchrun restarts the group, training resumes exactly."""

from __future__ import annotations

import json

import torch

from neuralarch.scale.launch import TorchrunSpec, free_port, run_torchrun

MODULE = "neuralarch.scale.ddp_train"


def test_killed_worker_resumes_to_the_same_weights(tmp_path):
    common = ["--steps", "7", "--ckpt-every", "2"]
    run_torchrun(MODULE, [*common, "--out", str(tmp_path / "clean.pt"),
                                 "--ckpt-dir", str(tmp_path / "clean")], timeout=120)
    spec = TorchrunSpec(rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=1)
    run_torchrun(MODULE, [*common, "--out", str(tmp_path / "crash.pt"), "--crash-at", "5",
                                 "--ckpt-dir", str(tmp_path / "crash")], spec=spec,
                 timeout=120)
    crashed = json.loads((tmp_path / "crash.json").read_text())
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert crashed["restarts"] == 1 and clean["restarts"] == 0  # it really died and restarted
    assert crashed["losses"] == clean["losses"]
    a = torch.load(tmp_path / "clean.pt", weights_only=True)
    b = torch.load(tmp_path / "crash.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name  # exact, not just close


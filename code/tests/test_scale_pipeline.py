"""Tests of neuralarch.scale.pipeline: GPipe gradients and the bubble fraction."""

from __future__ import annotations

import json

import pytest
import torch

from neuralarch.scale.launch import TorchrunSpec, free_port, run_torchrun
from neuralarch.scale.pipeline import bubble_fraction, measured_bubble, reference_gradients


@pytest.mark.parametrize("p, m, expected", [(1, 4, 0.0), (2, 1, 0.5), (4, 4, 3 / 7),
                                            (4, 12, 0.2)])
def test_bubble_formula(p, m, expected):
    assert bubble_fraction(p, m) == pytest.approx(expected)


def test_bubble_formula_rejects_zero():
    with pytest.raises(ValueError, match="micro_batches"):
        bubble_fraction(2, 0)


def test_measured_bubble_of_an_ideal_timeline():
    # two stages, one micro-batch, forward 1 then backward 2 on each stage
    lines = [[("F", 0, 0.0, 1.0), ("B", 0, 4.0, 6.0)], [("F", 0, 1.0, 2.0), ("B", 0, 2.0, 4.0)]]
    result = measured_bubble(lines)
    assert result["total"] == 6.0 and result["bubble"] == pytest.approx(0.5)


def test_gpipe_over_processes_matches_one_process(tmp_path):
    spec = TorchrunSpec(nproc_per_node=3, rdzv_endpoint=f"127.0.0.1:{free_port()}")
    run_torchrun("neuralarch.scale.pipeline",
                 ["--out", str(tmp_path / "pipe.pt"), "--micro-batches", "1", "4",
                  "--stage-seconds", "0.03"], spec=spec, timeout=120)
    grads = torch.load(tmp_path / "pipe.pt", weights_only=True)
    reference = reference_gradients(stages=3)
    for m in (1, 4):
        for got, want in zip(grads[m], reference, strict=True):
            for name in want:
                torch.testing.assert_close(got[name], want[name])
    results = json.loads((tmp_path / "pipe.json").read_text())
    for row in results:
        assert row["bubble"] == pytest.approx(row["formula"], abs=0.12)
    assert results[1]["bubble"] < results[0]["bubble"]  # more micro-batches, smaller bubble


def test_torch_pipelining_schedule_gives_the_same_gradients(tmp_path):
    spec = TorchrunSpec(nproc_per_node=2, rdzv_endpoint=f"127.0.0.1:{free_port()}")
    run_torchrun("neuralarch.scale.pipeline",
                 ["--out", str(tmp_path / "lib.pt"), "--micro-batches", "4", "--library"],
                 spec=spec, timeout=120)
    grads = torch.load(tmp_path / "lib.pt", weights_only=True)
    for got, want in zip(grads[4], reference_gradients(stages=2), strict=True):
        for name in want:
            torch.testing.assert_close(got[name], want[name])

"""Tests of neuralarch.scale.profiling: the slow and fast data paths, timers, profiler."""

from __future__ import annotations

import json

import torch
from torch.utils.data import DataLoader

from neuralarch.scale.profiling import (
    MNIST_MEAN,
    MNIST_STD,
    PerSampleAugmented,
    batched_batches,
    profile_training,
    random_affine,
    small_classifier,
    time_training,
)


def _digits(n=24):
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=gen).mul(255).round() / 255,
            torch.randint(0, 10, (n,), generator=gen))


def test_zero_affine_is_the_identity():
    images, _ = _digits(3)
    same = random_affine(images, max_degrees=0.0, max_shift=0.0)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)


def test_per_sample_and_batched_paths_agree_without_augmentation(monkeypatch):
    import neuralarch.scale.profiling as profiling
    monkeypatch.setattr(profiling, "random_affine", lambda x, **kwargs: x)
    images, labels = _digits()
    dataset = PerSampleAugmented(images, labels)
    x0, y0 = dataset[5]
    torch.testing.assert_close(x0, (images[5] - MNIST_MEAN) / MNIST_STD)
    batches = list(batched_batches(images, labels, 10, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [10, 10, 4]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(labels.tolist())
    assert y0 == labels[5].item()


def test_timer_and_profiler(tmp_path):
    images, labels = _digits()
    model = small_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(PerSampleAugmented(images, labels), batch_size=8)
    times = time_training(loader, model, optimizer)
    assert times["steps"] == 3 and times["data"] > 0 and times["compute"] > 0
    prof = profile_training(loader, model, optimizer, steps=2, trace=tmp_path / "t.json")
    names = {row.key for row in prof.key_averages()}
    assert {"data", "compute", "aten::grid_sampler_2d"} <= names
    trace = json.loads((tmp_path / "t.json").read_text())
    assert any(event.get("name") == "data" for event in trace["traceEvents"])

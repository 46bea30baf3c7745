"""Tests for neuralarch.repro: seeding, private generators, worker seeding, determinism, hashes."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from neuralarch import repro
from neuralarch.data.noisy_dataset import NoisyDataset
from neuralarch.repro import (
    derive_seed,
    deterministic,
    make_generator,
    make_loader,
    run_fingerprint,
    seed_everything,
    seed_worker,
    set_deterministic,
    state_fingerprint,
)

BAD_SEEDS = [-1, 2**32, 1.5, True, "0", None]


@pytest.fixture(autouse=True)
def restore_determinism():
    """Every test leaves torch's determinism flags as it found them."""
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]


# ---------------------------------------------------------------- seeding
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1])
def test_seed_everything_makes_all_three_generators_repeat(seed):
    assert seed_everything(seed) == seed
    first = (random.random(), np.random.rand(3), torch.rand(3))
    seed_everything(seed)
    second = (random.random(), np.random.rand(3), torch.rand(3))
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert_close(first[2], second[2], rtol=0, atol=0)
    assert torch.initial_seed() == seed


@pytest.mark.parametrize("bad", BAD_SEEDS)
def test_bad_seeds_are_rejected_everywhere(bad):
    for call in (seed_everything, make_generator, lambda s: derive_seed(s, "data"),
                 lambda s: run_fingerprint({}, s), lambda s: NoisyDataset([], 0.1, seed=s)):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\)"):
            call(bad)


def test_derive_seed_is_a_stable_hash_of_seed_and_stream():
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"7/data").digest()[:4], "little")
    assert derive_seed(7, "data") == expected
    children = {derive_seed(seed, stream) for seed in range(20) for stream in ("model", "data")}
    assert len(children) == 40  # no collisions between seeds or streams
    assert all(0 <= child < 2**32 for child in children)


@pytest.mark.parametrize("seed", [0, 3, 2**31 + 5])
@pytest.mark.parametrize("shape", [(5,), (2, 3)])
def test_make_generator_replays_the_manual_seed_stream(seed, shape):
    torch.manual_seed(seed)
    reference = torch.randn(shape)
    assert_close(torch.randn(shape, generator=make_generator(seed)), reference, rtol=0, atol=0)


def test_make_generator_is_independent_of_the_global_stream():
    g = make_generator(5)
    torch.manual_seed(0)
    torch.rand(100)  # global draws in between must not affect the private stream
    assert_close(torch.rand(4, generator=g), torch.rand(4, generator=make_generator(5)))


# ---------------------------------------------------------------- workers
def _fake_worker(monkeypatch, dataset, torch_seed: int) -> None:
    torch.manual_seed(torch_seed)  # what the DataLoader does in worker i: base_seed + i
    info = SimpleNamespace(dataset=dataset, id=0, seed=torch_seed)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)


@pytest.mark.parametrize("torch_seed", [11, 2**32 + 7])
def test_seed_worker_reseeds_numpy_random_and_the_dataset(monkeypatch, torch_seed):
    dataset = NoisyDataset(TensorDataset(torch.zeros(4, 3), torch.zeros(4)), std=1.0, seed=0)
    _fake_worker(monkeypatch, dataset, torch_seed)
    seed_worker(0)
    expected_seed = torch_seed % 2**32
    assert np.random.rand() == np.random.RandomState(expected_seed).rand()
    assert random.random() == random.Random(expected_seed).random()
    reference = np.random.default_rng(expected_seed).standard_normal(3, dtype=np.float32)
    assert_close(dataset[0][0], torch.from_numpy(reference))


def test_seed_worker_without_reseed_or_outside_workers(monkeypatch):
    plain = TensorDataset(torch.zeros(2))
    _fake_worker(monkeypatch, plain, 3)
    seed_worker(0)  # a dataset without reseed is fine
    assert np.random.rand() == np.random.RandomState(3).rand()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: None)
    torch.manual_seed(4)
    seed_worker(0)  # main process (num_workers=0)
    assert random.random() == random.Random(4).random()


def test_noisy_dataset_matches_numpy_reference_and_reseeds():
    base = TensorDataset(torch.arange(12.0).reshape(2, 2, 3), torch.tensor([0, 1]))
    data = NoisyDataset(base, std=0.5, seed=9)
    assert len(data) == 2
    rng = np.random.default_rng(9)
    for index in range(2):
        x, y = data[index]
        noise = torch.from_numpy(rng.standard_normal((2, 3), dtype=np.float32))
        assert_close(x, base[index][0] + 0.5 * noise)
        assert y == base[index][1]
    data.reseed(9)
    assert_close(data[0][0], base[0][0] + 0.5 * torch.from_numpy(
        np.random.default_rng(9).standard_normal((2, 3), dtype=np.float32)))
    assert_close(NoisyDataset(base, std=0.0)[1][0], base[1][0], rtol=0, atol=0)


@pytest.mark.parametrize("std", [-0.1, float("nan"), "0.1", None])
def test_noisy_dataset_rejects_bad_std(std):
    with pytest.raises(ValueError, match="std must be a number >= 0"):
        NoisyDataset([], std)


def _batches(loader: DataLoader) -> list[torch.Tensor]:
    return [x for x, _ in loader]


def test_unseeded_workers_repeat_noise_and_make_loader_fixes_it():
    data = NoisyDataset(TensorDataset(torch.zeros(16, 5), torch.zeros(16)), std=1.0, seed=0)
    naive = _batches(DataLoader(data, batch_size=4, num_workers=2))
    assert torch.equal(naive[0], naive[1])  # the bug: both workers copy one generator
    fixed = _batches(make_loader(data, 4, seed=0, num_workers=2, shuffle=False))
    again = _batches(make_loader(data, 4, seed=0, num_workers=2, shuffle=False))
    other = _batches(make_loader(data, 4, seed=1, num_workers=2, shuffle=False))
    assert not torch.equal(fixed[0], fixed[1])
    for a, b in zip(fixed, again, strict=True):
        assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(fixed[0], other[0])


def test_make_loader_reseeds_a_stateful_dataset_in_the_main_process():
    data = NoisyDataset(TensorDataset(torch.zeros(8, 3), torch.zeros(8)), std=1.0, seed=0)
    first = _batches(make_loader(data, 4, seed=2))
    second = _batches(make_loader(data, 4, seed=2))  # the generator did not carry on
    for a, b in zip(first, second, strict=True):
        assert_close(a, b, rtol=0, atol=0)
    plain = _batches(DataLoader(data, batch_size=4))  # a plain loader continues the stream
    assert not torch.equal(plain[0], _batches(DataLoader(data, batch_size=4))[0])


@pytest.mark.parametrize("batch_size,drop_last", [(4, False), (5, True), (7, False)])
def test_make_loader_order_matches_a_seeded_dataloader(batch_size, drop_last):
    data = TensorDataset(torch.arange(23.0), torch.arange(23))
    ours = [y for _, y in make_loader(data, batch_size, seed=3, drop_last=drop_last)]
    reference = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                           generator=make_generator(3))
    for a, (_, b) in zip(ours, reference, strict=True):
        assert_close(a, b)
    other = torch.cat([y for _, y in make_loader(data, batch_size, seed=4, drop_last=drop_last)])
    assert not torch.equal(torch.cat(ours), other)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": 2.0}, "batch_size must be an int >= 1"),
    ({"num_workers": -1}, "num_workers must be an int >= 0"),
    ({"seed": -3}, "seed must be an int"),
])
def test_make_loader_rejects_bad_arguments(kwargs, message):
    args = {"batch_size": 2, "seed": 0, "num_workers": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_loader(TensorDataset(torch.zeros(4)), **args)


# ---------------------------------------------------------------- determinism
def test_set_deterministic_switches_all_flags_and_back(monkeypatch):
    monkeypatch.delenv(repro._CUBLAS_ENV, raising=False)
    set_deterministic(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert repro.os.environ[repro._CUBLAS_ENV] == ":4096:8"
    with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
        torch.zeros(3).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark


def test_warn_only_turns_the_error_into_a_warning():
    with deterministic(warn_only=True), pytest.warns(UserWarning, match="put_"):
        torch.zeros(3).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))


def test_deterministic_context_restores_previous_settings():
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = True
    with deterministic(False):
        assert not torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark
    with pytest.raises(KeyError), deterministic():  # restored even when the body raises
        assert torch.isnan(torch.empty(3)).all()  # uninitialised memory is NaN-filled
        raise KeyError("boom")
    assert torch.is_deterministic_algorithms_warn_only_enabled()


# ---------------------------------------------------------------- fingerprints
def test_state_fingerprint_equality_iff_tensors_equal():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # has a 0-d int64 buffer
    copy = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    copy.load_state_dict(model.state_dict())
    assert state_fingerprint(model) == state_fingerprint(copy.state_dict())
    assert len(state_fingerprint(model)) == 64
    with torch.no_grad():
        weight = copy[0].weight
        weight[1, 2] = torch.nextafter(weight[1, 2], torch.tensor(float("inf")))
    assert state_fingerprint(model) != state_fingerprint(copy)
    copy.load_state_dict(model.state_dict())
    copy[1].num_batches_tracked += 1  # the 0-d buffer counts too
    assert state_fingerprint(model) != state_fingerprint(copy)


@pytest.mark.parametrize("a,b", [
    ({"w": torch.zeros(2, 3)}, {"w": torch.zeros(3, 2)}),  # same bytes, other shape
    ({"w": torch.zeros(4)}, {"w": torch.zeros(4, dtype=torch.int32)}),  # other dtype
    ({"w": torch.zeros(4)}, {"v": torch.zeros(4)}),  # other name
    ({"w": torch.zeros(0)}, {"w": torch.zeros(0, 2)}),  # empty tensors
])
def test_state_fingerprint_sees_names_dtypes_and_shapes(a, b):
    assert state_fingerprint(a) != state_fingerprint(b)


def test_state_fingerprint_ignores_key_order_and_layout():
    t = torch.arange(6.0).reshape(2, 3)
    a = {"a": t, "b": torch.ones(2)}
    b = {"b": torch.ones(2), "a": t.t().contiguous().t()}  # non-contiguous, same values
    assert state_fingerprint(a) == state_fingerprint(b)


def test_state_fingerprint_rejects_non_tensors():
    with pytest.raises(ValueError, match=r"state\['step'\] is a int, not a tensor"):
        state_fingerprint({"step": 3})


def test_run_fingerprint_is_stable_and_sensitive():
    config = {"lr": 0.1, "layers": [64, 10]}
    fp = run_fingerprint(config, seed=0)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert run_fingerprint({"layers": [64, 10], "lr": 0.1}, seed=0) == fp  # key order
    assert run_fingerprint(config, seed=1) != fp
    assert run_fingerprint({**config, "lr": 0.2}, seed=0) != fp

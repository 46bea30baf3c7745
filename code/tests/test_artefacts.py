"""Cached shared models: trained once, deterministically, then loaded; stale files never used."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.repro import state_fingerprint
from neuralarch.train import artefacts
from neuralarch.train.artefacts import artefact_key, cache_dir, cached_model, single_thread


class LineConfig(ArchConfig):
    """Fit y = 3x - 1 with a 1-1 linear layer."""

    steps: int = Field(20, gt=0)
    lr: float = Field(0.1, gt=0)
    seed: int = Field(0, ge=0)


class NoSeedConfig(ArchConfig):
    steps: int = 1


def build(config: ArchConfig) -> nn.Module:
    return nn.Linear(1, 1)


def train(model: nn.Module, config: LineConfig) -> dict[str, float]:
    x = torch.randn(64, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = ((model(x) - (3 * x - 1)) ** 2).mean()
        loss.backward()
        optimizer.step()
    return {"loss": loss.item(), "threads": torch.get_num_threads()}


def other_train(model: nn.Module, config: LineConfig) -> dict[str, float]:
    return train(model, config)


def test_first_call_trains_and_saves_later_calls_load_the_same_weights(tmp_path):
    first = cached_model("line", LineConfig(), build, train, root=tmp_path)
    assert first.trained_now and first.path.is_file() and first.path.parent == tmp_path
    assert first.metrics["threads"] == 1  # trained on one thread
    assert first.metrics["loss"] < 1.0 and first.seconds > 0
    second = cached_model("line", LineConfig(), build, train, root=tmp_path)
    assert not second.trained_now and second.path == first.path
    assert second.metrics == first.metrics and second.seconds == first.seconds
    assert second.fingerprint == first.fingerprint == state_fingerprint(second.model)
    assert not second.model.training


def test_training_is_deterministic_and_leaves_the_callers_generators_alone(tmp_path):
    torch.manual_seed(123)
    random.seed(4)
    np.random.seed(5)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(4)
    np.random.seed(5)
    one = cached_model("line", LineConfig(), build, train, root=tmp_path / "a")
    after = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(999)  # a different caller state must not change the trained weights
    two = cached_model("line", LineConfig(), build, train, root=tmp_path / "b")
    assert one.trained_now and two.trained_now
    assert one.fingerprint == two.fingerprint
    torch.testing.assert_close(after[0], expected[0])
    assert after[1:] == expected[1:]
    torch.manual_seed(123)
    random.seed(4)
    np.random.seed(5)
    loaded = cached_model("line", LineConfig(), build, train, root=tmp_path / "a")
    assert not loaded.trained_now  # loading leaves the generators alone as well
    torch.testing.assert_close(torch.rand(3), expected[0])
    assert (random.random(), np.random.rand()) == expected[1:]


class Scaled(nn.Module):
    """A model class of the project's own: its source enters the key."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.inner(x)


class ScaledMore(Scaled):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * self.inner(x)


def test_the_key_changes_with_name_config_training_code_and_model_code(tmp_path):
    line = nn.Linear(1, 1)
    base = artefact_key("line", LineConfig(), train, line)
    assert artefact_key("line", LineConfig(), train, nn.Linear(1, 1)) == base and len(base) == 16
    assert artefact_key("line2", LineConfig(), train, line) != base
    assert artefact_key("line", LineConfig(steps=21), train, line) != base
    assert artefact_key("line", LineConfig(), other_train, line) != base
    scaled = artefact_key("line", LineConfig(), train, Scaled())
    assert scaled != base  # torch's own classes add nothing; Scaled's source does
    assert artefact_key("line", LineConfig(), train, nn.Sequential(Scaled())) == scaled
    assert artefact_key("line", LineConfig(), train, ScaledMore()) not in (base, scaled)
    a = cached_model("line", LineConfig(), build, train, root=tmp_path)
    b = cached_model("line", LineConfig(seed=1), build, train, root=tmp_path)
    assert b.trained_now and a.path != b.path and a.fingerprint != b.fingerprint


def test_a_foreign_file_under_the_cache_name_is_refused(tmp_path):
    path = tmp_path / f"line-{artefact_key('line', LineConfig(), train, nn.Linear(1, 1))}.pt"
    torch.save({"format": "something-else"}, path)
    with pytest.raises(ValueError, match="delete the file and it will be retrained"):
        cached_model("line", LineConfig(), build, train, root=tmp_path)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="names a file"):
        cached_model("a/b", LineConfig(), build, train, root=tmp_path)
    with pytest.raises(ValueError, match="integer `seed` field"):
        cached_model("line", NoSeedConfig(), build, train, root=tmp_path)
    with pytest.raises(ValueError, match="cannot read the source of the training function"):
        artefact_key("line", LineConfig(), print, nn.Linear(1, 1))


def test_cache_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv(artefacts.CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv(artefacts.CACHE_ENV)
    checkout = cache_dir()
    assert checkout.parts[-2:] == ("_build", "models")  # the tests run from a checkout
    monkeypatch.setattr(artefacts, "__file__", str(tmp_path / "a" / "b" / "c" / "artefacts.py"))
    assert cache_dir() == artefacts.Path.home() / ".cache" / "neuralarch" / "models"


def test_single_thread_restores_the_thread_count():
    torch.set_num_threads(2)
    try:
        with single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


CONCURRENT_SCRIPT = '''
import sys, time
from pathlib import Path
import torch
from torch import nn
from neuralarch.config import ArchConfig
from neuralarch.train.artefacts import cached_model


class SlowConfig(ArchConfig):
    seed: int = 0


def build(config):
    return nn.Linear(4, 2)


def train(model, config):
    with open(Path(sys.argv[1]) / "calls.txt", "a") as calls:  # one line per training run
        calls.write("trained\\n")
    time.sleep(1.0)  # long enough that the second process arrives while the first trains
    with torch.no_grad():
        model.weight.add_(torch.randn_like(model.weight))
    return {"loss": 0.0}


Path(sys.argv[1], f"ready-{sys.argv[2]}").touch()
while not all(Path(sys.argv[1], f"ready-{i}").exists() for i in "ab"):
    time.sleep(0.01)  # start both requests at the same moment
trained = cached_model("slow", SlowConfig(), build, train, root=Path(sys.argv[1]) / "cache")
print(trained.trained_now, trained.fingerprint)
'''


def test_two_processes_asking_at_once_train_the_model_once(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "request_model.py"
    script.write_text(CONCURRENT_SCRIPT)
    runs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), tag],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for tag in "ab"]
    results = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in results]
    answers = [out.split() for out, _ in results]
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["trained"]  # trained once
    assert sorted(trained for trained, _ in answers) == ["False", "True"]  # one trained, one loaded
    assert answers[0][1] == answers[1][1]  # identical weights
    assert [r["name"] for r in artefacts.training_log(tmp_path / "cache")] == ["slow"]


class WideLineConfig(LineConfig):
    """A recipe that asks for two training threads."""

    threads: int = Field(2, ge=1)


def test_a_recipe_may_ask_for_more_threads_and_they_enter_the_key(tmp_path):
    torch.set_num_threads(1)
    wide = cached_model("line", WideLineConfig(), build, train, root=tmp_path)
    assert wide.metrics["threads"] == 2 and torch.get_num_threads() == 1  # restored after
    narrow = cached_model("line", WideLineConfig(threads=1), build, train, root=tmp_path)
    assert narrow.trained_now and narrow.path != wide.path and narrow.metrics["threads"] == 1


def test_training_threads_rejects_a_bad_count():
    assert artefacts.training_threads(LineConfig()) == 1
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        artefacts.training_threads(WideLineConfig.model_construct(threads=0))
    with pytest.raises(ValueError, match="threads must be >= 1"), artefacts.cpu_threads(0):
        pass

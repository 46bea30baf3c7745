"""The training loop: equals a hand-written loop, logs what it claims, and resumes bit-exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torch.utils.data import TensorDataset

from neuralarch.optim.project_optimizer import AdaBelief
from neuralarch.progress import QUIET_ENV
from neuralarch.repro import derive_seed, make_loader, seed_everything, state_fingerprint
from neuralarch.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from neuralarch.train.loop import History, TrainConfig, accuracy, evaluate, fit


def make_data(n: int = 100, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """A tiny 3-class problem: 80 training and 20 validation examples with 6 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # (n,) classes 0, 1, 2
    cut = int(0.8 * n)
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


def make_model(seed: int = 1) -> nn.Module:
    """A small MLP with dropout, so that the global RNG matters for exact resume."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


TRAIN, VAL = make_data()
CFG = TrainConfig(epochs=4, batch_size=8, log_every=3, device="cpu")  # 10 steps per epoch
METRICS = {"accuracy": accuracy}

SETUPS = {
    "sgd-momentum+steplr-per-epoch": (
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.7), "epoch"),
    "adam+cosine-per-step": (
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40), "step"),
    "adabelief+onecycle": (
        lambda p: AdaBelief(p, lr=1e-2, weight_decay=1e-2),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=2e-2, total_steps=40), "step"),
}


def without_seconds(history: History) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history.epochs]


def run(model=None, config=CFG, setup="adam+cosine-per-step", **kwargs):
    optimizer, scheduler, interval = SETUPS[setup]
    model = make_model() if model is None else model
    config = config.replace(scheduler_interval=interval)
    history = fit(model, TRAIN, VAL, F.cross_entropy, optimizer, config, scheduler=scheduler,
                  metrics=METRICS, progress=False, **kwargs)
    return model, history


class Crash(RuntimeError):
    pass


def crash_at(step: int):
    def callback(context):
        if context.step == step:
            raise Crash(f"simulated crash after step {step}")
    return callback


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("interruption", ["max_steps mid-epoch", "max_steps at epoch end",
                                          "crash after periodic checkpoint"])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, setup, interruption):
    straight, history = run(setup=setup)
    path = tmp_path / "run.pt"
    if interruption == "max_steps mid-epoch":
        _, partial = run(setup=setup, config=CFG.replace(max_steps=17), checkpoint_path=path)
        assert not partial.completed and len(partial.epochs) == 1
    elif interruption == "max_steps at epoch end":
        _, partial = run(setup=setup, config=CFG.replace(max_steps=20), checkpoint_path=path)
        assert not partial.completed and len(partial.epochs) == 2
    else:
        with pytest.raises(Crash):
            run(setup=setup, config=CFG.replace(checkpoint_every=7), checkpoint_path=path,
                callbacks=[crash_at(26)])  # the last checkpoint was written after step 21
        assert torch.load(path, weights_only=True)["extra"]["loop"]["step"] == 21
    resumed, resumed_history = run(setup=setup, checkpoint_path=path, resume=True)
    assert state_fingerprint(resumed) == state_fingerprint(straight)
    assert without_seconds(resumed_history) == without_seconds(history)
    assert resumed_history.train_loss == history.train_loss
    assert resumed_history.steps == history.steps and resumed_history.lr == history.lr
    assert resumed_history.completed and history.completed


def test_naive_resume_without_loop_state_diverges(tmp_path):
    straight, _ = run()
    path = tmp_path / "run.pt"
    run(config=CFG.replace(max_steps=17), checkpoint_path=path)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    load_checkpoint(path, model, optimizer)  # weights and moments only: data order restarts
    fit(model, TRAIN, VAL, F.cross_entropy, optimizer, CFG.replace(max_steps=40 - 17),
        progress=False)
    assert state_fingerprint(model) != state_fingerprint(straight)


def test_resuming_a_finished_run_with_more_epochs_equals_a_longer_run(tmp_path):
    path = tmp_path / "run.pt"
    config = CFG.replace(scheduler_interval="epoch")
    adam = SETUPS["adam+cosine-per-step"][0]
    longer = make_model()
    fit(longer, TRAIN, VAL, F.cross_entropy, adam, config.replace(epochs=6), progress=False)
    first = make_model()
    fit(first, TRAIN, VAL, F.cross_entropy, adam, config, checkpoint_path=path, progress=False)
    extended = make_model(seed=99)  # a different init: the checkpoint overwrites it
    history = fit(extended, TRAIN, VAL, F.cross_entropy, adam, config.replace(epochs=6),
                  checkpoint_path=path, resume=True, progress=False)
    assert len(history.epochs) == 6 and history.completed
    assert state_fingerprint(extended) == state_fingerprint(longer)


@pytest.mark.parametrize(("batch_size", "log_every", "shuffle"), [(8, 3, True), (16, 2, False),
                                                                  (12, 5, True)])
def test_fit_equals_a_hand_written_loop(batch_size, log_every, shuffle):
    config = TrainConfig(epochs=2, batch_size=batch_size, log_every=log_every, shuffle=shuffle,
                         seed=5, device="cpu")
    model = make_model()
    history = fit(model, TRAIN, None, F.cross_entropy,
                  lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), config, progress=False)

    reference = make_model()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    loader = make_loader(TRAIN, batch_size, derive_seed(5, "data"), shuffle=shuffle)
    seed_everything(derive_seed(5, "train"))
    losses, epoch_means = [], []
    for _ in range(2):
        epoch_losses = []
        for x, y in loader:
            loss = F.cross_entropy(reference(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_losses.append(loss.item())
        losses += epoch_losses
        epoch_means.append(sum(epoch_losses) / len(epoch_losses))
    assert state_fingerprint(model) == state_fingerprint(reference)

    steps_per_epoch = -(-len(TRAIN) // batch_size)
    ends = sorted({s for s in range(log_every, 2 * steps_per_epoch + 1, log_every)}
                  | {steps_per_epoch, 2 * steps_per_epoch})
    assert history.steps == ends
    starts = [0, *ends[:-1]]
    expected = [sum(losses[a:b]) / (b - a) for a, b in zip(starts, ends, strict=True)]
    assert_close(torch.tensor(history.train_loss), torch.tensor(expected))
    assert_close(torch.tensor(history.metric("train_loss")), torch.tensor(epoch_means))
    assert [r["step"] for r in history.epochs] == [steps_per_epoch, 2 * steps_per_epoch]


def test_history_records_validation_metrics_and_the_schedule():
    model, history = run(setup="sgd-momentum+steplr-per-epoch")
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4]
    assert set(history.final) == {"epoch", "step", "train_loss", "lr", "val_loss",
                                  "val_accuracy", "seconds"}
    assert_close(torch.tensor(history.metric("lr")), 0.1 * 0.7 ** torch.arange(4.0),
                 check_dtype=False)
    final = evaluate(model, VAL, F.cross_entropy, METRICS)
    assert history.final["val_accuracy"] == final["accuracy"]
    assert history.final["val_loss"] == final["loss"]
    assert history.metric("train_loss")[-1] < history.metric("train_loss")[0]
    assert history.final["val_accuracy"] > 0.6


def test_history_round_trips_and_reports_bad_names():
    _, history = run()
    assert History.from_dict(history.to_dict()) == history
    with pytest.raises(ValueError, match=r"no per-epoch metric 'val_acc'; available: \["):
        history.metric("val_acc")
    with pytest.raises(ValueError, match="no epoch has finished"):
        _ = History().final


def test_evaluate_weights_batches_restores_mode_and_draws_no_random_numbers():
    model = make_model()
    model.train()
    before = torch.get_rng_state()
    scores = evaluate(model, TRAIN, F.cross_entropy, METRICS, batch_size=7)  # 80 = 11*7 + 3
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training
    model.eval()
    x, y = TRAIN.tensors
    with torch.no_grad():
        logits = model(x)
    assert_close(scores["loss"], F.cross_entropy(logits, y).item())
    assert_close(scores["accuracy"], (logits.argmax(1) == y).float().mean().item())


def test_grad_clip_bounds_the_global_gradient_norm():
    norms = []

    def record(context):
        grads = [p.grad for p in context.model.parameters()]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    fit(make_model(), TRAIN, None, F.cross_entropy, lambda p: torch.optim.SGD(p, lr=0.5),
        CFG.replace(grad_clip=0.05, epochs=1), callbacks=[record], progress=False)
    assert len(norms) == 10 and max(norms) <= 0.05 + 1e-6


def test_lbfgs_works_through_the_closure():
    model = nn.Linear(6, 3)
    history = fit(model, TRAIN, VAL, F.cross_entropy,
                  lambda p: torch.optim.LBFGS(p, lr=0.5, max_iter=5),
                  TrainConfig(epochs=3, batch_size=80, device="cpu"), progress=False)
    assert history.metric("train_loss")[-1] < 0.7 * history.metric("train_loss")[0]


def test_reduce_on_plateau_gets_the_validation_loss():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)  # too small to improve the loss
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    history = fit(model, TRAIN, VAL, F.cross_entropy, optimizer, CFG.replace(epochs=3),
                  scheduler=plateau, progress=False)
    assert history.metric("lr") == [1e-6, 1e-6, 5e-7]
    assert optimizer.param_groups[0]["lr"] == 2.5e-7


def test_progress_bar_shows_unless_the_page_is_quiet(capsys, monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    fit(make_model(), TRAIN, None, F.cross_entropy, lambda p: torch.optim.SGD(p, lr=0.1),
        TrainConfig(epochs=1, batch_size=40, log_every=1))  # device from get_device()
    assert "fit" in capsys.readouterr().err
    monkeypatch.setenv(QUIET_ENV, "1")
    fit(make_model(), TRAIN, None, F.cross_entropy, lambda p: torch.optim.SGD(p, lr=0.1),
        TrainConfig(epochs=1, batch_size=40, log_every=1))
    assert capsys.readouterr().err == ""


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seed_everything(3)
    path = save_checkpoint(tmp_path / "sub" / "c.pt", model, optimizer, extra={"note": "x"})
    assert not list(path.parent.glob("*.partial"))  # written under a temporary name
    draws = (random.random(), np.random.standard_normal(3), torch.rand(3))
    np.random.standard_normal(1)  # leaves a cached Gaussian behind
    payload = load_checkpoint(path, make_model(seed=7))
    assert payload["extra"] == {"note": "x"} and payload["scheduler"] is None
    restore_rng_state(payload["rng"])
    assert random.random() == draws[0]
    assert np.array_equal(np.random.standard_normal(3), draws[1])
    assert torch.equal(torch.rand(3), draws[2])


def test_cuda_rng_states_are_saved_and_restored_when_present(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.zeros(4)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", calls.append)
    state = capture_rng_state()
    assert len(state["cuda"]) == 1
    restore_rng_state(state)
    assert len(calls) == 1 and torch.equal(calls[0][0], torch.zeros(4))


# ----- bad input -----------------------------------------------------------------------------


def test_bad_configs_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match=r"epochs = 0: Input should be greater than 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=-4)
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        TrainConfig(epoch=3)
    with pytest.raises(ValueError, match="config must be a TrainConfig, got dict"):
        fit(make_model(), TRAIN, None, F.cross_entropy, SETUPS["adam+cosine-per-step"][0],
            {"epochs": 1})


def test_resume_and_periodic_checkpoints_need_a_path():
    adam = SETUPS["adam+cosine-per-step"][0]
    with pytest.raises(ValueError, match="resume=True needs checkpoint_path"):
        fit(make_model(), TRAIN, None, F.cross_entropy, adam, CFG, resume=True)
    with pytest.raises(ValueError, match=r"config\.checkpoint_every needs checkpoint_path"):
        fit(make_model(), TRAIN, None, F.cross_entropy, adam, CFG.replace(checkpoint_every=5))


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "run.pt"
    with pytest.raises(FileNotFoundError, match=r"checkpoint file .*nowhere.run\.pt"):
        run(checkpoint_path=path, resume=True)


def test_checkpoint_from_a_different_model_names_the_keys(tmp_path):
    path = tmp_path / "run.pt"
    run(config=CFG.replace(epochs=1), checkpoint_path=path)
    wider = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    with pytest.raises(ValueError, match=r"run.pt was saved from a different model; shape "
                                         r"mismatches: \['0.bias: saved \(16,\), model \(32,\)"):
        run(model=wider, checkpoint_path=path, resume=True)
    no_dropout = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))  # renumbered
    with pytest.raises(ValueError, match=r"keys of the model that were not saved: \['2.bias', "
                                         r"'2.weight'\]; saved keys that the model lacks: "
                                         r"\['3.bias', '3.weight'\]"):
        run(model=no_dropout, checkpoint_path=path, resume=True)


def test_resume_with_another_optimizer_scheduler_or_settings_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    run(config=CFG.replace(max_steps=5), checkpoint_path=path)
    with pytest.raises(ValueError, match="holds the state of a Adam optimizer, but a SGD"):
        run(setup="sgd-momentum+steplr-per-epoch", checkpoint_path=path, resume=True)
    adam = SETUPS["adam+cosine-per-step"][0]
    with pytest.raises(ValueError, match="holds a CosineAnnealingLR state; pass the same"):
        fit(make_model(), TRAIN, VAL, F.cross_entropy, adam, CFG, checkpoint_path=path,
            resume=True)
    with pytest.raises(ValueError, match="batch_size: 8 in checkpoint, 16 now"):
        run(config=CFG.replace(batch_size=16), checkpoint_path=path, resume=True)
    with pytest.raises(ValueError, match="training examples: 80 in checkpoint, 40 now"):
        fit(make_model(), TensorDataset(*TRAIN[:40]), None, F.cross_entropy, adam, CFG,
            scheduler=SETUPS["adam+cosine-per-step"][1], checkpoint_path=path, resume=True)
    plain = tmp_path / "plain.pt"
    fit(make_model(), TRAIN, None, F.cross_entropy, adam, CFG.replace(max_steps=5),
        checkpoint_path=plain, progress=False)
    with pytest.raises(ValueError, match="has no scheduler state, but a CosineAnnealingLR"):
        run(checkpoint_path=plain, resume=True)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(make_model().state_dict(), path)
    with pytest.raises(ValueError, match="is not a neuralarch checkpoint"):
        load_checkpoint(path, make_model())
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="format 'list'"):
        load_checkpoint(path, make_model())


def test_bad_data_arguments_are_refused():
    adam = SETUPS["adam+cosine-per-step"][0]
    loader = torch.utils.data.DataLoader(TRAIN, batch_size=8)
    with pytest.raises(ValueError, match=r"train_data must be a map-style Dataset .* DataLoader"):
        fit(make_model(), loader, None, F.cross_entropy, adam, CFG)
    with pytest.raises(ValueError, match="val_data is empty"):
        fit(make_model(), TRAIN, TensorDataset(torch.zeros(0, 6), torch.zeros(0)),
            F.cross_entropy, adam, CFG)
    with pytest.raises(ValueError, match="no full batch of batch_size=128 with drop_last"):
        fit(make_model(), TRAIN, None, F.cross_entropy, adam,
            CFG.replace(batch_size=128, drop_last=True))
    with pytest.raises(ValueError, match=r"\(input, target\) pair"):
        fit(make_model(), TensorDataset(TRAIN.tensors[0]), None, F.cross_entropy, adam, CFG,
            progress=False)


def test_optimizers_and_schedulers_must_belong_to_the_model():
    other = make_model()
    with pytest.raises(ValueError, match="not parameters of the model"):
        fit(make_model(), TRAIN, None, F.cross_entropy,
            torch.optim.SGD(other.parameters(), lr=0.1), CFG)
    with pytest.raises(ValueError, match=r"optimizer must be a torch\.optim\.Optimizer or a "
                                         r"factory taking parameters, got str"):
        fit(make_model(), TRAIN, None, F.cross_entropy, "adam", CFG)
    stray = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(other.parameters(), lr=0.1), 1)
    with pytest.raises(ValueError, match="scheduler drives a different optimizer"):
        fit(make_model(), TRAIN, None, F.cross_entropy, lambda p: torch.optim.SGD(p, lr=0.1),
            CFG, scheduler=stray)


def test_an_optimizer_that_ignores_the_closure_is_refused():
    class NoClosure(torch.optim.SGD):
        def step(self, closure=None):
            return None

    with pytest.raises(ValueError, match=r"NoClosure.step\(closure\) returned None"):
        fit(make_model(), TRAIN, None, F.cross_entropy, lambda p: NoClosure(p, lr=0.1), CFG,
            progress=False)


def noisy_soft_targets(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch transform that draws from the global generator and returns soft targets."""
    return x + 0.1 * torch.randn_like(x), F.one_hot(y, 3).float() * 0.9 + 0.1 / 3


def test_batch_transform_changes_training_batches_only():
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append((x, y))
        return noisy_soft_targets(x, y)

    model = make_model()
    history = fit(model, TRAIN, VAL, F.cross_entropy, torch.optim.Adam(model.parameters()),
                  CFG.replace(epochs=1), metrics=METRICS, batch_transform=spy, progress=False)
    assert len(seen) == 10 and sum(len(y) for _, y in seen) == len(TRAIN)
    plain = make_model()
    fit(plain, TRAIN, None, F.cross_entropy, torch.optim.Adam(plain.parameters()),
        CFG.replace(epochs=1), progress=False)
    assert state_fingerprint(plain) != state_fingerprint(model)  # the transform mattered
    # validation sees the untransformed data
    assert history.epochs[0]["val_accuracy"] == evaluate(model, VAL, F.cross_entropy,
                                                         METRICS)["accuracy"]


def test_a_random_batch_transform_resumes_bit_exactly(tmp_path):
    def train(config: TrainConfig = CFG, **kwargs: object) -> nn.Module:
        model = make_model()
        fit(model, TRAIN, VAL, F.cross_entropy, lambda p: torch.optim.Adam(p, lr=1e-2), config,
            batch_transform=noisy_soft_targets, progress=False, **kwargs)
        return model

    straight = train()
    path = tmp_path / "run.pt"
    train(CFG.replace(max_steps=13), checkpoint_path=path)
    resumed = train(checkpoint_path=path, resume=True)
    assert state_fingerprint(resumed) == state_fingerprint(straight)

"""Tests for neuralarch.optim.schedules: every schedule equals its torch.optim.lr_scheduler twin."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as tls
from torch.testing import assert_close

from neuralarch.optim.schedules import (
    ClosedFormLR,
    CosineSchedule,
    ExponentialSchedule,
    LinearSchedule,
    OneCycleSchedule,
    StepSchedule,
    WarmupCosineSchedule,
    lr_range_test,
    record_schedule,
    throwaway_optimizer,
)
from neuralarch.repro import make_generator, state_fingerprint

GROUPS = [(0.1,), (0.1, 0.03, 1.5)]  # one param group, and three with different lrs


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """torch warns on a wrong step()/optimizer.step() order; none of our uses may warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _trace_pair(make_torch, make_ours, steps, lrs, kind="sgd"):
    ours = record_schedule(make_ours(throwaway_optimizer(lrs, kind)), steps)
    reference = record_schedule(make_torch(throwaway_optimizer(lrs, kind)), steps)
    assert ours["lr"].shape == (steps, len(lrs))
    return ours, reference


# ---------------------------------------------------------------- equal to torch
@pytest.mark.parametrize("lrs", GROUPS)
@pytest.mark.parametrize(("step_size", "gamma"), [(1, 0.9), (7, 0.5), (30, 0.1), (4, 1.0)])
def test_step_schedule_equals_steplr(lrs, step_size, gamma):
    ours, ref = _trace_pair(lambda o: tls.StepLR(o, step_size, gamma),
                            lambda o: StepSchedule(o, step_size, gamma), 200, lrs)
    assert_close(ours["lr"], ref["lr"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("lrs", GROUPS)
@pytest.mark.parametrize("gamma", [0.5, 0.97, 0.999, 1.02])
def test_exponential_schedule_equals_exponentiallr(lrs, gamma):
    ours, ref = _trace_pair(lambda o: tls.ExponentialLR(o, gamma),
                            lambda o: ExponentialSchedule(o, gamma), 300, lrs)
    assert_close(ours["lr"], ref["lr"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("lrs", GROUPS)
@pytest.mark.parametrize(("total", "min_lr"), [(1, 0.0), (50, 0.0), (37, 1e-3), (200, 0.01)])
def test_cosine_schedule_equals_cosineannealinglr_even_past_the_end(lrs, total, min_lr):
    # three full periods: CosineAnnealingLR rises again after T_max, and so does the formula
    ours, ref = _trace_pair(lambda o: tls.CosineAnnealingLR(o, total, min_lr),
                            lambda o: CosineSchedule(o, total, min_lr), 3 * total + 1, lrs)
    assert_close(ours["lr"], ref["lr"], rtol=1e-9, atol=1e-15)
    assert_close(ours["lr"][total], torch.full((len(lrs),), min_lr, dtype=torch.float64))


@pytest.mark.parametrize("lrs", GROUPS)
@pytest.mark.parametrize(("start", "end", "total"),
                         [(1 / 3, 1.0, 5), (0.01, 1.0, 40), (1.0, 0.0, 25), (0.5, 0.2, 3)])
def test_linear_schedule_equals_linearlr(lrs, start, end, total):
    ours, ref = _trace_pair(lambda o: tls.LinearLR(o, start, end, total),
                            lambda o: LinearSchedule(o, start, end, total), 3 * total, lrs)
    assert_close(ours["lr"], ref["lr"], rtol=1e-12, atol=1e-15)


def _torch_warmup_cosine(optimizer, warmup, total, start, min_lr):
    warm = tls.LinearLR(optimizer, start, 1.0, warmup)
    cosine = tls.CosineAnnealingLR(optimizer, total - warmup, min_lr)
    return tls.SequentialLR(optimizer, [warm, cosine], milestones=[warmup])


@pytest.mark.parametrize("lrs", GROUPS)
@pytest.mark.parametrize(("warmup", "total", "start", "min_lr"),
                         [(10, 100, 0.01, 0.0), (1, 20, 0.5, 1e-4), (99, 100, 0.1, 0.0),
                          (25, 300, 1e-3, 1e-3)])
def test_warmup_cosine_equals_sequentiallr(lrs, warmup, total, start, min_lr):
    ours, ref = _trace_pair(
        lambda o: _torch_warmup_cosine(o, warmup, total, start, min_lr),
        lambda o: WarmupCosineSchedule(o, warmup, total, start, min_lr), total + 1, lrs)
    assert_close(ours["lr"], ref["lr"], rtol=1e-9, atol=1e-15)
    assert_close(ours["lr"][warmup], torch.tensor(lrs, dtype=torch.float64))  # the peak


def test_warmup_cosine_without_warmup_is_cosine():
    ours, ref = _trace_pair(lambda o: tls.CosineAnnealingLR(o, 60),
                            lambda o: WarmupCosineSchedule(o, 0, 60), 61, (0.2, 0.05))
    assert_close(ours["lr"], ref["lr"], rtol=1e-12, atol=1e-15)


def test_our_pieces_compose_inside_torch_sequentiallr():
    def composed(o):
        return tls.SequentialLR(o, [LinearSchedule(o, 0.05, 1.0, 15), CosineSchedule(o, 85)],
                                milestones=[15])

    ours, ref = _trace_pair(composed, lambda o: WarmupCosineSchedule(o, 15, 100, 0.05),
                            101, (0.3, 0.1))
    assert_close(ours["lr"], ref["lr"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize(("total", "pct", "div", "final_div"),
                         [(100, 0.3, 25.0, 1e4), (97, 0.25, 10.0, 100.0), (40, 0.45, 5.0, 1e3)])
def test_one_cycle_equals_onecyclelr_with_momentum(kind, three_phase, anneal, total, pct, div,
                                                   final_div):
    lrs = (0.1, 0.02)  # OneCycle ignores these: max_lr sets the peaks
    options = dict(total_steps=total, pct_start=pct, anneal_strategy=anneal,
                   div_factor=div, final_div_factor=final_div, three_phase=three_phase,
                   base_momentum=[0.8, 0.85], max_momentum=0.95)
    ours, ref = _trace_pair(lambda o: tls.OneCycleLR(o, [1.0, 0.4], **options),
                            lambda o: OneCycleSchedule(o, [1.0, 0.4], **options),
                            total + 1, lrs, kind)
    assert_close(ours["lr"], ref["lr"], rtol=1e-12, atol=1e-15)
    assert_close(ours["momentum"], ref["momentum"], rtol=1e-12, atol=1e-15)
    peaks = ours["lr"].max(0).values  # max_lr, reached exactly when pct * total is a whole step
    assert torch.all(peaks <= torch.tensor([1.0, 0.4]) * (1 + 1e-12))
    assert torch.all(peaks >= torch.tensor([1.0, 0.4]) * 0.99)
    assert ours["momentum"][0].tolist() == pytest.approx([0.95, 0.95])


def test_one_cycle_without_momentum_cycling_leaves_momentum_alone():
    optimizer = throwaway_optimizer([0.1])
    trace = record_schedule(OneCycleSchedule(optimizer, 0.5, 50, cycle_momentum=False), 51)
    assert torch.all(trace["momentum"] == 0.9)
    reference = record_schedule(
        tls.OneCycleLR(throwaway_optimizer([0.1]), 0.5, 50, cycle_momentum=False), 51)
    assert_close(trace["lr"], reference["lr"], rtol=1e-12, atol=1e-15)
    plain = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # no momentum: allowed
    assert OneCycleSchedule(plain, 0.5, 10, cycle_momentum=False).get_last_lr() == [
        pytest.approx(0.02)]


# ---------------------------------------------------------------- resuming and the API
SCHEDULES = {
    "step": lambda o: StepSchedule(o, 10, 0.5),
    "exponential": lambda o: ExponentialSchedule(o, 0.98),
    "cosine": lambda o: CosineSchedule(o, 80, 1e-4),
    "linear": lambda o: LinearSchedule(o, 0.1, 1.0, 30),
    "warmup_cosine": lambda o: WarmupCosineSchedule(o, 20, 80, 0.01, 1e-4),
    "one_cycle": lambda o: OneCycleSchedule(o, [0.5, 0.2], 80, three_phase=True),
}


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("split", [1, 33, 60])
def test_state_dict_round_trip_resumes_exactly(name, split, kind):
    make = SCHEDULES[name]
    full = record_schedule(make(throwaway_optimizer([0.1, 0.3], kind)), 81)
    optimizer = throwaway_optimizer([0.1, 0.3], kind)
    scheduler = make(optimizer)
    first = record_schedule(scheduler, split + 1)  # ends after `split` scheduler steps
    buffer = io.BytesIO()  # the checkpoint, serialised as a training script would
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)
    fresh_optimizer = throwaway_optimizer([0.1, 0.3], kind)
    fresh = make(fresh_optimizer)  # construct first: construction resets the lrs
    fresh_optimizer.load_state_dict(checkpoint["optimizer"])
    fresh.load_state_dict(checkpoint["scheduler"])
    rest = record_schedule(fresh, 81 - split)
    assert torch.equal(first["lr"], full["lr"][: split + 1])
    assert torch.equal(rest["lr"], full["lr"][split:])  # bit for bit: a formula of the step
    assert torch.equal(rest["momentum"], full["momentum"][split:])


def test_get_lr_outside_step_is_harmless_and_quiet():
    scheduler = WarmupCosineSchedule(throwaway_optimizer([0.1, 0.2]), 5, 50)
    before = scheduler.get_last_lr()
    assert scheduler.get_lr() == before == scheduler.get_lr()  # no warning, no drift
    assert scheduler.optimizer.param_groups[0]["lr"] == before[0]


def test_step_with_an_epoch_uses_the_closed_form():
    scheduler = CosineSchedule(throwaway_optimizer([0.1]), 100)
    scheduler.optimizer.step()
    with pytest.warns(UserWarning, match="epoch"):
        scheduler.step(50)  # deprecated in torch, but must land on the formula
    assert scheduler.get_last_lr()[0] == pytest.approx(0.05)


def test_base_class_needs_lr_at():
    with pytest.raises(NotImplementedError, match="lr_at"):
        ClosedFormLR(throwaway_optimizer([0.1]))


def test_tensor_learning_rates_are_rejected():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=torch.tensor(0.1))
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\] is a tensor"):
        StepSchedule(optimizer, 5)


def test_not_an_optimizer_is_a_type_error():
    with pytest.raises(TypeError, match="not an Optimizer"):
        OneCycleSchedule(object(), 0.1, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an Optimizer"):
        StepSchedule(object(), 5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- bad input
def _sgd(lrs=(0.1,)):
    return throwaway_optimizer(list(lrs))


BAD = [
    (lambda: StepSchedule(_sgd(), 0), "step_size must be an int >= 1, got 0"),
    (lambda: StepSchedule(_sgd(), 2.0), "step_size must be an int"),
    (lambda: StepSchedule(_sgd(), 3, gamma=0.0), r"gamma must be a finite number > 0.0"),
    (lambda: ExponentialSchedule(_sgd(), math.nan), "gamma must be a finite number"),
    (lambda: ExponentialSchedule(_sgd(), True), "gamma must be a finite number"),
    (lambda: CosineSchedule(_sgd(), 0), "total_steps must be an int >= 1"),
    (lambda: CosineSchedule(_sgd(), 10, min_lr=-1e-3), r"min_lr must be a finite number >= 0"),
    (lambda: LinearSchedule(_sgd(), start_factor=0.0), r"start_factor .* > 0.0 and <= 1.0"),
    (lambda: LinearSchedule(_sgd(), end_factor=1.5), r"end_factor .* >= 0.0 and <= 1.0"),
    (lambda: WarmupCosineSchedule(_sgd(), 150, 100), "warmup_steps=150 must be < total_steps"),
    (lambda: WarmupCosineSchedule(_sgd(), 100, 100), "no steps for the cosine decay"),
    (lambda: WarmupCosineSchedule(_sgd(), -1, 100), "warmup_steps must be an int >= 0"),
    (lambda: OneCycleSchedule(_sgd(), 0.1, 1), "total_steps must be an int >= 2"),
    (lambda: OneCycleSchedule(_sgd(), 0.1, 100, anneal_strategy="exp"), "'cos' or 'linear'"),
    (lambda: OneCycleSchedule(_sgd(), 0.1, 100, pct_start=1.0), r"pct_start .* < 1.0"),
    (lambda: OneCycleSchedule(_sgd(), 0.1, 10, pct_start=0.1), "leaves a phase"),
    (lambda: OneCycleSchedule(_sgd(), 0.1, 10, pct_start=0.6, three_phase=True),
     "leaves a phase"),
    (lambda: OneCycleSchedule(_sgd(), -0.1, 100), "max_lr must be a finite number > 0"),
    (lambda: OneCycleSchedule(_sgd((0.1, 0.2)), [0.1], 100), "max_lr has 1 values but .* 2"),
    (lambda: OneCycleSchedule(_sgd(), 0.1, 100, base_momentum=1.2), "base_momentum"),
    (lambda: OneCycleSchedule(torch.optim.Adagrad([nn.Parameter(torch.zeros(1))]), 0.1, 10),
     "needs an optimizer with 'momentum' or 'betas'"),
    (lambda: throwaway_optimizer([0.1], kind="lion"), "kind must be 'sgd' or 'adamw'"),
]


@pytest.mark.parametrize(("build", "match"), BAD)
def test_bad_arguments_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_one_cycle_refuses_steps_past_the_end():
    scheduler = OneCycleSchedule(_sgd(), 0.1, 10)
    record_schedule(scheduler, 11)  # steps 0..10 are allowed, like OneCycleLR
    scheduler.optimizer.step()
    with pytest.raises(ValueError, match="step 11 is past total_steps=10"):
        scheduler.step()


def test_record_schedule_refuses_real_gradients_and_bad_steps():
    weight = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    weight.sum().backward()
    scheduler = StepSchedule(optimizer, 5)
    with pytest.raises(ValueError, match="throwaway_optimizer"):
        record_schedule(scheduler, 3)
    assert torch.equal(weight.detach(), torch.ones(2)), "nothing may have been updated"
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        record_schedule(StepSchedule(_sgd(), 5), 0)


# ---------------------------------------------------------------- LR range test
def _toy_problem(seed: int = 0, n_batches: int = 8):
    g = make_generator(seed)
    w_true = torch.randn(6, 3, generator=g)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(32, 6, generator=g)  # (B, 6)
        batches.append((x, (x @ w_true).argmax(1)))  # (B,) linearly separable labels
    torch.manual_seed(seed)
    return nn.Linear(6, 3), batches


def test_lr_range_test_sweeps_exponentially_and_restores_everything():
    model, batches = _toy_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    model.eval()
    before = state_fingerprint(model)
    result = lr_range_test(model, optimizer, batches, max_lr=1.0, steps=20, stop_factor=1e6)
    assert len(result["lr"]) == len(result["loss"]) == len(result["smoothed"]) == 20
    expected = torch.logspace(-4, 0, 20, dtype=torch.float64)
    assert_close(torch.tensor(result["lr"], dtype=torch.float64), expected, rtol=1e-9, atol=0)
    assert state_fingerprint(model) == before, "the model must be restored"
    assert not model.training, "the model's train/eval mode must be restored"
    assert optimizer.param_groups[0]["lr"] == 1e-4
    assert "initial_lr" not in optimizer.param_groups[0]
    assert not optimizer.state, "momentum buffers from the sweep must be gone"
    assert min(result["smoothed"]) < result["smoothed"][0], "moderate lrs must lower the loss"
    assert result["smoothed"][0] == pytest.approx(result["loss"][0])  # bias correction


def test_lr_range_test_stops_when_the_loss_explodes():
    model, batches = _toy_problem(1, n_batches=3)  # fewer batches than steps: cycles through
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    result = lr_range_test(model, optimizer, batches, max_lr=1e6, steps=60, smoothing=0.5)
    assert len(result["lr"]) < 60
    assert result["smoothed"][-1] > 4 * min(result["smoothed"]) or not math.isfinite(
        result["smoothed"][-1])


def test_lr_range_test_starts_from_the_current_lr_after_another_scheduler():
    model, batches = _toy_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    StepSchedule(optimizer, 1, gamma=0.01)  # leaves initial_lr = 0.5 in the groups
    optimizer.param_groups[0]["lr"] = 1e-3
    result = lr_range_test(model, optimizer, batches, max_lr=0.1, steps=5, stop_factor=1e6)
    assert result["lr"][0] == pytest.approx(1e-3)
    assert optimizer.param_groups[0]["initial_lr"] == 0.5, "restored as it was"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_lr": 1e-5}, r"max_lr must be a finite number > 0.0001"),
    ({"max_lr": 1.0, "steps": 1}, "steps must be an int >= 2"),
    ({"max_lr": 1.0, "smoothing": 1.0}, "smoothing"),
    ({"max_lr": 1.0, "stop_factor": 1.0}, "stop_factor"),
])
def test_lr_range_test_bad_arguments(kwargs, match):
    model, batches = _toy_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    with pytest.raises(ValueError, match=match):
        lr_range_test(model, optimizer, batches, **kwargs)

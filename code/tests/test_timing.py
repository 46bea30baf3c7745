"""The timing helper used by every benchmark in the book."""

from __future__ import annotations

import time

import pytest

from neuralarch.timing import best_seconds, time_call


def test_time_call_counts_calls_and_reports_per_call_times():
    calls = []
    timing = time_call(lambda: calls.append(1), repeat=4, number=3, warmup=2)
    assert len(calls) == 2 + 4 * 3
    assert len(timing.rounds) == 4
    assert timing.best == min(timing.rounds) <= timing.median


def test_time_call_measures_sleep():
    timing = time_call(lambda: time.sleep(0.01), repeat=3)
    assert 0.009 <= timing.best < 0.2


def test_best_seconds_is_the_best_round():
    assert best_seconds(lambda: time.sleep(0.002), repeat=2) >= 0.0015


@pytest.mark.parametrize("kwargs", [{"repeat": 0}, {"number": 0}, {"warmup": -1},
                                    {"repeat": 1.5}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError, match="must be an int"):
        time_call(lambda: None, **kwargs)

"""The assignment rubric: points, checks, and clear failures."""

from __future__ import annotations

import pytest

from neuralarch.course.grading import Rubric


def make() -> Rubric:
    return Rubric("week00", {"task A": 3, "task B": 2})


def test_points_add_up_and_passing_checks_earn_them():
    rubric = make()
    rubric.check("task A", "shape", 1, True)
    rubric.check("task A", "values", 2, lambda: 1 + 1 == 2)
    rubric.check("task B", "accuracy", 2, False)
    assert rubric.total == 5 and rubric.score() == 3
    assert rubric.table()[1] == {"task": "task B", "points": 2, "checks": 1, "earned": 0}
    with pytest.raises(AssertionError, match="task B: accuracy"):
        rubric.assert_complete()


def test_crashing_check_fails_with_the_reason():
    rubric = make()
    result = rubric.check("task A", "boom", 3, lambda: 1 / 0)
    assert not result.passed and "ZeroDivisionError" in result.detail


def test_incomplete_rubric_is_reported():
    rubric = make()
    rubric.check("task A", "only one", 1, True)
    with pytest.raises(AssertionError, match="cover 1 of 3"):
        rubric.assert_complete()


def test_complete_rubric_passes():
    rubric = make()
    rubric.check("task A", "a", 3, True)
    rubric.check("task B", "b", 2, True)
    rubric.assert_complete()


def test_bad_rubrics_and_checks_are_rejected():
    with pytest.raises(ValueError, match="positive int of points"):
        Rubric("w", {"t": 0})
    rubric = make()
    with pytest.raises(ValueError, match="unknown task"):
        rubric.check("task C", "x", 1, True)
    with pytest.raises(ValueError, match="more than its 2"):
        rubric.check("task B", "x", 3, True)


def test_graded_reports_the_last_checks_as_nbgrader_partial_credit():
    from neuralarch.course.grading import CHECKS_MIME

    rubric = make()
    rubric.check("task A", "a", 1, True)
    rubric.check("task A", "b", 2, False, "wrong value")
    rubric.check("task B", "c", 2, True)
    cell = rubric.graded(2)
    assert (cell.earned, cell.points, repr(cell)) == (2, 4, "2")
    bundle = cell._repr_mimebundle_()
    assert bundle["text/plain"] == "2"
    assert [c["description"] for c in bundle[CHECKS_MIME]["checks"]] == ["b", "c"]
    assert bundle[CHECKS_MIME]["checks"][0]["detail"] == "wrong value"
    with pytest.raises(ValueError, match="3 checks were recorded"):
        rubric.graded(4)

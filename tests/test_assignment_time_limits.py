"""Grading stops a submission that never ends: the endless-loop check of every week.

Kept apart from ``test_assignments.py`` so that the site checks (one file per worker) grade the
endless loops on one worker while the other grades the full, untouched and broken submissions.
"""

from __future__ import annotations

import time

import pytest
from test_assignments import (
    ASSIGNMENTS,
    LOOP_TIMEOUT_S,
    notebooks,
    record_time,
    reference_code,
    run_grader,
    submission,
)


@pytest.mark.parametrize("docname", ASSIGNMENTS)
def test_an_endless_loop_is_stopped_scored_and_reported(html, docname, tmp_path):
    reference = reference_code(notebooks(html, docname)[1])
    first = next(iter(reference))
    looping = {**reference, first: "while True:  # never ends\n    pass"}
    started = time.perf_counter()
    report = run_grader(html, docname, tmp_path, {"looping": submission(html, docname, looping)},
                        LOOP_TIMEOUT_S)["looping"]
    record_time(docname, "looping", time.perf_counter() - started)
    assert any(note.startswith(f"solution cell {first}") and "time limit" in note
               for note in report["notes"]), report["notes"]
    assert report["score"] < report["max_score"]
    assert len(report["cells"]) == len([c for c in notebooks(html, docname)[1].cells
                                        if c.metadata.get("nbgrader", {}).get("grade")])

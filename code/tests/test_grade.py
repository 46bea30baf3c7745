"""Grading with nbgrader in a limited process: scores, time and memory limits, the report."""

from __future__ import annotations

import json

import nbformat
import pytest

pytest.importorskip("nbgrader")

from neuralarch.course.grade import main, parse_memory

RUBRIC = 'from neuralarch.course.grading import Rubric\nrubric = Rubric("week00", {"1 add": 3})'
CHECKS = ('rubric.check("1 add", "add(1, 2) == 3", 2, lambda: add(1, 2) == 3)\n'
          'rubric.check("1 add", "add(-1, 1) == 0", 1, lambda: add(-1, 1) == 0)\n'
          "rubric.graded(2)")


def nbgrader(cell, grade_id, **flags):
    cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": False,
                                 "task": False, "schema_version": 3, "grade_id": grade_id,
                                 **flags}
    return cell


def assignment(answer: str, solution: bool = True) -> nbformat.NotebookNode:
    cells = [nbgrader(nbformat.v4.new_code_cell(RUBRIC), "readonly-1", locked=True),
             nbgrader(nbformat.v4.new_code_cell(
                 f"### BEGIN SOLUTION\n{answer}\n### END SOLUTION" if solution else answer),
                 "task1-solution-1", solution=True),
             nbgrader(nbformat.v4.new_code_cell(CHECKS), "checks-1", grade=True, locked=True,
                      points=3)]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grading")
    nbformat.write(assignment("def add(a, b):\n    return a + b"), folder / "solution.ipynb")
    submissions = {"right": "def add(a, b):\n    return a + b",
                   "wrong": "def add(a, b):\n    return a + b + (a < 0)",
                   "loop": "while True:\n    pass",
                   "hog": "block = bytearray(3 * 2**30)\ndef add(a, b):\n    return a + b"}
    for name, code in submissions.items():
        nbformat.write(assignment(code, solution=False), folder / f"{name}.ipynb")
    main([str(folder / "solution.ipynb"), *(str(folder / f"{n}.ipynb") for n in submissions),
          "--timeout", "5", "--memory", "1.5G", "--report", str(folder / "reports")])
    return {name: json.loads((folder / "reports" / f"{name}.json").read_text())
            for name in submissions} | {"folder": folder}


def test_the_reference_earns_full_marks(graded):
    report = graded["right"]
    assert (report["score"], report["max_score"]) == (3, 3)
    assert report["cells"][0]["status"] == "passed" and report["limits"]["timeout_per_cell_s"] == 5


def test_a_wrong_function_loses_exactly_its_checks_points(graded):
    cell = graded["wrong"]["cells"][0]
    assert graded["wrong"]["score"] == 2 and cell["status"] == "failed"
    assert [c["description"] for c in cell["checks"] if not c["passed"]] == ["add(-1, 1) == 0"]
    text = (graded["folder"] / "reports" / "wrong.txt").read_text()
    assert "lost 1: add(-1, 1) == 0" in text


def test_an_endless_loop_is_stopped_by_the_time_limit_and_scored(graded):
    report = graded["loop"]
    assert report["score"] == 0 and report["cells"][0]["status"] == "failed"
    assert "NameError" in report["cells"][0]["checks"][0]["detail"]
    assert any("time limit (5 s per cell)" in note for note in report["notes"])


def test_running_out_of_memory_is_reported(graded):
    report = graded["hog"]
    assert report["score"] == 0  # the allocation failed before `add` was defined
    assert any("out of memory" in note for note in report["notes"]), report["notes"]


def test_the_total_time_limit_stops_a_submission(tmp_path):
    nbformat.write(assignment("def add(a, b):\n    return a + b"), tmp_path / "solution.ipynb")
    nbformat.write(assignment("import time\ntime.sleep(60)", solution=False),
                   tmp_path / "slow.ipynb")
    main([str(tmp_path / "solution.ipynb"), str(tmp_path / "slow.ipynb"), "--timeout", "120",
          "--total-timeout", "4", "--report", str(tmp_path / "r")])
    report = json.loads((tmp_path / "r" / "slow.json").read_text())
    assert report["score"] == 0 and report["cells"][0]["status"] == "not run"
    assert "total time limit (4 s)" in report["cells"][0]["reason"]
    assert report["seconds"] < 60


def test_memory_sizes():
    assert parse_memory("4G") == 4 * 2**30 and parse_memory("512M") == 512 * 2**20
    assert parse_memory("1000") == 1000
    with pytest.raises(Exception, match="not a memory size"):
        parse_memory("lots")

"""The week pages' assignments: student and solution notebooks, and grading them with nbgrader.

Checks on the built book (they read ``_build/html/_notebooks``). Every week page of the table of
contents is an assignment; for each one the student notebook holds none of the reference
solution, is exactly what ``nbgrader generate_assignment`` makes of the solution notebook, and
grades end to end (``neuralarch.course.grade``): the reference solution earns full marks, the
untouched notebook the skeleton's points without crashing the grader, one deliberately wrong
function loses exactly its check's points, and an endless loop is stopped by the time limit,
scored, and reported (that check is in ``test_assignment_time_limits.py``, so that it runs on
another worker).
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import nbformat
import pytest
from assignments import BEGIN_SOLUTION, END_SOLUTION, is_assignment_text
from conftest import ROOT, executable_pages
from filelock import FileLock
from notebooks import OUT_DIR, SOLUTIONS_DIR, SOLUTIONS_ZIP_NAME, ZIP_NAME

WEEKS = [d for d in executable_pages() if Path(d).parent.name == "weeks"]
ASSIGNMENTS = [d for d in WEEKS if is_assignment_text((ROOT / f"{d}.md").read_text())]
GRADING_TIMEOUT_S = 600  # per cell, for the runs that must not time out
LOOP_TIMEOUT_S = 20  # per cell, for the endless loop
TIMINGS = ROOT / "_build" / "grading-times.json"

# The points an untouched student notebook earns (checks that pass without any answer).
SKELETON_POINTS: dict[str, int] = {}
# One deliberately wrong function per week: (solution cell, code appended to the reference
# solution, description of the one check it must fail, the points of that check).
BROKEN = {
    "week01": ("task3-solution-1", '''
_reference_logistic = logistic_loss_and_grad


def logistic_loss_and_grad(w, b, x, y):  # deliberately wrong: the weights' gradient doubled
    loss, dw, db = _reference_logistic(w, b, x, y)
    return loss, 2 * dw, db''', "logistic loss and gradients equal BCE-with-logits", 5),
    "week02": ("task1-solution-1", '''
_reference_shoelace = shoelace_area


def shoelace_area(points):  # deliberately wrong: twice the area
    return 2 * _reference_shoelace(points)''', "shoelace area of the heart", 5),
    "week03": ("task3-solution-1", '''
_reference_augment = augment


def augment(x, y):  # deliberately wrong: the same transformation at every call
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _reference_augment(x, y)''', "augment draws new transformations each call", 5),
    "week04": ("task3-solution-1", '''
results = results.drop(index="scratch")  # deliberately wrong: a row missing''',
               "results reports the four checked accuracies", 6),
    "week05": ("task1-solution-1", '''
_reference_smoothgrad = my_smoothgrad


def my_smoothgrad(model, x, target, samples=25, noise=0.15, generator=None):  # noise doubled
    return _reference_smoothgrad(model, x, target, samples, 2 * noise, generator)''',
               "SmoothGrad with the same noise equals the package", 6),
    "week06": ("task2-solution-1", '''
winner = "cnn" if winner == "tfidf" else "tfidf"  # deliberately wrong: the verdict flipped''',
               "winner agrees with the paired 95 % interval", 15),
    "week07": ("task1-solution-1", '''
def my_sample_next(logits, temperature, generator=None):  # deliberately wrong: 0.01+ acts as 1
    return sample_next(logits, temperature if temperature < 0.01 else 1.0, generator)''',
               "at temperature 0.7 the draws follow softmax(z / 0.7)", 5),
    "week08": ("task2-solution-1", '''
verdict = "pretrained" if verdict != "pretrained" else "scratch"  # deliberately wrong: flipped''',
               "verdict agrees with the 95 % interval over seeds", 10),
    "week10": ("task2-solution-1", '''
_reference_kl = my_kl


def my_kl(mu, logvar):  # deliberately wrong: the factor 1/2 forgotten
    return 2 * _reference_kl(mu, logvar)''',
               "my_kl equals torch.distributions.kl_divergence", 10),
    "week11": ("task1-solution-1", '''
_reference_cosine = my_cosine_alpha_bars


def my_cosine_alpha_bars(T, s=0.008, max_beta=0.999):  # deliberately wrong: alpha_bar squared
    return _reference_cosine(T, s, max_beta) ** 2''',
               "my_cosine_alpha_bars follows the cosine schedule", 10),
}


def week(docname: str) -> str:
    return Path(docname).name.split("-")[0]


@cache
def notebooks(html: Path, docname: str) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """(student, solution) notebooks of a week."""
    student = nbformat.read(html / OUT_DIR / f"{docname}.ipynb", as_version=4)
    solution = nbformat.read(html / OUT_DIR / SOLUTIONS_DIR / f"{docname}.ipynb", as_version=4)
    return student, solution


def grade_id(cell: nbformat.NotebookNode) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def reference_code(solution: nbformat.NotebookNode) -> dict[str, str]:
    """The reference code of every task's solution cell, by grade id."""
    return {grade_id(c): "\n".join(line for line in c.source.splitlines()
                                   if line not in (BEGIN_SOLUTION, END_SOLUTION))
            for c in solution.cells
            if c.cell_type == "code" and (grade_id(c) or "").startswith("task")}


def submission(html: Path, docname: str, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The student notebook with ``answers`` (grade id -> code) in its solution cells."""
    student = nbformat.from_dict(json.loads(json.dumps(notebooks(html, docname)[0])))
    for cell in student.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return student


def test_every_week_page_is_an_assignment():
    assert WEEKS and WEEKS == ASSIGNMENTS


@pytest.mark.parametrize("docname", ASSIGNMENTS)
def test_the_page_links_both_notebooks_and_the_zips_hold_them(html, docname):
    page = (html / f"{docname}.html").read_text(encoding="utf-8")
    assert f'{OUT_DIR}/{docname}.ipynb" download>Student notebook' in page
    assert f'{OUT_DIR}/{SOLUTIONS_DIR}/{docname}.ipynb" download>Solution notebook' in page
    assert SOLUTIONS_ZIP_NAME in page
    with zipfile.ZipFile(html / OUT_DIR / ZIP_NAME) as archive:
        student = nbformat.reads(archive.read(f"{docname}.ipynb").decode(), as_version=4)
        assert not any(name.startswith(f"{SOLUTIONS_DIR}/") for name in archive.namelist())
    with zipfile.ZipFile(html / OUT_DIR / SOLUTIONS_ZIP_NAME) as archive:
        solution = nbformat.reads(archive.read(f"{docname}.ipynb").decode(), as_version=4)
    assert student == notebooks(html, docname)[0] and solution == notebooks(html, docname)[1]


def solution_definitions(solution: nbformat.NotebookNode) -> dict[str, str]:
    """Name -> source of every function and class the reference solution defines or imports
    from the package, and every statement of its solution cells."""
    import importlib

    found = {}
    for code in reference_code(solution).values():
        tree = ast.parse(code)
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("neuralarch"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    target = getattr(module, alias.name)
                    if inspect.isfunction(target) or inspect.isclass(target):
                        found[f"{node.module}.{alias.name}"] = inspect.getsource(target)
                found[f"import of {node.module}"] = ast.get_source_segment(code, node)
            elif not isinstance(node, ast.Import | ast.Expr):
                found[f"statement at line {node.lineno}"] = ast.get_source_segment(code, node)
    return found


def substantial_lines(source: str) -> set[str]:
    """The lines of a definition that give something away (not blank, not a comment, not a
    docstring, not a bare signature element)."""
    lines = set()
    for line in source.splitlines():
        text = line.strip()
        if len(text) >= 20 and not text.startswith(("#", '"""', "'''")):
            lines.add(text)
    return lines


def public_lines(solution: nbformat.NotebookNode) -> set[str]:
    """Lines the page shows to everybody: every cell of the solution notebook except the
    reference code between BEGIN and END SOLUTION (and markdown answers to exercises)."""
    lines, inside = set(), False
    for cell in solution.cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        for line in cell.source.splitlines():
            if line.strip() in (BEGIN_SOLUTION, END_SOLUTION):
                inside = line.strip() == BEGIN_SOLUTION
            elif not inside:
                lines.add(line.strip())
    return lines


@pytest.mark.parametrize("docname", ASSIGNMENTS)
def test_the_student_notebook_holds_no_solution_code(html, docname):
    student, solution = notebooks(html, docname)
    shown = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    # a line of the reference solution that the page also shows outside it (a check, a task
    # statement, a skeleton) gives nothing away
    allowed = public_lines(solution)
    leaks = {}
    definitions = solution_definitions(solution)
    assert definitions, f"{docname}: no reference solution found"
    for name, source in definitions.items():
        leaked = sorted((substantial_lines(source) & shown) - allowed)
        if leaked:
            leaks[name] = leaked[:3]
    assert not leaks, f"{docname}: the student notebook shows the reference solution: {leaks}"
    public = "\n".join(c.source for c in student.cells)
    assert BEGIN_SOLUTION not in public and "BEGIN MARK SCHEME" not in public
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_the_leak_scan_finds_a_leaked_solution(html):
    """The scan above can fail: a student notebook with a solution cell's code in it leaks."""
    solution = notebooks(html, ASSIGNMENTS[0])[1]
    cell_id, code = next(iter(reference_code(solution).items()))
    lines = substantial_lines(code) - public_lines(solution)
    assert lines, "the first reference solution has no line of its own"
    leaky = submission(html, ASSIGNMENTS[0], {cell_id: code})
    shown = {line.strip() for cell in leaky.cells for line in cell.source.splitlines()}
    assert lines & shown


@pytest.mark.parametrize("docname", ASSIGNMENTS)
def test_the_student_notebook_is_what_nbgrader_releases(html, docname, tmp_path):
    """A teacher who imports the solution notebook into nbgrader hands out the same notebook."""
    student, _ = notebooks(html, docname)
    name = Path(docname).name
    source = tmp_path / "source" / name
    source.mkdir(parents=True)
    (source / f"{name}.ipynb").write_bytes(
        (html / OUT_DIR / SOLUTIONS_DIR / f"{docname}.ipynb").read_bytes())
    scripts = str(Path(sys.executable).parent)
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", name],
                          cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={"PATH": scripts + ":/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    released = nbformat.read(tmp_path / "release" / name / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in released.cells] == [
        (c.cell_type, c.source, c.metadata.get("nbgrader")) for c in student.cells]


def record_time(docname: str, label: str, seconds: float) -> None:
    """Keep the measured grading times (the teacher's page and the report quote them); two
    test files on two workers write them, so under a lock."""
    TIMINGS.parent.mkdir(exist_ok=True)
    with FileLock(f"{TIMINGS}.lock"):
        times = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
        times.setdefault(docname, {})[label] = round(seconds, 1)
        TIMINGS.write_text(json.dumps(times, indent=1, sort_keys=True))


def run_grader(html: Path, docname: str, tmp_path: Path, submissions: dict[str, object],
               timeout: int) -> dict[str, dict]:
    """Grade submissions with the teacher's command; return the JSON reports by student."""
    folder = tmp_path / "submissions"
    folder.mkdir(exist_ok=True)
    for student, notebook in submissions.items():
        nbformat.write(notebook, folder / f"{student}.ipynb")
    reports = tmp_path / "reports"
    command = [sys.executable, "-m", "neuralarch.course.grade",
               str(html / OUT_DIR / SOLUTIONS_DIR / f"{docname}.ipynb"),
               *(str(folder / f"{s}.ipynb") for s in submissions),
               "--timeout", str(timeout), "--memory", "6G", "--report", str(reports)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {s: json.loads((reports / f"{s}.json").read_text()) for s in submissions}


@pytest.mark.parametrize("docname", ASSIGNMENTS)
def test_grading_reference_untouched_and_broken_submissions(html, docname, tmp_path):
    assert week(docname) in BROKEN, (
        f"{docname}: add a deliberately wrong function for this week to BROKEN in {__file__}")
    cell, wrong, description, points = BROKEN[week(docname)]
    reference = reference_code(notebooks(html, docname)[1])
    broken = {**reference, cell: reference[cell] + "\n" + wrong}
    reports = run_grader(html, docname, tmp_path, {
        "reference": submission(html, docname, reference),
        "untouched": notebooks(html, docname)[0],
        "broken": submission(html, docname, broken)}, GRADING_TIMEOUT_S)
    full = reports["reference"]
    for student, report in reports.items():
        record_time(docname, student, report["seconds"])
    assert full["score"] == full["max_score"] > 0, [c for c in full["cells"]
                                                    if c["status"] != "passed"]
    untouched = reports["untouched"]
    assert untouched["score"] == SKELETON_POINTS.get(week(docname), 0)
    assert untouched["max_score"] == full["max_score"]
    assert all(c["status"] in ("error", "failed", "passed") for c in untouched["cells"])
    assert any("not answered" in note for note in untouched["notes"])
    wrong_report = reports["broken"]
    assert wrong_report["score"] == full["max_score"] - points, wrong_report["cells"]
    failed = [check for c in wrong_report["cells"] for check in c["checks"] if not check["passed"]]
    assert len(failed) == 1 and description in failed[0]["description"], failed
    assert failed[0]["points"] == points

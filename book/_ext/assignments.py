"""The assignments of the course track's week pages as nbgrader notebooks.

A week page is an *assignment* when it has reference-solution cells: code cells tagged
``hide-input`` whose first line reads ``# Reference solution of Task N ...``. From such a page the
exporter (``notebooks.py``) writes two notebooks:

* the **solution notebook**, nbgrader's *source* version of the assignment: the whole page, with
  nbgrader's metadata on its cells. Reference-solution cells become *solution cells* (the code
  between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), and so do the code cells of the
  exercises' solutions (``{solution-start}`` … ``{solution-end}``). The Markdown of solutions
  (the ``{dropdown}``s whose title starts with "Reference solution", ``{solution}`` blocks, the
  text of ``{solution-start}`` … ``{solution-end}``) is split into cells of its own, nbgrader
  *task cells* worth no points whose *mark scheme* is the solution. Every code cell
  that records rubric checks (``rubric.check(task, description, points, ...)``) becomes a *grade
  cell* worth the points of its checks, read from the page's source, and ends with
  ``rubric.graded(n)``, whose numeric result is the partial credit nbgrader gives the cell. Every
  other code cell is read-only, so that autograding restores it.
* the **student notebook**: what ``nbgrader generate_assignment`` makes of the solution notebook
  (the same preprocessors, run here): code solutions replaced by ``# YOUR CODE HERE`` stubs,
  mark schemes removed, outputs cleared, checksums computed. A teacher imports the solution
  notebook into nbgrader unchanged.

The Rubric is the only source of points: the grade cells' points are the sum of their checks'
points, and the export fails unless they add up to the rubric's total.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat

SOLUTION_CELL = re.compile(r"^# Reference solution of Task (?P<task>\w+)")
SOLUTION_TAG = "hide-input"
SOLUTION_DROPDOWN = re.compile(r"^(?P<fence>:{3,})\{dropdown\}\s+Reference solution")
EXERCISE_SOLUTION = re.compile(r"^(?P<fence>:{3,})\{solution\}")
SOLUTION_START = re.compile(r"^(?P<fence>:{3,})\{solution-start\}")
SOLUTION_END = re.compile(r"^(?P<fence>:{3,})\{solution-end\}")
PAGE_SOLUTION_LINE = re.compile(r"^:tags: \[hide-input\]\n# Reference solution of Task \w+",
                                re.MULTILINE)
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_MARK_SCHEME, END_MARK_SCHEME = "### BEGIN MARK SCHEME", "### END MARK SCHEME"
HIDDEN_NOTE = "*The reference solution is in the solution notebook.*"
SCHEMA_VERSION = 3


class AssignmentError(ValueError):
    """A week page whose assignment nbgrader could not grade as the rubric says."""


def is_assignment_text(text: str) -> bool:
    """True when a MyST page's source has a reference-solution cell."""
    return PAGE_SOLUTION_LINE.search(text) is not None


def is_solution_cell(cell: nbformat.NotebookNode) -> bool:
    return (cell.cell_type == "code" and SOLUTION_TAG in cell.metadata.get("tags", [])
            and SOLUTION_CELL.match(cell.source) is not None)


def is_assignment(notebook: nbformat.NotebookNode) -> bool:
    return any(is_solution_cell(c) for c in notebook.cells)


# ---------------------------------------------------------------- the rubric, read from the source
@dataclass
class RubricSource:
    """The rubric a page declares: the variable that holds it, its tasks and their points."""

    name: str
    tasks: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.tasks.values())


def find_rubric(cells: list[nbformat.NotebookNode]) -> RubricSource:
    """The page's ``name = Rubric("weekNN", {task: points, ...})``, read without running it."""
    for cell in cells:
        if cell.cell_type != "code" or "Rubric(" not in cell.source:
            continue
        for node in ast.walk(ast.parse(_python(cell.source))):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "Rubric"
                    and isinstance(node.targets[0], ast.Name)):
                tasks = ast.literal_eval(node.value.args[1])
                return RubricSource(node.targets[0].id, dict(tasks))
    raise AssignmentError("an assignment page must declare `rubric = Rubric(week, {task: points})`")


def check_points(source: str, rubric: str) -> list[int]:
    """The points of every ``rubric.check(task, description, points, ...)`` call in a cell."""
    points = []
    for node in ast.walk(ast.parse(_python(source))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "check" and getattr(node.func.value, "id", None) == rubric):
            argument = (node.args[2] if len(node.args) > 2
                        else next((k.value for k in node.keywords if k.arg == "points"), None))
            try:
                points.append(int(ast.literal_eval(argument)))
            except (ValueError, TypeError):
                raise AssignmentError(f"a check's points must be a literal int: "
                                      f"{ast.unparse(node)[:80]}") from None
    return points


def _python(source: str) -> str:
    """A cell's code with IPython magics and shell escapes blanked out, for ``ast``."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


# ---------------------------------------------------------------- solutions inside Markdown
@dataclass
class _Scan:
    in_exercise_solution: bool = False  # between {solution-start} and {solution-end}
    pieces: list[tuple[str, nbformat.NotebookNode]] = field(default_factory=list)


def _split_markdown(source: str, scan: _Scan) -> list[tuple[str, bool]]:
    """Split one MyST Markdown cell into (text, is_solution) pieces."""
    pieces: list[tuple[str, bool]] = []
    current: list[str] = []
    lines = source.split("\n")

    def flush(solution: bool) -> None:
        if any(line.strip() for line in current):
            pieces.append(("\n".join(current), solution))
        current.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if scan.in_exercise_solution:
            current.append(line)
            i += 1
            end = SOLUTION_END.match(line)
            if end:
                if i < len(lines) and lines[i].strip() == end["fence"]:
                    current.append(lines[i])
                    i += 1
                flush(True)
                scan.in_exercise_solution = False
            continue
        block = SOLUTION_DROPDOWN.match(line) or EXERCISE_SOLUTION.match(line)
        if block:
            flush(False)
            current.append(line)
            i += 1
            while i < len(lines) and lines[i].strip() != block["fence"]:
                current.append(lines[i])
                i += 1
            if i < len(lines):
                current.append(lines[i])
                i += 1
            flush(True)
            continue
        if SOLUTION_START.match(line):
            flush(False)
            scan.in_exercise_solution = True
            continue  # the line is taken by the branch above
        current.append(line)
        i += 1
    flush(scan.in_exercise_solution)
    return pieces


# ---------------------------------------------------------------- the two notebooks
def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False,
              locked: bool = False, task: bool = False, points: int | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version":
            SCHEMA_VERSION, "solution": solution, "task": task}
    if points is not None:
        meta["points"] = points
    return meta


def solution_notebook(notebook: nbformat.NotebookNode,
                      convert: Callable[[str], nbformat.NotebookNode],
                      ) -> nbformat.NotebookNode:
    """nbgrader's source version of an executed assignment page.

    ``notebook`` is the page as executed (MyST Markdown cells, outputs); ``convert`` turns one
    piece of MyST Markdown into a plain-Markdown cell (with its attachments).
    """
    rubric = find_rubric(notebook.cells)
    out = copy.deepcopy(notebook)
    cells: list[nbformat.NotebookNode] = []
    scan, counters = _Scan(), {}
    graded: dict[str, int] = {}

    def grade_id(prefix: str) -> str:
        counters[prefix] = counters.get(prefix, 0) + 1
        return f"{prefix}-{counters[prefix]}"

    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for text, solution in _split_markdown(cell.source, scan):
                markdown = convert(text)
                if solution:  # a task cell worth no points whose mark scheme is the solution
                    markdown.source = (f"{HIDDEN_NOTE}\n\n{BEGIN_MARK_SCHEME}\n\n"
                                       f"{markdown.source}\n\n{END_MARK_SCHEME}")
                    markdown.metadata["nbgrader"] = _nbgrader(grade_id("solution-text"),
                                                              task=True, locked=True, points=0)
                cells.append(markdown)
            continue
        cell = copy.deepcopy(cell)
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        points = check_points(cell.source, rubric.name)
        if scan.in_exercise_solution:
            cell.metadata["nbgrader"] = _nbgrader(grade_id("exercise-code"), solution=True)
        elif is_solution_cell(cell):
            task = SOLUTION_CELL.match(cell.source)["task"]
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != SOLUTION_TAG]
            if not cell.metadata["tags"]:
                del cell.metadata["tags"]
            cell.source = (f"# Task {task}: your code here (the task above says what to define).\n"
                           f"{BEGIN_SOLUTION}\n{cell.source}\n{END_SOLUTION}")
            cell.metadata["nbgrader"] = _nbgrader(grade_id(f"task{task}-solution"),
                                                  solution=True)
        elif points:
            gid = grade_id("checks")
            graded[gid] = sum(points)
            cell.source += (f"\n{rubric.name}.graded({len(points)})  # nbgrader credits this "
                            f"cell the points its {len(points)} checks earned")
            cell.metadata["nbgrader"] = _nbgrader(gid, grade=True, locked=True,
                                                  points=sum(points))
        else:
            cell.metadata["nbgrader"] = _nbgrader(grade_id("readonly"), locked=True)
        cells.append(cell)
    if sum(graded.values()) != rubric.total:
        raise AssignmentError(f"the grade cells' checks add up to {sum(graded.values())} points, "
                              f"the rubric's tasks to {rubric.total}: {graded}")
    out.cells = cells
    for index, cell in enumerate(out.cells):
        cell["id"] = f"cell-{index}"
    nbformat.validate(out)
    return out


# nbgrader generate_assignment's preprocessors, less the ones that need its database.
def student_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version: what ``nbgrader generate_assignment`` makes of the solution notebook."""
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        IncludeHeaderFooter,
        InstantiateTests,
        LockCells,
    )

    notebook = copy.deepcopy(solution)
    resources = {"language": "python", "metadata": {"path": "."}}
    for preprocessor in (IncludeHeaderFooter, InstantiateTests, LockCells, ClearSolutions,
                         ClearOutput, CheckCellMetadata, ComputeChecksums, ClearHiddenTests,
                         ClearMarkScheme, ComputeChecksums, CheckCellMetadata):
        notebook, resources = preprocessor().preprocess(notebook, resources)
    nbformat.validate(notebook)
    return notebook

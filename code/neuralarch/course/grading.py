"""Automatic checks with points for the course track's assignments.

The rubric is the one source of the points: a week page declares its tasks with their points and
records each check with its own points. The assignment notebooks the book exports for nbgrader
(Jupyter's assignment system) make every cell that records checks a *grade cell* worth the points
of its checks, ending with :meth:`Rubric.graded`, whose output is what nbgrader credits the cell
(see ``neuralarch.course.grade``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CheckResult:
    """The outcome of one graded check."""

    task: str
    description: str
    points: int
    passed: bool
    detail: str = ""


CHECKS_MIME = "application/vnd.neuralarch.checks+json"


@dataclass
class CellGrade:
    """The points a grade cell's checks earned: shown as the bare number (nbgrader reads a numeric
    result as the cell's partial credit), with the checks themselves as JSON for the grader's
    report."""

    earned: int
    points: int
    results: list[CheckResult]

    def __repr__(self) -> str:
        return str(self.earned)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        checks = [{"task": r.task, "description": r.description, "points": r.points,
                   "passed": r.passed, "detail": r.detail} for r in self.results]
        return {"text/plain": str(self.earned),
                CHECKS_MIME: {"earned": self.earned, "points": self.points, "checks": checks}}


@dataclass
class Rubric:
    """A week's grading rubric: tasks with points; checks award a task's points if they pass."""

    week: str
    tasks: dict[str, int]
    results: list[CheckResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        for task, points in self.tasks.items():
            if not isinstance(points, int) or points <= 0:
                raise ValueError(f"task {task!r} needs a positive int of points, got {points!r}")

    @property
    def total(self) -> int:
        """Points available in the whole assignment."""
        return sum(self.tasks.values())

    def check(self, task: str, description: str, points: int,
              condition: bool | Callable[[], bool], detail: str = "") -> CheckResult:
        """Record one check worth ``points`` of ``task``; return its result (never raises)."""
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; the rubric has {list(self.tasks)}")
        allotted = sum(r.points for r in self.results if r.task == task) + points
        if allotted > self.tasks[task]:
            raise ValueError(f"checks of task {task!r} would award {allotted} points, "
                             f"more than its {self.tasks[task]}")
        try:
            passed = bool(condition() if callable(condition) else condition)
        except Exception as error:  # a crashing check is a failed check, with the reason
            passed, detail = False, f"{type(error).__name__}: {error}"
        result = CheckResult(task, description, points, passed, detail)
        self.results.append(result)
        return result

    def graded(self, checks: int) -> CellGrade:
        """The last ``checks`` results (one grade cell's checks) and the points they earned."""
        if not 0 < checks <= len(self.results):
            raise ValueError(f"a grade cell with {checks} checks, but {len(self.results)} "
                             "checks were recorded")
        mine = self.results[-checks:]
        return CellGrade(sum(r.points for r in mine if r.passed), sum(r.points for r in mine),
                         mine)

    def score(self) -> int:
        """Points earned by the checks that passed."""
        return sum(r.points for r in self.results if r.passed)

    def table(self) -> list[dict[str, object]]:
        """One row per task: points available, checks run, points earned."""
        rows = []
        for task, points in self.tasks.items():
            mine = [r for r in self.results if r.task == task]
            rows.append({"task": task, "points": points, "checks": len(mine),
                         "earned": sum(r.points for r in mine if r.passed)})
        return rows

    def assert_complete(self) -> None:
        """Raise if a task's checks do not add up to its points or any check failed."""
        for row in self.table():
            checked = sum(r.points for r in self.results if r.task == row["task"])
            if checked != row["points"]:
                raise AssertionError(f"task {row['task']!r}: checks cover {checked} of "
                                     f"{row['points']} points")
        failed = [r for r in self.results if not r.passed]
        if failed:
            raise AssertionError("failed checks: " + "; ".join(
                f"{r.task}: {r.description} {r.detail}".strip() for r in failed))

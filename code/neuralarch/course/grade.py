"""Grade students' assignment notebooks with nbgrader, each in a separate, limited process.

    python -m neuralarch.course.grade SOLUTION.ipynb SUBMISSION.ipynb [SUBMISSION ...]
        [--timeout 600] [--total-timeout 3600] [--memory 4G] [--report DIR]

``SOLUTION.ipynb`` is a week's solution notebook from the book (nbgrader's *source* version of
the assignment); each ``SUBMISSION.ipynb`` is a student's copy of the student notebook, named
after the student (``alice.ipynb``). For every submission the command runs nbgrader's own
``generate_assignment`` and ``autograde`` in a scratch course folder, and prints and writes a
report per check: the points of each grade cell, and for every lost point the reason (a check that
failed and why, an exception, a time limit, the memory limit).

Each ``autograde`` runs in its own process group with a memory limit (``RLIMIT_AS``), no core
files, a limit on the size of files it writes, a scratch working and home folder, a per-cell time
limit (``--timeout``: nbgrader interrupts the cell and goes on) and a limit on the whole
submission (``--total-timeout``: the process group is killed). Where the kernel allows
unprivileged user namespaces (``unshare --net --map-root-user``), it runs without network: only
the loopback that Jupyter's kernel protocol needs. This is *not* a sandbox for hostile code: the
student's code runs as the user who grades, can read that user's files and can tamper with the
checks of its own notebook. Grade untrusted work inside a container (see the teacher's page).

The grader's arithmetic is nbgrader's: a grade cell earns the number it outputs (the points its
checks earned, ``Rubric.graded``), nothing when it raises or writes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neuralarch.course.grading import CHECKS_MIME

NETWORK_ENV = "NEURALARCH_GRADE_NETWORK"  # "off" to run without unshare (no isolation)
MEMORY_MARKERS = ("MemoryError", "can't allocate memory", "Cannot allocate memory",
                  "std::bad_alloc", "out of memory")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class CellReport:
    """One nbgrader grade cell of a submission."""

    grade_id: str
    tasks: list[str]
    points: float
    earned: float
    status: str  # passed | failed | error | timeout | memory | not run
    reason: str = ""
    checks: list[dict] = field(default_factory=list)


@dataclass
class Report:
    """A graded submission."""

    student: str
    assignment: str
    score: float
    max_score: float
    seconds: float
    cells: list[CellReport]
    notes: list[str]
    limits: dict

    def text(self) -> str:
        lines = [f"{self.student} — {self.assignment}: {self.score:g} / {self.max_score:g} points "
                 f"(graded in {self.seconds:.1f} s)"]
        for cell in self.cells:
            tasks = ", ".join(cell.tasks) or cell.grade_id
            lines.append(f"  {cell.earned:>5g} / {cell.points:<3g} {tasks} [{cell.status}]"
                         + (f": {cell.reason}" if cell.reason else ""))
            for check in cell.checks:
                if not check["passed"]:
                    detail = f" ({check['detail']})" if check["detail"] else ""
                    lines.append(f"        lost {check['points']}: {check['description']}{detail}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- limits of the grading process
def parse_memory(text: str) -> int:
    """Bytes in '4G', '512M', '1.5G' or a plain number of bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 4G, 512M)")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[match[2].upper()]
    return int(float(match[1]) * scale)


def limit_process(memory: int, file_size: int = 2**30) -> None:
    """In the child before it executes: memory, file-size and core-file limits."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def network_isolation() -> list[str]:
    """The command prefix that runs without network, or [] where that is not possible."""
    if os.environ.get(NETWORK_ENV) == "off" or shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "--net", "--map-root-user", "true"],
                           capture_output=True, check=False)
    return ["unshare", "--net", "--map-root-user"] if probe.returncode == 0 else []


def loopback_up() -> None:
    """Bring up ``lo`` in a fresh network namespace (the kernel talks to nbgrader through it)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sh", fcntl.ioctl(sock, siocgifflags,
                                                  struct.pack("16sh", b"lo", 0)))[1]
        if not flags & iff_up:
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


# ---------------------------------------------------------------- one course folder per run
def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "student"


def with_scripts(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this Python's scripts first on PATH (nbgrader runs ``alembic`` from it)."""
    scripts = str(Path(sys.executable).parent)
    return {**env, "PATH": os.pathsep.join([scripts, env.get("PATH", os.defpath)])}


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, text=True,
                          capture_output=True, check=False, env=with_scripts(dict(os.environ)))


def prepare_course(solution: Path, course: Path, timeout: int) -> str:
    """A course folder holding the assignment, released by nbgrader's ``generate_assignment``."""
    assignment = safe_name(solution.stem)
    source = course / "source" / assignment
    source.mkdir(parents=True)
    shutil.copy(solution, source / f"{assignment}.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        "c.CourseDirectory.course_id = 'neural-architecture'\n"
        f"c.Execute.timeout = {int(timeout)}\n"
        "c.Execute.interrupt_on_timeout = True\n")
    done = nbgrader(course, "generate_assignment", assignment, "--force")
    if done.returncode:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{done.stdout}{done.stderr}")
    return assignment


def autograde(course: Path, assignment: str, student: str, submission: Path, *,
              memory: int, total_timeout: float, isolation: list[str]) -> tuple[str, str]:
    """Run nbgrader ``autograde`` on one submission in a limited process; return (outcome, log)."""
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    shutil.copy(submission, folder / f"{assignment}.ipynb")
    home = Path(tempfile.mkdtemp(prefix="home-", dir=course))
    env = {key: value for key, value in os.environ.items()
           if key in ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
           or key.startswith("NEURALARCH_")}
    env = with_scripts(env)
    env.update(HOME=str(home), IPYTHONDIR=str(home / ".ipython"), MPLCONFIGDIR=str(home / "mpl"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_CONFIG_DIR=str(home / "config"), TMPDIR=str(home),
               PYTHONUNBUFFERED="1", NEURALARCH_QUIET="1")
    command = [*isolation, sys.executable, "-m", "neuralarch.course.grade", "--autograde-worker",
               assignment, student]
    process = subprocess.Popen(command, cwd=course, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=lambda: limit_process(memory))
    try:
        log, _ = process.communicate(timeout=total_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        return "total-timeout", log
    finally:
        if process.poll() is None:  # pragma: no cover - communicate() waited for it
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):  # what it left running (a kernel) goes too
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode < 0:
        return f"killed by signal {-process.returncode}", log
    return ("ok" if process.returncode == 0 else f"nbgrader exited with {process.returncode}"), log


def worker(assignment: str, student: str) -> int:
    """Inside the limited process (and network namespace): nbgrader autograde, nothing else."""
    with contextlib.suppress(OSError):  # not in a namespace of our own: lo is up already
        loopback_up()
    argv = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--student", student,
            "--force"]
    return subprocess.run(argv, check=False).returncode


# ---------------------------------------------------------------- reading the graded notebook
def error_reason(output: dict, timeout: int) -> tuple[str, str]:
    name, value = output.get("ename", ""), ANSI.sub("", str(output.get("evalue", "")))
    text = f"{name}: {value}".strip(": ")
    # nbgrader interrupts a cell at its time limit: the kernel reports a KeyboardInterrupt.
    if name in ("CellTimeoutError", "KeyboardInterrupt") or "timeout" in name.lower():
        return "timeout", f"stopped by the time limit ({timeout} s per cell)"
    if any(marker in text for marker in MEMORY_MARKERS):
        return "memory", f"out of memory (the memory limit): {text[:200]}"
    return "error", text[:300]


def read_cells(path: Path, timeout: int) -> tuple[list[CellReport], list[str]]:
    """The grade cells of an (autograded) notebook, as nbgrader scores them, and notes on the
    solution cells that raised or ran out of time."""
    import nbformat
    from nbgrader.utils import determine_grade, is_grade, is_solution

    cells, notes = [], []
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if cell.cell_type == "code" and is_solution(cell) and errors:
            status, reason = error_reason(errors[0], timeout)
            if status != "error" or "NotImplementedError" not in reason:
                notes.append(f"solution cell {meta['grade_id']}: {reason}")
            else:
                notes.append(f"solution cell {meta['grade_id']}: not answered")
        if not is_grade(cell) or is_solution(cell):
            continue
        earned, points = determine_grade(cell)
        checks = next((o["data"][CHECKS_MIME]["checks"] for o in cell.get("outputs", [])
                       if CHECKS_MIME in o.get("data", {})), [])
        tasks = sorted({c["task"] for c in checks}) or re.findall(
            r"\.check\(\s*\"([^\"]+)\"", cell.source)[:1]
        stderr = [o for o in cell.get("outputs", [])
                  if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        if errors:
            status, reason = error_reason(errors[0], timeout)
        elif not cell.get("outputs") and cell.get("execution_count") is None:
            status, reason = "not run", "the cell did not run"
        elif stderr:
            status, reason = "error", "wrote to stderr: " + "".join(
                o.get("text", "") for o in stderr).strip()[:200]
        elif earned < points:
            status, reason = "failed", f"{sum(not c['passed'] for c in checks)} check(s) failed"
        else:
            status, reason = "passed", ""
        cells.append(CellReport(meta["grade_id"], list(tasks), points, earned or 0, status,
                                reason, checks))
    return cells, notes


def grade(solution: Path, submissions: list[Path], *, timeout: int = 600,
          total_timeout: float = 3600, memory: int = 4 * 2**30,
          report_dir: Path | None = None, keep: Path | None = None) -> list[Report]:
    """Grade each submission against the solution notebook; return (and write) the reports."""
    isolation = network_isolation()
    limits = {"timeout_per_cell_s": timeout, "total_timeout_s": total_timeout,
              "memory_bytes": memory, "network": "off" if isolation else "not isolated"}
    reports = []
    with tempfile.TemporaryDirectory(prefix="neuralarch-grade-") as scratch:
        course = Path(scratch)
        assignment = prepare_course(Path(solution), course, timeout)
        source = course / "source" / assignment / f"{assignment}.ipynb"
        empty_cells, _ = read_cells(source, timeout)  # every grade cell, with its points
        used: set[str] = set()
        for submission in map(Path, submissions):
            student = safe_name(submission.stem)
            while student in used:
                student += "-2"
            used.add(student)
            started = time.perf_counter()
            outcome, log = autograde(course, assignment, student, submission, memory=memory,
                                     total_timeout=total_timeout, isolation=isolation)
            seconds = time.perf_counter() - started
            graded = course / "autograded" / student / assignment / f"{assignment}.ipynb"
            notes = []
            if outcome == "ok" and graded.is_file():
                cells, notes = read_cells(graded, timeout)
            else:
                why = {"total-timeout": f"stopped by the total time limit ({total_timeout:g} s)"
                       }.get(outcome, outcome)
                if "MemoryError" in log or "Cannot allocate memory" in log:
                    why += "; out of memory (the memory limit)"
                cells = [CellReport(c.grade_id, c.tasks, c.points, 0, "not run", why)
                         for c in empty_cells]
                notes.append(f"nbgrader did not finish: {why}")
                notes += [line for line in log.splitlines()[-5:] if line.strip()]
            report = Report(student, assignment, sum(c.earned for c in cells),
                            sum(c.points for c in cells), seconds, cells, notes, limits)
            reports.append(report)
            if report_dir is not None:
                report_dir.mkdir(parents=True, exist_ok=True)
                (report_dir / f"{student}.json").write_text(json.dumps(report.to_json(),
                                                                       indent=1))
                (report_dir / f"{student}.txt").write_text(report.text() + "\n")
        if keep is not None:  # the course folder, for nbgrader's own tools
            shutil.copytree(course, keep, dirs_exist_ok=True)
    return reports


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--autograde-worker"]:
        return worker(*argv[1:3])
    parser = argparse.ArgumentParser(prog="python -m neuralarch.course.grade",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("solution", type=Path, help="the week's solution notebook")
    parser.add_argument("submissions", type=Path, nargs="+", help="students' notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    parser.add_argument("--total-timeout", type=float, default=3600,
                        help="seconds per submission (3600)")
    parser.add_argument("--memory", type=parse_memory, default="4G",
                        help="address-space limit of the grading process (4G)")
    parser.add_argument("--report", type=Path, default=None,
                        help="folder for STUDENT.json and STUDENT.txt reports")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy nbgrader's course folder (gradebook.db, autograded/) here")
    args = parser.parse_args(argv)
    reports = grade(args.solution, args.submissions, timeout=args.timeout,
                    total_timeout=args.total_timeout, memory=args.memory,
                    report_dir=args.report, keep=args.keep)
    for report in reports:
        print(report.text())
    if args.report is not None:
        summary = [{"student": r.student, "score": r.score, "max_score": r.max_score,
                    "seconds": round(r.seconds, 1)} for r in reports]
        (args.report / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The teacher's page runs: its commands grade a submission with the built book's notebooks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from notebooks import OUT_DIR, SOLUTIONS_ZIP_NAME

PAGE = ROOT / "book" / "preface" / "teaching-with-the-book.md"
WEEK = "book/weeks/week01-backprop-optimisation"


def commands() -> list[str]:
    """The page's ```bash blocks, in order (```text blocks are not run: they need a network or
    Docker)."""
    return re.findall(r"^```bash\n(.*?)\n```$", PAGE.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)


def test_the_teachers_commands_grade_a_submission(html, tmp_path):
    assert len(commands()) >= 2
    shutil.copy(html / OUT_DIR / SOLUTIONS_ZIP_NAME, tmp_path)
    (tmp_path / "submissions").mkdir()
    shutil.copy(html / OUT_DIR / f"{WEEK}.ipynb", tmp_path / "submissions" / "alice.ipynb")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = "set -euo pipefail\n" + "\n".join(commands())
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "reports" / "alice.json").read_text())
    assert (report["score"], report["max_score"]) == (0, 100)
    assert "alice — week01-backprop-optimisation: 0 / 100 points" in done.stdout
    grades = (tmp_path / "course" / "grades.csv").read_text()
    assert "alice" in grades and "week01-backprop-optimisation" in grades

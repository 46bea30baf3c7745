"""The executor in front of Sphinx (tools/execute_book.py), on a two-page book built in a tmp dir.

The book's pages import a copy of ``neuralarch`` placed inside the tiny book, so a test can edit
a package function the way an author would, rebuild, and look at the published HTML.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

TOOL = ROOT / "tools" / "execute_book.py"
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
FRONT = ("---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
         "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n")


def page(title: str, code: str) -> str:
    return f"{FRONT}# {title}\n\nSome text.\n\n```{{code-cell}} python\n{code}\n```\n"


def make_book(root: Path, pages: dict[str, str]) -> Path:
    shutil.copytree(ROOT / "code" / "neuralarch", root / "code" / "neuralarch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "_config.yml").write_text(
        "title: tiny\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: cache\n"
        "  timeout: 60\nsphinx:\n  local_extensions:\n"
        f"    execution_report: {ROOT / 'book' / '_ext'}\n")
    names = list(pages)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: {names[0]}\nchapters:\n"
                                   + "".join(f"  - file: {n}\n" for n in names[1:]))
    for name, text in pages.items():
        (root / f"{name}.md").write_text(text)
    return root


def env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root / "code")}  # the copy shadows the install


def execute(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--root", str(root), "--no-models", *args],
                          env=env(root), capture_output=True, text=True, timeout=300)


def build(root: Path) -> None:
    done = subprocess.run([str(JUPYTER_BOOK), "build", str(root), "-W", "-n", "--keep-going"],
                          env=env(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Executing notebook" not in done.stdout + done.stderr  # Sphinx only renders


def report(root: Path) -> dict:
    return json.loads((root / "_build" / "execution-report.json").read_text())


def test_a_package_edit_re_executes_the_pages_that_import_it(tmp_path):
    root = make_book(tmp_path / "book", {
        "intro": page("Intro", 'from neuralarch.repro import derive_seed\n'
                               'print("seed", derive_seed(1, "page"))'),
        "other": page("Other", 'from neuralarch.timing import best_seconds\n'
                               'print("timing ok", callable(best_seconds))'),
    })
    first = execute(root, "--jobs", "2")
    assert first.returncode == 0, first.stderr
    assert report(root)["executed"] == 2
    build(root)
    before = re.search(r"seed (\d+)", (root / "_build/html/intro.html").read_text())[1]

    repro = root / "code" / "neuralarch" / "repro.py"  # an author edits a package function
    source = repro.read_text()
    edited = re.sub(r"(def derive_seed\(.*?\n)(.*?)(    return [^\n]*)",
                    lambda m: m[1] + m[2] + "    return 12345", source, count=1, flags=re.S)
    assert edited != source
    repro.write_text(edited)

    second = execute(root)
    assert second.returncode == 0, second.stderr
    rows = {row["page"]: row["cached"] for row in report(root)["pages"]}
    assert rows == {"intro.md": False, "other.md": True}  # only the page that imports repro.py
    build(root)
    html = (root / "_build/html/intro.html").read_text()
    assert "seed 12345" in html and f"seed {before}" not in html

    third = execute(root)  # nothing changed: everything from the cache
    assert report(root)["executed"] == 0 and third.returncode == 0


def test_a_failing_cell_fails_the_run_naming_page_cell_and_line(tmp_path):
    failing = "```{code-cell} python\nraise ValueError('broken on purpose')\n```\n"
    bad = page("Bad", "x = 1") + "\n" + failing
    root = make_book(tmp_path / "book", {"intro": page("Intro", "print('fine')"), "bad": bad})
    done = execute(root, "--jobs", "2")
    assert done.returncode == 1
    lines = bad.splitlines()
    line = max(i for i, text in enumerate(lines, 1) if text == "```{code-cell} python")
    assert f"FAILED bad.md: cell 2 (line {line}): ValueError" in done.stdout, done.stdout
    assert "broken on purpose" in done.stderr
    result = report(root)
    assert [f["page"] for f in result["failures"]] == ["bad.md"]
    assert [row["page"] for row in result["pages"]] == ["intro.md"]  # the other page still ran

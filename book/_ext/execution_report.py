"""The build's execution, as Sphinx sees it: page dependencies and the build report.

``tools/execute_book.py`` executes every page before Sphinx runs and writes, per page, the files
of the book's own code that the page imported (``_build/.jupyter_cache/page-inputs/``), and one
report of the run (``_build/execution-report.json``). This extension

* declares each page's inputs file a dependency of the page, so a page that executed again
  is read again (Sphinx otherwise keeps a page whose Markdown did not change), and
* renders the report with the ``execution-report`` directive (the *Execution status* page):
  each page's time, each shared model's training time, the cold-build totals and the machine.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

REPORT = "execution-report.json"
BENCH = "execution-benchmark.json"
INPUTS_DIR = Path(".jupyter_cache") / "page-inputs"
BUDGET_MINUTES = 30


def build_dir(app: Sphinx) -> Path:
    return Path(app.outdir).parent


def note_page_inputs(app: Sphinx, doctree: nodes.document) -> None:
    """Make the page's recorded inputs a dependency of the page (see the module docstring)."""
    inputs = build_dir(app) / INPUTS_DIR / f"{app.env.docname}.md.json"
    if inputs.is_file():
        app.env.note_dependency(str(inputs))


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def report_markdown(report: dict, bench: dict | None) -> list[str]:
    """The report as MyST Markdown: machine, totals, shared models, pages."""
    machine = report["machine"]
    cold = report.get("cold")
    lines = [f"Built on **{machine['cpu']}**, {machine['cores']} cores, "
             f"{machine['memory_gib']} GiB memory ({machine['platform']}, Python "
             f"{machine['python']}, torch {machine['torch']}), {report['jobs']} pages at a time "
             f"with {report['threads_per_page']} thread(s) each; finished {report['finished']}.",
             ""]
    if cold:
        verdict = "within" if cold["total"] <= BUDGET_MINUTES * 60 else "**over**"
        lines += [f"**Cold build** (empty caches, wall clock): shared models "
                  f"{minutes(cold['models'])} + pages {minutes(cold['pages'])} = "
                  f"**{minutes(cold['total'])}**, {verdict} the {BUDGET_MINUTES}-minute budget.",
                  ""]
    lines += [f"This build executed {report['executed']} pages and took "
              f"{report['from_cache']} from the cache: shared models "
              f"{minutes(report['wall']['models'])}, pages {minutes(report['wall']['pages'])}.",
              ""]
    if bench:
        lines += [f"Serial against parallel cold execution, measured in one run on this kind of "
                  f"machine: one page at a time {minutes(bench['serial']['total'])}, "
                  f"{bench['parallel']['jobs']} at a time {minutes(bench['parallel']['total'])}"
                  f" — **{bench['speedup']}×**.", ""]
    for name in report.get("trained_in_pages", []):
        lines += [f"* **A page trained the shared model `{name}`** itself: list it in "
                  "`neuralarch.book_models` so that the build trains it before the pages.", ""]
    if report["models"]:
        lines += ["| Shared model | Training time | This build |", "|:--|--:|:--|"]
        lines += [f"| `{m['name']}` | {m['seconds']:.1f} s | "
                  f"{'trained' if m['trained_now'] else 'loaded from the model cache'} |"
                  for m in report["models"]]
        lines.append("")
    times = [p["seconds"] for p in report["pages"]]
    if times:
        lines += [f"{len(times)} pages; median {statistics.median(times):.1f} s, slowest "
                  f"{max(times):.1f} s.", ""]
    lines += ["| Page | Execution time | Source |", "|:--|--:|:--|"]
    lines += [f"| {{doc}}`/{p['page'].removesuffix('.md')}` | {p['seconds']:.1f} s | "
              f"{'cache' if p['cached'] else 'executed in this build'} |"
              for p in report["pages"]]
    for failure in report.get("failures", []):
        lines.append(f"* **Failed:** `{failure['page']}`, cell {failure['cell']}: "
                     f"{failure['error']}")
    return lines


class ExecutionReport(SphinxDirective):
    """Render ``_build/execution-report.json`` (written by ``tools/execute_book.py``)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        build = build_dir(self.env.app)
        path = build / REPORT
        if not path.is_file():
            raise self.error(f"{path} is missing: build the book with `make book`, which "
                             "executes the pages with tools/execute_book.py first")
        self.env.note_dependency(str(path))  # a new report re-renders this page
        bench_path = build / BENCH
        if bench_path.is_file():
            self.env.note_dependency(str(bench_path))
        bench = json.loads(bench_path.read_text()) if bench_path.is_file() else None
        text = report_markdown(json.loads(path.read_text()), bench)
        container = nodes.container(classes=["execution-report"])
        self.state.nested_parse(StringList(text, source=str(path)), self.content_offset,
                                container)
        return [container]


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", note_page_inputs)
    app.add_directive("execution-report", ExecutionReport)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

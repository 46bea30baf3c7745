"""The built site: executed pages without errors, notebooks for every lesson, no broken links."""

from __future__ import annotations

import statistics
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from conftest import BUILD, executable_pages, executed_notebook_path, lesson_pages

PAGE_BUDGET_S = 120
MODULE1_BUDGET_S = 60
MEDIAN_BUDGET_S = 20
COLD_BOOK_BUDGET_S = 30 * 60  # DESIGN.md: shared models + pages from an empty cache, wall clock


def test_the_book_has_module_1_and_its_lessons():
    lessons = [d for d in lesson_pages() if "/m01-" in d]
    assert len(lessons) == 6, lessons


@pytest.mark.parametrize("docname", executable_pages())
def test_every_executable_page_ran_without_errors(html, docname):
    executed = nbformat.read(executed_notebook_path(html, docname), as_version=4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert code_cells, f"{docname} has no code cells"
    assert any(c.outputs for c in code_cells), f"{docname} has no outputs at all"
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{docname}: error output {errors[0].get('ename')}"
    page = (html / f"{docname}.html").read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" not in page
    assert 'class="notebook-links"' in page


@pytest.mark.parametrize("docname", lesson_pages())
def test_every_lesson_has_its_notebook(html, docname):
    notebook = nbformat.read(html / "_notebooks" / f"{docname}.ipynb", as_version=4)
    nbformat.validate(notebook)
    setup = notebook.cells[1].source
    assert "find_spec(m)" in setup and "neuralarch[notebooks]" in setup
    with zipfile.ZipFile(html / "_notebooks" / "neural-architecture-notebooks.zip") as archive:
        assert f"{docname}.ipynb" in archive.namelist()


def execution_report() -> dict:
    """The report tools/execute_book.py wrote for this build (the Execution status page)."""
    import json

    path = BUILD / "execution-report.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: `make book` writes it when it executes the pages")
    return json.loads(path.read_text())


def test_pages_execute_within_the_time_budget(html):
    report = execution_report()
    assert not report["failures"], report["failures"]
    assert not report["trained_in_pages"], (
        f"pages trained the shared models {report['trained_in_pages']} themselves: list them in "
        "neuralarch.book_models so the build trains them before the pages")
    times = {row["page"].removesuffix(".md"): row["seconds"] for row in report["pages"]}
    missing = set(executable_pages()) - set(times)
    assert not missing, f"no execution record for {sorted(missing)}"
    for docname, seconds in times.items():
        budget = MODULE1_BUDGET_S if "/m01-" in docname else PAGE_BUDGET_S
        assert seconds <= budget, f"{docname} took {seconds:.0f} s (budget {budget} s)"
    assert statistics.median(times.values()) <= MEDIAN_BUDGET_S


def test_a_cold_build_stays_within_the_book_budget(html):
    cold = execution_report()["cold"]
    assert cold is not None, "no cold build recorded: run `make clean book` once"
    assert cold["total"] <= COLD_BOOK_BUDGET_S, (
        f"the cold book took {cold['total']:.0f} s (models {cold['models']:.0f} s, pages "
        f"{cold['pages']:.0f} s); the budget is {COLD_BOOK_BUDGET_S} s")


def test_the_execution_status_page_shows_the_report(html):
    report = execution_report()
    page = (html / "book" / "appendix" / "execution-status.html").read_text(encoding="utf-8")
    assert report["machine"]["cpu"] in page
    for row in report["models"]:
        assert row["name"] in page
    assert page.count("executed in this build") + page.count(">cache<") == len(report["pages"])


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def test_no_broken_internal_links(html):
    pages = {p: _parse(p) for p in html.rglob("*.html") if "_static" not in p.parts}
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(html)} -> {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(html)} -> {link} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken[:30])

"""Each reader notebook shows what its HTML page shows (checks on the built book).

The page and its notebook are compared element by element: the excerpts of every
``literalinclude`` (exactly, in order), every glued value, cross-reference and piece of
mathematics, and the text of every paragraph, exercise, solution and dropdown. No MyST syntax may
be left in the notebook's Markdown.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup, Tag
from conftest import executable_pages, executed_notebook_path
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from notebooks import LITERALINCLUDE_CLASS

PAGES = executable_pages()
# A literalinclude in the notebook: its "From `path`:" line, then a fence of three or more `.
NOTEBOOK_INCLUDE = re.compile(r"^From `[^`\n]+`:\n\n(?P<fence>`{3,})[\w+-]*\n"
                              r"(?P<code>.*?)\n(?P=fence)$", re.MULTILINE | re.DOTALL)
MYST_DIRECTIVE = re.compile(r"^(:{3,}|`{3,})\{.*$", re.MULTILINE)
# roles (not inside a code span), label lines, and "$$ (label)" on one line
MYST_INLINE = re.compile(r"\{glue|(?<!`)\{[\w:-]+\}`[^`]*`|^:label:.*$|^\([\w:-]+\)=\s*$"
                         r"|^\$\$[ \t]*\(.*$", re.MULTILINE)
CODE_BLOCK = re.compile(r"^(?P<fence>`{3,})[\w+-]*\n.*?\n(?P=fence)$", re.MULTILINE | re.DOTALL)
# Sphinx's MathJax output wraps a formula with line breaks (\\) in a split environment.
SPLIT = re.compile(r"^\s*\\begin\{split\}(?P<tex>.*)\\end\{split\}\s*$", re.DOTALL)
# What Sphinx's smart quotes change in the page's prose, mapped back to what the source has.
TYPOGRAPHY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "---", "–": "--",
                            "…": "..."})


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.translate(TYPOGRAPHY)).strip()


@cache
def page(html: Path, docname: str) -> Tag:
    """The article of the HTML page, without permalinks and without the code cells and their
    outputs (a notebook has those as code cells, which the other site checks compare), and
    without the build report, which belongs to the build that made the site."""
    soup = BeautifulSoup((html / f"{docname}.html").read_text(encoding="utf-8"), "html.parser")
    article = soup.select_one("article.bd-article")
    assert article is not None, f"{docname}: no article in the HTML page"
    for element in article.select("a.headerlink, div.cell, div.notebook-links, "
                                  "div.execution-report"):
        element.decompose()
    return article


@cache
def markdown(html: Path, docname: str) -> str:
    """The Markdown cells of the page's reader notebook (a week's solution notebook: its student
    notebook leaves the solutions out)."""
    notebook = nbformat.read(executed_notebook_path(html, docname), as_version=4)
    return "\n\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


@cache
def notebook_text(html: Path, docname: str) -> str:
    """The notebook's Markdown as a reader sees it rendered: its text, with math as TeX."""
    renderer = MarkdownIt("commonmark").enable("table").use(
        dollarmath_plugin, allow_space=True, allow_digits=True, double_inline=False)
    rendered = BeautifulSoup(renderer.render(markdown(html, docname)), "html.parser")
    for math in rendered.select(".math"):
        math.replace_with(f" {math.get_text()} ")
    return normalise(rendered.get_text())


def page_text(element: Tag) -> str:
    """An element's text as the page shows it, math as TeX (without MathJax's delimiters)."""
    return normalise(re.sub(r"\\[()]", " ", element.get_text()))


def missing_texts(html: Path, docname: str, elements: list[Tag]) -> list[str]:
    """The texts of ``elements`` that the rendered notebook does not contain."""
    haystack = notebook_text(html, docname)
    return [text for text in map(page_text, elements) if text and text not in haystack]


@pytest.mark.parametrize("docname", PAGES)
def test_literalincludes_show_the_pages_excerpts(html, docname):
    shown = [block.select_one("pre").get_text().rstrip("\n")
             for block in page(html, docname).select(f"div.{LITERALINCLUDE_CLASS}")]
    exported = [m["code"].rstrip("\n") for m in NOTEBOOK_INCLUDE.finditer(markdown(html, docname))]
    assert len(exported) == len(shown), f"{docname}: page {len(shown)}, notebook {len(exported)}"
    for index, (on_page, in_notebook) in enumerate(zip(shown, exported, strict=True)):
        assert in_notebook == on_page, f"{docname}: literalinclude {index + 1} differs"


@pytest.mark.parametrize("docname", PAGES)
def test_glued_values_read_as_on_the_page(html, docname):
    haystack, position = notebook_text(html, docname), 0
    for value in page(html, docname).select("span.pasted-text, span.pasted-inline"):
        text = normalise(value.get_text())
        found = haystack.find(text, position)
        assert found >= 0, f"{docname}: glued value {text!r} is missing or out of order"
        position = found + len(text)


@pytest.mark.parametrize("docname", PAGES)
def test_cross_references_read_as_on_the_page(html, docname):
    links = [a for a in page(html, docname).select("a.reference.internal") if a.get_text().strip()]
    missing = missing_texts(html, docname, links)
    assert not missing, f"{docname}: references not in the notebook: {missing[:5]}"
    raw = re.findall(r"\{(?:ref|numref|eq|doc|cite)\}`[^`]*`", markdown(html, docname))
    assert not raw, f"{docname}: unresolved roles in the notebook: {raw[:5]}"


@pytest.mark.parametrize("docname", PAGES)
def test_every_formula_is_in_the_notebook(html, docname):
    source = normalise(markdown(html, docname))
    missing = []
    for math in page(html, docname).select("span.math"):  # \(tex\) on the page, $tex$ in Markdown
        tex = normalise(math.get_text()).removeprefix("\\(").removesuffix("\\)").strip()
        if not re.search(r"\$\s*" + re.escape(tex) + r"\s*\$", source):
            missing.append(tex)
    display = page(html, docname).select("div.math")  # \[tex\], numbered: \tag{n} in Markdown
    for math in display:
        text = math.get_text()
        tex = normalise(SPLIT.sub(r"\g<tex>", text[text.index("\\[") + 2:text.rindex("\\]")]))
        number = math.select_one("span.eqno")
        tag = rf"\tag{{{number.get_text().strip('() ')}}}" if number else ""
        if tex not in source or tag not in source:
            missing.append(tex + tag)
    assert not missing, f"{docname}: formulas missing from the notebook: {missing[:3]}"
    assert markdown(html, docname).count("$$") >= 2 * len(display)


@pytest.mark.parametrize("docname", PAGES)
def test_exercises_solutions_and_dropdowns_are_in_the_notebook(html, docname):
    boxes = page(html, docname).select(
        "div.exercise, div.solution, details.sd-dropdown, div.admonition")
    missing = [text for box in boxes
               for text in missing_texts(html, docname, box.select("p, summary, li"))]
    assert not missing, f"{docname}: not in the notebook: {missing[:3]}"


@pytest.mark.parametrize("docname", PAGES)
def test_every_paragraph_is_in_the_notebook(html, docname):
    paragraphs = page(html, docname).select("p, li, h1, h2, h3, h4, h5, h6, figcaption")
    missing = missing_texts(html, docname, paragraphs)
    assert not missing, f"{docname}: {len(missing)} paragraphs not in the notebook: {missing[:3]}"


@pytest.mark.parametrize("docname", PAGES)
def test_no_myst_syntax_is_left(html, docname):
    text = markdown(html, docname)
    leftovers = {m.group(0) for m in MYST_DIRECTIVE.finditer(text)}
    leftovers |= {m.group(0) for m in MYST_INLINE.finditer(CODE_BLOCK.sub("", text))}
    assert not leftovers, f"{docname}: MyST syntax in the notebook: {sorted(leftovers)}"

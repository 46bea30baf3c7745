"""Accessible names for the expand/collapse toggles that the theme and MyST-NB write.

* The theme (pydata-sphinx-theme 0.17, through sphinx-book-theme) builds the sidebar navigation in
  Python: every entry with sub-pages gets a ``<details><summary>`` whose only content is a
  decorative chevron, so screen readers announce an unnamed button (WCAG 4.1.2; axe:
  ``summary-name``). No theme option changes that markup, so this extension wraps the theme's
  ``generate_toctree_html`` template function and names each empty ``<summary>`` after the page
  it expands.
* MyST-NB 1.4 writes ``hide-input`` cells as ``<summary aria-label="Toggle hidden content">``
  around the visible text "Show code cell source": a name that is not the visible text (WCAG
  2.5.3; axe: ``label-content-name-mismatch``). The HTML visitor is replaced by one without the
  ``aria-label``, so the visible prompt is the name.
"""

from __future__ import annotations

import functools
from html import escape

from bs4 import BeautifulSoup, Tag
from sphinx.application import Sphinx


def label_toggles(tree: Tag) -> Tag:
    """Give every ``<summary>`` without text an ``aria-label`` naming the section it opens."""
    for summary in tree.select("li > details > summary"):
        if summary.get_text(strip=True) or summary.get("aria-label"):
            continue
        item = summary.find_parent("li")
        link = item.find("a", recursive=False) if item else None
        title = " ".join(link.get_text(" ", strip=True).split()) if link else ""
        summary["aria-label"] = (f"Show or hide the pages of “{title}”" if title
                                 else "Show or hide the pages of this section")
    return tree


def wrap_toctree_function(app: Sphinx, pagename: str, templatename: str, context: dict,
                          doctree: object) -> None:
    original = context.get("generate_toctree_html")
    if not callable(original) or getattr(original, "labels_toggles", False):
        return

    @functools.wraps(original)
    def generate_toctree_html(*args, **kwargs):
        result = original(*args, **kwargs)
        if isinstance(result, Tag):
            return label_toggles(result)
        if isinstance(result, str) and "<summary" in result:
            return str(label_toggles(BeautifulSoup(result, "html.parser")))
        return result

    generate_toctree_html.labels_toggles = True  # type: ignore[attr-defined]
    context["generate_toctree_html"] = generate_toctree_html


def visit_hidden_cell(self, node) -> None:
    """Open a ``hide-input`` cell: the visible prompt ("Show code cell source") names the toggle."""
    classes = " ".join(node["classes"])
    self.body.append(f'<details class="admonition hide {classes}">\n<summary>\n')
    self.body.append(f'<p class="collapsed admonition-title">{escape(node["prompt_show"])}</p>\n')
    self.body.append(f'<p class="expanded admonition-title">{escape(node["prompt_hide"])}</p>\n')
    self.body.append("</summary>\n")


def depart_hidden_cell(self, node) -> None:
    self.body.append("</details>\n")


def setup(app: Sphinx) -> dict:
    # after the theme's handler (priority 500), which puts generate_toctree_html in the context
    app.connect("html-page-context", wrap_toctree_function, priority=900)
    app.setup_extension("myst_nb")  # registers the node whose HTML visitor is replaced here
    from myst_nb.sphinx_ import HideCodeCellNode

    app.add_node(HideCodeCellNode, override=True, html=(visit_hidden_cell, depart_hidden_cell))
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

"""The book's citation, from CITATION.cff: version substitutions and a `{citation-bibtex}` block."""

from __future__ import annotations

from pathlib import Path

import yaml
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util.docutils import SphinxDirective


def read_citation(srcdir: str | Path) -> dict:
    """The parsed CITATION.cff at the repository root."""
    return yaml.safe_load((Path(srcdir) / "CITATION.cff").read_text(encoding="utf-8"))


def bibtex(citation: dict) -> str:
    """A BibTeX @book entry for the citation metadata."""
    year = str(citation["date-released"])[:4]
    authors = " and ".join(a.get("name") or f"{a['family-names']}, {a['given-names']}"
                           for a in citation["authors"])
    return (f"@book{{neural_architecture_{year},\n"
            f"  title   = {{{{{citation['title']}}}}},\n"
            f"  author  = {{{{{authors}}}}},\n"
            f"  year    = {{{year}}},\n"
            f"  version = {{{citation['version']}}},\n"
            f"  url     = {{{citation['url']}}},\n"
            f"  note    = {{Executable textbook; code at {citation['repository-code']}}}\n}}")


class CitationBibtex(SphinxDirective):
    """Render the BibTeX entry generated from CITATION.cff."""

    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir) / "CITATION.cff"
        self.env.note_dependency(str(path))
        text = bibtex(read_citation(self.env.srcdir))
        block = nodes.literal_block(text, text, language="bibtex")
        return [block]


def add_version(app: Sphinx, config: Config) -> None:
    """Expose the version and release date as `{{ book_version }}` and `{{ book_date }}`."""
    citation = read_citation(app.srcdir)
    config.version = config.release = str(citation["version"])
    config.myst_substitutions = {**config.myst_substitutions,
                                 "book_version": str(citation["version"]),
                                 "book_date": str(citation["date-released"])}


def setup(app: Sphinx) -> dict:
    app.add_directive("citation-bibtex", CitationBibtex)
    app.connect("config-inited", add_version)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

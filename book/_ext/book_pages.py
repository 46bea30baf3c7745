"""Which pages the book has: its table of contents in reading order, and which pages execute.

One definition shared by the notebook exporter, the executor in front of Sphinx
(``tools/execute_book.py``) and the site checks in ``tests/``.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def toc_docnames(root: Path) -> list[str]:
    """Every page of ``root/_toc.yml`` (root page, parts, chapters, sections), in reading order."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8"))

    def walk(entries: list[dict]) -> list[str]:
        docs = []
        for entry in entries:
            docs += [entry["file"]] if "file" in entry else []
            for key in ("parts", "chapters", "sections"):
                docs += walk(entry.get(key, []))
        return docs

    return [toc["root"], *walk([toc])]  # the top level holds `parts` (or `chapters`)


def is_executable(source: Path) -> bool:
    """True when a MyST page is a notebook (its front matter declares a kernel)."""
    text = Path(source).read_text(encoding="utf-8")
    return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]


def executable_docnames(root: Path) -> list[str]:
    """The pages of the table of contents that execute code, in reading order."""
    return [doc for doc in toc_docnames(root) if is_executable(Path(root) / f"{doc}.md")]

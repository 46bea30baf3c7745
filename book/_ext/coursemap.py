"""`{course-map}` directive: the whole course from book/course.yml, linking pages that exist."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import yaml
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def load_course(srcdir: str | Path) -> dict:
    """Read the course definition shipped with the book."""
    return yaml.safe_load((Path(srcdir) / "book" / "course.yml").read_text(encoding="utf-8"))


class CourseMap(SphinxDirective):
    """Render the modules, lessons, extra topics and weeks; link the ones that are written."""

    has_content = False
    option_spec: ClassVar[dict] = {"section": lambda arg: arg.strip()}

    def link(self, doc: str, title: str) -> str:
        self.env.note_dependency(str(Path(self.env.srcdir) / "book" / "course.yml"))
        if doc in self.env.found_docs:
            return f"{{doc}}`{title} </{doc}>`"
        return title

    def markdown(self) -> list[str]:
        course = load_course(self.env.srcdir)
        section = self.options.get("section", "all")
        lines: list[str] = []
        if section in ("all", "modules"):
            for part in course["parts"]:
                lines += [f"**{part['title']}**", ""]
                for module in part["modules"]:
                    number = int(module["id"][1:])
                    index = f"book/{module['dir']}/index"
                    lines.append(f"* Module {number} — " + self.link(index, module["title"]))
                    for i, (slug, title) in enumerate(module["lessons"], 1):
                        doc = f"book/{module['dir']}/{slug}"
                        lines.append(f"  - {number}.{i} " + self.link(doc, title))
                lines.append("")
            extra = course["extra"]
            lines += [f"**{extra['title']}**", ""]
            for slug, title in extra["lessons"]:
                lines.append("* " + self.link(f"book/{extra['dir']}/{slug}", title))
            lines.append("")
        if section in ("all", "weeks"):
            lines += ["| Week | Lecture | Assignment | Reads |", "|---|---|---|---|"]
            for number, (slug, lecture, assignment, reads) in enumerate(course["weeks"], 1):
                week = self.link(f"book/weeks/{slug}", f"{number:02d}")
                lines.append(f"| {week} | {lecture} | {assignment} | {', '.join(reads)} |")
        return lines

    def run(self) -> list[nodes.Node]:
        container = nodes.container(classes=["course-map"])
        self.state.nested_parse(StringList(self.markdown()), self.content_offset, container)
        return [container]


def setup(app):
    app.add_directive("course-map", CourseMap)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

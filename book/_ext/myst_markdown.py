"""MyST Markdown → the Markdown that plain Jupyter renders, for the reader notebooks.

Used by ``notebooks.py``. The conversion leans on Sphinx and myst-nb wherever they already know
the answer: ``literalinclude`` excerpts come from Sphinx's ``LiteralIncludeReader``, glued values
are formatted by myst-nb, and a :class:`Page` resolves cross-references (the base class keeps a
role's own text; ``notebooks.SphinxPage`` asks the build's domains).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urljoin

import nbformat
from docutils import nodes
from sphinx.config import Config
from sphinx.util.nodes import split_explicit_title

# ---------------------------------------------------------------- MyST → plain Markdown
FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
ROLE = re.compile(r"(?<!`)\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")  # not inside a code span
LABEL_TARGET = re.compile(r"^\([\w:-]+\)=\s*$")
MATH_END_LABEL = re.compile(r"^\$\$\s*\((?P<label>[\w:-]+)\)\s*$")  # "$$ (label)" ends a block
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
# Roles without a domain prefix, and the (domain, role) that Sphinx resolves them with ({eq} is
# the math domain's numref role under another name).
ROLE_TARGETS = {"ref": ("std", "ref"), "numref": ("std", "numref"), "doc": ("std", "doc"),
                "term": ("std", "term"), "eq": ("math", "numref"), "cite": ("cite", "p")}


class Reference(NamedTuple):
    """A resolved cross-reference: its text, and its Markdown (links to the online book)."""

    text: str
    markdown: str


def inline_markdown(node: nodes.Node, base_url: str) -> str:
    """Markdown for a resolved inline node (text, emphasis, literals, links made absolute)."""
    if isinstance(node, nodes.Text):
        return node.astext()
    inner = "".join(inline_markdown(child, base_url) for child in node.children)
    if isinstance(node, nodes.reference):
        uri = node.get("refuri") or ("#" + node["refid"] if node.get("refid") else "")
        return f"[{inner}]({urljoin(base_url, uri)})"
    if isinstance(node, nodes.emphasis):
        return f"*{inner}*"
    if isinstance(node, nodes.strong):
        return f"**{inner}**"
    if isinstance(node, nodes.literal):
        return f"`{inner}`"
    return inner


class Page:
    """What the converter knows about one page besides its Markdown: the glued outputs, how to
    read included files, and how cross-references resolve.

    This base class resolves no reference (a role shows its own text); ``SphinxPage`` asks the
    build, so that references read as on the HTML page.
    """

    def __init__(self, srcdir: Path, glue: dict[str, dict] | None = None,
                 config: Config | None = None) -> None:
        self.srcdir = Path(srcdir)
        self.glue = glue or {}
        self.config = config or Config()
        self.attachments: dict[str, dict[str, str]] = {}  # images of the cell being converted
        self.exercise_titles: dict[str, str] = {}  # by label, for the titles of their solutions

    def include_path(self, argument: str) -> Path:
        """The file a ``literalinclude`` argument names (``/x`` is relative to the book root)."""
        return self.srcdir / argument.lstrip("/")

    def reference(self, role: str, target: str, title: str | None) -> Reference | None:
        """A cross-reference as the page shows it, or None where it does not resolve."""
        return None

    def equation_number(self, label: str) -> int | None:
        return None


def glue_data(notebook: nbformat.NotebookNode) -> dict[str, dict]:
    """The outputs glued in an executed notebook, by name, as myst-nb reads them for the page.

    Like myst-nb, this takes glued outputs that the page does not display (``display=False``)
    out of their cells: Jupyter could not show them either (their mime types are prefixed).
    """
    from myst_nb.ext.glue import extract_glue_data_cell

    values: dict[str, dict] = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            values.update((key, output.get("data", {}))
                          for key, output in extract_glue_data_cell(cell))
    return values


def render_role(match: re.Match, page: Page) -> str:
    from myst_nb.core.variables import format_plain_text

    role, body = match["role"], match["body"]
    if role in ("glue", "glue:any", "glue:text"):  # as myst-nb's roles paste them
        key, spec = body.rsplit(":", 1) if role == "glue:text" and ":" in body else (body, "s")
        text = page.glue.get(key, {}).get("text/plain")
        if text is None:
            return f"`{key}`"
        # the page shows the value as plain text: in Markdown, "<unk>" would be an HTML tag
        return html.escape(format_plain_text(text, spec) if role == "glue:text" else str(text),
                           quote=False)
    if role == "math":
        return f"${body}$"
    explicit, title, target = split_explicit_title(body)  # "text <target>", as Sphinx reads it
    resolved = page.reference(role, target, title if explicit else None)
    if resolved is not None:
        return resolved.markdown
    text = title
    if role == "cite" or role.startswith("cite:"):
        return "[" + ", ".join(k.strip() for k in text.split(",")) + "]"
    if role == "eq":
        return f"({text})"
    return f"*{text}*" if role in ROLE_TARGETS else f"`{text}`"


def convert_markdown(text: str, page: Page) -> str:
    """Turn one MyST Markdown cell into Markdown that plain Jupyter renders."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = FENCE_OPEN.match(line)
        if LABEL_TARGET.match(line):
            i += 1
            continue
        if not opened:
            if re.fullmatch(r":{3,}", line.strip()):
                i += 1  # closing fence of a block directive
                continue
            labelled = MATH_END_LABEL.match(line)
            if labelled:  # display math with a label: number it as the page does
                number = page.equation_number(labelled["label"])
                out.extend([rf"\tag{{{number}}}", "$$"] if number is not None else ["$$"])
            else:
                out.append(ROLE.sub(lambda m: render_role(m, page), line))
            i += 1
            continue
        fence, name, arg = opened["fence"], opened["name"], opened["arg"].strip()
        i += 1
        options: dict[str, str] = {}
        while i < len(lines) and OPTION.match(lines[i]):
            options[OPTION.match(lines[i])["key"]] = OPTION.match(lines[i])["value"]
            i += 1
        body: list[str] = []
        if fence.startswith("`"):  # backtick directives close with the same fence
            while i < len(lines) and lines[i].strip() != fence:
                body.append(lines[i])
                i += 1
            i += 1
        out.extend(convert_directive(name, arg, options, body, page))
    return "\n".join(out)


def code_fence(code: str, language: str) -> list[str]:
    """A fenced Markdown code block that holds ``code`` whatever backticks it contains."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, code, fence]


def literal_include(argument: str, options: dict[str, str], page: Page) -> list[str]:
    """The text a ``literalinclude`` shows, read by Sphinx's own reader with the same options."""
    from sphinx.directives.code import LiteralInclude, LiteralIncludeReader

    spec = LiteralInclude.option_spec
    parsed = {key: spec[key](value) if key in spec else value for key, value in options.items()}
    path = page.include_path(argument)
    text, _ = LiteralIncludeReader(str(path), parsed, page.config).read()
    language = parsed.get("language") or ("python" if path.suffix == ".py" else "")
    return [f"From `{argument.lstrip('/')}`:", "", *code_fence(text.rstrip("\n"), language)]


def glue_figure(key: str, options: dict[str, str], body: list[str], page: Page) -> list[str]:
    """A glued figure: its image (a cell attachment) and its numbered caption."""
    caption = convert_markdown("\n".join(b for b in body if b.strip()), page).strip()
    label = options.get("name")
    number = page.reference("numref", label, None) if label else None
    title = f"**{number.text}** " if number else ""
    data = page.glue.get(key, {})
    mime = next((m for m in IMAGE_TYPES if m in data), None)
    if mime is None:
        return [f"{title}{caption}"]
    name = f"{key}.{IMAGE_TYPES[mime]}"
    page.attachments[name] = {mime: data[mime]}
    alt = number.text if number else key
    return [f"![{alt}](attachment:{name})", "", f"{title}{caption}"]


def convert_directive(name: str, arg: str, options: dict[str, str], body: list[str],
                      page: Page) -> list[str]:
    if name == "literalinclude":
        return literal_include(arg, options, page)
    if name in ("code-block", "code", "sourcecode"):
        return code_fence("\n".join(body), arg)
    if name == "math":
        return ["$$", *body, "$$"]
    if name == "glue:figure":
        return glue_figure(arg, options, body, page)
    if name in ("bibliography", "toctree", "tableofcontents", "course-map", "nb-exec-table"):
        return []
    if name == "execution-report":  # measured by the build that made the site, not by the reader
        return [f"*The times of this site's build are in the table on [the online page]"
                f"({page.url}).*"]
    if name == "solution-end":
        return [""]
    if name in ("solution", "solution-start"):  # the argument is the exercise's label
        exercise = page.reference("numref", arg, None) if arg else None
        title = f" ({page.exercise_titles[arg]})" if arg in page.exercise_titles else ""
        label = f"**Solution to {exercise.text}{title}**" if exercise else "**Solution.**"
    elif name == "exercise":  # numbered and titled as sphinx-exercise titles it
        number = page.reference("numref", options["label"], None) if "label" in options else None
        label = f"**{number.text if number else 'Exercise'}**"
        if arg:
            page.exercise_titles[options.get("label", "")] = convert_markdown(arg, page)
            label += f" ({page.exercise_titles[options.get('label', '')]})"
    elif name in ("dropdown", "admonition") and arg:
        label = f"**{convert_markdown(arg, page)}**"
    else:
        label = f"**{name.capitalize()}.**"
    inner = convert_markdown("\n".join(body), page) if body else ""
    return [label, "", inner] if inner else [label, ""]

"""Reader notebooks: a download link and an "Open in Colab" link on every executable page, and a
stand-alone ``.ipynb`` per page (plus one zip of all of them) written next to the HTML.

The exported notebook is the page as executed by the build, made self-sufficient: a first cell
installs ``neuralarch`` when it is missing, and MyST-only syntax that Jupyter cannot render becomes
plain Markdown that reads like the page: ``literalinclude`` shows the excerpt Sphinx's own reader
takes, glue roles the values and glued figures the images of the executed page, and
cross-references, citations and equation numbers the text Sphinx's domains resolve them to, as
links into the online book.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urljoin

import nbformat
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.nodes import split_explicit_title

logger = logging.getLogger(__name__)

OUT_DIR = "_notebooks"
ZIP_NAME = "neural-architecture-notebooks.zip"
SOURCE_REF_ENV = "NEURALARCH_SOURCE_REF"
LITERALINCLUDE_CLASS = "nb-literalinclude"

SETUP_SOURCE = '''\
# Set-up for running this notebook on its own (Colab, a fresh virtual environment): install the
# book's package `neuralarch` with the extras its pages use, if any of them is missing. Data files
# are downloaded on first use and verified against their sha256 checksums.
import importlib.util
import subprocess
import sys

if any(importlib.util.find_spec(m) is None for m in ("neuralarch", "myst_nb", "jsonschema")):
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "{requirement}"])'''


# ---------------------------------------------------------------- which pages are executable
def is_executable(source: Path) -> bool:
    """True when a MyST page is a notebook (its front matter declares a kernel)."""
    text = source.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    front = text.split("---", 2)[1]
    return "kernelspec:" in front


def executable_docs(app: Sphinx) -> list[str]:
    """Docnames of every page in the book that executes code."""
    return sorted(d for d in app.env.found_docs
                  if str(app.env.doc2path(d)).endswith(".md")
                  and is_executable(Path(app.env.doc2path(d))))


# ---------------------------------------------------------------- links on the page
def page_url(app: Sphinx, docname: str) -> str:
    """The page's address in the online book."""
    return app.config.html_baseurl.rstrip("/") + f"/{docname}.html"


def colab_url(app: Sphinx, docname: str) -> str:
    repo, branch = app.config.notebooks_repository, app.config.notebooks_branch
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{docname}.ipynb"


def add_links(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Insert the notebook links under the title of every executable page."""
    if app.builder.format != "html" or not is_executable(Path(app.env.doc2path(docname))):
        return
    up = "../" * docname.count("/")
    html = (
        '<div class="notebook-links">'
        f'<a class="nb-download" href="{up}{OUT_DIR}/{docname}.ipynb" download>'
        "Download notebook (.ipynb)</a> · "
        f'<a class="nb-colab" href="{colab_url(app, docname)}">Open in Colab</a> · '
        f'<a class="nb-zip" href="{up}{OUT_DIR}/{ZIP_NAME}">All notebooks (.zip)</a></div>'
    )
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    title_index = next((i for i, n in enumerate(section.children) if isinstance(n, nodes.title)), 0)
    section.insert(title_index + 1, nodes.raw("", html, format="html"))


def mark_literalincludes(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Give every ``literalinclude`` block a class, so the site checks can compare it with the
    notebook (Sphinx's directive is the only one that records the included file as ``source``)."""
    if app.builder.format != "html":
        return
    for block in doctree.findall(nodes.literal_block):
        if block.get("source"):
            block["classes"].append(LITERALINCLUDE_CLASS)


# ---------------------------------------------------------------- MyST → plain Markdown
FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")
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


class SphinxPage(Page):
    """A page of the book being built: references resolve through Sphinx's own domains."""

    def __init__(self, app: Sphinx, docname: str) -> None:
        super().__init__(Path(app.srcdir), config=app.config)
        self.app, self.docname = app, docname
        self.url = page_url(app, docname)

    def include_path(self, argument: str) -> Path:
        return Path(self.app.env.relfn2path(argument, self.docname)[1])

    def reference(self, role: str, target: str, title: str | None) -> Reference | None:
        from sphinx.roles import XRefRole

        domain_name, typ = (role.split(":", 1) if ":" in role
                            else ROLE_TARGETS.get(role, ("py", role)))  # {func} is Python's
        env = self.app.env
        try:
            domain = env.get_domain(domain_name)
        except ExtensionError:  # a role of an extension without a domain: keep its text
            return None
        role_object = domain.roles.get(typ)
        if not isinstance(role_object, XRefRole):
            return None
        # The title and target as XRefRole.create_xref_node makes them ...
        explicit, title = title is not None, title or target
        if role_object.lowercase:  # {ref} and {numref} labels
            target = target.lower()
        if role_object.fix_parens and not explicit:  # {func}`f` reads f()
            title = title.removesuffix("()") + "()" * self.config.add_function_parentheses
            target = target.removesuffix("()")
        pending = addnodes.pending_xref("", refdomain=domain_name, reftype=typ,
                                        refexplicit=explicit, refdoc=self.docname, refwarn=False)
        title, target = role_object.process_link(env, pending, explicit, title, target)
        pending["reftarget"] = target
        content = role_object.innernodeclass(title, title)
        pending += content
        # ... and resolved by the domain, as Sphinx's ReferencesResolver resolves it.
        resolved = domain.resolve_xref(env, self.docname, self.app.builder, typ, target, pending,
                                       content)
        if resolved is None:
            return None
        return Reference(resolved.astext(), inline_markdown(resolved, self.url))

    def equation_number(self, label: str) -> int | None:
        return self.app.env.get_domain("math").get_equation_number_for(label)


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
        return format_plain_text(text, spec) if role == "glue:text" else str(text)
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


def export_notebook(notebook: nbformat.NotebookNode, page: Page, requirement: str,
                    page_url: str) -> nbformat.NotebookNode:
    """Return the reader's notebook built from the executed notebook of one page."""
    reader = copy.deepcopy(notebook)
    page.glue = {**glue_data(reader), **page.glue}
    for cell in reader.cells:
        if cell.cell_type == "markdown":
            page.attachments = {}
            cell.source = convert_markdown(cell.source, page)
            if page.attachments:
                cell["attachments"] = page.attachments
    intro = nbformat.v4.new_markdown_cell(
        f"*This notebook is a page of the open textbook **Neural Architecture** ([read it online]"
        f"({page_url})). Run the first cell to install the book's package if needed.*")
    setup = nbformat.v4.new_code_cell(SETUP_SOURCE.format(requirement=requirement))
    reader.cells = [intro, setup, *reader.cells]
    reader.metadata.pop("mystnb", None)
    reader.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                     "name": "python3"}
    for index, cell in enumerate(reader.cells):
        cell["id"] = f"cell-{index}"
    nbformat.validate(reader)
    return reader


def executed_notebook(app: Sphinx, docname: str) -> nbformat.NotebookNode:
    """The page with the outputs of its execution, taken from the execution cache.

    myst-nb's own copy in ``_build/jupyter_execute`` lacks the outputs when a page's result came
    from the cache, so the outputs are merged from jupyter-cache directly.
    """
    from jupyter_cache import get_cache
    from myst_nb.core.read import read_myst_markdown_notebook

    source = Path(app.env.doc2path(docname))
    notebook = read_myst_markdown_notebook(source.read_text(encoding="utf-8"), path=source)
    cache = get_cache(Path(app.outdir).parent / ".jupyter_cache")
    try:
        _, merged = cache.merge_match_into_notebook(notebook)
    except KeyError:
        raise RuntimeError(f"{docname}: no executed result in the execution cache; "
                           "was the page executed in this build?") from None
    return merged


@contextmanager
def lookups_memoised(env: BuildEnvironment) -> Iterator[None]:
    """Memoise two lookups that resolving references repeats with the same answer.

    Sphinx unpickles the target page's doctree for every numbered reference, and pybtex finds
    its plug-ins anew for every citation: for the ~1,700 references of the book's notebooks that
    took most of two minutes. While the notebooks are written, each is done once.
    """
    try:
        import pybtex.plugin as pybtex_plugin
    except ImportError:  # no sphinxcontrib-bibtex, no citations
        pybtex_plugin = None
    env.get_doctree = functools.cache(env.get_doctree)  # shadows the method on this instance
    if pybtex_plugin is not None:
        find_plugin = pybtex_plugin.find_plugin
        pybtex_plugin.find_plugin = functools.cache(find_plugin)
    try:
        yield
    finally:
        del env.get_doctree
        if pybtex_plugin is not None:
            pybtex_plugin.find_plugin = find_plugin


def write_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build: write every page's reader notebook and the zip of all of them."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / OUT_DIR
    ref = os.environ.get(SOURCE_REF_ENV, app.config.notebooks_source_ref)
    requirement = (f"neuralarch[notebooks] @ git+https://github.com/{app.config.notebooks_repository}"
                   f"@{ref}#subdirectory=code")
    written, started = [], time.perf_counter()
    with lookups_memoised(app.env):
        for docname in executable_docs(app):
            reader = export_notebook(executed_notebook(app, docname), SphinxPage(app, docname),
                                     requirement, page_url(app, docname))
            target = out / f"{docname}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(reader, target)
            written.append(target)
    with zipfile.ZipFile(out / ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in written:
            archive.write(path, path.relative_to(out))
    logger.info(f"notebooks: wrote {len(written)} reader notebooks and {ZIP_NAME} "
                f"in {time.perf_counter() - started:.1f} s")


def setup(app: Sphinx) -> dict:
    app.add_config_value("notebooks_repository", "neural-architecture/neural-architecture", "html")
    app.add_config_value("notebooks_branch", "notebooks", "html")
    app.add_config_value("notebooks_source_ref", "main", "html")
    app.connect("doctree-resolved", add_links)
    app.connect("doctree-resolved", mark_literalincludes)
    app.connect("build-finished", write_notebooks)
    # env_version: pages built before the literalinclude class existed are written again.
    return {"version": "1.1", "env_version": 1, "parallel_read_safe": True,
            "parallel_write_safe": True}

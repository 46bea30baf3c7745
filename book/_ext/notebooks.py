"""Reader notebooks: a download link and an "Open in Colab" link on every executable page, and a
stand-alone ``.ipynb`` per page (plus one zip of all of them) written next to the HTML.

The exported notebook is the page as executed by the build, made self-sufficient: a first cell
installs ``neuralarch`` when it is missing, and MyST-only syntax that Jupyter cannot render
(``literalinclude``, glue roles, cross-reference roles, directive fences) becomes plain Markdown.
"""

from __future__ import annotations

import copy
import json
import os
import re
import zipfile
from pathlib import Path

import nbformat
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

OUT_DIR = "_notebooks"
ZIP_NAME = "neural-architecture-notebooks.zip"
SOURCE_REF_ENV = "NEURALARCH_SOURCE_REF"

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


# ---------------------------------------------------------------- MyST → plain Markdown
FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")
LABEL_TARGET = re.compile(r"^\([\w:-]+\)=\s*$")


def python_object_source(path: Path, name: str) -> str:
    """Source of a top-level function/class (or ``Class.method``) in a Python file."""
    import ast

    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines()
    body: list[ast.stmt] = tree.body
    node = None
    for part in name.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.ClassDef)) and n.name == part), None)
        if node is None:
            raise ValueError(f"{path}: no object {name!r} for literalinclude :pyobject:")
        body = getattr(node, "body", [])
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return "\n".join(lines[start - 1:node.end_lineno])


def glue_values(notebook: nbformat.NotebookNode) -> dict[str, object]:
    """Values glued in an executed notebook, by name (text form or Python literal)."""
    values: dict[str, object] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            text = output.get("data", {}).get("text/plain", "")
            try:
                values[name] = json.loads(text) if text not in ("", None) else text
            except (ValueError, TypeError):
                values[name] = text.strip("'\"")
    return values


def render_glue(body: str, values: dict[str, object]) -> str:
    name, _, spec = body.partition(":")
    if name not in values:
        return f"`{name}`"
    value = values[name]
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            return str(value)
    return str(value)


def render_role(match: re.Match, values: dict[str, object]) -> str:
    role, body = match["role"], match["body"]
    if role.startswith("glue"):
        return render_glue(body, values)
    if role == "cite":
        return "[" + ", ".join(k.strip() for k in body.split(",")) + "]"
    if role in ("eq", "numref"):
        return f"({body})" if role == "eq" else body.split("<")[0].strip() or body
    if role in ("math",):
        return f"${body}$"
    text = re.sub(r"\s*<[^>]*>$", "", body).strip()  # "{ref}`text <target>`" → "text"
    return f"*{text}*" if role in ("ref", "doc", "numref", "term") else f"`{text}`"


def convert_markdown(text: str, srcdir: Path, values: dict[str, object]) -> str:
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
            out.append(ROLE.sub(lambda m: render_role(m, values), line))
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
        out.extend(convert_directive(name, arg, options, body, srcdir, values))
    return "\n".join(out)


def convert_directive(name: str, arg: str, options: dict[str, str], body: list[str],
                      srcdir: Path, values: dict[str, object]) -> list[str]:
    if name == "literalinclude":
        path = srcdir / arg.lstrip("/")
        code = (python_object_source(path, options["pyobject"]) if "pyobject" in options
                else path.read_text(encoding="utf-8"))
        return [f"From `{arg.lstrip('/')}`:", "", "```python", code, "```"]
    if name in ("code-block", "code", "sourcecode"):
        return [f"```{arg}", *body, "```"]
    if name == "math":
        return ["$$", *body, "$$"]
    if name == "glue:figure":
        caption = " ".join(b.strip() for b in body if b.strip())
        return [f"*Figure (output above): {convert_markdown(caption, srcdir, values)}*"]
    if name in ("bibliography", "toctree", "tableofcontents", "course-map", "nb-exec-table"):
        return []
    if name == "solution-end":
        return [""]
    if name in ("solution", "solution-start"):
        label = "**Solution.**"  # the argument is the exercise's label, not a title
    elif name in ("exercise", "dropdown", "admonition") and arg:
        label = f"**{name.capitalize()}: {convert_markdown(arg, srcdir, values)}**" \
            if name == "exercise" else f"**{arg}**"
    else:
        label = f"**{name.capitalize()}.**"
    inner = convert_markdown("\n".join(body), srcdir, values) if body else ""
    return [label, "", inner] if inner else [label]


def export_notebook(notebook: nbformat.NotebookNode, srcdir: Path, requirement: str,
                    page_url: str) -> nbformat.NotebookNode:
    """Return the reader's notebook built from the executed notebook of one page."""
    values = glue_values(notebook)
    reader = copy.deepcopy(notebook)
    for cell in reader.cells:
        if cell.cell_type == "markdown":
            cell.source = convert_markdown(cell.source, srcdir, values)
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


def write_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build: write every page's reader notebook and the zip of all of them."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / OUT_DIR
    ref = os.environ.get(SOURCE_REF_ENV, app.config.notebooks_source_ref)
    requirement = (f"neuralarch[notebooks] @ git+https://github.com/{app.config.notebooks_repository}"
                   f"@{ref}#subdirectory=code")
    written = []
    for docname in executable_docs(app):
        page_url = app.config.html_baseurl.rstrip("/") + f"/{docname}.html"
        reader = export_notebook(executed_notebook(app, docname), Path(app.srcdir), requirement,
                                 page_url)
        target = out / f"{docname}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(reader, target)
        written.append(target)
    with zipfile.ZipFile(out / ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in written:
            archive.write(path, path.relative_to(out))
    logger.info(f"notebooks: wrote {len(written)} reader notebooks and {ZIP_NAME}")


def setup(app: Sphinx) -> dict:
    app.add_config_value("notebooks_repository", "neural-architecture/neural-architecture", "html")
    app.add_config_value("notebooks_branch", "notebooks", "html")
    app.add_config_value("notebooks_source_ref", "main", "html")
    app.connect("doctree-resolved", add_links)
    app.connect("build-finished", write_notebooks)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

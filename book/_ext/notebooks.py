"""Reader notebooks: a download link and an "Open in Colab" link on every executable page, and a
stand-alone ``.ipynb`` per page (plus one zip of all of them) written next to the HTML.

The week pages of the course track are assignments (``assignments.py``): each gets a *student
notebook* (no solution code; the one the page's download link, its Colab link and the zip of all
notebooks hold) and a *solution notebook* (``solutions/…``, the page with nbgrader's metadata,
in a separate teacher zip).

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
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from assignments import is_assignment, is_assignment_text, solution_notebook, student_notebook
from book_pages import is_executable
from docutils import nodes
from myst_markdown import (
    ROLE_TARGETS,
    Page,
    Reference,
    convert_markdown,
    glue_data,
    inline_markdown,
)
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

OUT_DIR = "_notebooks"
ZIP_NAME = "neural-architecture-notebooks.zip"
SOLUTIONS_DIR = "solutions"  # inside OUT_DIR: the solution notebooks of the assignments
SOLUTIONS_ZIP_NAME = "neural-architecture-solutions.zip"
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
def executable_docs(app: Sphinx) -> list[str]:
    """Docnames of every page in the book that executes code."""
    return sorted(d for d in app.env.found_docs
                  if str(app.env.doc2path(d)).endswith(".md")
                  and is_executable(Path(app.env.doc2path(d))))


def is_assignment_page(app: Sphinx, docname: str) -> bool:
    """A week page whose assignment gets a student and a solution notebook."""
    return is_assignment_text(Path(app.env.doc2path(docname)).read_text(encoding="utf-8"))


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
    assignment = is_assignment_page(app, docname)
    download = "Student notebook (.ipynb)" if assignment else "Download notebook (.ipynb)"
    solution = (
        f'<a class="nb-solution" href="{up}{OUT_DIR}/{SOLUTIONS_DIR}/{docname}.ipynb" download>'
        "Solution notebook (.ipynb)</a> · "
        f'<a class="nb-solutions-zip" href="{up}{OUT_DIR}/{SOLUTIONS_ZIP_NAME}">'
        "All solutions (.zip)</a> · ") if assignment else ""
    html = (
        '<div class="notebook-links">'
        f'<a class="nb-download" href="{up}{OUT_DIR}/{docname}.ipynb" download>'
        f"{download}</a> · {solution}"
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


# ---------------------------------------------------------------- pages of this build
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


ASSIGNMENT_INTRO = (
    "*This notebook is the assignment of a week of the open textbook **Neural Architecture** "
    "([read it online]({url})). Run the first cell to install the book's package if needed. "
    "Write your code in the cells that say `# YOUR CODE HERE` (the solution notebook has the "
    "reference solution there), then run all cells: the cells after each task check your code "
    "and print the points it earns. The notebook carries the metadata of nbgrader, which "
    "grades it.*")


def export_assignment(notebook: nbformat.NotebookNode, page: Page, requirement: str,
                      page_url: str) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """Return the (solution, student) notebooks of an executed assignment page."""
    executed = copy.deepcopy(notebook)
    page.glue = {**glue_data(executed), **page.glue}
    executed.cells = [nbformat.v4.new_markdown_cell(ASSIGNMENT_INTRO.format(url=page_url)),
                      nbformat.v4.new_code_cell(SETUP_SOURCE.format(requirement=requirement)),
                      *executed.cells]

    def convert(text: str) -> nbformat.NotebookNode:
        page.attachments = {}
        cell = nbformat.v4.new_markdown_cell(convert_markdown(text, page))
        if page.attachments:
            cell["attachments"] = page.attachments
        return cell

    executed.metadata.pop("mystnb", None)
    executed.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                       "name": "python3"}
    solution = solution_notebook(executed, convert)
    return solution, student_notebook(solution)


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
    written, solutions, started = [], [], time.perf_counter()
    with lookups_memoised(app.env):
        for docname in executable_docs(app):
            executed = executed_notebook(app, docname)
            target = out / f"{docname}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_assignment(executed):
                solution, reader = export_assignment(executed, SphinxPage(app, docname),
                                                     requirement, page_url(app, docname))
                solution_target = out / SOLUTIONS_DIR / f"{docname}.ipynb"
                solution_target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(solution, solution_target)
                solutions.append(solution_target)
            else:
                reader = export_notebook(executed, SphinxPage(app, docname), requirement,
                                         page_url(app, docname))
            nbformat.write(reader, target)
            written.append(target)
    for name, paths, base in ((ZIP_NAME, written, out),
                              (SOLUTIONS_ZIP_NAME, solutions, out / SOLUTIONS_DIR)):
        with zipfile.ZipFile(out / name, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, path.relative_to(base))
    logger.info(f"notebooks: wrote {len(written)} reader notebooks ({len(solutions)} of them "
                f"assignments, with their solution notebooks), {ZIP_NAME} and "
                f"{SOLUTIONS_ZIP_NAME} in {time.perf_counter() - started:.1f} s")


def setup(app: Sphinx) -> dict:
    app.add_config_value("notebooks_repository", "neural-architecture/neural-architecture", "html")
    app.add_config_value("notebooks_branch", "notebooks", "html")
    app.add_config_value("notebooks_source_ref", "main", "html")
    app.connect("doctree-resolved", add_links)
    app.connect("doctree-resolved", mark_literalincludes)
    app.connect("build-finished", write_notebooks)
    # env_version: pages built before the literalinclude class existed are written again.
    return {"version": "1.2", "env_version": 2, "parallel_read_safe": True,
            "parallel_write_safe": True}

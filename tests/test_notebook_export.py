"""MyST → plain-Markdown conversion used for the reader notebooks (book/_ext/notebooks.py)."""

from __future__ import annotations

from typing import ClassVar

import nbformat
import pytest
from conftest import ROOT, executable_pages
from myst_markdown import Page, Reference, code_fence, convert_markdown, glue_data
from notebooks import export_notebook, is_executable

GLUE = {"acc": {"text/plain": "0.98765"}, "name": {"text/plain": "'adam'"},
        "n": {"text/plain": "8000"}}
MODULE = '''\
"""A module to include."""


def helper(x):
    return x


class Model:
    """A model."""

    def forward(self, x):
        y = helper(x)
        z = y + 1
        return z
'''


class ResolvingPage(Page):
    """A page whose references resolve as a build would resolve them."""

    NUMBERS: ClassVar = {"ex-1": "Exercise 3", "fig-x": "Fig. 7", "m01-l01": "1.1 Why tensors"}

    def reference(self, role, target, title):
        if target not in self.NUMBERS:
            return None
        text = title or self.NUMBERS[target]
        return Reference(text, f"[{text}](https://book/{target})")

    def equation_number(self, label):
        return 4 if label == "eq-x" else None


def convert(text: str, page: Page | None = None) -> str:
    return convert_markdown(text, page or Page(ROOT, GLUE))


@pytest.fixture
def module_page(tmp_path) -> Page:
    (tmp_path / "module.py").write_text(MODULE)
    return Page(tmp_path)


@pytest.mark.parametrize(("options", "expected"), [
    (":pyobject: helper", "def helper(x):\n    return x"),
    (":pyobject: Model.forward\n:start-at: y = \n:end-before: return\n:dedent: 8",
     "y = helper(x)\nz = y + 1"),
    (":lines: 1,4-5", '"""A module to include."""\ndef helper(x):\n    return x'),
])
def test_literalinclude_shows_the_excerpt_sphinx_reads(module_page, options, expected):
    out = convert(f"```{{literalinclude}} /module.py\n{options}\n```", module_page)
    assert out == f"From `module.py`:\n\n```python\n{expected}\n```"


def test_literalinclude_of_the_package_source():
    out = convert("```{literalinclude} /code/neuralarch/repro.py\n:pyobject: seed_everything\n```")
    assert "def seed_everything(" in out
    assert out.startswith("From `code/neuralarch/repro.py`:\n\n```python\n") and out.endswith("```")


def test_literalinclude_of_a_missing_object_fails(module_page):
    with pytest.raises(ValueError, match="Missing"):
        convert("```{literalinclude} /module.py\n:pyobject: Missing\n```", module_page)


def test_code_holding_backticks_gets_a_longer_fence():
    assert code_fence("x = '```'", "python") == ["````python", "x = '```'", "````"]


def test_glue_roles_become_the_glued_values_as_myst_nb_formats_them():
    out = convert("Accuracy {glue:text}`acc:.1%` with {glue:text}`name` on {glue:text}`n:,`, "
                  "{glue}`n` samples.")
    assert out == "Accuracy 98.8% with adam on 8,000, 8000 samples."


def test_glue_data_takes_hidden_glued_outputs_out_of_the_cells():
    cell = nbformat.v4.new_code_cell("glue('acc', 0.5, display=False)")
    hidden = {"output_type": "display_data",
              "data": {"application/papermill.record/text/plain": "0.5"},
              "metadata": {"scrapbook": {"name": "acc",
                                         "mime_prefix": "application/papermill.record/"}}}
    shown = {"output_type": "stream", "name": "stdout", "text": "hi\n"}
    cell.outputs = [nbformat.from_dict(hidden), nbformat.from_dict(shown)]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert glue_data(notebook) == {"acc": {"text/plain": "0.5"}}
    assert [o.output_type for o in cell.outputs] == ["stream"]


def test_references_read_as_sphinx_resolves_them():
    text = "(m01-l01)=\nSee {ref}`m01-l01`, {ref}`this lesson <m01-l01>` and {numref}`fig-x`."
    assert convert(text, ResolvingPage(ROOT)) == (
        "See [1.1 Why tensors](https://book/m01-l01), [this lesson](https://book/m01-l01) "
        "and [Fig. 7](https://book/fig-x).")


def test_unresolved_references_keep_their_text():
    out = convert("See {ref}`the lesson <m01-l01>`, {eq}`eq-x`, {cite}`a2020,b2021`.")
    assert out == "See *the lesson*, (eq-x), [a2020, b2021]."


def test_labelled_equations_are_numbered_as_on_the_page():
    out = convert("$$\nx = 1\n$$ (eq-x)\n\n$$\ny = 2\n$$ (eq-y)", ResolvingPage(ROOT))
    assert out == "$$\nx = 1\n\\tag{4}\n$$\n\n$$\ny = 2\n$$"


def test_exercises_and_solutions_get_their_numbers():
    text = (":::{exercise} A title\n:label: ex-1\n\nDo it.\n:::\n\n::::{solution-start} ex-1\n"
            ":class: dropdown\n::::\nDone.\n::::{solution-end}\n::::")
    out = convert(text, ResolvingPage(ROOT))
    assert "**Exercise 3** (A title)\n" in out
    assert "**Solution to Exercise 3 (A title)**\n\nDone." in out
    assert ":::" not in out and ":label:" not in out and "Do it." in out and "Done." in out
    unnumbered = convert(text)
    assert "**Exercise** (A title)" in unnumbered and "**Solution.**" in unnumbered


def test_glue_figure_becomes_its_image_and_numbered_caption():
    page = ResolvingPage(ROOT, {**GLUE, "fig-x": {"image/png": "iVBOR", "text/plain": "<Figure>"}})
    out = convert("```{glue:figure} fig-x\n:name: fig-x\n\nLoss: {glue:text}`acc:.2f`.\n```", page)
    assert out == "![Fig. 7](attachment:fig-x.png)\n\n**Fig. 7** Loss: 0.99."
    assert page.attachments == {"fig-x.png": {"image/png": "iVBOR"}}


def test_is_executable_reads_the_front_matter(tmp_path):
    (tmp_path / "a.md").write_text("---\nkernelspec:\n  name: python3\n---\n# A\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert is_executable(tmp_path / "a.md") and not is_executable(tmp_path / "b.md")


def test_export_adds_the_setup_cell_attaches_figures_and_validates():
    notebook = nbformat.v4.new_notebook()
    figure = "```{glue:figure} fig-x\n:name: fig-x\n\nA.\n```"
    notebook.cells = [nbformat.v4.new_markdown_cell("# T\n{cite}`k`"),
                      nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell(figure)]
    page = ResolvingPage(ROOT, {"fig-x": {"image/png": "iVBOR"}})
    reader = export_notebook(notebook, page, "neuralarch @ git+https://example.org/r@v1",
                             "https://x/p")
    assert "git+https://example.org/r@v1" in reader.cells[1].source
    assert reader.cells[2].source == "# T\n[k]"
    assert reader.cells[4].attachments == {"fig-x.png": {"image/png": "iVBOR"}}
    assert "attachments" not in reader.cells[2]
    assert reader.metadata.kernelspec.name == "python3"


def _imports(source: str) -> set[str]:
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(source)  # IPython magics → plain Python
    names = set()
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("docname", executable_pages())
def test_pages_import_only_what_a_reader_notebook_installs(docname):
    """A downloaded notebook installs `neuralarch[notebooks]`; pages may import nothing else."""
    import re
    import sys

    import tomllib
    from myst_nb.core.read import read_myst_markdown_notebook

    project = tomllib.loads((ROOT / "code" / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["notebooks"]
    distributions = {re.split(r"[<>=\[ ]", r)[0].lower() for r in requirements}
    import_names = {"myst-nb": "myst_nb", "ipykernel": "IPython", "pyyaml": "yaml",
                    "scikit-learn": "sklearn", "torch-geometric": "torch_geometric"}
    allowed = ({import_names.get(d, d) for d in distributions} | set(sys.stdlib_module_names)
               | {"neuralarch", "IPython", "mpl_toolkits"})
    page = ROOT / f"{docname}.md"
    notebook = read_myst_markdown_notebook(page.read_text(encoding="utf-8"), path=page)
    used = set().union(*(_imports(c.source) for c in notebook.cells if c.cell_type == "code"))
    assert used <= allowed, f"{docname} imports {sorted(used - allowed)}, which readers lack"

"""MyST → plain-Markdown conversion used for the reader notebooks (book/_ext/notebooks.py)."""

from __future__ import annotations

import nbformat
import pytest
from conftest import ROOT, executable_pages
from notebooks import convert_markdown, export_notebook, is_executable, python_object_source

VALUES = {"acc": 0.98765, "name": "adam", "n": 8000}


def convert(text: str) -> str:
    return convert_markdown(text, ROOT, VALUES)


def test_literalinclude_becomes_the_package_source():
    text = "```{literalinclude} /code/neuralarch/repro.py\n:pyobject: seed_everything\n```"
    out = convert(text)
    assert "def seed_everything(seed: int) -> int:" in out
    assert "```python" in out and "literalinclude" not in out


def test_python_object_source_finds_methods_and_rejects_unknown_names():
    source = python_object_source(ROOT / "code/neuralarch/config.py", "ArchConfig.save")
    assert source.lstrip().startswith("def save(")
    with pytest.raises(ValueError, match="no object"):
        python_object_source(ROOT / "code/neuralarch/config.py", "Missing")


def test_glue_roles_become_the_glued_values():
    out = convert("Accuracy {glue:text}`acc:.1%` with {glue:}`name` on {glue:text}`n:,`.")
    assert out == "Accuracy 98.8% with adam on 8,000."


def test_reference_roles_and_labels_become_text():
    out = convert("(m01-l01)=\nSee {ref}`the lesson <m01-l01>`, {eq}`eq-x`, {cite}`a2020,b2021`.")
    assert out == "See *the lesson*, (eq-x), [a2020, b2021]."


def test_directives_become_bold_labels():
    text = ":::{exercise}\n:label: ex-1\n\nDo it.\n:::\n\n::::{solution} ex-1\n:class: dropdown\n" \
           "Done.\n::::"
    out = convert(text)
    assert "**Exercise.**" in out and "**Solution.**" in out
    assert ":::" not in out and ":label:" not in out and "Do it." in out


def test_glue_figure_becomes_its_caption():
    out = convert("```{glue:figure} fig-x\n:name: fig-x\n\nLoss is {glue:text}`acc:.2f`.\n```")
    assert out == "*Figure (output above): Loss is 0.99.*"


def test_is_executable_reads_the_front_matter(tmp_path):
    (tmp_path / "a.md").write_text("---\nkernelspec:\n  name: python3\n---\n# A\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert is_executable(tmp_path / "a.md") and not is_executable(tmp_path / "b.md")


def test_export_adds_the_setup_cell_and_validates():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# T\n{cite}`k`"),
                      nbformat.v4.new_code_cell("x = 1")]
    reader = export_notebook(notebook, ROOT, "neuralarch @ git+https://example.org/r@v1", "https://x/p")
    assert "git+https://example.org/r@v1" in reader.cells[1].source
    assert reader.cells[2].source == "# T\n[k]"
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
                    "scikit-learn": "sklearn"}
    allowed = ({import_names.get(d, d) for d in distributions} | set(sys.stdlib_module_names)
               | {"neuralarch", "IPython", "mpl_toolkits"})
    page = ROOT / f"{docname}.md"
    notebook = read_myst_markdown_notebook(page.read_text(encoding="utf-8"), path=page)
    used = set().union(*(_imports(c.source) for c in notebook.cells if c.cell_type == "code"))
    assert used <= allowed, f"{docname} imports {sorted(used - allowed)}, which readers lack"

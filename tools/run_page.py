"""Execute one MyST page (or several) outside the book build and report time and errors.

Usage: python tools/run_page.py book/m01-pytorch-foundations/03-tensor-operations.md [...]
Fast feedback while writing a page; `make book` is the real check. A page runs exactly as the
build runs it (``execute_book.execute_page``), with every core, and nothing is cached.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from execute_book import REPO, execute_page


def main(pages: list[str]) -> int:
    timeout = yaml.safe_load((REPO / "_config.yml").read_text())["execute"]["timeout"]
    failed = False
    for name in pages:
        result = execute_page(str(Path(name).resolve()), timeout, os.cpu_count() or 1, str(REPO))
        if not result["ok"]:
            failed = True
            print(f"{name}: FAILED in cell {result['cell']} (page line {result['line']}): "
                  f"{result['error']}\n{result['details']}")
            continue
        print(f"{name}: executed in {result['seconds']:.1f} s")
        for cell in result["notebook"].cells:
            for output in cell.get("outputs", []):
                if output.get("name") == "stderr":
                    print(f"  stderr: {output['text'][:300]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

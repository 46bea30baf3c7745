"""Execute the book before Sphinx renders it: shared models first, then every page in parallel.

    python tools/execute_book.py [--jobs N] [--root DIR]     fill the execution cache
    python tools/execute_book.py --report                     print the last build report
    python tools/execute_book.py --bench                      serial vs parallel, cold, one run

`make book` runs this, then `jupyter-book build`, which finds every page in the cache and only
renders it. Three things happen here that Jupyter Book alone does not do:

* **Shared models first.** The trained models that several pages load
  (``neuralarch.book_models``) are trained in their own step, so a page's time is its own.
* **Pages in parallel.** Pages run ``--jobs`` at a time (default: one per core), each kernel with
  ``cores // jobs`` threads, longest pages first. A failing cell does not stop the others; the
  run ends with a list naming each failed page, cell and line, and exits with status 1.
* **No stale outputs.** jupyter-cache keys a page on its code cells only. After each page runs,
  a probe asks its kernel which files of the book's own code it imported; the page's cache
  entry is dropped when any of them, the pinned requirements or the Python version changes.
  The inputs are written to one file per page, which the Sphinx extension ``execution_report``
  declares a dependency of the page, so Sphinx re-reads exactly the pages that ran again.

Everything measured goes to ``_build/execution-report.json`` (the *Execution status* page).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from myst_nb.core.read import read_myst_markdown_notebook

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))
from book_pages import executable_docnames  # noqa: E402  (the book's own extensions)

REPORT_NAME = "execution-report.json"
BENCH_NAME = "execution-benchmark.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in kernel tracebacks
INPUTS_DIR = "page-inputs"  # one JSON file per page, in the cache folder
ENVIRONMENT_FILES = ("requirements.txt", "code/pyproject.toml")
PROBE_MARK = "imported-files:"
PROBE = ("import json as _j, sys as _s\n"
         f"print('\\n{PROBE_MARK}' + _j.dumps(sorted({{getattr(_m, '__file__', None) or '' "
         "for _m in list(_s.modules.values())})))")


# ---------------------------------------------------------------- which pages, and their inputs
def toc_pages(root: Path) -> list[Path]:
    """The executable pages of the table of contents, in reading order."""
    return [root / f"{doc}.md" for doc in executable_docnames(root)]


def read_page(page: Path) -> nbformat.NotebookNode:
    """The page as the notebook myst-nb executes (same reader, so the same cache key)."""
    return read_myst_markdown_notebook(page.read_text(encoding="utf-8"), add_source_map=True,
                                       path=page)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def environment_key(root: Path) -> str:
    """What every page depends on: the pinned requirements and the Python version."""
    parts = [sys.version] + [sha256(root / name) for name in ENVIRONMENT_FILES]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def own_files(modules: list[str], root: Path) -> dict[str, str]:
    """The imported files that belong to the book (not the standard library or .venv)."""
    files = {}
    for name in modules:
        path = Path(name).resolve() if name and Path(name).is_absolute() else None
        if path and path.is_relative_to(root) and ".venv" not in path.relative_to(root).parts:
            files[path.relative_to(root).as_posix()] = sha256(path)
    return files


def inputs_file(build: Path, uri: str) -> Path:
    """Where a page's recorded inputs live; the Sphinx build re-reads the page when it changes."""
    return build / ".jupyter_cache" / INPUTS_DIR / f"{uri}.json"


def read_inputs(build: Path, uri: str) -> dict | None:
    path = inputs_file(build, uri)
    return json.loads(path.read_text()) if path.is_file() else None


def write_inputs(build: Path, uri: str, inputs: dict) -> None:
    path = inputs_file(build, uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inputs, indent=1, sort_keys=True))


def is_stale(entry: dict | None, root: Path, environment: str) -> bool:
    """True when a cached page's recorded inputs changed (or were never recorded)."""
    if entry is None or entry.get("environment") != environment:
        return True
    return any(sha256(root / name) != digest for name, digest in entry["files"].items())


# ---------------------------------------------------------------- pages (run in workers)
def execute_page(page: str, timeout: int, threads: int, root: str) -> dict:
    """Execute one page in a fresh kernel; return the notebook, its time and its inputs."""
    try:
        return _execute_page(page, timeout, threads, root)
    except Exception as error:  # the kernel died, the probe failed...: report it with the page
        import traceback

        return {"page": page, "ok": False, "cell": None, "line": None,
                "error": f"{type(error).__name__}: {error}", "details": traceback.format_exc()}


def _execute_page(page: str, timeout: int, threads: int, root: str) -> dict:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, CellExecutionError

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)  # inherited by the kernel: no oversubscription
    path = Path(page)
    notebook = read_page(path)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    current = {"index": 0}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=lambda **kw: current.update(index=kw["cell_index"]))
    started = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellControlSignal, TimeoutError) as error:
        index = current["index"]
        line = notebook.metadata.get("source_map", [None] * (index + 1))[index]
        details = ANSI.sub("", str(error)).strip().splitlines()
        ename = getattr(error, "ename", type(error).__name__)  # the cell's exception, if any
        evalue = getattr(error, "evalue", details[-1] if details else "")
        return {"page": page, "ok": False, "cell": index, "line": line,
                "error": f"{ename}: {evalue}", "details": "\n".join(details[-25:])}
    seconds = time.perf_counter() - started
    probe = notebook.cells.pop()
    printed = "".join(output.get("text", "") for output in probe.outputs).splitlines()
    modules = json.loads(next(line for line in printed if line.startswith(PROBE_MARK))
                         .removeprefix(PROBE_MARK))
    return {"page": page, "ok": True, "seconds": seconds, "notebook": notebook,
            "files": own_files(modules, Path(root))}


# ---------------------------------------------------------------- the driver
def execute_book(root: Path, build: Path, jobs: int, timeout: int, models: bool) -> dict:
    """Fill ``build``'s execution cache for every page of the book at ``root``; return a report."""
    cache = get_cache(build / ".jupyter_cache")
    environment = environment_key(root)
    previous = load_report(build) or {}
    last_times = {p["page"]: p["seconds"] for p in previous.get("pages", []) if p.get("seconds")}
    pages, cached, to_run = toc_pages(root), {}, []
    for page in pages:
        uri = page.relative_to(root).as_posix()
        try:
            record = cache.match_cache_notebook(read_page(page))
        except KeyError:
            to_run.append(page)
            continue
        if is_stale(read_inputs(build, uri), root, environment):
            cache.remove_cache(record.pk)  # its code or environment changed: run it again
            to_run.append(page)
        else:
            cached[uri] = record.data.get("execution_seconds", 0.0)
    started = time.perf_counter()
    model_rows = run_models(jobs) if models and to_run else []
    models_done, pages_started_at = time.perf_counter(), time.time()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # longest first (by the last report, else by size), so the slowest page never starts last
    to_run.sort(key=lambda p: -last_times.get(p.relative_to(root).as_posix(),
                                              p.stat().st_size / 1e4))
    page_rows, failures = [], []
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(execute_page, str(page), timeout, threads, str(root))
                   for page in to_run]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            uri = Path(result["page"]).relative_to(root).as_posix()
            if not result["ok"]:
                failures.append({**result, "page": uri})
                print(f"[{done}/{len(to_run)}] FAILED {uri}: cell {result['cell']} (line "
                      f"{result['line']}): {result['error']}", flush=True)
                continue
            cache.cache_notebook_bundle(
                CacheBundleIn(result["notebook"], str(result["page"]),
                              data={"execution_seconds": result["seconds"]}),
                check_validity=False, overwrite=True)
            write_inputs(build, uri, {"environment": environment, "files": result["files"]})
            page_rows.append({"page": uri, "seconds": round(result["seconds"], 2),
                              "cached": False})
            print(f"[{done}/{len(to_run)}] {uri}: {result['seconds']:.1f} s", flush=True)
    finished = time.perf_counter()
    page_rows += [{"page": uri, "seconds": round(seconds, 2), "cached": True}
                  for uri, seconds in cached.items()]
    order = {page.relative_to(root).as_posix(): i for i, page in enumerate(pages)}
    page_rows.sort(key=lambda row: order[row["page"]])
    wall = {"models": round(models_done - started, 1), "pages": round(finished - models_done, 1),
            "total": round(finished - started, 1)}
    cold = not cached and not failures
    trained_in_pages = models_trained_since(pages_started_at) if models else []
    for name in trained_in_pages:
        print(f"warning: a page trained the shared model {name!r}; list it in "
              f"neuralarch.book_models so the build trains it before the pages", flush=True)
    report = {"machine": machine(), "jobs": jobs, "threads_per_page": threads,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "executed": len(to_run),
              "from_cache": len(cached), "models": model_rows, "pages": page_rows, "wall": wall,
              "trained_in_pages": trained_in_pages,
              "failures": [{k: f[k] for k in ("page", "cell", "line", "error")} for f in failures],
              "cold": wall if cold else previous.get("cold")}
    build.mkdir(parents=True, exist_ok=True)
    (build / REPORT_NAME).write_text(json.dumps(report, indent=1))
    for failure in failures:
        print(f"\nFAILED {failure['page']}, cell {failure['cell']} (page line {failure['line']})"
              f"\n{failure['details']}", file=sys.stderr)
    return report


def run_models(jobs: int) -> list[dict]:
    """Train the book's shared models: the whole-machine ones alone, then ``jobs`` at a time."""
    from neuralarch.book_models import SHARED_MODELS, WHOLE_MACHINE, prepare

    rest = [name for name in SHARED_MODELS if name not in WHOLE_MACHINE]
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        rows = [pool.submit(prepare, name).result() for name in WHOLE_MACHINE]  # one at a time
        rows += list(pool.map(prepare, rest))  # one thread each (cached_model's default)
    for row in rows:
        state = "trained" if row["trained_now"] else "loaded"
        print(f"model {row['name']}: {state} ({row['seconds']:.1f} s to train)", flush=True)
    return rows


def models_trained_since(started: float) -> list[str]:
    """Shared models that pages trained themselves (the model cache's training log)."""
    from neuralarch.train.artefacts import training_log

    return sorted({str(entry["name"]) for entry in training_log()
                   if float(entry["finished"]) >= started})


def machine() -> dict:
    """The machine the build ran on, without importing torch."""
    from importlib.metadata import version
    from platform import platform, python_version

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "unknown") if Path("/proc/cpuinfo").is_file() else "unknown"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1),
            "platform": platform(), "python": python_version(), "torch": version("torch")}


def load_report(build: Path, name: str = REPORT_NAME) -> dict | None:
    path = build / name
    return json.loads(path.read_text()) if path.is_file() else None


def print_report(report: dict) -> None:
    for row in report["models"]:
        print(f"  model {row['name']:<28} {row['seconds']:7.1f} s")
    for row in report["pages"]:
        print(f"  {row['page']:<60} {row['seconds']:7.1f} s{'  (cached)' * row['cached']}")
    cold = report.get("cold") or {}
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
          f"{report['jobs']} pages at a time\nthis run: {report['wall']}\n"
          f"cold build (shared models + pages, wall clock): {cold or 'not measured yet'}")


def bench(root: Path, jobs: int, timeout: int) -> dict:
    """Cold execution of the whole book, one page at a time and then ``jobs`` at a time."""
    result = {}
    for label, n in (("serial", 1), ("parallel", jobs)):
        with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as scratch:
            os.environ["NEURALARCH_CACHE_DIR"] = str(Path(scratch) / "models")  # cold models
            report = execute_book(root, Path(scratch) / "_build", n, timeout, models=True)
            if report["failures"]:
                raise SystemExit(f"{label} run failed: {report['failures']}")
            result[label] = {"jobs": n, **report["wall"]}
            print(f"{label}: {report['wall']}", flush=True)
    result["speedup"] = round(result["serial"]["total"] / result["parallel"]["total"], 2)
    result["machine"] = machine()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO, help="the book's folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="pages executed at the same time (default: one per core)")
    parser.add_argument("--no-models", action="store_true", help="skip the shared-model step")
    parser.add_argument("--report", action="store_true", help="print the last build report")
    parser.add_argument("--bench", action="store_true", help="serial vs parallel, from cold")
    args = parser.parse_args()
    root = args.root.resolve()
    timeout = yaml.safe_load((root / "_config.yml").read_text())["execute"]["timeout"]
    if args.report:
        report = load_report(root / "_build")
        if report is None:
            raise SystemExit("no build report yet: run `make book` first")
        print_report(report)
        return 0
    if args.bench:
        result = bench(root, args.jobs, timeout)
        (root / "_build").mkdir(exist_ok=True)
        (root / "_build" / BENCH_NAME).write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        return 0
    report = execute_book(root, root / "_build", args.jobs, timeout, models=not args.no_models)
    print(f"executed {report['executed']} pages, {report['from_cache']} from the cache; "
          f"wall clock {report['wall']}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""The built site in a real browser, with no network: every page loads only from the site itself.

Headless Chromium (Debian's, at /usr/bin/chromium; Playwright's own browsers are never downloaded)
opens every HTML page of the built book from a local HTTP server. Every request is routed: one to
another host is aborted and reported, and so are console errors, failed requests, unrendered math,
images that did not load and notebook downloads that are not valid notebooks. axe-core checks a
few representative pages for serious and critical accessibility violations.

One browser and one browser context serve the whole session (a few tabs work through the pages
side by side); the tests below only read what that run recorded.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import nbformat
import pytest
from conftest import ROOT, executable_pages

CHROMIUM = Path(os.environ.get("NEURALARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
TABS = int(os.environ.get("NEURALARCH_BROWSER_TABS", "2"))  # pages loaded side by side
AXE = ROOT / "tools" / "node_modules" / "axe-core" / "axe.min.js"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
EXTRA_PAGES = ("genindex", "search", "py-modindex")
TIMEOUT_MS = 30_000
PROBE_URL = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"

# Pages axe-core checks: a lesson with figures and math, a week page and the course map.
AXE_PAGES = (
    "book/m04-computer-vision/01-lenet-to-resnet",
    "book/weeks/week03-convolutional-networks",
    "book/preface/course-map",
)
AXE_IMPACTS = {"serious", "critical"}
# (rule id, CSS selector) pairs that axe may report without failing the check: only for markup
# of the theme that neither its configuration nor book/_ext can change. Every entry says why.
AXE_EXCLUDED: set[tuple[str, str]] = set()


# ---------------------------------------------------------------- which pages
def toc_pages() -> list[str]:
    """Docnames of every page in the table of contents, in reading order."""
    from book_pages import toc_docnames

    return toc_docnames(ROOT)


def site_pages(html: Path) -> list[str]:
    """Every HTML page of the built site (relative paths), table-of-contents pages first.

    Besides the pages of the table of contents and the indexes, that includes the generated ones
    (``_modules/`` source listings, the root redirect); ``_static/`` and ``_sources/`` are not
    pages.
    """
    pages = [f"{doc}.html" for doc in toc_pages()]
    pages += [f"{name}.html" for name in EXTRA_PAGES if (html / f"{name}.html").is_file()]
    others = sorted(
        p.relative_to(html).as_posix() for p in html.rglob("*.html")
        if not {"_static", "_sources"} & set(p.relative_to(html).parts))
    return pages + [p for p in others if p not in pages]


def is_redirect(path: Path) -> bool:
    """True for a page that only sends the reader on (``<meta http-equiv="refresh">``)."""
    return re.search(r"<meta[^>]+http-equiv=[\"']?refresh", path.read_text(encoding="utf-8"),
                     re.IGNORECASE) is not None


# ---------------------------------------------------------------- what a tab saw
class Recorder:
    """The problems of the pages one tab loads, by page (into a dict shared by all tabs)."""

    def __init__(self, problems: dict[str, list[str]], page: str = "(no page)") -> None:
        self.page = page
        self.problems = problems
        self.blocked: set[str] = set()
        self.failed: set[str] = set()
        self.pending: set = set()

    def add(self, problem: str) -> None:
        if problem not in self.problems[self.page]:
            self.problems[self.page].append(problem)

    async def route(self, route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            self.blocked.add(url)
            self.add(f"third-party request blocked: {route.request.resource_type} {url}")
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    def watch(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.add(f"uncaught JavaScript error: {error}"))
        page.on("request", lambda request: self.pending.add(request))
        page.on("requestfinished", lambda request: self.pending.discard(request))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    async def wait_for_requests(self, timeout_s: float = 10.0) -> None:
        """Wait until every request the tab started has finished (or failed)."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.025)
        for request in self.pending:
            self.add(f"request still pending after {timeout_s:.0f} s: {request.url}")
        self.pending.clear()

    def _console(self, message) -> None:
        if message.type != "error":
            return
        source = (message.location or {}).get("url", "")
        if source in self.blocked or "ERR_BLOCKED_BY_CLIENT" in message.text:
            return  # already reported as a blocked request
        if source in self.failed and message.text.startswith("Failed to load resource"):
            return  # already reported as a failed request
        self.add(f"console error: {message.text}" + (f" ({source})" if source else ""))

    def _request_failed(self, request) -> None:
        self.pending.discard(request)
        if request.url not in self.blocked:
            self.failed.add(request.url)
            self.add(f"request failed ({request.failure}): {request.url}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.failed.add(response.url)
            self.add(f"HTTP {response.status}: {response.url}")


# ---------------------------------------------------------------- checks in a page
WAIT_FOR_MATH = r"""async () => {
    const math = document.querySelectorAll('.math');
    if (math.length === 0) return {count: 0};
    if (!window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise) {
        return {count: math.length, loaded: false};
    }
    await window.MathJax.startup.promise;
    await document.fonts.ready;
    const unrendered = [...math].filter(e => !e.querySelector('mjx-container'))
        .map(e => e.textContent.trim().slice(0, 80));
    const errors = [...document.querySelectorAll('mjx-merror, .merror')]
        .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120));
    // MathJax's noundefined extension shows an unknown macro as red text instead of an error.
    for (const item of window.MathJax.startup.document.math) {
        const mml = window.MathJax.startup.toMML(item.root);
        const unknown = mml.match(/<mtext mathcolor="red">(\\[A-Za-z]+)<\/mtext>/);
        if (unknown) errors.push(`undefined macro ${unknown[1]} in ${item.math.slice(0, 80)}`);
    }
    return {count: math.length, loaded: true, unrendered, errors};
}"""

LOAD_IMAGES = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = 'eager'; });
    window.scrollTo(0, document.body.scrollHeight);
    await Promise.all(images.filter(img => !img.complete).map(img => new Promise(resolve => {
        img.addEventListener('load', resolve, {once: true});
        img.addEventListener('error', resolve, {once: true});
        setTimeout(resolve, 10000);
    })));
    window.scrollTo(0, 0);
    return images.filter(img => !(img.complete && img.naturalWidth > 0))
        .map(img => img.currentSrc || img.src || img.outerHTML.slice(0, 120));
}"""

RUN_AXE = """async () => {
    const r = await axe.run(document, {resultTypes: ['violations']});
    return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => ({target: n.target.join(' '), impact: n.impact,
                                  summary: n.failureSummary}))}));
}"""


async def check_page(page, recorder: Recorder, base: str, page_path: str,
                     executable: bool = False) -> None:
    """Load one page of the site in a tab and record its problems."""
    recorder.page = page_path
    response = await page.goto(urljoin(base, page_path), wait_until="load")
    if response is None or not response.ok:
        recorder.add(f"page not served (HTTP {response and response.status})")
        return
    math = await page.evaluate(WAIT_FOR_MATH)
    if math["count"] and not math["loaded"]:
        recorder.add(f"{math['count']} math elements but MathJax did not load")
    elif math["count"]:
        for source in math["unrendered"][:5]:
            recorder.add(f"math not rendered by MathJax: {source}")
        for error in math["errors"][:5]:
            recorder.add(f"MathJax error: {error}")
    for src in await page.evaluate(LOAD_IMAGES):
        recorder.add(f"image did not load: {src}")
    links = await page.eval_on_selector_all("a.nb-download", "as => as.map(a => a.href)")
    if executable and not links:
        recorder.add("executable page without a notebook download link (a.nb-download)")
    for href in links[:1]:
        await check_notebook(page.context, recorder, href)
    await recorder.wait_for_requests()


async def check_redirect(context, recorder: Recorder, base: str, page_path: str) -> None:
    """A redirect page (like the root ``index.html``) is served and leads to a page that is.

    The page it leads to is checked in full on its own.
    """
    recorder.page = page_path
    response = await context.request.get(urljoin(base, page_path))
    found = re.search(r"<meta[^>]+content=[\"']?\d+;\s*url=([^\"'>\s]+)", await response.text(),
                      re.IGNORECASE)
    if not response.ok or not found:
        recorder.add(f"redirect page not served or without a target (HTTP {response.status})")
        return
    target = urljoin(urljoin(base, page_path), found.group(1))
    if not (await context.request.get(target)).ok:
        recorder.add(f"redirect to a page that is not served: {target}")


async def check_notebook(context, recorder: Recorder, href: str) -> None:
    response = await context.request.get(href)
    if not response.ok:
        recorder.add(f"notebook download HTTP {response.status}: {href}")
        return
    try:
        notebook = nbformat.reads(await response.text(), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:
        recorder.add(f"notebook download is not a valid notebook ({error}): {href}")


async def run_axe(context, base: str, docname: str) -> list[str]:
    """Serious and critical axe violations of one page, one line per element."""
    page = await context.new_page()
    try:
        await page.goto(urljoin(base, f"{docname}.html"), wait_until="load")
        await page.evaluate(WAIT_FOR_MATH)
        await page.add_script_tag(path=str(AXE))
        violations = await page.evaluate(RUN_AXE)
    finally:
        await page.close()
    found = []
    for violation in violations:
        for node in violation["nodes"]:
            impact = node["impact"] or violation["impact"]
            if impact in AXE_IMPACTS and (violation["id"], node["target"]) not in AXE_EXCLUDED:
                found.append(f"{docname} → [{impact}] {violation['id']} ({violation['help']}): "
                             f"{node['target']}\n    " + node["summary"].replace("\n", "\n    "))
    return found


async def probe_blocking(context, base: str, page_path: str) -> list[str]:
    """What the recorder reports when a page asks for a script from a CDN."""
    recorder = Recorder(defaultdict(list), "probe")
    page = await context.new_page()
    await page.route("**/*", recorder.route)  # page routes come before the context's
    recorder.watch(page)
    try:
        await page.goto(urljoin(base, page_path), wait_until="load")
        await page.evaluate("""url => new Promise(resolve => {
            const s = document.createElement('script');
            s.src = url;
            s.onload = s.onerror = resolve;
            document.head.appendChild(s);
        })""", PROBE_URL)
    finally:
        await page.close()
    return recorder.problems["probe"]


# ---------------------------------------------------------------- the browser session
@dataclass
class BrowserRun:
    pages: int = 0
    seconds: float = 0.0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    probe: list[str] = field(default_factory=list)
    axe: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


async def browse(html: Path, base: str) -> BrowserRun:
    from playwright.async_api import async_playwright

    run = BrowserRun()
    pages = site_pages(html)
    executable = {f"{doc}.html" for doc in executable_pages()}
    jobs = []
    for page_path in pages:
        if (html / page_path).is_file():
            jobs.append(page_path)
        else:
            run.problems[page_path].append("in the table of contents but not in the build")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                   args=CHROMIUM_ARGS)
        context = await browser.new_context(service_workers="block",
                                            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        tabs: dict = {}  # page -> the Recorder of its tab
        fallback = Recorder(run.problems, "(request outside a tab)")

        async def route(route):
            try:
                recorder = tabs.get(route.request.frame.page, fallback)
            except Exception:  # a request of a worker has no frame
                recorder = fallback
            await recorder.route(route)

        await context.route("**/*", route)

        async def tab() -> None:
            recorder, page = Recorder(run.problems), None
            while jobs:
                page_path = jobs.pop(0)
                if is_redirect(html / page_path):
                    await check_redirect(context, recorder, base, page_path)
                    continue
                if page is None or page.is_closed():
                    page = await context.new_page()
                    tabs[page] = recorder
                    recorder.watch(page)
                started = time.perf_counter()
                try:
                    await check_page(page, recorder, base, page_path, page_path in executable)
                except Exception as error:  # a timeout or a crash: report it, go on in a new tab
                    recorder.add(f"{type(error).__name__}: {str(error).splitlines()[0]}")
                    await page.close()
                run.timings[page_path] = time.perf_counter() - started
            if page is not None and not page.is_closed():
                await page.close()

        start = time.perf_counter()
        await asyncio.gather(*(tab() for _ in range(max(1, TABS))))
        run.seconds, run.pages = time.perf_counter() - start, len(pages)

        run.probe = await probe_blocking(context, base, pages[0])
        if AXE.is_file():
            for docname in AXE_PAGES:
                if (html / f"{docname}.html").is_file():
                    run.axe[docname] = await run_axe(context, base, docname)
        await browser.close()
    return run


@pytest.fixture(scope="session")
def site_url(html: Path) -> Iterator[str]:
    """The built html folder served on a free port of 127.0.0.1 (the data mirror's server)."""
    from neuralarch.data.mirror import serve_folder

    with serve_folder(html) as url:
        yield url


@pytest.fixture(scope="session")
def browser_run(html: Path, site_url: str) -> BrowserRun:
    """Every page of the site, loaded once in headless Chromium."""
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is missing ({CHROMIUM}): install it with `apt-get install chromium` "
                    "(Debian/Ubuntu; .ci/run does this) or point NEURALARCH_CHROMIUM at a Chrome "
                    "or Chromium binary — the browser checks use no downloaded browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the Python package `playwright` is missing: run `make test-site` (it installs "
                    "requirements.txt into .venv)")
    run = asyncio.run(browse(html, site_url))
    slowest = sorted(run.timings.items(), key=lambda item: -item[1])[:3]
    print(f"\nbrowser check: {run.pages} pages in {run.seconds:.1f} s ({TABS} tabs); slowest: "
          + ", ".join(f"{page} {seconds:.1f} s" for page, seconds in slowest))
    return run


def report(problems: dict[str, list[str]], limit: int = 200) -> str:
    lines = [f"{page} → {problem}" for page, items in problems.items() for problem in items]
    more = f"\n… and {len(lines) - limit} more" if len(lines) > limit else ""
    header = f"{len(lines)} problem(s) on {len(problems)} page(s):\n"
    return header + "\n".join(lines[:limit]) + more


# ---------------------------------------------------------------- the tests
def test_the_browser_check_blocks_and_reports_third_party_requests(browser_run):
    assert any("third-party request blocked" in p and PROBE_URL in p for p in browser_run.probe), \
        browser_run.probe


def test_every_page_works_without_a_network(browser_run):
    problems = {page: items for page, items in browser_run.problems.items() if items}
    assert not problems, report(problems) + f"\n({browser_run.pages} pages checked)"


@pytest.mark.parametrize("docname", AXE_PAGES)
def test_no_serious_accessibility_violations(html, browser_run, docname):
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `make tools/node_modules`")
    if docname not in browser_run.axe:
        pytest.fail(f"{docname}.html is not in the build")
    found = browser_run.axe[docname]
    assert not found, f"{len(found)} accessibility violation(s):\n" + "\n".join(found)

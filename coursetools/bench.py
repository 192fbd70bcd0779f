"""What learners and maintainers wait for: notebook run time and memory, site build time, page weight.

Run ``python -m coursetools.bench`` (``make bench``) from the repository root. For every notebook
under ``book/`` it starts a fresh ``python3`` kernel (cwd = the notebook's folder), runs every
cell, and records the wall time (kernel start to last cell) and the kernel's peak resident
memory: ``VmHWM`` of the kernel process (exact) or, if larger, the peak of the RSS summed over
the kernel's process tree, sampled every 50 ms (catches subprocesses). The **floor** is a fresh
kernel that only runs ``import torch, numpy, matplotlib, gradflow``, measured the same way in
the same rounds (floor first, then each notebook, ``--runs`` times), so each notebook's median
can be read as a multiple of the floor. Then it builds the site with execution into a temporary
folder (never ``_build/html``), times it, and weighs each page built from ``book/``
(:func:`page_weight`). Figures are compared with :data:`BUDGETS`; the exit status is 1 when one
is exceeded (2 when something failed to run). ``--smoke``: one run, no site build, budgets
reported but not enforced. Writes ``_build/bench.json`` and ``_build/bench.md`` and, after a
full run, rewrites the table in ``book/benchmark.md`` between its markers.
"""

import argparse
import gzip
import html.parser
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["BUDGETS", "FLOOR_SOURCE", "discover_notebooks", "run_notebook", "measure", "page_weight",
           "site_weights", "browser_weights", "build_site", "evaluate", "render_markdown", "update_page", "main"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MB = 1_000_000
BUDGETS = {
    "notebook_seconds": 20.0,  # median wall time, kernel start included, on the 2-core machine
    "notebook_peak_bytes": 1000 * MB,  # 1 GB = 10^9 bytes (Binder gives 2 GB)
    "floor_ratio": 4.0,  # notebook median / floor median
    "page_bytes": 3 * MB,
    "build_seconds": 180.0,
}
FLOOR_SOURCE = "import torch, numpy, matplotlib, gradflow"
KERNEL = "python3"
SAMPLE_EVERY = 0.05  # seconds between RSS samples of the kernel's process tree
PAGE_BEGIN = "% BEGIN bench table: written by `python -m coursetools.bench`; do not edit by hand."
PAGE_END = "% END bench table"
VERSIONED = ["torch", "numpy", "matplotlib", "jupyter-book", "myst-nb", "nbclient", "ipykernel", "sphinx-book-theme"]


# --------------------------------------------------------------------------- notebooks


def discover_notebooks(book):
    """Every ``*.ipynb`` under ``book`` (sorted), skipping names that start with ``.`` or ``_``.

    That skips checkpoints (``.ipynb_checkpoints``), builds (``_build``) and scratch notebooks.
    """
    book = Path(book)
    found = []
    for path in sorted(book.rglob("*.ipynb")):
        parts = path.relative_to(book).parts
        if any(p.startswith((".", "_")) for p in parts):
            continue
        found.append(path)
    return found


def _vm_hwm(pid):
    """Peak resident set size of one process from ``/proc/<pid>/status`` (bytes), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _TreeSampler(threading.Thread):
    """Samples the RSS summed over a process and its descendants; keeps the peak."""

    def __init__(self, pid, every=SAMPLE_EVERY):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self._stop_event = threading.Event()

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while True:
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            if self._stop_event.wait(self.every):
                return

    def stop(self):
        self._stop_event.set()
        if self.is_alive():
            self.join()
        return self.peak or None


def run_notebook(nb, cwd, timeout=600):
    """Execute a notebook (``nbformat`` node) once in a fresh ``python3`` kernel started in ``cwd``.

    Returns ``{"seconds", "startup_seconds", "peak_rss_bytes", "vmhwm_bytes", "tree_peak_bytes", "error"}``;
    ``seconds`` runs from asking for the kernel to the end of the last cell (shutdown excluded).
    """
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.reset_execution_trackers()
    out = {"seconds": None, "startup_seconds": None, "peak_rss_bytes": None, "vmhwm_bytes": None,
           "tree_peak_bytes": None, "error": None}
    sampler, where = None, "kernel start"
    start = time.perf_counter()
    try:
        with client.setup_kernel(cwd=str(cwd)):
            ready = time.perf_counter()
            pid = getattr(client.km.provisioner, "pid", None)
            sampler = _TreeSampler(pid)
            if pid is not None:  # a local kernel: its process can be watched
                sampler.start()
            try:
                for index, cell in enumerate(client.nb.cells):
                    where = f"cell {index}"
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                end = time.perf_counter()
            finally:
                hwm = _vm_hwm(pid) if pid is not None else None  # read before the kernel is shut down
                tree = sampler.stop()
        out.update(seconds=end - start, startup_seconds=ready - start, vmhwm_bytes=hwm, tree_peak_bytes=tree,
                   peak_rss_bytes=max(hwm or 0, tree or 0) or None)
    except Exception as exc:  # a failing cell, a timeout, a kernel that died: report, don't crash
        out["error"] = f"{where}: {_describe(exc)}"
    return out


def _describe(exc):
    """One clean line for an exception raised while running a notebook (no ANSI colours, no traceback)."""
    name = getattr(exc, "ename", None) or type(exc).__name__
    value = getattr(exc, "evalue", None)
    if value is None:
        lines = str(exc).strip().splitlines()
        value = lines[-1] if lines else ""
    value = _ANSI.sub("", str(value)).strip()
    return (f"{name}: {value}" if value else name)[:200]


def _floor_notebook():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(FLOOR_SOURCE)]
    return nb


def _summary(name, runs):
    ok = [r for r in runs if r["error"] is None]
    errors = [r["error"] for r in runs if r["error"] is not None]
    times = [r["seconds"] for r in ok]
    peaks = [r["peak_rss_bytes"] for r in ok if r["peak_rss_bytes"]]
    return {
        "name": name,
        "runs": runs,
        "seconds": times,
        "median_seconds": statistics.median(times) if times else None,
        "startup_median_seconds": statistics.median([r["startup_seconds"] for r in ok]) if ok else None,
        "peak_rss_bytes": max(peaks) if peaks else None,
        "error": errors[0] if errors else None,
    }


def measure(notebooks, root, runs=3, timeout=600, log=print):
    """Median wall time and peak memory of the floor and of each notebook, ``runs`` interleaved rounds."""
    import nbformat

    root = Path(root)
    loaded = [(p, nbformat.read(p, as_version=4)) for p in notebooks]
    floor_runs, nb_runs = [], {p: [] for p in notebooks}
    for r in range(runs):
        log(f"round {r + 1}/{runs}: floor ...")
        floor_runs.append(run_notebook(_floor_notebook(), root, timeout))
        for path, nb in loaded:
            if nb_runs[path] and nb_runs[path][-1]["error"]:
                continue  # it failed: once is enough
            log(f"round {r + 1}/{runs}: {_rel(path, root)} ...")
            nb_runs[path].append(run_notebook(nb, path.parent, timeout))
            if nb_runs[path][-1]["error"]:
                log(f"  failed: {nb_runs[path][-1]['error']}")
    floor = _summary("floor", floor_runs)
    results = []
    for path in notebooks:
        s = _summary(_rel(path, root), nb_runs[path])
        fm = floor["median_seconds"]
        s["ratio_to_floor"] = s["median_seconds"] / fm if s["median_seconds"] is not None and fm else None
        results.append(s)
    return floor, results


def _rel(path, root):
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


# --------------------------------------------------------------------------- site build


def build_site(root, out_dir, timeout=3600):
    """``jupyter-book build`` (execution included, ``-W -n --keep-going``) into ``out_dir``; timed."""
    exe = Path(sys.executable).with_name("jupyter-book")
    exe = str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book")
    cmd = [exe, "build", str(root), "--path-output", str(out_dir), "-W", "-n", "--keep-going"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    except subprocess.TimeoutExpired:
        rc, tail = None, [f"timed out after {timeout} s"]
    seconds = time.perf_counter() - start
    shown = ["jupyter-book", "build", ".", "--path-output", "<tmpdir>", "-W", "-n", "--keep-going"]
    return {"skipped": False, "seconds": seconds, "returncode": rc, "ok": rc == 0, "command": " ".join(shown),
            "log_tail": tail if rc != 0 else []}


# --------------------------------------------------------------------------- page weight

# Elements and attributes whose URL the browser fetches when the page loads.
_LOADS = {
    "script": ("src",), "img": ("src", "srcset"), "iframe": ("src",), "frame": ("src",), "embed": ("src",),
    "source": ("src", "srcset"), "audio": ("src",), "video": ("src", "poster"), "track": ("src",),
    "object": ("data",), "input": ("src",), "image": ("href", "xlink:href"), "use": ("href", "xlink:href"),
}
# <link rel=...> values that make the browser fetch the href (not prev/next/search/canonical...).
_LINK_RELS = {"stylesheet", "icon", "apple-touch-icon", "preload", "modulepreload", "manifest", "mask-icon"}
_DOCUMENT_TAGS = {"iframe", "frame", "embed", "object"}
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.I)
_FONT_FACE = re.compile(r"@font-face\s*\{([^}]*)\}", re.I)
_FONT_SRC = re.compile(r"(?<![-\w])src\s*:([^;]*)", re.I)
_REDIRECT = re.compile(r"""http-equiv=["']?refresh""", re.I)
_HAS_MATH = re.compile(r"""class=["'][^"']*\bmath\b""")
_COMPRESSED = {".woff", ".woff2", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".gz", ".zip", ".mp4", ".webm"}
_KINDS = {
    "script": {".js", ".mjs"}, "css": {".css"}, "font": {".woff", ".woff2", ".ttf", ".otf", ".eot"},
    "image": {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".avif"}, "html": {".html", ".htm"},
}


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs = []  # (url, is_document)
        self.css = []  # inline CSS (style elements and attributes)
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link":
            rels = set((attrs.get("rel") or "").lower().split())
            if rels & _LINK_RELS and attrs.get("href"):
                self.refs.append((attrs["href"], False))
        for name in _LOADS.get(tag, ()):
            value = attrs.get(name)
            if not value:
                continue
            if tag == "input" and (attrs.get("type") or "").lower() != "image":
                continue
            if name == "srcset":
                for candidate in value.split(","):
                    if candidate.strip():
                        self.refs.append((candidate.split()[0], False))
            else:
                self.refs.append((value, tag in _DOCUMENT_TAGS))
        if attrs.get("style"):
            self.css.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def _resolve(url, base, site_root):
    """``("local", Path)``, ``("external", url)`` or None (fragment, data:, javascript:, ...)."""
    url = (url or "").strip()
    if not url or url.startswith("#"):
        return None
    parts = urlsplit(url)
    if parts.scheme in ("data", "javascript", "mailto", "about", "blob", "tel"):
        return None
    if parts.scheme or parts.netloc:
        return ("external", url)
    path = unquote(parts.path)
    if not path:
        return None
    target = Path(site_root) / path.lstrip("/") if path.startswith("/") else Path(base).parent / path
    target = Path(os.path.normpath(target))
    if target.is_dir():
        target = target / "index.html"
    return ("local", target)


def _css_refs(text):
    """URLs a stylesheet makes the browser fetch: imports, url()s, and the first src of each @font-face."""
    text = _CSS_COMMENT.sub("", text)
    urls = [next(g for g in m.groups() if g is not None) for m in _CSS_IMPORT.finditer(text)]
    for face in _FONT_FACE.finditer(text):
        srcs = _FONT_SRC.findall(face.group(1))
        if srcs:  # the last src declaration wins; the browser takes its first format it supports
            first = _CSS_URL.search(srcs[-1])
            if first:
                urls.append(next(g for g in first.groups() if g is not None))
    for m in _CSS_URL.finditer(_FONT_FACE.sub("", text)):
        urls.append(next(g for g in m.groups() if g is not None))
    return urls


def _kind(path):
    suffix = path.suffix.lower()
    return next((k for k, exts in _KINDS.items() if suffix in exts), "other")


def _mathjax_fonts(script):
    """The CHTML web fonts MathJax can load lazily, for a MathJax CHTML script (else [])."""
    lower = [p.lower() for p in script.parts]
    if not any("mathjax" in p for p in lower[:-1]) or "chtml" not in script.name.lower():
        return []
    fonts = script.parent / "output" / "chtml" / "fonts" / "woff-v2"
    return sorted(p for p in fonts.iterdir() if p.is_file()) if fonts.is_dir() else []


def _gzip_size(path, cache):
    if path not in cache:
        data = path.read_bytes()
        cache[path] = len(data) if path.suffix.lower() in _COMPRESSED else len(gzip.compress(data, 6))
    return cache[path]


def page_weight(page, site_root, mathjax_fonts=True, gzip_cache=None):
    """Bytes a browser loads from the site for one built page, each file counted once.

    Counted: the HTML; every local file it loads through ``<script src>``, ``<link rel=stylesheet|
    icon|preload|modulepreload|manifest>``, ``<img>``/``<source>`` (``src`` and every ``srcset``
    candidate), ``<video poster>``, ``<iframe>``/``<object>``/``<embed>`` (followed recursively),
    inline and linked CSS (``@import``, ``url()``; of an ``@font-face`` only the first ``src``,
    the one a browser uses). Not counted: links (``<a href>``, prev/next), source maps, external
    URLs (listed in ``external``), ``data:`` URIs (already inside the file). MathJax's CHTML fonts
    are loaded lazily, per glyph style used; with ``mathjax_fonts=True`` all of them are counted
    (an upper bound) on a page that has math and loads MathJax, and reported as ``lazy_bytes``.
    """
    page, site_root = Path(page), Path(site_root)
    cache = {} if gzip_cache is None else gzip_cache
    seen, missing, external, lazy = {}, [], [], set()
    queue = [(page, True)]
    while queue:
        path, is_doc = queue.pop(0)
        if path in seen:
            continue
        if not path.is_file():
            missing.append(_rel(path, site_root))
            seen[path] = 0
            continue
        seen[path] = path.stat().st_size
        suffix = path.suffix.lower()
        refs = []
        if is_doc or suffix in (".html", ".htm"):
            parser = _Refs()
            text = path.read_text(encoding="utf-8", errors="replace")
            parser.feed(text)
            refs = list(parser.refs) + [(u, False) for css in parser.css for u in _css_refs(css)]
            if mathjax_fonts and _HAS_MATH.search(text):
                for url, _ in parser.refs:
                    hit = _resolve(url, path, site_root)
                    if hit and hit[0] == "local" and hit[1].suffix.lower() == ".js":
                        for font in _mathjax_fonts(hit[1]):
                            lazy.add(font)
                            queue.append((font, False))
        elif suffix == ".css":
            refs = [(u, False) for u in _css_refs(path.read_text(encoding="utf-8", errors="replace"))]
        for url, doc in refs:
            hit = _resolve(url, path, site_root)
            if hit is None:
                continue
            elif hit[0] == "external":
                if hit[1] not in external:
                    external.append(hit[1])
            else:
                queue.append((hit[1], doc))
    files = {p: n for p, n in seen.items() if p.is_file()}
    by_kind = {}
    for p, n in files.items():
        by_kind[_kind(p)] = by_kind.get(_kind(p), 0) + n
    largest = sorted(files.items(), key=lambda item: -item[1])[:6]
    return {
        "page": _rel(page, site_root),
        "bytes": sum(files.values()),
        "html_bytes": files.get(page, 0),
        "lazy_bytes": sum(files[p] for p in lazy if p in files),
        "gzip_bytes": sum(_gzip_size(p, cache) for p in files),
        "files": len(files),
        "by_kind": dict(sorted(by_kind.items())),
        "largest": [[_rel(p, site_root), n] for p, n in largest],
        "missing": missing,
        "external": external,
    }


def site_weights(html_dir, book="book", mathjax_fonts=True):
    """:func:`page_weight` of every page built from a source under ``book/`` (all pages if none)."""
    html_dir = Path(html_dir)
    pages = sorted((html_dir / book).rglob("*.html")) if (html_dir / book).is_dir() else []
    if not pages:  # every top-level page but the index, the search page and redirect stubs
        pages = sorted(p for p in html_dir.glob("*.html") if p.name not in ("genindex.html", "search.html")
                       and not _REDIRECT.search(p.read_text(encoding="utf-8", errors="replace")))
    cache = {}
    return [page_weight(p, html_dir, mathjax_fonts, cache) for p in pages]


def browser_weights(html_dir, pages, chromium=None, browser=None):
    """Bytes headless Chromium actually loads for each page (``{page: bytes}``), or None.

    The static count of :func:`page_weight` includes every MathJax font, but a browser fetches
    only the fonts of the glyph styles a page uses. Here the site is served on loopback, each
    page is opened in a fresh context (empty cache), scrolled to the end and left until the
    network is idle; the bodies of all responses are added up. ``browser`` is a Playwright
    browser to reuse; without one the system Chromium is started, and None is returned when
    Playwright or Chromium is missing (the budget then applies to the static count).
    """
    import functools
    import http.server
    import threading

    from .sitereport import open_page, scrolled_weight

    if browser is None:
        chromium = chromium or os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            return None
        if not Path(chromium).exists():
            return None
        with sync_playwright() as pw:
            own = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            try:
                return browser_weights(html_dir, pages, browser=own)
            finally:
                own.close()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    loaded = {}
    try:
        for page_name in pages:
            sizes = {}
            context, page = open_page(browser, base, page_name, 1280, height=720, sizes=sizes)
            try:
                loaded[page_name] = scrolled_weight(page, sizes)
            finally:
                context.close()
    finally:
        server.shutdown()
        server.server_close()
    return loaded


# --------------------------------------------------------------------------- budgets and report


def evaluate(report):
    """Mark every figure against :data:`BUDGETS`; return the list of budgets exceeded (and errors)."""
    b = report["budgets"]
    exceeded, errors = [], []
    if report["floor"]["error"]:
        errors.append(f"floor: {report['floor']['error']}")
    for nb in report["notebooks"]:
        if nb["error"]:
            errors.append(f"{nb['name']}: {nb['error']}")
        checks = {}
        if nb["median_seconds"] is not None:
            checks["time"] = nb["median_seconds"] <= b["notebook_seconds"]
        if nb["peak_rss_bytes"] is not None:
            checks["memory"] = nb["peak_rss_bytes"] <= b["notebook_peak_bytes"]
        if nb.get("ratio_to_floor") is not None:
            checks["ratio"] = nb["ratio_to_floor"] <= b["floor_ratio"]
        nb["within_budget"] = checks
        exceeded += [f"{nb['name']}: {what}" for what, ok in checks.items() if not ok]
    build = report["build"]
    if not build.get("skipped"):
        build["within_budget"] = {"time": build["seconds"] <= b["build_seconds"]}
        if not build["within_budget"]["time"]:
            exceeded.append("site build: time")
        if not build["ok"]:
            errors.append(f"site build failed (exit {build['returncode']})")
    for page in report["pages"]["items"]:
        page["within_budget"] = {"weight": page.get("loaded_bytes", page["bytes"]) <= b["page_bytes"]}
        if not page["within_budget"]["weight"]:
            exceeded.append(f"{page['page']}: weight")
    report["exceeded"], report["errors"] = exceeded, errors
    report["passed"] = not exceeded and not errors
    return exceeded + errors


def _versions():
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _machine():
    out = {"cores": os.cpu_count(), "platform": platform.platform()}
    if hasattr(os, "sched_getaffinity"):
        out["cores_available"] = len(os.sched_getaffinity(0))
    try:
        import psutil

        out["memory_bytes"] = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover - psutil is pinned in requirements.txt
        pass
    if hasattr(os, "getloadavg"):
        out["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _mark(ok):
    return "" if ok is None else ("\u00a0✓" if ok else "\u00a0✗")


def _s(x):
    return "–" if x is None else f"{x:.1f}\u00a0s"


def _mb(x):
    return "–" if x is None else f"{x / MB:.0f}\u00a0MB"


def _code(text):
    """Text as a Markdown code span that cannot break a table (no backticks, no pipes, no newlines)."""
    return "`" + " ".join(str(text).replace("`", "'").replace("|", "/").split()) + "`"


def _weight(x):
    return f"{x / MB:.2f}\u00a0MB"


def render_markdown(report):
    """The report as Markdown: a context line, then tables (no headings, so it can go in any page)."""
    b, v, m = report["budgets"], report["versions"], report["machine"]
    runs = report["runs"]
    lines = [
        f"Measured {report['date'][:16].replace('T', ' ')} UTC on {m['cores']} cores"
        + (f" (load average {m['load_average_start'][0]} at the start)" if m.get("load_average_start") else "")
        + f"; Python {v['python']}, torch {v['torch']}, numpy {v['numpy']}, matplotlib {v['matplotlib']},"
        f" jupyter-book {v['jupyter-book']}, myst-nb {v['myst-nb']}."
        + (" Smoke run: budgets reported, not enforced." if report["mode"] == "smoke" else "")
        + f" {runs} run{'s' if runs != 1 else ''} per notebook in a fresh kernel: median wall time (kernel start"
        f" to last cell), highest peak memory of the kernel. The floor runs only `{FLOOR_SOURCE}`."
        " ✓ within budget, ✗ over budget.",
        "",
        f"| notebook | time ≤ {b['notebook_seconds']:g} s (range) | × floor ≤ {b['floor_ratio']:g} "
        f"| memory ≤ {b['notebook_peak_bytes'] / MB:.0f} MB |",
        "|---|---|---|---|",
    ]

    def row(name, s, checks):
        if s["error"] and s["median_seconds"] is None:
            return f"| {name} | failed: {_code(s['error'])} | – | – |"
        ratio = s.get("ratio_to_floor")
        ratio_txt = "1.00×" if name.startswith("floor") else ("–" if ratio is None else f"{ratio:.2f}×")
        spread = f" ({min(s['seconds']):.1f}–{max(s['seconds']):.1f})" if len(s["seconds"]) > 1 else ""
        return (f"| {name} | {_s(s['median_seconds'])}{_mark(checks.get('time'))}{spread}"
                f" | {ratio_txt}{_mark(checks.get('ratio'))}"
                f" | {_mb(s['peak_rss_bytes'])}{_mark(checks.get('memory'))} |")

    lines.append(row("floor (imports only)", report["floor"], {}))
    for nb in report["notebooks"]:
        lines.append(row(nb["name"], nb, nb.get("within_budget", {})))
    if not report["notebooks"]:
        lines.append("| (no notebooks under `book/` yet) | – | – | – |")
    build = report["build"]
    lines += ["", f"| site | time ≤ {b['build_seconds']:g} s |", "|---|---|"]
    if build.get("skipped"):
        lines.append(f"| `jupyter-book build`, execution included | not measured (`{build['reason']}`) |")
    else:
        status = "" if build["ok"] else f", failed (exit {build['returncode']})"
        lines.append(f"| `{build['command']}`, execution included | {_s(build['seconds'])}"
                     f"{_mark(build['within_budget']['time'])}{status} |")
    pages = report["pages"]
    lines += [""]
    if pages["items"]:
        fonts = ("all of MathJax's lazily loaded fonts are counted on pages with maths, an upper bound"
                 if pages["mathjax_fonts_counted"] else "MathJax's lazily loaded fonts are not counted")
        browser = pages.get("browser")
        budgeted = ("the budget applies to what Chromium loads" if browser else
                    "no browser was available, so the budget applies to the static count")
        lines += [
            f"Page weight: the HTML plus every file of the site it loads, each counted once; {fonts}."
            f" *Loaded* is what headless Chromium fetched opening the page with an empty cache and"
            f" scrolling to the end (only the MathJax fonts the page uses); {budgeted}."
            f" Pages from {pages['source']}; gzip is what a server that compresses its files would send.",
            "",
            f"| page | loaded ≤ {b['page_bytes'] / MB:g} MB | static count | MathJax fonts | gzip | largest files |",
            "|---|---|---|---|---|---|",
        ]
        for p in pages["items"]:
            big = ", ".join(f"{Path(name).name}\u00a0{_weight(n)}" for name, n in p["largest"][:2]) or "–"
            mark = _mark(p["within_budget"]["weight"])
            loaded = f"{_weight(p['loaded_bytes'])}{mark}" if "loaded_bytes" in p else "–"
            static = _weight(p["bytes"]) + ("" if "loaded_bytes" in p else mark)
            lines.append(f"| {p['page']} | {loaded} | {static}"
                         f" | {_weight(p['lazy_bytes'])} | {_weight(p['gzip_bytes'])} | {big} |")
    else:
        lines.append(f"Page weight: not measured ({pages['source']}).")
    verdict = ("all budgets met" if report["passed"] else
               "; ".join(["over budget: " + ", ".join(map(_code, report["exceeded"]))] * bool(report["exceeded"])
                         + ["errors: " + ", ".join(map(_code, report["errors"]))] * bool(report["errors"])))
    lines += ["", f"Result: {verdict}."]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def update_page(page, table):
    """Replace the text between the markers of ``page`` by ``table``; False if the markers are missing."""
    page = Path(page)
    if not page.is_file():
        return False
    text = page.read_text(encoding="utf-8")
    begin, end = text.find(PAGE_BEGIN), text.find(PAGE_END)
    if begin < 0 or end < begin:
        return False
    head = text[: begin + len(PAGE_BEGIN)]
    page.write_text(head + "\n\n" + table.strip() + "\n\n" + text[end:], encoding="utf-8")
    return True


# --------------------------------------------------------------------------- command line


def _default_root():
    cwd = Path.cwd()
    if (cwd / "_config.yml").is_file():
        return cwd
    return Path(__file__).resolve().parent.parent


def _parser():
    p = argparse.ArgumentParser(prog="python -m coursetools.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="one run each, no site build, budgets not enforced")
    p.add_argument("--runs", type=int, default=3, help="runs per notebook (median reported); default 3")
    p.add_argument("--notebooks", nargs="*", type=Path, help="these notebooks instead of every one under book/")
    p.add_argument("--no-build", action="store_true", help="skip the site build (weigh pages of --site)")
    p.add_argument("--site", type=Path, help="weigh the pages of this built html folder (default: the build's,"
                   " or _build/html when not building)")
    p.add_argument("--root", type=Path, default=None, help="repository root (default: here, or coursetools' parent)")
    p.add_argument("--out", type=Path, default=None, help="where bench.json and bench.md go (default _build)")
    p.add_argument("--no-page", action="store_true", help="do not rewrite the table in book/benchmark.md")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell before a notebook fails")
    p.add_argument("--no-grading", action="store_true", help="skip the grading leg (coursetools.gradebench)")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        sys.stdout.reconfigure(errors="replace")
    except AttributeError:  # pragma: no cover - not a text stream
        pass
    root = (args.root or _default_root()).resolve()
    out = (args.out or root / "_build").resolve()
    runs = 1 if args.smoke else max(1, args.runs)
    log = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.notebooks is not None:
        notebooks = [p.resolve() for p in args.notebooks]
    else:
        notebooks = discover_notebooks(root / "book")
    report = {
        "schema": 1,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "enforced": not args.smoke,
        "runs": runs,
        "machine": _machine(),
        "versions": _versions(),
        "budgets": dict(BUDGETS),
        "floor_source": FLOOR_SOURCE,
    }
    log(f"{len(notebooks)} notebook(s), {runs} run(s) each, plus the floor")
    report["floor"], report["notebooks"] = measure(notebooks, root, runs, args.timeout, log)
    grading = None  # the grading leg (coursetools.gradebench): full runs over the whole book only
    if not (args.smoke or args.no_grading or args.notebooks is not None):
        from . import gradebench

        grading = report["grading"] = gradebench.measure(root, log=log)

    site, tmp = args.site, None
    if args.smoke or args.no_build or args.site is not None:
        reason = "--smoke" if args.smoke else ("--no-build" if args.no_build else "--site")
        report["build"] = {"skipped": True, "reason": reason}
    else:
        tmp = Path(tempfile.mkdtemp(prefix="gradflow-bench-"))
        log("building the site (execution included) ...")
        report["build"] = build_site(root, tmp)
        for line in report["build"]["log_tail"]:
            log(f"  build: {_ANSI.sub('', line)}")
        site = tmp / "_build" / "html"
    if site is None:
        site = root / "_build" / "html"
    try:
        if site.is_dir():
            source = "this run's build" if tmp else f"the existing build in `{_rel(site, root)}`"
            items = site_weights(site)
            loaded = None if args.smoke else browser_weights(site, [p["page"] for p in items])
            for item in items:
                if loaded is not None:
                    item["loaded_bytes"] = loaded[item["page"]]
            report["pages"] = {"source": source, "mathjax_fonts_counted": True, "items": items,
                               "browser": loaded is not None}
        else:
            report["pages"] = {"source": f"no built site at `{_rel(site, root)}`", "mathjax_fonts_counted": True,
                               "items": []}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    evaluate(report)
    table = render_markdown(report)
    grading_table = ""
    if grading is not None:
        from . import gradebench

        grading_table = gradebench.render(grading, f" on {report['machine']['cores']} cores")
        if not grading.get("skipped"):
            report["exceeded"] += [f"grading: {k}" for k, ok in grading["within_budget"].items() if not ok]
            report["passed"] = report["passed"] and all(grading["within_budget"].values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "bench.md").write_text("# Benchmark: what learners and maintainers wait for\n\n" + table
                                  + ("\n" + grading_table if grading_table else ""), encoding="utf-8")
    print(table)
    if grading_table:
        print(grading_table)
    log(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    if not (args.smoke or args.no_page or args.notebooks is not None):
        if update_page(root / "book" / "benchmark.md", table):
            log("updated the table in book/benchmark.md")
        if grading is not None and not grading.get("skipped"):
            from . import gradebench

            if gradebench.update_page(root / "book" / "benchmark.md", grading_table):
                log("updated the grading table in book/benchmark.md")
    if report["errors"]:
        return 2
    if report["exceeded"] and report["enforced"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

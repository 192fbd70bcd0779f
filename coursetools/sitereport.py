"""Per-page report of the built site for readers on every device (issue 16).

``python -m coursetools.sitereport [--out FILE] [PAGE ...]`` opens every HTML page of the built
book (``_build/html/book/**.html``) in headless system Chromium, served on loopback with every
other host blocked, and prints a Markdown table with, per page:

- axe-core's violations by impact (critical / serious / moderate / minor: number of rules, with
  the rule ids of any that occur), from the axe-core that ``axe-playwright-python`` ships;
- the keyboard tab stops before the first paragraph of the text, at 1280 px;
- the widest element at 390 px: the document's width and the right edge of the widest element of
  the article that is not inside a box that scrolls on purpose (code, wide tables);
- the page weight: bytes Chromium loads with an empty cache, scrolled to the end
  (counted as :func:`coursetools.bench.browser_weights` does, the figure the budget applies to).

The browser tests (tests/test_site_*.py) assert the same properties; this script only measures,
for the closing note. Nothing here is downloaded.
"""

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
IMPACTS = ("critical", "serious", "moderate", "minor")

_MATH_READY = ("() => [...document.querySelectorAll('.math')].every(m => m.querySelector('mjx-container'))")

_FOCUS_PAST_FIRST_PARAGRAPH = """() => {
  const e = document.activeElement, first = document.querySelector('article p');
  return !!(first && e && e !== document.body
            && (first.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING));
}"""

_WIDEST_JS = """() => {
  const W = document.documentElement.clientWidth;
  const free = e => {
    for (let p = e.parentElement; p && p.tagName !== 'ARTICLE'; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return false;
    }
    return true;
  };
  let right = 0, what = '';
  for (const e of document.querySelectorAll('article *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || !free(e)) continue;
    if (r.right > right) { right = r.right; what = `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]}`; }
  }
  return {W, doc: document.documentElement.scrollWidth, right: Math.round(right), what};
}"""


def pages_of(site):
    return sorted(p.relative_to(site).as_posix() for p in site.glob("book/**/*.html"))


def _serve(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def open_page(browser, base, path, width, height=900, sizes=None):
    """A fresh context (empty cache) on the page; ``sizes`` collects the bytes of every response."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    if sizes is not None:
        def finished(request):
            response = request.response()
            try:
                sizes[request.url] = len(response.body()) if response else 0
            except Exception:  # a body the browser discarded (e.g. a redirect)
                sizes[request.url] = 0

        page.on("requestfinished", finished)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
               or route.request.url.startswith("data:") else route.abort())
    page.goto(base + path, wait_until="networkidle")
    if page.locator(".math").count():
        page.wait_for_function(_MATH_READY, timeout=30_000)
    return context, page


def scrolled_weight(page, sizes):
    """Bytes loaded once the reader has scrolled to the end (lazy images included)."""
    page.mouse.wheel(0, 10**6)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    return sum(sizes.values())


def measure_page(browser, base, path, axe_script, max_tabs=200):
    row, sizes = {"page": path}, {}
    context, page = open_page(browser, base, path, 1280, sizes=sizes)
    try:
        row["bytes"] = scrolled_weight(page, sizes)  # as coursetools.bench.browser_weights counts it
        page.evaluate("window.scrollTo(0, 0)")
        page.evaluate(axe_script)
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        row["axe"] = {impact: sorted(v["id"] for v in result["violations"] if v["impact"] == impact)
                      for impact in IMPACTS}
        row["tab_stops"] = None  # more than max_tabs
        for stop in range(max_tabs):
            page.keyboard.press("Tab")
            if page.evaluate(_FOCUS_PAST_FIRST_PARAGRAPH):
                row["tab_stops"] = stop  # the stops before this one
                break
    finally:
        context.close()
    context, page = open_page(browser, base, path, 390, 844)
    try:
        page.wait_for_function("() => !document.querySelector('.math') || "
                               "document.documentElement.hasAttribute('data-gf-math-fitted')", timeout=30_000)
        row["phone"] = page.evaluate(_WIDEST_JS)
    finally:
        context.close()
    return row


def render(rows):
    lines = ["| page | axe critical / serious / moderate / minor | tab stops before the text "
             "| widest at 390 px (document; widest element) | page weight |",
             "|---|---|---|---|---|"]
    for r in rows:
        axe = " / ".join(str(len(r["axe"][i])) for i in IMPACTS)
        named = sorted({rule for i in IMPACTS for rule in r["axe"][i]})
        if named:
            axe += f" ({', '.join(named)})"
        phone = r["phone"]
        widest = f"{phone['doc']} px; {phone['right']} px ({phone['what']})"
        weight = f"{r['bytes'] / 1e6:.2f} MB" if r.get("bytes") is not None else "n/a"
        stops = "over 200" if r["tab_stops"] is None else str(r["tab_stops"])
        lines.append(f"| {r['page']} | {axe} | {stops} | {widest} | {weight} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages relative to _build/html (default: every book page)")
    parser.add_argument("--site", type=Path, default=SITE)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    from axe_playwright_python.base import AXE_SCRIPT
    from playwright.sync_api import sync_playwright

    pages = args.pages or pages_of(args.site)
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    server, base = _serve(args.site)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            try:
                rows = []
                for path in pages:
                    rows.append(measure_page(browser, base, path, AXE_SCRIPT))
                    print(f"measured {path}", file=sys.stderr)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    table = render(rows)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark (coursetools.bench): page weights on a fake site, budgets, the report, and a smoke run.

Nothing here is timed: the smoke run only checks that the benchmark runs and writes every field.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursetools import bench

ROOT = Path(__file__).resolve().parent.parent


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, int):  # a file of exactly that many bytes
        content = b"x" * content
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


PAGE = """<!DOCTYPE html><html><head>
<link rel="stylesheet" href="../_static/a.css?v=1" />
<link rel="preload" as="script" href="../_static/s.js?digest=abc" />
<link rel="next" href="other.html" />
<link rel="icon" href="/_static/favicon.ico" />
<script src="../_static/s.js?digest=abc"></script>
<script src="../_static/s.js"></script>
<script src="https://cdn.example.org/x.js"></script>
<script defer="defer" src="../_static/mathjax/tex-chtml.js"></script>
<style>.hero { background: url("../_images/hero%20one.png"); }</style>
</head><body>
<span class="math notranslate nohighlight">\\(x^2\\)</span>
<img src="../_images/fig.png" alt="a figure" />
<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline" />
<img src="../_images/small.png" srcset="../_images/small.png 1x, ../_images/big.png 2x" alt="" />
<div style="background-image: url('../_images/bg.png')"></div>
<img src="../_images/missing.png" alt="gone" />
<iframe src="widget.html#frame"></iframe>
<a href="../_static/download.bin">download</a>
<a href="#section">here</a>
</body></html>
"""

CSS = """@import "b.css";
/* url(commented-out.png) is not loaded */
@font-face { font-family: X; src: url(fonts/f.woff2) format("woff2"), url(fonts/f.ttf) format("truetype"); }
.x { background: url(../_images/bg.png); }
.y { background: url("data:image/svg+xml;charset=utf-8,%3Csvg xmlns='http://www.w3.org/2000/svg'%3E%3C/svg%3E"); }
"""


@pytest.fixture
def site(tmp_path):
    """A small built site: two pages, shared static files of known sizes."""
    root = tmp_path / "html"
    _write(root / "book" / "ch.html", PAGE)
    _write(root / "book" / "plain.html", '<html><head><script src="../_static/mathjax/tex-chtml.js"></script>'
           '<link rel="stylesheet" href="../_static/b.css"></head><body><p>no maths</p></body></html>')
    _write(root / "book" / "widget.html", '<html><script src="../_static/w.js"></script></html>')
    _write(root / "_static" / "a.css", CSS)
    _write(root / "_static" / "b.css", 130)
    _write(root / "_static" / "fonts" / "f.woff2", 2000)
    _write(root / "_static" / "fonts" / "f.ttf", 5000)  # second format: a browser never fetches it
    _write(root / "_static" / "s.js", 1000)
    _write(root / "_static" / "s.js.map", 9000)  # source map: only developer tools load it
    _write(root / "_static" / "w.js", 70)
    _write(root / "_static" / "favicon.ico", 40)
    _write(root / "_static" / "download.bin", 100_000)  # a link, not loaded
    _write(root / "_static" / "mathjax" / "tex-chtml.js", 3000)
    _write(root / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff", 300)
    _write(root / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Zero.woff", 20)
    _write(root / "_images" / "fig.png", 500)
    _write(root / "_images" / "hero one.png", 11)
    _write(root / "_images" / "small.png", 60)
    _write(root / "_images" / "big.png", 240)
    _write(root / "_images" / "bg.png", 8)
    _write(root / "book" / "other.html", 7777)
    return root


def _size(root, *names):
    return sum((root / n).stat().st_size for n in names)


def test_page_weight_counts_each_loaded_file_once(site):
    w = bench.page_weight(site / "book" / "ch.html", site)
    eager = ["book/ch.html", "_static/a.css", "_static/b.css", "_static/fonts/f.woff2", "_static/s.js",
             "_static/favicon.ico", "_static/mathjax/tex-chtml.js", "_images/fig.png", "_images/hero one.png",
             "_images/small.png", "_images/big.png", "_images/bg.png", "book/widget.html", "_static/w.js"]
    fonts = ["_static/mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
             "_static/mathjax/output/chtml/fonts/woff-v2/MathJax_Zero.woff"]
    assert w["html_bytes"] == len(PAGE)
    assert w["lazy_bytes"] == 320
    assert w["bytes"] == _size(site, *eager, *fonts)
    # the fixed-size files alone: 130 + 2000 + 1000 + 40 + 3000 + 500 + 11 + 60 + 240 + 8 + 70 + 320
    assert w["bytes"] - _size(site, "book/ch.html", "_static/a.css", "book/widget.html") == 7379
    assert w["files"] == len(eager) + len(fonts)
    assert w["missing"] == ["_images/missing.png"]
    assert w["external"] == ["https://cdn.example.org/x.js"]
    assert w["by_kind"]["font"] == 2000 + 320
    assert w["largest"][0] == ["_static/mathjax/tex-chtml.js", 3000]
    assert 0 < w["gzip_bytes"] < w["bytes"]


def test_mathjax_fonts_only_on_pages_with_math_and_only_when_asked(site):
    plain = bench.page_weight(site / "book" / "plain.html", site)
    assert plain["lazy_bytes"] == 0
    assert plain["bytes"] == _size(site, "book/plain.html", "_static/mathjax/tex-chtml.js", "_static/b.css")
    without = bench.page_weight(site / "book" / "ch.html", site, mathjax_fonts=False)
    assert without["lazy_bytes"] == 0
    assert without["bytes"] == bench.page_weight(site / "book" / "ch.html", site)["bytes"] - 320


def test_css_refs_font_face_first_source_imports_and_comments():
    refs = bench._css_refs(CSS)
    assert refs[:2] == ["b.css", "fonts/f.woff2"]
    assert "fonts/f.ttf" not in refs and "commented-out.png" not in refs
    assert "../_images/bg.png" in refs
    assert bench._css_refs("@font-face{src:url(a.eot);src:url('b.woff2') format('woff2'),url(c.woff)}") == ["b.woff2"]


def test_site_weights_weighs_every_page_under_book(site):
    pages = [w["page"] for w in bench.site_weights(site)]
    assert pages == ["book/ch.html", "book/other.html", "book/plain.html", "book/widget.html"]


def test_discover_notebooks_skips_checkpoints_builds_and_scratch(tmp_path):
    skipped = ["b/.ipynb_checkpoints/ch-checkpoint.ipynb", "_build/x.ipynb", "_scratch.ipynb"]
    for rel in ["b/ch.ipynb", "a.ipynb", *skipped]:
        _write(tmp_path / rel, "{}")
    assert bench.discover_notebooks(tmp_path) == [tmp_path / "a.ipynb", tmp_path / "b" / "ch.ipynb"]
    assert bench.discover_notebooks(tmp_path / "nowhere") == []


def _report(nb_seconds=5.0, nb_peak=400 * bench.MB, page_bytes=2 * bench.MB, build_seconds=100.0, floor=2.0):
    def summary(name, t, peak):
        return {"name": name, "runs": [], "seconds": [t], "median_seconds": t, "startup_median_seconds": 0.5,
                "peak_rss_bytes": peak, "error": None}

    nb = summary("book/ch/ch.ipynb", nb_seconds, nb_peak)
    nb["ratio_to_floor"] = nb_seconds / floor
    return {
        "date": "2026-01-01T00:00:00+00:00", "mode": "full", "enforced": True, "runs": 1,
        "machine": {"cores": 2}, "budgets": dict(bench.BUDGETS),
        "versions": {k: "1" for k in ["python", "torch", "numpy", "matplotlib", "jupyter-book", "myst-nb"]},
        "floor": summary("floor", floor, 300 * bench.MB), "notebooks": [nb],
        "build": {"skipped": False, "seconds": build_seconds, "returncode": 0, "ok": True,
                  "command": "jupyter-book build ."},
        "pages": {"source": "a build", "mathjax_fonts_counted": True,
                  "items": [{"page": "book/ch/ch.html", "bytes": page_bytes, "lazy_bytes": 0, "gzip_bytes": 1,
                             "files": 3, "largest": [["_static/x.js", 10]]}]},
    }


def test_evaluate_within_budget():
    report = _report()
    assert bench.evaluate(report) == []
    assert report["passed"]
    assert report["notebooks"][0]["within_budget"] == {"time": True, "memory": True, "ratio": True}
    text = bench.render_markdown(report).replace("\u00a0", " ")  # figures keep their units
    assert "5.0 s ✓" in text and "2.50× ✓" in text and "400 MB ✓" in text and "100.0 s ✓" in text
    assert "2.00 MB ✓" in text and "✗" not in text.split("\n", 1)[1]
    assert "all budgets met" in text


@pytest.mark.parametrize(
    "kwargs, failure, mark",
    [
        ({"nb_seconds": 21.0, "floor": 10.0}, "book/ch/ch.ipynb: time", "21.0 s ✗"),
        ({"nb_seconds": 9.0, "floor": 2.0}, "book/ch/ch.ipynb: ratio", "4.50× ✗"),
        ({"nb_peak": 1200 * bench.MB}, "book/ch/ch.ipynb: memory", "1200 MB ✗"),
        ({"page_bytes": 3.5 * bench.MB}, "book/ch/ch.html: weight", "3.50 MB ✗"),
        ({"build_seconds": 200.0}, "site build: time", "200.0 s ✗"),
    ],
)
def test_evaluate_marks_each_budget_exceeded(kwargs, failure, mark):
    report = _report(**kwargs)
    assert bench.evaluate(report) == [failure]
    assert not report["passed"]
    text = bench.render_markdown(report).replace("\u00a0", " ")  # figures keep their units
    assert mark in text and f"over budget: `{failure}`" in text


def test_a_failed_notebook_is_an_error_and_its_message_cannot_break_the_table():
    report = _report()
    nb = report["notebooks"][0]
    nb.update(error="cell 3: AssertionError: |x| = `2` $a$\nnext", seconds=[], median_seconds=None,
              peak_rss_bytes=None, ratio_to_floor=None)
    assert bench.evaluate(report) == ["book/ch/ch.ipynb: cell 3: AssertionError: |x| = `2` $a$\nnext"]
    row = next(line for line in bench.render_markdown(report).splitlines() if "ch.ipynb" in line)
    assert row == "| book/ch/ch.ipynb | failed: `cell 3: AssertionError: /x/ = '2' $a$ next` | – | – |"


def test_update_page_replaces_only_between_markers(tmp_path):
    page = _write(tmp_path / "p.md", f"# T\n\nintro\n\n{bench.PAGE_BEGIN}\n\nold table\n\n{bench.PAGE_END}\n\nafter\n")
    assert bench.update_page(page, "| new |\n|---|\n")
    text = page.read_text()
    assert "old table" not in text and "| new |" in text
    assert text.startswith("# T\n\nintro") and text.endswith("after\n")
    assert bench.update_page(page, "| newer |")  # markers survive a rewrite
    assert "| new |" not in page.read_text() and "| newer |" in page.read_text()
    assert not bench.update_page(_write(tmp_path / "q.md", "# no markers\n"), "x")


def test_the_book_page_has_the_markers():
    text = (ROOT / "book" / "benchmark.md").read_text()
    assert text.count(bench.PAGE_BEGIN) == 1 and text.count(bench.PAGE_END) == 1
    assert text.index(bench.PAGE_BEGIN) < text.index(bench.PAGE_END)


def test_run_notebook_reports_a_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("assert x == 2")]
    result = bench.run_notebook(nb, tmp_path, timeout=60)
    assert result["seconds"] is None
    assert result["error"] == "cell 2: AssertionError"  # one clean line: no colours, no traceback
    nb.cells[2].source = "1 / 0"
    assert bench.run_notebook(nb, tmp_path, timeout=60)["error"] == "cell 2: ZeroDivisionError: division by zero"


def test_smoke_run_writes_every_field(tmp_path, site):
    """``--smoke`` on a tiny notebook (and the floor): one run each, the JSON and Markdown have every field."""
    folder = tmp_path / "chapter"
    _write(folder / "data.txt", "42")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    # the kernel runs in the notebook's folder
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"),
                nbformat.v4.new_code_cell("assert open('data.txt').read() == '42'")]
    nbformat.write(nb, folder / "tiny.ipynb")
    page_before = (ROOT / "book" / "benchmark.md").read_text()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "coursetools.bench", "--smoke", "--notebooks", str(folder / "tiny.ipynb"),
         "--out", str(out), "--site", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # budgets are not enforced in a smoke run
    report = json.loads((out / "bench.json").read_text())
    assert report["mode"] == "smoke" and report["runs"] == 1 and report["enforced"] is False
    assert report["machine"]["cores"] >= 1
    assert set(report["versions"]) >= {"python", "torch", "numpy", "matplotlib", "jupyter-book", "myst-nb"}
    assert report["date"] and report["budgets"] == bench.BUDGETS
    for entry in [report["floor"], *report["notebooks"]]:
        assert entry["error"] is None
        assert len(entry["seconds"]) == 1 and entry["median_seconds"] > 0
        assert entry["peak_rss_bytes"] > 50 * bench.MB  # a python kernel with numpy/torch loaded
    (nb_report,) = report["notebooks"]
    assert nb_report["name"].endswith("tiny.ipynb")
    assert nb_report["ratio_to_floor"] > 0
    assert set(nb_report["within_budget"]) == {"time", "memory", "ratio"}
    assert report["build"]["skipped"] is True
    assert [p["page"] for p in report["pages"]["items"]][0] == "book/ch.html"
    assert all("within_budget" in p for p in report["pages"]["items"])
    assert "passed" in report and "exceeded" in report and report["errors"] == []
    table = (out / "bench.md").read_text()
    assert "tiny.ipynb" in table and "floor" in table and "book/ch.html" in table
    assert "tiny.ipynb" in proc.stdout
    assert (ROOT / "book" / "benchmark.md").read_text() == page_before  # a smoke run leaves the page alone


def test_build_site_builds_elsewhere_and_its_pages_weigh_without_missing_files(tmp_path):
    """A one-page book built by :func:`bench.build_site` into another folder: timed, weighed, nothing missing."""
    book = tmp_path / "book"
    _write(book / "_config.yml", "title: Tiny\nexecute:\n  execute_notebooks: 'off'\n")
    _write(book / "_toc.yml", "format: jb-book\nroot: intro\n")
    _write(book / "intro.md", "# Tiny\n\nSome maths: $x^2$.\n")
    out = tmp_path / "elsewhere"
    build = bench.build_site(book, out)
    assert build["ok"], build["log_tail"]
    assert build["seconds"] > 0 and not (book / "_build").exists()
    (page,) = bench.site_weights(out / "_build" / "html")
    assert page["page"] == "intro.html"
    assert page["missing"] == []
    # without sphinx-mathjax-offline (which the course uses), Sphinx loads MathJax from a CDN: listed, not counted
    assert len(page["external"]) == 1 and "mathjax" in page["external"][0]
    assert page["bytes"] > page["html_bytes"] > 0 and page["files"] > 5
    assert page["by_kind"]["script"] > 0 and page["by_kind"]["css"] > 0


def test_browser_weights_add_up_what_chromium_fetches(tmp_path):
    """Chromium loads the page, its stylesheet and image, but not a link or a file it never asks for."""
    import shutil as sh

    if not (sh.which("chromium") or os.path.exists("/usr/bin/chromium")):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (CI must install it: see .ci/run)")
        pytest.skip("Chromium is not installed")
    root = tmp_path / "html"
    page = ('<html><head><link rel="stylesheet" href="s.css"></head>'
            '<body><img src="i.png"><a href="big.bin">x</a></body></html>')
    _write(root / "p.html", page)
    _write(root / "s.css", 300)
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
    (root / "i.png").write_bytes(png)
    _write(root / "big.bin", 100_000)
    loaded = bench.browser_weights(root, ["p.html"])
    assert loaded == {"p.html": len(page) + 300 + len(png)}

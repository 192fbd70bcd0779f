"""The built site on phones, tablets and desktops (headless Chromium, network cut): navigation,
nothing wider than a phone, formulas that fit, figures that enlarge, tables and code that fit."""

import re

import pytest
from conftest import SITE

PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob("book/**/*.html")) if SITE.exists() else []
CHAPTER_PAGES = [p for p in PAGES if p.split("/")[1][:2].isdigit()]
# Pages made from a notebook (the chapters, notation, batchnorm): code cells and printed outputs.
NOTEBOOK_PAGES = [p for p in PAGES if (SITE.parents[1] / p).with_suffix(".ipynb").exists()]
PHONE, TABLET, DESKTOP = (390, 844), (800, 1000), (1280, 900)
START = "book/01_vanishing/vanishing.html"


def _open(offline_page, base_url, path, size):
    page = offline_page.page
    page.set_viewport_size({"width": size[0], "height": size[1]})
    response = offline_page.goto(base_url + path)
    assert response.ok, f"{path}: HTTP {response.status}"
    return page


def _visible(locator):
    return [el for el in locator.all() if el.is_visible()]


def _wait_for_math(page):
    if page.locator(".math").count():
        page.wait_for_function(
            "() => [...document.querySelectorAll('.math')].every(m => m.querySelector('mjx-container'))"
            " && document.documentElement.hasAttribute('data-gf-math-fitted')",
            timeout=20_000,
        )


# -- navigation ---------------------------------------------------------------------------------------
_OTHER_CHAPTER_JS = """() => {
  const folder = path => path.split('/').slice(-2)[0];
  const links = [...document.querySelectorAll('#pst-primary-sidebar-modal a.reference.internal')];
  const i = links.findIndex(a => /\\/book\\/0\\d_/.test(a.pathname)
                                 && folder(a.pathname) !== folder(location.pathname));
  return i < 0 ? null : {i, path: links[i].pathname, text: links[i].textContent.trim()};
}"""


@pytest.mark.site
@pytest.mark.parametrize(("size", "path"), [(PHONE, p) for p in PAGES] + [(TABLET, START)],
                         ids=[f"phone-{p}" for p in PAGES] + ["tablet"])
def test_menu_button_opens_the_navigation_and_reaches_another_chapter(offline_page, base_url, size, path):
    """On every page at 390 px (and on a tablet), the visible ☰ opens the navigation, and a chapter
    link in it leads to that chapter."""
    page = _open(offline_page, base_url, path, size)
    toggles = _visible(page.locator(".primary-toggle"))
    assert len(toggles) == 1, f"{len(toggles)} visible ☰ buttons at {size}"
    assert not page.locator("#pst-primary-sidebar-modal").evaluate("d => d.open")
    toggles[0].click()
    page.wait_for_function("() => document.querySelector('#pst-primary-sidebar-modal').open", timeout=5000)
    target = page.evaluate(_OTHER_CHAPTER_JS)
    assert target, f"{path}: the open navigation has no link to another chapter"
    link = page.locator("#pst-primary-sidebar-modal a.reference.internal").nth(target["i"])
    assert link.is_visible(), f"{path}: the open navigation does not show {target['text']!r}"
    link.click()
    page.wait_for_url(re.compile(".*" + re.escape(target["path"]) + "$"), timeout=10_000)
    assert not offline_page.console_errors and not offline_page.page_errors


@pytest.mark.site
@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_on_this_page_button_opens_the_page_contents(offline_page, base_url, size):
    page = _open(offline_page, base_url, START, size)
    toggles = _visible(page.locator(".secondary-toggle"))
    assert len(toggles) == 1, f"{len(toggles)} visible 'On this page' buttons at {size}"
    toggles[0].click()
    page.wait_for_function("() => document.querySelector('#pst-secondary-sidebar-modal').open", timeout=5000)
    entry = page.locator("#pst-secondary-sidebar-modal a", has_text="Exercises").first
    assert entry.is_visible(), "the page's contents are not shown"
    entry.click()
    page.wait_for_function("() => location.hash === '#exercises'", timeout=5000)
    assert not offline_page.console_errors and not offline_page.page_errors


def _wait_for_sidebar(page, visibility):
    page.wait_for_function("() => getComputedStyle(document.querySelector('#pst-primary-sidebar')).visibility"
                           f" === '{visibility}'", timeout=5000)


@pytest.mark.site
def test_menu_button_collapses_and_restores_the_sidebar_on_a_desktop(offline_page, base_url):
    page = _open(offline_page, base_url, START, DESKTOP)
    sidebar = page.locator("#pst-primary-sidebar")
    assert sidebar.is_visible()
    text_left = page.locator("article").bounding_box()["x"]
    (toggle,) = _visible(page.locator(".primary-toggle"))
    toggle.click()
    _wait_for_sidebar(page, "hidden")
    page.wait_for_timeout(600)  # the theme slides the text over
    assert not page.locator("#pst-primary-sidebar-modal").evaluate("d => d.open"), "opened a modal instead"
    assert page.locator("article").bounding_box()["x"] < text_left - 100, "the text did not take the room"
    toggle.click()
    _wait_for_sidebar(page, "visible")
    assert not offline_page.console_errors and not offline_page.page_errors


@pytest.mark.site
@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_one_search_field_and_no_second_header_bar(offline_page, base_url, size):
    page = _open(offline_page, base_url, START, size)
    fields = _visible(page.locator(".search-button-field, .search-button"))
    assert len(fields) == 1, f"{len(fields)} visible search buttons at {size}"
    assert page.locator("#pst-header .navbar-header-items").count() == 0


# -- a phone's width ------------------------------------------------------------------------------------
_TOO_WIDE_JS = """() => {
  const W = document.documentElement.clientWidth;
  const scrolls = e => { const o = getComputedStyle(e).overflowX; return o === 'auto' || o === 'scroll'; };
  const out = [];
  for (const e of document.querySelectorAll('article *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || (r.right <= W + 1 && r.left >= -1)) continue;
    let p = e.parentElement, inside = false;
    while (p && p.tagName !== 'ARTICLE') {
      if (scrolls(p) || getComputedStyle(p).overflowX === 'hidden') { inside = true; break; }
      p = p.parentElement;
    }
    if (inside) continue;
    out.push(`${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]} to ${Math.round(r.right)} px`);
  }
  return {page: document.documentElement.scrollWidth, W, out: out.slice(0, 8)};
}"""

# Boxes that may scroll sideways on purpose, and nothing else: code, and wide tables.
_SCROLLERS_JS = """() => [...document.querySelectorAll('article *')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
  .filter(e => !e.matches('pre, div.highlight, .pst-scrollable-table-container, div.output.text_html,'
                          + ' div.cell_output pre, table'))
  .map(e => `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]}: ${e.scrollWidth} > ${e.clientWidth}`)"""


@pytest.mark.site
@pytest.mark.parametrize("path", PAGES)
def test_nothing_is_wider_than_a_phone(offline_page, base_url, path):
    """At 390 px the page never scrolls sideways; only code blocks and wide tables scroll in their box."""
    page = _open(offline_page, base_url, path, PHONE)
    _wait_for_math(page)
    wide = page.evaluate(_TOO_WIDE_JS)
    assert wide["page"] <= wide["W"], f"{path}: the page is {wide['page']} px wide at {wide['W']} px: {wide['out']}"
    assert not wide["out"], f"{path}: elements past the edge at 390 px: {wide['out']}"
    scrollers = page.evaluate(_SCROLLERS_JS)
    assert not scrollers, f"{path}: boxes that scroll sideways at 390 px: {scrollers}"


_FORMULAS_JS = """() => {
  const bad = [];
  const meet = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const c of document.querySelectorAll('article mjx-container')) {
    const m = c.querySelector(':scope > mjx-math');
    if (!m) continue;
    const r = m.getBoundingClientRect();
    if (r.width === 0) continue;
    const display = c.getAttribute('display') === 'true';
    const box = display ? c : (c.closest('p, li, td, th, dd, div') || c.parentElement);
    const b = box.getBoundingClientRect();
    const kind = display ? 'display' : 'inline';
    const tex = (c.parentElement.textContent || '').slice(0, 50);
    if (r.right > b.right + 1 || r.left < b.left - 1) {
      bad.push(`${kind} formula ${Math.round(r.width)} px in ${Math.round(b.width)} px: ${tex}`);
    }
    const eqno = display && c.parentElement.querySelector(':scope > .eqno');
    if (eqno && meet(eqno.getBoundingClientRect(), r)) {
      bad.push(`equation ${eqno.textContent.trim()} overlaps its number`);
    }
    const scale = parseFloat(m.style.fontSize || '100');
    if (scale < 50) bad.push(`${kind} formula scaled to ${scale}% (split it): ${tex}`);
  }
  return bad;
}"""


@pytest.mark.site
@pytest.mark.parametrize("path", [p for p in PAGES if "bibliography" not in p])
@pytest.mark.parametrize("size", [PHONE, TABLET, DESKTOP], ids=["phone", "tablet", "desktop"])
def test_every_formula_fits_with_its_number_beside_it(offline_page, base_url, path, size):
    """Display formulas fit their column (scaled down by gradflow-site.js if needed, never below 50 %)
    and never overlap their equation number; inline formulas stay inside their paragraph."""
    page = _open(offline_page, base_url, path, size)
    if not page.locator(".math").count():
        return
    _wait_for_math(page)
    bad = page.evaluate(_FORMULAS_JS)
    assert not bad, f"{path} at {size[0]} px: {bad}"


# -- figures, tables and code ------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOK_PAGES)
def test_every_figure_links_to_its_full_size_image(site_dir, path):
    html = (site_dir / path).read_text()
    images = re.findall(r"<img [^>]*src=\"([^\"]*_images/[^\"]+)\"", html)
    linked = re.findall(r'<a class="[^"]*gf-figure-link[^"]*" href="([^"]+)"><img [^>]*src="([^"]+)"', html)
    assert len(linked) == len(images), f"{path}: {len(images) - len(linked)} of {len(images)} figures are not links"
    base = (site_dir / path).parent
    for href, src in linked:
        assert href == src and (base / href).resolve().is_file(), f"{path}: figure link {href} -> {src}"


@pytest.mark.site
@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_instructors_page_and_its_table_fit(offline_page, base_url, size):
    page = _open(offline_page, base_url, "book/instructors.html", size)
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    tables = page.evaluate("""() => [...document.querySelectorAll('article table')].map(t => ({
        cols: t.rows[0].cells.length, width: t.getBoundingClientRect().width,
        room: t.parentElement.clientWidth, scrolls: getComputedStyle(t.parentElement).overflowX}))""")
    assert tables, "no table on the instructors page"
    for t in tables:
        if size == DESKTOP:
            assert t["width"] <= t["room"] + 1, f"a {t['cols']}-column table is {t['width']:.0f} px in {t['room']} px"
        else:
            assert t["width"] <= t["room"] + 1 or t["scrolls"] in ("auto", "scroll"), t


_CODE_JS = """() => [...document.querySelectorAll('article div.highlight pre, article div.cell_output pre')]
  .filter(p => p.offsetParent !== null)
  .map(p => {
    const cs = getComputedStyle(p);
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(79);
    p.appendChild(probe);
    const w79 = probe.getBoundingClientRect().width;
    probe.remove();
    const room = p.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    const lines = p.textContent.split('\\n');
    const longest = Math.max(...lines.map(l => l.length));
    return {room, w79, scrolls: p.scrollWidth > p.clientWidth + 1, longest,
            first: lines.find(l => l.length === longest).slice(0, 60)};
  })"""


@pytest.mark.site
@pytest.mark.parametrize("path", NOTEBOOK_PAGES)
def test_79_characters_of_code_fit_the_column_at_1280px(offline_page, base_url, path):
    """Notebook code lines are at most 79 characters (issue 16): at 1280 px they fit without scrolling."""
    page = _open(offline_page, base_url, path, DESKTOP)
    blocks = page.evaluate(_CODE_JS)
    assert blocks, f"{path}: no code block"
    narrow = [b for b in blocks if b["w79"] > b["room"] + 0.5]
    assert not narrow, f"{path}: 79 characters need {narrow[0]['w79']:.0f} px in {narrow[0]['room']:.0f} px"
    # the lines that are longer than 79 characters are the only ones that scroll
    scrolling = [f"{b['longest']} chars: {b['first']}" for b in blocks if b["scrolls"] and b["longest"] <= 79]
    assert not scrolling, f"{path}: code blocks that scroll although no line is over 79 characters: {scrolling}"


def test_notebook_code_lines_are_at_most_79_characters():
    """Issue 16's line rule at its source: every code line of every notebook of the book."""
    import json

    long = []
    for source in sorted((SITE.parents[1] / "book").rglob("*.ipynb")):
        cells = json.loads(source.read_text(encoding="utf-8"))["cells"]
        long += [f"{source.name} cell {c.get('id')}: {len(line)} characters" for c in cells
                 if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines() if len(line) > 79]
    assert not long, f"code lines over 79 characters: {long}"


@pytest.mark.site
@pytest.mark.parametrize("kind", ["code", "output"])
@pytest.mark.parametrize("path", NOTEBOOK_PAGES)
def test_no_code_or_output_scrolls_at_1280px(offline_page, base_url, path, kind):
    """Issue 16's line rule as a reader sees it: at 1280 px no code cell and no printed output of a
    notebook page scrolls sideways (code and printed lines are at most 79 characters)."""
    page = _open(offline_page, base_url, path, DESKTOP)
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    selector = "article div.cell_input pre" if kind == "code" else "article div.cell_output pre"
    blocks = page.evaluate(_CODE_JS.replace(
        "article div.highlight pre, article div.cell_output pre", selector))
    scrolling = [f"{b['longest']} chars: {b['first']}" for b in blocks if b["scrolls"]]
    assert not scrolling, f"{path}: {kind} that scrolls sideways at 1280 px: {scrolling}"

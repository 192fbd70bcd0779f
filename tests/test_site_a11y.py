"""Accessibility of the built site in headless Chromium (network cut): axe-core on every page,
visible keyboard focus, formulas out of the tab order but readable by screen readers, and
solution toggles that say what they do and for which exercise.

axe-core comes from ``axe-playwright-python`` (pinned in requirements.txt; the package ships
axe-core's ``axe.min.js``, so nothing is downloaded).
"""

import pytest
from conftest import SITE

PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob("book/**/*.html")) if SITE.exists() else []
# Pages made from a notebook (the chapters, notation, batchnorm).
NOTEBOOK_PAGES = [p for p in PAGES if (SITE.parents[1] / p).with_suffix(".ipynb").exists()]

# Rules the site once failed and that coursetools.sphinxext fixed: guarded whatever their impact.
FIXED_RULES = {"summary-name", "aria-required-children", "aria-deprecated-role", "aria-allowed-role",
               "region", "empty-table-header", "landmark-unique", "button-name", "link-name"}


def _axe_script():
    try:
        from axe_playwright_python.base import AXE_SCRIPT
    except ImportError:  # pragma: no cover - requirements.txt pins it
        pytest.fail("axe-playwright-python is not installed: `make test` installs requirements.txt")
    return AXE_SCRIPT


def _wait_for_math(page):
    if page.locator(".math").count():
        page.wait_for_function(
            "() => [...document.querySelectorAll('.math')].every(m => m.querySelector('mjx-container'))",
            timeout=20_000,
        )


def axe_violations(page):
    """axe-core's violations on the loaded page: a list of (rule id, impact, count, first target)."""
    page.evaluate(_axe_script())
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], len(v["nodes"]), v["nodes"][0]["target"] if v["nodes"] else "")
            for v in result["violations"]]


@pytest.mark.site
@pytest.mark.parametrize("path", PAGES)
def test_axe_finds_no_serious_or_critical_violation(offline_page, base_url, path):
    offline_page.goto(base_url + path)
    _wait_for_math(offline_page.page)
    found = axe_violations(offline_page.page)
    bad = [v for v in found if v[1] in ("serious", "critical") or v[0] in FIXED_RULES]
    assert not bad, f"{path}: axe-core violations (rule, impact, nodes, first): {bad}"


@pytest.mark.site
def test_bibliography_is_a_list_of_list_items(site_dir):
    html = (site_dir / "book/bibliography.html").read_text()
    assert 'role="list"' in html and 'role="listitem"' in html
    assert "doc-biblioentry" not in html


_FOCUS_JS = """() => {
  const e = document.activeElement;
  const cs = getComputedStyle(e);
  const r = e.getBoundingClientRect();
  const first = document.querySelector('article p');
  return {tag: e.tagName, name: (e.getAttribute('aria-label') || e.title || e.innerText || '').trim().slice(0, 50),
          outline: cs.outlineStyle, width: parseFloat(cs.outlineWidth), color: cs.outlineColor,
          visible: r.width > 0 && r.height > 0,
          inArticle: !!(first && (first.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING))};
}"""


def _clip(page):
    """The focused element's box plus a margin wide enough for an outline and its offset."""
    box = page.evaluate("() => { const r = document.activeElement.getBoundingClientRect();"
                        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }")
    m = 8
    return {"x": max(box["x"] - m, 0), "y": max(box["y"] - m, 0), "width": box["width"] + 2 * m,
            "height": box["height"] + 2 * m}


@pytest.mark.site
@pytest.mark.parametrize("width", [1280, 390])
def test_every_focus_stop_before_the_text_shows_a_focus_ring(offline_page, base_url, width):
    """Tab from the top of the page to the first paragraph: every stop draws a clear outline, and
    the header buttons look different focused and unfocused (compared as pixels, not styles)."""
    page = offline_page.page
    page.set_viewport_size({"width": width, "height": 900})
    offline_page.goto(base_url + "book/01_vanishing/vanishing.html")
    stops, missing, shots = [], [], []
    for _ in range(80):
        page.keyboard.press("Tab")
        info = page.evaluate(_FOCUS_JS)
        if info["inArticle"]:
            break
        stops.append(info)
        if not info["visible"]:
            continue
        if not (info["outline"] not in ("none", "hidden") and info["width"] >= 2
                and info["color"] not in ("transparent", "rgba(0, 0, 0, 0)")):
            missing.append(f"{info['tag']} {info['name']!r}: outline {info['outline']} {info['width']}px")
        if page.evaluate("() => !!document.activeElement.closest('.bd-header-article')"):
            clip = _clip(page)
            shots.append((info["name"], clip, page.screenshot(clip=clip, animations="disabled")))
    assert stops, "no focus stop before the first paragraph"
    assert not missing, f"focus stops without a visible outline at {width} px: {missing}"
    assert len(shots) >= 4, f"expected the header's buttons among the focus stops, got {[s[0] for s in shots]}"
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for name, clip, focused in shots:
        assert page.screenshot(clip=clip, animations="disabled") != focused, \
            f"header button {name!r} looks the same focused and unfocused at {width} px"


@pytest.mark.site
@pytest.mark.parametrize("path", PAGES)
def test_formulas_are_out_of_the_tab_order_but_readable(offline_page, base_url, path):
    """MathJax's ``inTabOrder: false``: no formula is a tab stop; each keeps its assistive MathML."""
    offline_page.goto(base_url + path)
    page = offline_page.page
    if not page.locator(".math").count():
        return
    _wait_for_math(page)
    counts = page.evaluate("""() => ({
        math: document.querySelectorAll('mjx-container').length,
        tabbable: [...document.querySelectorAll('mjx-container')].filter(c => c.tabIndex >= 0).length,
        mml: document.querySelectorAll('mjx-container mjx-assistive-mml math').length})""")
    assert counts["math"] > 0
    assert counts["tabbable"] == 0, f"{path}: {counts['tabbable']} of {counts['math']} formulas are tab stops"
    assert counts["mml"] == counts["math"], f"{path}: formulas without assistive MathML: {counts}"


@pytest.mark.site
@pytest.mark.parametrize("path", NOTEBOOK_PAGES)
def test_solution_toggles_say_show_solution_with_distinct_names(offline_page, base_url, path):
    html = (SITE / path).read_text()
    if "Show solution" not in html:
        assert "Toggle hidden content" not in html
        pytest.skip(f"{path} has no solution cell")
    offline_page.goto(base_url + path)
    page = offline_page.page
    summaries = page.locator("details.hide.above-input > summary")
    names = []
    for i in range(summaries.count()):
        s = summaries.nth(i)
        name = s.evaluate("s => s.innerText.replace(/\\s+/g, ' ').trim()")
        if "solution" not in name:
            continue
        assert s.get_attribute("aria-label") is None, "an aria-label would hide the visible text"
        assert name.startswith("Show solution to "), name
        s.click()
        opened = s.evaluate("s => s.innerText.replace(/\\s+/g, ' ').trim()")
        assert opened == name.replace("Show solution", "Hide solution"), opened
        code = s.evaluate("s => s.parentElement.querySelector('pre').innerText")
        assert "### BEGIN SOLUTION" not in code and "### END SOLUTION" not in code, code
        s.click()
        names.append(name)
    assert names, f"{path}: no solution toggle found"
    assert len(names) == len(set(names)), f"{path}: solution toggles share a name: {names}"

"""Explorers in headless Chromium with the network cut: moving a slider with the mouse or the
keyboard, or picking an option, shows the precomputed frame for the new values and updates the
value label; nothing is requested from another host.

(a) an explorer built here and put into a blank page (no site needed);
(b) every page of the built site (``make book``) that contains an explorer.
"""

import base64
import json
import re

import numpy as np
import pytest
from conftest import SITE

from gradflow.explore import data_uri, explorer

EXPLORER_PAGES = (
    sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html") if 'class="gf-explorer"' in p.read_text())
    if SITE.exists() else []
)
# Chapter folders are book/01_vanishing, book/02_residual, ... (DESIGN.md section 3).
CHAPTER_PAGES = sorted(SITE.glob("book/[0-9][0-9]_*/**/*.html")) if SITE.exists() else []


# -- helpers ----------------------------------------------------------------------------------------
def _state(ex_locator):
    """(indices of the controls, img src, img alt, output texts) of one explorer in the page."""
    return ex_locator.evaluate(
        """root => {
        const d = JSON.parse(root.querySelector('script.gf-data').textContent);
        const idx = d.sizes.map((_, i) => {
            const r = root.querySelector(`input[type=range][data-gf-param='${i}']`);
            if (r) return +r.value;
            const s = root.querySelector(`select[data-gf-param='${i}']`);
            if (s) return +s.value;
            return +root.querySelector(`input[type=radio][data-gf-param='${i}']:checked`).value;
        });
        const outs = {};
        root.querySelectorAll('output[data-gf-param]').forEach(o => { outs[o.dataset.gfParam] = o.textContent; });
        const img = root.querySelector('img.gf-frame');
        return {idx, src: img.getAttribute('src'), alt: img.alt, outs, frame: root.dataset.gfFrame};
        }"""
    )


def _embedded(ex_locator):
    """The explorer's embedded data: labels, sizes, initial indices and base64 frames."""
    return json.loads(ex_locator.locator("script.gf-data").text_content())


def _flat(idx, sizes):
    k = 0
    for i, n in zip(idx, sizes, strict=True):
        k = k * n + i
    return k


def _click_range_at(page, slider, fraction):
    """Click the range input at ``fraction`` of its track with the mouse."""
    box = slider.bounding_box()
    assert box and box["width"] > 20, f"slider not visible: {box}"
    thumb = 8  # half the thumb width; the track's ends are at x + thumb and x + width - thumb
    x = box["x"] + thumb + fraction * (box["width"] - 2 * thumb)
    page.mouse.click(x, box["y"] + box["height"] / 2)


def _drag_range_to(page, slider, fraction):
    """Press on the thumb, drag it to ``fraction`` of the track, release."""
    box = slider.bounding_box()
    n = int(slider.get_attribute("max"))
    cur = int(slider.input_value()) / n if n else 0
    thumb = 8
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + thumb + cur * (box["width"] - 2 * thumb), y)
    page.mouse.down()
    page.mouse.move(box["x"] + thumb + fraction * (box["width"] - 2 * thumb), y, steps=5)
    page.mouse.up()


# -- (a) an explorer in a blank page ------------------------------------------------------------------
def _lines(ax, depth, act):
    x = np.linspace(-3, 3, 50)
    y = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[act]
    ax.plot(x, y(x * depth))
    ax.set_title(f"{act}, depth {depth}")


def _curve(ax, scale, colour):
    ax.plot([0, 1], [0, scale], color=colour)


@pytest.fixture(scope="module")
def explorers():
    a = explorer(_lines, title="Lines", depth=(1, 5, 1), act=["tanh", "relu", "sigmoid"], dpi=40, figsize=(3, 2),
                 labels={"act": "activation σ"})
    b = explorer(_curve, title="Curve", scale=(0.5, 1.5, 0.25), colour=list("rgbcmyk"), dpi=40, figsize=(3, 2))
    return a, b


@pytest.fixture
def blank_page(offline_page, explorers):
    a, b = explorers
    offline_page.page.set_content(f"<!doctype html><html><body><main>{a.html()}<p>text</p>{b.html()}</main>"
                                  "</body></html>")
    return offline_page


def _assert_shows(ex, loc, depth, act):
    st = _state(loc)
    assert st["src"] == data_uri(ex.frames[(depth, act)]), \
        f"shows frame {st['frame']} ({st['alt']}), not the frame for depth={depth}, act={act}"
    assert st["outs"]["0"] == str(depth), f"the value label says {st['outs']['0']!r}, the slider is at {depth}"
    assert f"depth = {depth}" in st["alt"] and f"activation σ = {act}" in st["alt"], st["alt"]


def test_blank_page_explorer_mouse_keyboard_and_buttons(blank_page, explorers):
    ex, _ = explorers
    page = blank_page.page
    loc = page.locator(".gf-explorer").nth(0)
    slider = loc.locator("input[type=range]")
    _assert_shows(ex, loc, 1, "tanh")
    # the mouse: click at the end of the track, then drag back to the middle
    _click_range_at(page, slider, 1.0)
    _assert_shows(ex, loc, 5, "tanh")
    _drag_range_to(page, slider, 0.5)
    _assert_shows(ex, loc, 3, "tanh")
    # the keyboard
    slider.focus()
    page.keyboard.press("ArrowRight")
    _assert_shows(ex, loc, 4, "tanh")
    page.keyboard.press("Home")
    _assert_shows(ex, loc, 1, "tanh")
    page.keyboard.press("End")
    _assert_shows(ex, loc, 5, "tanh")
    # an option button, by clicking its label
    loc.get_by_label("relu").click()
    _assert_shows(ex, loc, 5, "relu")
    page.keyboard.press("ArrowRight")  # the focused radio group: the next option
    _assert_shows(ex, loc, 5, "sigmoid")
    # the other explorer on the page did not move
    other = _state(page.locator(".gf-explorer").nth(1))
    assert other["idx"] == [0, 0]
    assert not blank_page.external_requests and not blank_page.console_errors and not blank_page.page_errors


def test_blank_page_float_slider_and_dropdown(blank_page, explorers):
    _, ex = explorers
    page = blank_page.page
    loc = page.locator(".gf-explorer").nth(1)
    slider = loc.get_by_label("scale")
    slider.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    st = _state(loc)
    assert st["outs"]["0"] == "1.00"
    assert st["src"] == data_uri(ex.frames[(1.0, "r")])
    loc.get_by_label("colour").select_option(label="m")
    st = _state(loc)
    assert st["src"] == data_uri(ex.frames[(1.0, "m")]) and "colour = m" in st["alt"]
    loc.get_by_label("colour").select_option(label="k")
    _click_range_at(page, slider, 1.0)
    st = _state(loc)
    assert st["outs"]["0"] == "1.50" and st["src"] == data_uri(ex.frames[(1.5, "k")])
    assert not blank_page.external_requests and not blank_page.console_errors and not blank_page.page_errors


def test_explorer_controls_are_labelled(blank_page):
    page = blank_page.page
    for i in range(2):
        loc = page.locator(".gf-explorer").nth(i)
        for control in loc.locator("input[type=range], select").all():
            cid = control.get_attribute("id")
            assert loc.locator(f"label[for='{cid}']").count() == 1, f"control {cid} has no <label>"
        for radio in loc.locator("input[type=radio]").all():
            assert radio.evaluate("r => r.closest('label') !== null && r.closest('fieldset').querySelector('legend')")
    ids = page.eval_on_selector_all("[id]", "els => els.map(e => e.id)")
    assert len(ids) == len(set(ids)), "element ids repeat on the page"


def test_labels_show_the_texts_symbols(blank_page):
    page = blank_page.page
    loc = page.locator(".gf-explorer").nth(0)
    assert loc.locator("legend").inner_text() == "activation σ"
    assert loc.get_by_label("depth").count() == 1  # no label given: the parameter's name
    assert "activation σ = tanh" in loc.locator("img").get_attribute("alt")


def _centre_luminance(png):
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(png)).convert("RGB")
    r, g, b = img.getpixel((img.width // 2, img.height // 2))
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_unchecked_options_look_unchecked_in_dark_mode(browser, explorers):
    """The theme puts HTML outputs on a light box in dark mode; the explorer keeps a light colour
    scheme there, so an unchecked radio button is a light circle, not a dark (selected-looking) dot."""
    a, _ = explorers
    context = browser.new_context(viewport={"width": 900, "height": 700}, color_scheme="dark")
    page = context.new_page()
    page.set_content('<!doctype html><html style="color-scheme: dark"><body style="background:#121212">'
                     f'<div style="background:#ced6dd;color:#222832;padding:8px">{a.html()}</div></body></html>')
    radios = page.locator(".gf-explorer input[type=radio]")
    checked = [_centre_luminance(r.screenshot()) for r in radios.all() if r.is_checked()]
    unchecked = [_centre_luminance(r.screenshot()) for r in radios.all() if not r.is_checked()]
    context.close()
    assert checked and unchecked
    assert min(unchecked) > 0.8, f"unchecked radio buttons are dark dots (luminance {min(unchecked):.2f})"
    assert max(checked) < min(unchecked) - 0.2, "checked and unchecked options look alike"


# -- (b) the built site ---------------------------------------------------------------------------------
def test_site_has_an_explorer_once_a_chapter_landed(site_dir):
    if not CHAPTER_PAGES:
        pytest.skip("no chapter page in the built site yet")
    assert EXPLORER_PAGES, "chapters are built, but no page contains an explorer (class gf-explorer)"


@pytest.mark.site
@pytest.mark.parametrize("path", EXPLORER_PAGES or [pytest.param(None, marks=pytest.mark.skip("no explorer page"))])
def test_site_explorer_responds_offline(offline_page, base_url, path):
    response = offline_page.goto(base_url + path)
    assert response.ok, f"{path}: HTTP {response.status}"
    page = offline_page.page
    explorers = page.locator(".gf-explorer")
    assert explorers.count() >= 1
    for n in range(explorers.count()):
        loc = explorers.nth(n)
        loc.scroll_into_view_if_needed()
        d = _embedded(loc)
        first_src = _state(loc)["src"]
        k0 = _flat(d["initial"], d["sizes"])

        def expected_src(idx, d=d, first_src=first_src, k0=k0):
            k = _flat(idx, d["sizes"])
            return first_src if k == k0 else "data:image/png;base64," + d["frames"][k]

        sliders = loc.locator("input[type=range]")
        assert sliders.count() + loc.locator("input[type=radio], select").count() >= 1
        for s in range(sliders.count()):
            slider = sliders.nth(s)
            i = int(slider.get_attribute("data-gf-param"))
            top = d["sizes"][i] - 1
            _click_range_at(page, slider, 1.0)  # the mouse
            st = _state(loc)
            assert st["idx"][i] == top, f"{path}: clicking the end of slider {d['names'][i]} did not move it"
            assert st["src"] == expected_src(st["idx"]), f"{path}: wrong frame after the mouse click"
            assert st["outs"][str(i)] == d["labels"][i][top], f"{path}: the value label did not update"
            slider.focus()  # the keyboard
            page.keyboard.press("Home")
            page.keyboard.press("ArrowRight")
            st = _state(loc)
            want = min(1, top)
            assert st["idx"][i] == want and st["src"] == expected_src(st["idx"])
            assert st["outs"][str(i)] == d["labels"][i][want]
            assert f"{d['captions'][i]} = {d['labels'][i][want]}" in st["alt"]
        radios = loc.locator("input[type=radio]")
        if radios.count():
            last = radios.nth(radios.count() - 1)
            last.evaluate("r => r.closest('label').click()")
            st = _state(loc)
            assert st["src"] == expected_src(st["idx"]), f"{path}: wrong frame after choosing an option"
        # every frame is a PNG
        for f in d["frames"]:
            assert not f or base64.b64decode(f[:12])[:4] == b"\x89PNG"
    for n in range(explorers.count()):
        d = _embedded(explorers.nth(n))
        code_like = [c for c in d["captions"] if re.fullmatch(r"[a-z]{1,3}\d*", c)]
        assert not code_like, f"{path}: explorer controls named by code names {code_like}: give labels={{...}}"
    html = (SITE / path).read_text()
    assert not re.search(r"<script[^>]+src=\"https?://[^\"]*(widget|require)", html), \
        f"{path}: loads widget JavaScript from a CDN"
    assert not offline_page.external_requests, f"{path}: requests to other hosts: {offline_page.external_requests}"
    errors = offline_page.console_errors + offline_page.page_errors
    assert not errors, f"{path}: console errors: {errors}"

"""gradflow.diagrams: every diagram draws, fits a phone, and puts all its text on a light fill."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch  # noqa: E402

from gradflow import diagrams  # noqa: E402

DIAGRAMS = [diagrams.residual_block, diagrams.placements, diagrams.unravelled, diagrams.stage_layout]


def luminance(color):
    r, g, b = mcolors.to_rgb(color)
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a, b):
    la, lb = sorted([luminance(a), luminance(b)], reverse=True)
    return (la + 0.05) / (lb + 0.05)


def fill_under(ax, text):
    """The face colour of the box the text sits on: its own bbox, or a patch that contains it."""
    own = text.get_bbox_patch()
    if own is not None:
        return own.get_facecolor()
    x, y = text.get_position()
    for patch in ax.patches:
        if isinstance(patch, (FancyBboxPatch, Circle)) and patch.contains_point(ax.transData.transform((x, y))):
            return patch.get_facecolor()
    return None


@pytest.mark.parametrize("draw", DIAGRAMS, ids=lambda f: f.__name__)
def test_diagram_reads_on_light_and_dark_pages(draw):
    ax = draw()
    fig = ax.figure
    assert fig.get_figwidth() <= 4.8, "wider figures shrink their text below legibility on a 390 px phone"
    assert fig.patch.get_alpha() == 0, "transparent background, for dark mode"
    texts = [t for t in ax.texts if t.get_text().strip()]
    assert texts
    for t in texts:
        assert t.get_fontsize() >= 8, f"{t.get_text()!r} is too small"
        fill = fill_under(ax, t)
        assert fill is not None, f"{t.get_text()!r} sits on the page background, unreadable in one of the modes"
        assert contrast(t.get_color(), fill) >= 4.5, f"{t.get_text()!r}: contrast below 4.5:1"
    plt.close(fig)


@pytest.mark.parametrize("draw", DIAGRAMS, ids=lambda f: f.__name__)
def test_diagram_draws_on_a_given_axes(draw):
    fig, ax = plt.subplots(figsize=(5, 6))
    assert draw(ax=ax) is ax
    plt.close(fig)


def test_lines_are_visible_on_white_and_on_dark_backgrounds():
    for color in (diagrams.LINE, diagrams.IDENTITY):
        assert contrast(color, "#ffffff") >= 3 and contrast(color, "#121212") >= 3


def test_placements_are_he_et_al_figure_4():
    names = [name for name, _ in diagrams.PLACEMENTS]
    assert names[0] == "(a) original" and names[-1] == "(e) full pre-activation"
    full = dict(diagrams.PLACEMENTS)["(e) full pre-activation"]
    assert full[-1] == "+" and full[:3] == ["BN", "ReLU", "weight"]


@pytest.mark.parametrize("draw", DIAGRAMS, ids=lambda f: f.__name__)
def test_text_in_a_box_fits_inside_it(draw):
    ax = draw()
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pad = 2 * fig.dpi / 72  # at least 2 points of fill between the text and the box's edge
    for t in ax.texts:
        if not t.get_text().strip() or t.get_bbox_patch() is not None:
            continue
        x, y = ax.transData.transform(t.get_position())
        boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch) and p.contains_point((x, y))]
        if not boxes:
            continue
        inner, outer = t.get_window_extent(renderer), boxes[0].get_window_extent(renderer)
        assert inner.x0 >= outer.x0 + pad and inner.x1 <= outer.x1 - pad, f"{t.get_text()!r} overflows its box"
        assert inner.y0 >= outer.y0 + pad / 2 and inner.y1 <= outer.y1 - pad / 2, f"{t.get_text()!r} overflows"
    plt.close(fig)

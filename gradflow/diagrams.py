"""Block diagrams drawn by code, so that they are reproducible and follow the text's notation.

Each function draws one diagram on an ``ax`` (a new figure if ``ax`` is None) and returns the ax.
One unit of the drawing is one inch of the figure, so text keeps its size: the figures are at most
4.8 inches wide, which a phone shows at about four fifths of their size. The background is
transparent; every piece of text sits on a light box, and lines use colours with enough contrast on
white and on a dark page, so the diagrams read in light and dark mode alike.

- :func:`residual_block`: a plain block and a residual block, output = F(x) + x (He et al. 2015, Fig. 2);
- :func:`placements`: where BN and ReLU go around the addition (He et al. 2016b, Fig. 4);
- :func:`unravelled`: a 3-block residual network as 2^3 paths (Veit et al. 2016, Fig. 1);
- :func:`stage_layout`: the CIFAR ResNet of He et al. (2015), section 4.2: 6n + 2 layers.
"""

import math
from itertools import combinations

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

__all__ = ["COLORS", "residual_block", "placements", "unravelled", "stage_layout", "PLACEMENTS"]

INK = "#1a1a1a"  # text, always on a light fill
LINE = "#666666"  # 5.7:1 on white, 3.4:1 on #121212
IDENTITY = "#D55E00"  # the identity path: Okabe-Ito vermillion
COLORS = {  # fill, edge: light tints of the Okabe-Ito palette
    "conv": ("#d3e6f5", "#0072B2"),
    "weight": ("#d3e6f5", "#0072B2"),
    "BN": ("#fbe6c4", "#b97f00"),
    "ReLU": ("#cdeee2", "#009E73"),
    "pool": ("#eadcf0", "#CC79A7"),
    "fc": ("#d3e6f5", "#0072B2"),
    "data": ("#ffffff", "#666666"),
    "stage": ("#e8e8e8", "#666666"),
}
FONT = 10.5


def _canvas(ax, width, height):
    """An axes whose data units are inches of a ``width`` x ``height`` figure, without frame."""
    if ax is None:
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes((0, 0, 1, 1))
    ax.figure.patch.set_alpha(0)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _box(ax, x, y, w, h, text, kind="conv", fontsize=FONT, **kw):
    """A rounded box centred at (x, y) with ``text`` in it."""
    fill, edge = COLORS.get(kind, COLORS["data"])
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                facecolor=fill, edgecolor=edge, linewidth=1.2, zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=4, **kw)


def _label(ax, x, y, text, fontsize=FONT, ha="center", color=INK, edge="none"):
    """Text on a white pill, readable on any background."""
    ax.text(x, y, text, ha=ha, va="center", fontsize=fontsize, color=color, zorder=5,
            bbox={"boxstyle": "round,pad=0.18", "facecolor": "white", "edgecolor": edge, "linewidth": 1})


def _add(ax, x, y, r=0.13):
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=INK, linewidth=1.3, zorder=3))
    ax.plot([x - r * 0.55, x + r * 0.55], [y, y], color=INK, lw=1.4, zorder=4, solid_capstyle="butt")
    ax.plot([x, x], [y - r * 0.55, y + r * 0.55], color=INK, lw=1.4, zorder=4, solid_capstyle="butt")


def _arrow(ax, points, color=LINE, lw=1.5, head=True):
    """A polyline through ``points`` with an arrow head at the end."""
    xs, ys = zip(*points, strict=True)
    if len(points) > 2:
        ax.plot(xs[:-1], ys[:-1], color=color, lw=lw, zorder=2, solid_capstyle="round")
    ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>" if head else "-",
                                 mutation_scale=11, color=color, lw=lw, zorder=2, shrinkA=0, shrinkB=0))


# ---------------------------------------------------------------- plain block vs residual block


def residual_block(ax=None, layer="weight layer"):
    """Left: a plain block, output = F(x). Right: a residual block, output = F(x) + x."""
    W, H = 4.6, 4.3
    ax = _canvas(ax, W, H)
    bw, bh = 1.35, 0.42
    ys = [3.05, 2.35, 1.65]  # the three layers of F, top to bottom
    for cx, title in [(1.05, "plain block"), (3.15, "residual block")]:
        ax.text(cx, H - 0.2, title, ha="center", va="center", fontsize=FONT + 1, color=INK, weight="bold",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none"})
        _label(ax, cx, 3.7, "$x$")
        _arrow(ax, [(cx, 3.55), (cx, ys[0] + bh / 2)])
        for y, text, kind in zip(ys, [layer, "ReLU", layer], ["weight", "ReLU", "weight"], strict=True):
            _box(ax, cx, y, bw, bh, text, kind)
        for a, b in zip(ys, ys[1:], strict=False):
            _arrow(ax, [(cx, a - bh / 2), (cx, b + bh / 2)])
        # F: a bracket on the left of the branch
        xb = cx - bw / 2 - 0.12
        ax.plot([xb + 0.06, xb, xb, xb + 0.06], [ys[0] + bh / 2, ys[0] + bh / 2, ys[-1] - bh / 2, ys[-1] - bh / 2],
                color=LINE, lw=1.2)
        _label(ax, xb - 0.05, ys[1], "$F$", ha="right")
    # plain: F(x) is the output
    cx = 1.05
    _arrow(ax, [(cx, ys[-1] - bh / 2), (cx, 0.45)])
    _label(ax, cx, 0.3, "output $= F(x)$")
    # residual: add the identity
    cx, ya = 3.15, 0.95
    _arrow(ax, [(cx, ys[-1] - bh / 2), (cx, ya + 0.13)])
    _add(ax, cx, ya)
    xr = cx + bw / 2 + 0.28
    _arrow(ax, [(cx, 3.48), (xr, 3.48), (xr, ya), (cx + 0.13, ya)], color=IDENTITY, lw=2.2)
    _label(ax, xr, 2.35, "$x$", edge=IDENTITY)
    _label(ax, cx + 0.45, 1.22, "$F(x)$", fontsize=FONT - 1)
    _arrow(ax, [(cx, ya - 0.13), (cx, 0.45)])
    _label(ax, cx, 0.3, "output $= F(x) + x$")
    return ax


# ---------------------------------------------------------------- He et al. 2016b, Fig. 4

# (label, layers before the addition, layers after it): "+" is the addition
PLACEMENTS = [
    ("(a) original", ["weight", "BN", "ReLU", "weight", "BN", "+", "ReLU"]),
    ("(b) BN after addition", ["weight", "BN", "ReLU", "weight", "+", "BN", "ReLU"]),
    ("(c) ReLU before addition", ["weight", "BN", "ReLU", "weight", "BN", "ReLU", "+"]),
    ("(d) ReLU-only pre-activation", ["ReLU", "weight", "BN", "ReLU", "weight", "BN", "+"]),
    ("(e) full pre-activation", ["BN", "ReLU", "weight", "BN", "ReLU", "weight", "+"]),
]


def placements(ax=None, layer="weight"):
    """The five units of He et al. (2016b), Fig. 4: where BN and ReLU sit relative to the addition.

    ``layer`` names the weight layers ("weight" as in the paper, or "conv").
    """
    W, row = 4.8, 1.0
    H = row * len(PLACEMENTS) + 0.05
    ax = _canvas(ax, W, H)
    x0, step, bw, bh = 0.28, 0.55, 0.53, 0.36
    for i, (title, units) in enumerate(PLACEMENTS):
        y = H - row * (i + 1) + 0.3
        ax.text(0.02, y + 0.5, title, ha="left", va="center", fontsize=FONT, color=INK,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
        _label(ax, x0 - 0.12, y, "$x_l$")
        xs = [x0 + 0.45 + step * k for k in range(len(units))]
        plus = xs[units.index("+")]
        # main path, then the identity arc from the input to the addition
        ax.plot([x0 + 0.05, xs[-1]], [y, y], color=LINE, lw=1.3, zorder=1)
        _arrow(ax, [(x0 + 0.12, y), (x0 + 0.12, y + 0.3), (plus, y + 0.3), (plus, y + 0.13)],
               color=IDENTITY, lw=1.8)
        for x, unit in zip(xs, units, strict=True):
            if unit == "+":
                _add(ax, x, y, r=0.12)
            else:
                _box(ax, x, y, bw, bh, layer if unit == "weight" else unit, unit, fontsize=FONT - 0.5)
        _arrow(ax, [(xs[-1] + (0.12 if units[-1] == "+" else bw / 2), y), (xs[-1] + 0.4, y)])
        _label(ax, xs[-1] + 0.62, y, "$x_{l+1}$")
    return ax


# ---------------------------------------------------------------- Veit et al. 2016, Fig. 1


def unravelled(ax=None, n=3):
    """Top: ``n`` residual blocks. Bottom: the same network unravelled into its 2^n paths, by length."""
    paths = [p for k in range(n + 1) for p in combinations(range(n), k)]
    W, rh = 4.6, 0.34
    H = 1.45 + rh * len(paths) + 0.35
    ax = _canvas(ax, W, H)
    palette = ["#666666", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
    # (a) the network
    y = H - 0.75
    ax.text(0.02, H - 0.18, f"(a) {n} residual blocks", ha="left", va="center", fontsize=FONT, color=INK,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    _label(ax, 0.2, y, "$x_0$")
    xs = [0.95 + 1.15 * k for k in range(n)]
    ax.plot([0.38, xs[-1] + 0.62], [y, y], color=LINE, lw=1.3, zorder=1)
    for k, x in enumerate(xs):
        _box(ax, x, y, 0.5, 0.36, f"$f_{k + 1}$", "weight")
        _add(ax, x + 0.62, y, r=0.11)
        _arrow(ax, [(x - 0.45, y), (x - 0.45, y + 0.33), (x + 0.62, y + 0.33), (x + 0.62, y + 0.11)],
               color=IDENTITY, lw=1.6)
    _arrow(ax, [(xs[-1] + 0.73, y), (xs[-1] + 1.0, y)])
    _label(ax, xs[-1] + 1.22, y, f"$x_{n}$")
    # (b) the paths
    top = H - 1.45
    ax.text(0.02, top + 0.12, f"(b) unravelled: $2^{n} = {2 ** n}$ paths", ha="left", va="center",
            fontsize=FONT, color=INK, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    xsum = xs[-1] + 0.85
    for i, p in enumerate(paths):
        yy = top - rh * (i + 0.8)
        color = palette[len(p) % len(palette)]
        _arrow(ax, [(0.42, yy), (xsum - 0.16, yy)], color=color, lw=1.6)
        for k in p:
            _box(ax, xs[k], yy, 0.46, 0.28, f"$f_{k + 1}$", "weight", fontsize=FONT - 0.5)
        if i == 0 or len(paths[i - 1]) != len(p):
            count = math.comb(n, len(p))
            _label(ax, xsum + 0.5, yy - rh * (count - 1) / 2,
                   f"length {len(p)}: {count}", fontsize=FONT - 1, edge=color)
    y_first, y_last = top - rh * 0.8, top - rh * (len(paths) - 0.2)
    ax.plot([0.42, 0.42], [y_first, y_last], color=LINE, lw=1.3)
    _label(ax, 0.2, (y_first + y_last) / 2, "$x_0$")
    ax.plot([xsum - 0.16, xsum - 0.16], [y_first, y_last], color=LINE, lw=1.3)
    _label(ax, xsum - 0.16, (y_first + y_last) / 2, "$\\Sigma$", fontsize=FONT + 1, edge=INK)
    return ax


# ---------------------------------------------------------------- the CIFAR ResNet


def stage_layout(ax=None, widths=(16, 32, 64), sizes=(32, 16, 8), classes=10, in_channels=3):
    """He et al. (2015), section 4.2: a 3x3 convolution, three stages of n blocks, pooling, fc: 6n + 2 layers."""
    cx, space = 1.85, 0.3
    rows = [
        ("data", f"image {sizes[0]}×{sizes[0]}, {in_channels} channels", None, 3.2),
        ("conv", f"3×3 conv, {widths[0]} channels", "1 layer", 3.2),
        *[("stage", f"stage {i + 1}: $n$ blocks, {w} channels\n{s}×{s} maps" + (", first block /2" if i else ""),
           "$2n$ layers", 2.4 + 0.8 * w / widths[-1]) for i, (w, s) in enumerate(zip(widths, sizes, strict=True))],
        ("pool", f"global average pool: {widths[-1]} numbers", None, 3.2),
        ("fc", f"fully connected, {classes} outputs", "1 layer", 3.2),
    ]
    heights = [0.58 if kind == "stage" else 0.4 for kind, *_ in rows]
    W, H = 4.6, sum(heights) + space * (len(rows) - 1) + 0.6
    ax = _canvas(ax, W, H)
    ys, top = [], H - 0.05
    for h in heights:
        ys.append(top - h / 2)
        top -= h + space
    for k, ((kind, text, layers, w), y, h) in enumerate(zip(rows, ys, heights, strict=True)):
        _box(ax, cx, y, w, h, text, kind)
        if layers:
            _label(ax, 4.05, y, layers)
        if k:
            _arrow(ax, [(cx, ys[k - 1] - heights[k - 1] / 2), (cx, y + h / 2)])
    _label(ax, W / 2, 0.2, "weighted layers: $1 + 3 \\cdot 2n + 1 = 6n + 2$", fontsize=FONT, edge=INK)
    return ax

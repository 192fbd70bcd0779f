"""One figure style for the whole book, and small plot helpers that take ``ax=None`` and return ``ax``."""

import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["OKABE_ITO", "STYLE", "use_style", "layer_norms", "log_range", "loss_curves", "to_png"]

# Okabe & Ito's palette: distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    # titles at the top of the axes: no figure has an axis on top, and matplotlib then skips
    # measuring the tick labels to place each title (about 10 ms a figure, a tenth of a frame)
    "axes.titley": 1.0,
}


def use_style():
    """Apply the book's style (called once, in each chapter's setup cell)."""
    plt.rcParams.update(STYLE)


def _ax(ax):
    return plt.subplots()[1] if ax is None else ax


def layer_norms(norms, ax=None, label=None, theory=None, ylabel="gradient norm", **kwargs):
    """Plot one value per layer on a log scale; ``theory`` (same length) is drawn dashed."""
    ax = _ax(ax)
    norms = np.asarray(norms, dtype=float)
    layers = np.arange(1, len(norms) + 1)
    (line,) = ax.plot(layers, norms, marker="o", markersize=3, label=label, **kwargs)
    if theory is not None:
        ax.plot(layers, np.asarray(theory, dtype=float), linestyle="--", color=line.get_color(),
                linewidth=1.2, label=None if label is None else f"{label} (theory)")
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend(fontsize=8)
    return ax


def log_range(ax, low, high):
    """Fix a log-scale y range with ticks at the decades only (no minor ticks).

    For explorer frames over many decades: the axis stays put between frames, and without the
    eight minor ticks per decade a frame draws in about 60 % of the time.
    """
    from matplotlib.ticker import NullLocator

    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.yaxis.set_minor_locator(NullLocator())
    return ax


def loss_curves(curves, ax=None, ylabel="training loss (cross-entropy)", log=False):
    """Plot ``{label: losses}`` against the step number."""
    ax = _ax(ax)
    for label, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=label)
    ax.set_xlabel("SGD step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax


def to_png(fig, dpi=72):
    """Render a figure to PNG bytes (palette-quantised when that is smaller)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    raw = buf.getvalue()
    try:
        from PIL import Image

        img = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small = io.BytesIO()
        img.save(small, format="png", optimize=True)
        if len(small.getvalue()) < len(raw):
            return small.getvalue()
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        pass
    return raw

"""Explorers: one call gives a live ipywidgets UI in Jupyter and a self-contained HTML version in the site.

``explorer(fn, title=..., depth=(2, 20, 2), activation=["sigmoid", "relu"])`` calls ``fn(ax, **values)``
once for every combination of the parameter values, on a fresh matplotlib axis each time, and keeps
each drawing as a compressed PNG frame (:func:`gradflow.plots.to_png`). Switching a control only
swaps the displayed frame, so nothing is recomputed and no figures pile up.

- A tuple ``(start, stop, step)`` is a numeric slider over ``start, start + step, ..., stop``
  (``stop`` included). A list is a set of options (radio buttons, or a drop-down when there are many).
- The number of frames is the product of the numbers of choices; more than ``budget`` raises
  :class:`ValueError` before anything is drawn.
- ``labels={"lam": "shortcut λ", "s2": "s₂"}`` shows a parameter under the symbol the text uses
  (controls, alt text, live widget); a parameter without a label shows its name.
- Displayed as the last expression of a cell, the :class:`Explorer` returns a MIME bundle with the
  ipywidgets view (used by Jupyter, Binder and Colab), a self-contained ``text/html`` version (used
  by the built site: inline frames and script, no kernel, no network) and a plain-text fallback.

``fn`` must be a pure function of its values that draws on ``ax`` (it may also return a figure of
its own). Put expensive computations in a module-level function with :func:`functools.lru_cache`
so that frames that share them compute them once. Set fixed axis limits in ``fn``: frames are then
comparable, and the axis position, found by constrained layout on the first frame and reused for
the others (cheaper, and the axes never jump), fits every frame.
"""

import base64
import dataclasses
import hashlib
import html
import itertools
import json
import math
import numbers
import time
import warnings
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .plots import to_png

__all__ = ["Explorer", "Param", "explorer"]

DEFAULT_DPI = 100  # 640 x 340 pixels: the width of the book theme's text column
DEFAULT_FIGSIZE = (6.4, 3.4)
MAX_BUTTONS = 5  # more options than this become a drop-down
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # the MIME type of a live ipywidgets view

_counter = itertools.count(1)  # makes element ids unique within a page (one kernel = one page)


@dataclass(frozen=True)
class Param:
    """One parameter of an explorer: its name, kind ("range" or "options"), values and their labels.

    ``caption`` is what the reader sees for the parameter (the text's symbol, e.g. "λ"); it defaults
    to ``name``, the keyword that ``fn`` receives.
    """

    name: str
    kind: str
    values: tuple
    labels: tuple
    caption: str = ""

    def __post_init__(self):
        if not self.caption:
            object.__setattr__(self, "caption", self.name)

    @property
    def widget_kind(self):
        """The control used for this parameter: "slider", "buttons" or "dropdown"."""
        if self.kind == "range":
            return "slider"
        return "buttons" if len(self.values) <= MAX_BUTTONS else "dropdown"

    def index(self, value):
        """Position of ``value`` among the choices (nearest one for a numeric range)."""
        if self.kind == "range":
            return min(range(len(self.values)), key=lambda i: abs(self.values[i] - value))
        for i, v in enumerate(self.values):
            if v is value or v == value:
                return i
        raise ValueError(f"{value!r} is not one of the choices of {self.name!r}: {list(self.values)}")


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _decimals(x):
    """Number of decimals needed to write ``x`` (0.1 -> 1, 0.25 -> 2, 3 -> 0)."""
    text = f"{float(x):.10f}".rstrip("0")
    return len(text.split(".")[1])


def _range_param(name, spec):
    start, stop, step = spec
    if not all(_is_number(x) and math.isfinite(x) for x in spec):
        raise TypeError(f"parameter {name!r}: a range is (start, stop, step) with finite numbers, "
                        f"got {spec!r}")
    if step <= 0 or stop < start:
        raise ValueError(f"parameter {name!r}: a range (start, stop, step) needs step > 0 and stop >= start, "
                         f"got {spec!r}")
    count = (stop - start) / step
    n = round(count)
    if abs(count - n) > 1e-6:
        raise ValueError(f"parameter {name!r}: stop={stop!r} is not start + k*step for a whole k "
                         f"(start={start!r}, step={step!r}); pick a stop on the grid so it is included")
    if all(isinstance(x, numbers.Integral) for x in spec):
        values = tuple(int(start) + i * int(step) for i in range(n + 1))
        labels = tuple(str(v) for v in values)
    else:
        d = max(_decimals(start), _decimals(step))
        values = tuple(round(start + i * step, d) for i in range(n + 1))  # integer counts: no drift
        labels = tuple(f"{v:.{d}f}" for v in values)
    return Param(name, "range", values, labels)


def _options_param(name, spec):
    values = tuple(spec)
    if not values:
        raise ValueError(f"parameter {name!r}: the list of options is empty")
    try:
        if len(set(values)) != len(values):
            raise ValueError(f"parameter {name!r}: the options {list(values)} contain duplicates")
    except TypeError:
        raise TypeError(f"parameter {name!r}: options must be hashable (numbers, strings, tuples), "
                        f"got {list(values)!r}") from None
    labels = tuple(str(v) for v in values)
    return Param(name, "options", values, labels)


def _param(name, spec):
    if isinstance(spec, tuple) and len(spec) == 3 and all(_is_number(x) for x in spec):
        return _range_param(name, spec)
    if isinstance(spec, (list, tuple)):
        if isinstance(spec, tuple):
            raise TypeError(f"parameter {name!r}: a tuple must be a numeric range (start, stop, step), "
                            f"got {spec!r}; give options as a list")
        return _options_param(name, spec)
    raise TypeError(f"parameter {name!r}: give a numeric range (start, stop, step) or a list of options, "
                    f"got {spec!r}")


def _render(fn, values, figsize, dpi, position=None, fig=None):
    """Draw one frame on a fresh axis (outside pyplot, so nothing is displayed or left open).

    Without ``position`` the axis is placed by constrained layout on a new figure; with it, on
    ``fig`` (cleared, and reused between frames: its Agg renderer caches the tick labels' mathtext,
    a third of the time for log axes) exactly at ``position`` (the axes do not jump between frames).
    Returns (PNG bytes, axis position).
    """
    import matplotlib.pyplot as plt

    open_before = set(plt.get_fignums())
    if position is None:
        fig = Figure(figsize=figsize, layout="constrained")
    else:
        fig.clear()
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # keeps its renderer between savefig calls
    ax = fig.add_subplot()
    if position is not None:
        ax.set_position(position)
    out = fn(ax, **values)
    own = isinstance(out, Figure) and out is not fig
    # "standard" bbox: every frame has the same pixel size, so switching frames never moves the page.
    with matplotlib.rc_context({"savefig.bbox": "standard"}):
        png = to_png(out if own else fig, dpi=dpi)
    for num in set(plt.get_fignums()) - open_before:  # pyplot figures fn opened: never displayed
        plt.close(num)
    return png, None if own else tuple(ax.get_position().bounds)


def _png_size(png):
    """(width, height) in pixels from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _json_for_script(obj):
    """JSON that is safe inside a <script> element."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def data_uri(png):
    """The ``data:`` URI of PNG bytes, as the static HTML puts it in the ``<img>`` ``src``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# color-scheme: light, because the theme paints HTML outputs on a light box even in dark mode, where
# the page's dark scheme would draw unchecked radio buttons as filled dark dots (they looked selected).
_CSS = """
.gf-explorer{margin:.5em 0 1em;max-width:100%;color:inherit;color-scheme:light}
.gf-explorer .gf-title{font-weight:600;margin:0 0 .3em}
.gf-explorer .gf-controls{display:flex;flex-wrap:wrap;gap:.4em 1.6em;align-items:center;margin:0 0 .4em}
.gf-explorer .gf-control{display:flex;flex-wrap:wrap;align-items:center;gap:.2em .5em;border:0;margin:0;
padding:0}
.gf-explorer .gf-slider>label,.gf-explorer .gf-dropdown>label,.gf-explorer legend{font-weight:600;
font-size:inherit;float:left;margin:0 .3em 0 0;padding:0;width:auto}
.gf-explorer input[type=range]{width:12em;max-width:60vw;accent-color:#0072B2;margin:0}
.gf-explorer output{min-width:3em;font-variant-numeric:tabular-nums}
.gf-explorer .gf-option{display:inline-flex;align-items:center;gap:.25em;margin-right:.6em;font-weight:400;
cursor:pointer}
.gf-explorer input[type=radio]{accent-color:#0072B2;margin:0}
.gf-explorer select{font:inherit;padding:.1em .3em}
.gf-explorer img{display:block;max-width:100%;height:auto;background:#fff}
""".replace("\n", "")

# Plain ES5, no globals, no network. It finds its explorer from its own <script> element, so several
# explorers on a page (or the same one twice) never mix, and it does nothing if it already ran.
_JS = """(function(){
var s=document.currentScript,root=(s&&s.parentNode)||document.getElementById("__UID__");
if(!root||root.getAttribute("data-gf-ready"))return;root.setAttribute("data-gf-ready","1");
var d=JSON.parse(root.querySelector("script.gf-data").textContent),img=root.querySelector("img.gf-frame");
var idx=d.initial.slice(),P="data:image/png;base64,";
function key(){var k=0;for(var i=0;i<idx.length;i++){k=k*d.sizes[i]+idx[i];}return k;}
var k0=key();
function show(){var k=key(),parts=[];
for(var i=0;i<idx.length;i++){parts.push(d.captions[i]+" = "+d.labels[i][idx[i]]);
var o=root.querySelector("output[data-gf-param='"+i+"']");if(o){o.textContent=d.labels[i][idx[i]];}
var r=root.querySelector("input[type=range][data-gf-param='"+i+"']");
if(r){r.setAttribute("aria-valuetext",d.labels[i][idx[i]]);}}
img.src=k===k0?d.first:P+d.frames[k];img.alt=d.title+": "+parts.join(", ");
root.setAttribute("data-gf-frame",String(k));}
d.first=img.getAttribute("src");
var cs=root.querySelectorAll("[data-gf-param]");
for(var j=0;j<cs.length;j++){(function(c){var i=+c.getAttribute("data-gf-param");
if(c.tagName==="OUTPUT")return;
function on(){if(c.type==="radio"&&!c.checked)return;var v=+c.value;if(v!==idx[i]){idx[i]=v;show();}}
c.addEventListener("input",on);c.addEventListener("change",on);})(cs[j]);}
})();"""


class Explorer:
    """Every frame of an explorer, precomputed; displays as a live widget and as static HTML.

    Attributes: ``params`` (list of :class:`Param`), ``frames`` (dict: tuple of values in parameter
    order -> PNG bytes), ``seconds`` and ``cpu_seconds`` (wall and CPU time spent drawing the frames),
    ``title``, ``dpi``, ``figsize``.
    """

    def __init__(self, fn, params, *, title=None, dpi=DEFAULT_DPI, figsize=DEFAULT_FIGSIZE):
        self.fn, self.params = fn, list(params)
        self.title = title if title is not None else getattr(fn, "__name__", "explorer").replace("_", " ")
        self.dpi, self.figsize = dpi, tuple(figsize)
        t0, c0 = time.perf_counter(), time.process_time()
        self.frames = {}
        position = None  # constrained layout places the axis on the first frame; the others reuse it
        fig = Figure(figsize=self.figsize)
        for values in itertools.product(*(p.values for p in self.params)):
            kwargs = {p.name: v for p, v in zip(self.params, values, strict=True)}
            self.frames[values], pos = _render(fn, kwargs, self.figsize, dpi, position, fig)
            position = position or pos
        self.seconds = time.perf_counter() - t0  # wall time of the precompute
        self.cpu_seconds = time.process_time() - c0  # CPU time: what a busy machine does not inflate
        self.initial = tuple(p.values[0] for p in self.params)
        self._widget = None

    # -- frames ---------------------------------------------------------------------------------
    @property
    def n_frames(self):
        return len(self.frames)

    def frame(self, **values):
        """PNG bytes of the frame for these values (missing ones take their initial value)."""
        unknown = set(values) - {p.name for p in self.params}
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}; the parameters are "
                            f"{[p.name for p in self.params]}")
        key = tuple(p.values[p.index(values.get(p.name, v0))] for p, v0 in zip(self.params, self.initial,
                                                                               strict=True))
        return self.frames[key]

    @property
    def nbytes(self):
        """Total size of the PNG frames in bytes."""
        return sum(len(f) for f in self.frames.values())

    def alt(self, values):
        parts = [f"{p.caption} = {p.labels[p.index(v)]}" for p, v in zip(self.params, values, strict=True)]
        return f"{self.title}: " + ", ".join(parts)

    # -- static HTML ----------------------------------------------------------------------------
    def html(self):
        """The self-contained HTML version: inline CSS, frames as data URIs, inline script."""
        n = next(_counter)
        digest = hashlib.sha1(b"".join(self.frames.values()) + self.title.encode()).hexdigest()[:8]
        uid = f"gf-explorer-{n}-{digest}"
        first = self.frames[self.initial]
        init_idx = [p.index(v) for p, v in zip(self.params, self.initial, strict=True)]
        frames = list(self.frames.values())
        k0 = 0
        for p, i in zip(self.params, init_idx, strict=True):
            k0 = k0 * len(p.values) + i
        frames_b64 = [base64.b64encode(f).decode("ascii") for f in frames]
        frames_b64[k0] = ""  # already in the <img> src
        data = {"title": self.title, "names": [p.name for p in self.params],
                "captions": [p.caption for p in self.params],
                "labels": [list(p.labels) for p in self.params],
                "sizes": [len(p.values) for p in self.params], "initial": init_idx, "frames": frames_b64}
        esc = html.escape
        controls = []
        for i, (p, j) in enumerate(zip(self.params, init_idx, strict=True)):
            cid = f"{uid}-p{i}"
            attrs = f'data-gf-param="{i}" data-gf-name="{esc(p.name)}"'
            if p.widget_kind == "slider":
                controls.append(
                    f'<div class="gf-control gf-slider"><label for="{cid}">{esc(p.caption)}</label>'
                    f'<input type="range" id="{cid}" name="{cid}" min="0" max="{len(p.values) - 1}" step="1" '
                    f'value="{j}" aria-valuetext="{esc(p.labels[j])}" {attrs}>'
                    f'<output id="{cid}-value" for="{cid}" data-gf-param="{i}">{esc(p.labels[j])}</output>'
                    "</div>")
            elif p.widget_kind == "buttons":
                opts = "".join(
                    f'<label class="gf-option"><input type="radio" name="{cid}" value="{k}"'
                    f'{" checked" if k == j else ""} {attrs}>{esc(label)}</label>'
                    for k, label in enumerate(p.labels))
                controls.append(f'<fieldset class="gf-control gf-buttons" id="{cid}">'
                                f"<legend>{esc(p.caption)}</legend>{opts}</fieldset>")
            else:
                opts = "".join(f'<option value="{k}"{" selected" if k == j else ""}>{esc(label)}</option>'
                               for k, label in enumerate(p.labels))
                controls.append(f'<div class="gf-control gf-dropdown">'
                                f'<label for="{cid}">{esc(p.caption)}</label>'
                                f'<select id="{cid}" name="{cid}" {attrs}>{opts}</select></div>')
        w, h = _png_size(first)
        return (
            f'<div class="gf-explorer" id="{uid}" data-gf-frames="{self.n_frames}" data-gf-frame="{k0}" '
            f'data-gf-params="{esc(json.dumps([p.name for p in self.params]))}">'
            f"<style>{_CSS}</style>"
            f'<p class="gf-title">{esc(self.title)}</p>'
            f'<div class="gf-controls">{"".join(controls)}</div>'
            f'<img class="gf-frame" id="{uid}-img" src="{data_uri(first)}" width="{w}" height="{h}" '
            f'alt="{esc(self.alt(self.initial))}">'
            f'<script type="application/json" class="gf-data">{_json_for_script(data)}</script>'
            f"<script>{_JS.replace('__UID__', uid)}</script></div>"
        )

    # -- live widget ----------------------------------------------------------------------------
    def widget(self):
        """The ipywidgets UI (built once): labelled controls above an Image showing the current frame.

        Works with ipywidgets 7 (Colab shipped 7.7.1 for years) and 8. If building it fails
        half-way, the widgets made so far are closed (each holds a connection to the front end).
        """
        if self._widget is not None:
            return self._widget
        import ipywidgets as W

        registry = _open_widgets()
        before = set(registry)
        try:
            self._widget = self._build_widget(W)
        except Exception:
            for key in set(registry) - before:  # controls, their styles and layouts, the image...
                if (w := registry.get(key)) is not None:
                    w.close()
            raise
        return self._widget

    def _build_widget(self, W):
        style = {"description_width": "initial"}
        controls = []
        for p, v in zip(self.params, self.initial, strict=True):
            if p.widget_kind == "slider" and all(isinstance(x, int) for x in p.values):
                step = p.values[1] - p.values[0] if len(p.values) > 1 else 1
                c = W.IntSlider(value=v, min=p.values[0], max=p.values[-1], step=step, description=p.caption,
                                continuous_update=True, style=style)
            elif p.widget_kind == "slider":
                c = W.SelectionSlider(options=list(zip(p.labels, p.values, strict=True)), value=v,
                                      description=p.caption, continuous_update=True, style=style)
            elif p.widget_kind == "buttons":
                c = W.ToggleButtons(options=list(zip(p.labels, p.values, strict=True)), value=v,
                                    description=p.caption, style={**style, "button_width": "auto"})
            else:
                c = W.Dropdown(options=list(zip(p.labels, p.values, strict=True)), value=v,
                               description=p.caption, style=style)
            controls.append(c)
        first = self.frames[self.initial]
        w, _ = _png_size(first)
        image = W.Image(value=first, format="png", layout=W.Layout(width=f"{w}px", max_width="100%"))

        def update(_change=None):
            values = tuple(p.values[p.index(c.value)] for p, c in zip(self.params, controls, strict=True))
            image.value = self.frames[values]  # a precomputed frame: nothing is drawn here

        for c in controls:
            c.observe(update, names="value")
        box = W.VBox([W.HTML(f"<b>{html.escape(self.title)}</b>"), *controls, image])
        box.gf_controls, box.gf_image = controls, image  # for tests
        return box

    # -- display --------------------------------------------------------------------------------
    def __repr__(self):
        parts = []
        for p in self.params:
            if p.kind == "range":
                parts.append(f"{p.name}: {p.labels[0]}..{p.labels[-1]} ({len(p.values)} values)")
            else:
                parts.append(f"{p.name}: {list(p.labels)}")
        return f"<Explorer {self.title!r}: {'; '.join(parts)}; {self.n_frames} frames>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": repr(self), "text/html": self.html()}
        view = self._widget_view()
        if view is not None:
            bundle[WIDGET_VIEW] = view
        return bundle

    def _widget_view(self):
        """The widget-view entry of the MIME bundle, or None when there is no live widget to show.

        Written out here rather than taken from the widget's ``_repr_mimebundle_``, which
        ipywidgets 7 lacks (it displays itself through ``_ipython_display_``); both versions
        write this same entry (widget-view format 2.0). Without ipywidgets the static HTML is
        shown, silently; any other failure is reported as a warning, not swallowed.
        """
        try:
            box = self.widget()
        except Exception as exc:  # the static version still works: say why the live one does not
            if not (isinstance(exc, ModuleNotFoundError) and exc.name == "ipywidgets"):
                warnings.warn(f"explorer {self.title!r}: no live widget ({type(exc).__name__}: {exc}); "
                              "showing the static version", RuntimeWarning, stacklevel=3)
            return None
        if getattr(box, "_view_name", None) is None or getattr(box, "comm", None) is None:
            return None  # closed, or not a view
        return {"version_major": 2, "version_minor": 0, "model_id": box.model_id}


def _open_widgets():
    """ipywidgets' registry of open widgets (model id -> widget); 8.x and 7.x keep it in different places."""
    from ipywidgets.widgets import widget as module

    registry = getattr(module, "_instances", None)  # ipywidgets 8
    return registry if registry is not None else module.Widget.widgets  # ipywidgets 7


def explorer(fn, *, title=None, budget=60, dpi=DEFAULT_DPI, figsize=DEFAULT_FIGSIZE, labels=None, **params):
    """Build an :class:`Explorer`: ``fn(ax, **values)`` drawn for every combination of ``params``.

    Each parameter is a numeric range ``(start, stop, step)`` (stop included) or a list of options.
    ``labels`` maps parameter names to what the reader sees (``{"lam": "λ"}``); others show their name.
    Raises :class:`ValueError` if the number of frames (the product of the numbers of choices)
    exceeds ``budget``.
    """
    if not params:
        raise ValueError("explorer() needs at least one parameter, "
                         "e.g. depth=(2, 20, 2) or act=['relu', 'tanh']")
    labels = dict(labels or {})
    unknown = set(labels) - set(params)
    if unknown:
        raise ValueError(f"labels= names {sorted(unknown)}, which are not parameters of this explorer; "
                         f"the parameters are {list(params)}")
    for name, label in labels.items():
        if not isinstance(label, str) or not label.strip():
            raise TypeError(f"labels[{name!r}] must be a non-empty string, got {label!r}")
    ps = [dataclasses.replace(_param(name, spec), caption=labels.get(name, "").strip())
          for name, spec in params.items()]
    n = math.prod(len(p.values) for p in ps)
    if n > budget:
        counts = " × ".join(f"{p.name}: {len(p.values)}" for p in ps)
        name = f"explorer {title!r}" if title else "this explorer"
        raise ValueError(f"{name} would draw {n} frames ({counts}), more than the "
                         f"budget of {budget} frames; use fewer values or a coarser step (or raise budget= "
                         "if the page weight allows)")
    return Explorer(fn, ps, title=title, dpi=dpi, figsize=figsize)

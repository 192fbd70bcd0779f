"""gradflow.explore: frames, the budget guard, the static HTML and the live widget."""

import base64
import json
import math
import re
from html.parser import HTMLParser

import matplotlib
import matplotlib.pyplot as plt
import pytest

from gradflow.explore import Explorer, data_uri, explorer


class Recorder:
    """A pure drawing function that records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, ax, **values):
        self.calls.append(values)
        ax.plot([0, 1], [0, sum(hash(str(v)) % 7 for v in values.values())])
        ax.set_title(", ".join(f"{k}={v}" for k, v in values.items()))


def small(**params):
    return explorer(Recorder(), dpi=20, figsize=(2, 1.5), **params)


def test_frames_are_the_product_of_the_choices_and_fn_sees_each_combination_once():
    rec = Recorder()
    ex = explorer(rec, title="t", dpi=20, figsize=(2, 1.5), depth=(2, 8, 2), act=["relu", "tanh", "sigmoid"],
                  skip=[True, False])
    assert ex.n_frames == 4 * 3 * 2 == len(ex.frames)
    assert len(rec.calls) == 24
    seen = [(c["depth"], c["act"], c["skip"]) for c in rec.calls]
    assert sorted(seen, key=str) == sorted(ex.frames, key=str)
    assert len(set(seen)) == 24
    assert set(ex.frames) == {(d, a, s) for d in (2, 4, 6, 8) for a in ("relu", "tanh", "sigmoid")
                              for s in (True, False)}
    assert all(f.startswith(b"\x89PNG\r\n\x1a\n") for f in ex.frames.values())
    assert ex.frame(depth=4, act="tanh", skip=False) == ex.frames[(4, "tanh", False)]


def test_int_range_includes_stop_and_stays_int():
    ex = small(n=(1, 10, 3))
    assert ex.params[0].values == (1, 4, 7, 10)
    assert all(type(v) is int for v in ex.params[0].values)


@pytest.mark.parametrize("spec, values", [
    ((0.0, 1.0, 0.1), [round(0.1 * i, 1) for i in range(11)]),
    ((0.1, 0.7, 0.3), [0.1, 0.4, 0.7]),  # 0.1 + 2*0.3 = 0.7000000000000001 in floats
    ((-1, 1, 0.25), [-1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1]),
    ((1e-3, 5e-3, 1e-3), [0.001, 0.002, 0.003, 0.004, 0.005]),
])
def test_float_range_includes_stop_despite_rounding(spec, values):
    rec = Recorder()
    ex = explorer(rec, dpi=20, figsize=(2, 1.5), x=spec)
    assert list(ex.params[0].values) == values  # exact: integer counts, then rounded to the step's decimals
    assert [c["x"] for c in rec.calls] == values
    assert ex.params[0].values[-1] == spec[1]


def test_float_labels_use_the_step_decimals():
    ex = small(lr=(0.05, 0.2, 0.05))
    assert ex.params[0].labels == ("0.05", "0.10", "0.15", "0.20")


def test_budget_guard_raises_before_drawing():
    rec = Recorder()
    with pytest.raises(ValueError) as err:
        explorer(rec, title="too big", depth=(1, 20, 1), act=["a", "b", "c", "d"])
    msg = str(err.value)
    assert "80 frames" in msg and "budget of 60" in msg and "depth: 20" in msg and "act: 4" in msg
    assert rec.calls == []
    with pytest.raises(ValueError, match="12 frames.*budget of 10"):
        explorer(rec, budget=10, depth=(1, 12, 1))
    assert explorer(rec, budget=12, dpi=20, figsize=(2, 1.5), depth=(1, 12, 1)).n_frames == 12


@pytest.mark.parametrize("params, error, words", [
    ({}, ValueError, "at least one parameter"),
    ({"x": (0, 1, 0.3)}, ValueError, "not start + k*step"),
    ({"x": (0, 1, 0)}, ValueError, "step > 0"),
    ({"x": (2, 1, 1)}, ValueError, "stop >= start"),
    ({"x": (0, 1)}, TypeError, "numeric range"),
    ({"x": ("a", "b", "c")}, TypeError, "numeric range"),
    ({"x": []}, ValueError, "empty"),
    ({"x": ["a", "a"]}, ValueError, "duplicates"),
    ({"x": [[1], [2]]}, TypeError, "hashable"),
    ({"x": 3}, TypeError, "range (start, stop, step) or a list"),
    ({"x": (0, math.inf, 1)}, TypeError, "finite"),
])
def test_bad_parameters_get_clear_errors(params, error, words):
    with pytest.raises(error, match=re.escape(words)):
        explorer(Recorder(), **params)


def test_frames_are_deterministic_and_the_same_size():
    a = small(depth=(1, 3, 1), act=["x", "y"])
    b = small(depth=(1, 3, 1), act=["x", "y"])
    assert a.frames == b.frames
    sizes = {(int.from_bytes(f[16:20], "big"), int.from_bytes(f[20:24], "big")) for f in a.frames.values()}
    assert sizes == {(40, 30)}  # figsize (2, 1.5) at 20 dpi, whatever the tick labels


def test_a_30_frame_explorer_is_light():
    ex = explorer(lambda ax, k, c: ax.plot(range(10), [i * k for i in range(10)], color=c), title="light",
                  k=(1, 10, 1), c=["#0072B2", "#E69F00", "#009E73"])
    assert ex.n_frames == 30
    assert len(ex.html()) < 500_000, f"{len(ex.html())} bytes of HTML for 30 simple frames"


def test_fn_draws_outside_pyplot_and_leaves_no_figure_open():
    before = plt.get_fignums()
    small(k=(1, 5, 1))
    assert plt.get_fignums() == before


def test_pyplot_figures_opened_by_fn_are_closed():
    def careless(ax, k):
        ax.plot([0, k])
        plt.figure()  # e.g. a stray plt.subplots(): it must not be displayed after the cell

    before = plt.get_fignums()
    explorer(careless, dpi=20, k=(1, 3, 1))
    assert plt.get_fignums() == before


def test_fn_may_return_its_own_pyplot_figure():
    def own(ax, k):
        fig, ax2 = plt.subplots(figsize=(2, 1))
        ax2.plot([0, k])
        return fig

    before = plt.get_fignums()
    ex = explorer(own, dpi=20, k=(1, 3, 1))
    assert plt.get_fignums() == before
    assert {int.from_bytes(f[16:20], "big") for f in ex.frames.values()} == {40}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.scripts, self._in_script = [], [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "script":
            self._in_script = a

    def handle_data(self, data):
        if self._in_script is not None:
            self.scripts.append((self._in_script, data))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def _parse(text):
    p = _Collect()
    p.feed(text)
    return p


def test_static_html_is_self_contained():
    ex = small(depth=(1, 3, 1), act=["relu", "tanh"], colour=["a", "b", "c", "d", "e", "f"])
    text = ex.html()
    p = _parse(text)
    for tag, attrs in p.tags:
        for name in ("src", "href", "data", "action", "srcset"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), f"<{tag} {name}={value[:40]}> is an external URL"
        assert not (tag == "script" and "src" in attrs), "a <script src=...>"
        assert tag not in ("link", "iframe", "object", "embed"), f"<{tag}> in the static HTML"
    assert "<script src" not in text and "require(" not in text and "import(" not in text
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)
    assert "@import" not in text and "url(" not in text
    # every <img> is a data URI of a precomputed frame, showing the initial values
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"] == data_uri(ex.frames[(1, "relu", "a")])
    assert imgs[0]["alt"] == f"{ex.title}: depth = 1, act = relu, colour = a"
    # the embedded data has every other frame, in row-major order of the parameters
    (data,) = [json.loads(body) for attrs, body in p.scripts if attrs.get("type") == "application/json"]
    assert data["sizes"] == [3, 2, 6] and len(data["frames"]) == 36
    for k, key in enumerate(ex.frames):
        if k:
            assert base64.b64decode(data["frames"][k]) == ex.frames[key]
    assert data["frames"][0] == ""  # the first frame is only in the <img>, not twice


def test_static_html_controls_are_labelled_and_show_their_value():
    ex = small(depth=(2, 6, 2), act=["relu", "tanh"], colour=["a", "b", "c", "d", "e", "f"])
    p = _parse(ex.html())
    tags = p.tags
    (rng,) = [a for t, a in tags if t == "input" and a.get("type") == "range"]
    assert (rng["min"], rng["max"], rng["step"], rng["value"]) == ("0", "2", "1", "0")
    assert rng["aria-valuetext"] == "2"
    assert [a for t, a in tags if t == "label" and a.get("for") == rng["id"]]
    (out,) = [a for t, a in tags if t == "output"]
    assert out["for"] == rng["id"]
    radios = [a for t, a in tags if t == "input" and a.get("type") == "radio"]
    assert [r["value"] for r in radios] == ["0", "1"] and "checked" in radios[0]
    assert len({r["name"] for r in radios}) == 1  # one group: arrow keys move between the options
    assert any(t == "legend" for t, _ in tags)
    (sel,) = [a for t, a in tags if t == "select"]  # six options: a drop-down
    assert [a for t, a in tags if t == "label" and a.get("for") == sel["id"]]
    (root,) = [a for t, a in tags if "gf-explorer" in a.get("class", "").split()]
    assert root["data-gf-frames"] == "36" and json.loads(root["data-gf-params"]) == ["depth", "act", "colour"]


def test_ids_are_unique_between_explorers_and_between_displays():
    a, b = small(k=(1, 2, 1)), small(k=(1, 2, 1))
    ids = _parse(a.html() + b.html() + a.html()).ids
    assert ids and len(ids) == len(set(ids))


def test_html_escapes_titles_and_labels():
    ex = explorer(Recorder(), title="<b>x</b> & </script>", dpi=20, figsize=(2, 1.5), opt=["</script><i>", "a&b"])
    text = ex.html()
    assert "<b>x</b>" not in text and "</script><i>" not in text
    assert "&lt;b&gt;x&lt;/b&gt; &amp;" in text
    assert text.count("</script>") == 2  # only the two real <script> elements close


def test_labels_show_symbols_in_controls_alt_text_and_widget():
    ex = explorer(Recorder(), title="t", dpi=20, figsize=(2, 1.5), labels={"lam": "shortcut λ", "s2": "s₂"},
                  lam=(0.5, 1.0, 0.25), s2=["a", "b"], k=list("abcdefg"))
    assert [p.caption for p in ex.params] == ["shortcut λ", "s₂", "k"]
    assert [p.name for p in ex.params] == ["lam", "s2", "k"]  # fn still receives lam=..., s2=...
    p = _parse(ex.html())
    text = ex.html()
    assert ">shortcut λ</label>" in text and "<legend>s₂</legend>" in text and ">k</label>" in text
    (img,) = [a for t, a in p.tags if t == "img"]
    assert img["alt"] == "t: shortcut λ = 0.50, s₂ = a, k = a"
    (data,) = [json.loads(body) for attrs, body in p.scripts if attrs.get("type") == "application/json"]
    assert data["names"] == ["lam", "s2", "k"] and data["captions"] == ["shortcut λ", "s₂", "k"]
    assert [c.description for c in ex.widget().gf_controls] == ["shortcut λ", "s₂", "k"]


def test_explorer_without_labels_shows_the_names():
    ex = small(depth=(1, 2, 1), act=["relu", "tanh"])
    assert [p.caption for p in ex.params] == ["depth", "act"]
    assert ">depth</label>" in ex.html() and "<legend>act</legend>" in ex.html()


@pytest.mark.parametrize("labels, error, words", [
    ({"lr": "η"}, ValueError, "not parameters of this explorer"),
    ({"k": ""}, TypeError, "non-empty string"),
    ({"k": 3}, TypeError, "non-empty string"),
])
def test_bad_labels_get_clear_errors(labels, error, words):
    with pytest.raises(error, match=re.escape(words)):
        explorer(Recorder(), labels=labels, k=(1, 2, 1))


def test_mimebundle_has_html_widget_and_text_without_a_front_end():
    ex = small(depth=(1, 3, 1), act=["relu", "tanh"])
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert 'class="gf-explorer"' in bundle["text/html"]
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget().model_id
    assert "6 frames" in bundle["text/plain"]


def test_live_widget_swaps_to_the_precomputed_frame():
    rec = Recorder()
    ex = explorer(rec, dpi=20, figsize=(2, 1.5), depth=(1, 3, 2), lr=(0.1, 0.3, 0.1), act=["relu", "tanh"], budget=72,
                  colour=list("abcdef"))
    w = ex.widget()
    assert w is ex.widget()  # built once
    n_calls = len(rec.calls)
    depth, lr, act, colour = w.gf_controls
    assert [c.description for c in w.gf_controls] == ["depth", "lr", "act", "colour"]
    assert [type(c).__name__ for c in w.gf_controls] == ["IntSlider", "SelectionSlider", "ToggleButtons",
                                                         "Dropdown"]
    assert w.gf_image.value == ex.frames[(1, 0.1, "relu", "a")]
    depth.value, lr.value, act.value, colour.value = 3, 0.2, "tanh", "e"
    assert w.gf_image.value == ex.frames[(3, 0.2, "tanh", "e")]
    assert lr.label == "0.2"
    assert len(rec.calls) == n_calls, "changing a control must not redraw"


def test_explorer_is_exported():
    import gradflow.explore as m

    assert m.Explorer is Explorer and "explorer" in m.__all__
    assert matplotlib.get_backend()  # importing gradflow.explore does not need a display


def test_headless_notebook_execution(tmp_path):
    """nbclient with no front end (as nbval and the site build run it): no error, both outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from gradflow.explore import explorer\n"
        "explorer(lambda ax, k, c: ax.plot([0, k], color=c), title='t', dpi=20, k=(1, 3, 1), c=['r', 'b'])")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
                            ).execute()
    (out,) = nb.cells[0].outputs
    assert out.output_type == "execute_result"
    assert {"text/html", "application/vnd.jupyter.widget-view+json", "text/plain"} <= set(out.data)

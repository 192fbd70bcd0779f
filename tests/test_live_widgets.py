"""The live explorer (ipywidgets) in a real kernel, on ipywidgets 8 (pinned) and 7 (issue 17 item 2).

Colab shipped ipywidgets 7.7.1 for years. Its widgets have no ``_repr_mimebundle_`` (they display
themselves through ``_ipython_display_``), so an explorer that asked the widget for its bundle
silently fell back to the static HTML there, with its widgets' connections left open. The 7.x
test installs ipywidgets 7.7.1 (and ipython_genutils, which it imports) from the package index
into a throw-away folder that comes first on the kernel's ``PYTHONPATH``.
"""

import os
import subprocess
import sys
import warnings

import pytest

from gradflow.explore import WIDGET_VIEW, explorer

IPYWIDGETS_7 = ["ipywidgets==7.7.1", "ipython_genutils==0.2.0"]

CELLS = [
    "import warnings\nwarnings.simplefilter('error', RuntimeWarning)  # gradflow's 'no live widget'\n"
    "import ipywidgets\nprint(ipywidgets.__version__)",
    "from gradflow.explore import explorer\n"
    "ex = explorer(lambda ax, k, c: ax.plot([0, k], color=c), title='t', dpi=20,\n"
    "              k=(1, 3, 1), c=['#0072B2', '#E69F00'])\nex",
    "k, c = ex.widget().gf_controls\nk.value, c.value = 3, '#E69F00'\n"
    "assert ex.widget().gf_image.value == ex.frames[(3, '#E69F00')]\nprint('swapped')",
]


@pytest.fixture(scope="session")
def ipywidgets7(tmp_path_factory):
    target = tmp_path_factory.mktemp("ipywidgets7")
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                          *IPYWIDGETS_7], capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        message = f"could not install {' '.join(IPYWIDGETS_7)} from the package index: {run.stderr[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return target


def _run_in_kernel(pythonpath=None):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
    return nb.cells


def _check_live(cells, major):
    version = "".join(o.get("text", "") for o in cells[0].outputs).strip()
    assert version.split(".")[0] == major, f"the kernel imported ipywidgets {version}, expected {major}.x"
    (out,) = [o for o in cells[1].outputs if o.output_type == "execute_result"]
    assert {"text/plain", "text/html", WIDGET_VIEW} <= set(out.data), \
        f"no live widget on ipywidgets {version}: the bundle has only {sorted(out.data)}"
    view = out.data[WIDGET_VIEW]
    assert view["version_major"] == 2 and view["version_minor"] == 0 and len(view["model_id"]) == 32
    assert 'class="gf-explorer"' in out.data["text/html"]  # the static version is still there for the site
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert "swapped" in "".join(o.get("text", "") for o in cells[2].outputs)


def test_live_explorer_on_ipywidgets_8():
    _check_live(_run_in_kernel(), "8")


def test_live_explorer_on_ipywidgets_7(ipywidgets7):
    _check_live(_run_in_kernel(pythonpath=ipywidgets7), "7")


def _registry():
    from gradflow.explore import _open_widgets

    return _open_widgets()


def test_a_failing_widget_is_closed_and_reported(monkeypatch):
    import ipywidgets

    def broken(*args, **kwargs):
        raise RuntimeError("no Image widget here")

    ex = explorer(lambda ax, k, c: ax.plot([0, k]), title="broken", dpi=20, k=(1, 3, 1), c=["a", "b"])
    before = set(_registry())
    monkeypatch.setattr(ipywidgets, "Image", broken)
    with pytest.warns(RuntimeWarning, match=r"explorer 'broken': no live widget \(RuntimeError: no Image widget"):
        bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # the static version
    assert set(_registry()) == before, "the controls made before the failure were left open"


def test_without_ipywidgets_the_static_version_shows_quietly(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets raises ModuleNotFoundError
    ex = explorer(lambda ax, k: ax.plot([0, k]), dpi=20, k=(1, 2, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}


def test_a_closed_widget_is_not_offered_to_the_front_end():
    ex = explorer(lambda ax, k: ax.plot([0, k]), dpi=20, k=(1, 2, 1))
    assert WIDGET_VIEW in ex._repr_mimebundle_()
    ex.widget().close()
    assert WIDGET_VIEW not in ex._repr_mimebundle_()

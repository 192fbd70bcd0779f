"""gradflow.data (seeded, standardised splits) and gradflow.plots (style, helpers)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gradflow import data, plots  # noqa: E402


def test_digits_split_is_seeded_and_standardised():
    X, y, Xt, yt = data.digits(seed=0)
    assert X.shape == (1348, 64) and Xt.shape == (449, 64)
    assert y.dtype == torch.long and set(y.tolist()) == set(range(10))
    active = X.std(0) > 0
    assert torch.allclose(X.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(X.std(0, unbiased=False)[active], torch.ones(int(active.sum())), atol=1e-4)
    X2, y2, _, _ = data.digits(seed=0)
    X3, y3, _, _ = data.digits(seed=1)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    assert not torch.equal(y, y3)


def test_teacher_task_shapes_and_seed():
    X, y = data.teacher_task(n=100, dim=5, classes=3, seed=4)
    assert X.shape == (100, 5) and y.shape == (100,)
    assert set(y.tolist()) <= {0, 1, 2} and len(set(y.tolist())) == 3
    X2, y2 = data.teacher_task(n=100, dim=5, classes=3, seed=4)
    assert torch.equal(X, X2) and torch.equal(y, y2)


def test_use_style_and_layer_norms():
    plots.use_style()
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][0] == plots.OKABE_ITO[0]
    ax = plots.layer_norms([1e-5, 1e-3, 1e-1], label="sigmoid", theory=[1e-5, 1e-3, 1e-1])
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3])
    assert ax.get_xlabel() and ax.get_ylabel()
    same = plots.layer_norms([1, 2], ax=ax)
    assert same is ax
    plt.close("all")


def test_loss_curves_and_png():
    ax = plots.loss_curves({"plain": [2.0, 1.0], "residual": [2.0, 0.5]})
    assert len(ax.lines) == 2 and ax.get_legend() is not None
    png = plots.to_png(ax.figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close("all")


def test_load_digits_array_matches_scikit_learn():
    from sklearn.datasets import load_digits

    X, y = data.load_digits_array()
    X_ref, y_ref = load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert X.shape == (1797, 64)

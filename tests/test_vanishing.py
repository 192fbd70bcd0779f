"""gradflow.vanishing against independent references: autograd, hand-computed values, closed forms."""

import math

import matplotlib
import pytest
import torch
from torch.autograd.functional import jacobian

from gradflow.nets import hidden_grad_norms, linear_layers, mlp, train
from gradflow.vanishing import (
    act_derivative,
    activation_name,
    block_jacobians,
    draw_profile,
    gradient_profile,
    layer_gains,
    relative_change,
    theory_line,
    weights,
)

matplotlib.use("Agg")

F64 = torch.float64


def _x(n=16, d=64, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("activation, fn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                            ("relu", torch.relu), ("linear", lambda z: z)])
def test_act_derivative_matches_autograd(activation, fn):
    z = torch.linspace(-6, 6, 121, dtype=F64).requires_grad_()
    (ref,) = torch.autograd.grad(fn(z).sum(), z)
    assert torch.allclose(act_derivative(activation, z.detach()), ref, rtol=0, atol=1e-15)


def test_act_derivative_values_and_errors():
    assert act_derivative("sigmoid", torch.tensor(0.0, dtype=F64)).item() == 0.25
    assert act_derivative("relu", torch.tensor([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="unknown activation"):
        act_derivative("gelu", torch.zeros(2))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear"])
def test_activation_name(activation):
    assert activation_name(mlp(2, 8, activation=activation)) == activation


def test_layer_gains_by_hand():
    """Two blocks, width 4, known weights: sqrt(n * mean(W^2)) * rms relu'(h) computed independently."""
    net = mlp(2, width=4, d_in=3, activation="relu", init="he", seed=3, dtype=F64)
    X = _x(5, 3, seed=1)
    gains = layer_gains(net, X)
    h0 = net.stem(X)
    W1 = net.blocks[0].linear.weight
    frac_active = (h0 > 0).double().mean().item()  # rms of a 0/1 derivative = sqrt(fraction of ones)
    expected = math.sqrt(4 * (W1**2).sum().item() / 16) * math.sqrt(frac_active)
    assert gains.shape == (2,) and gains.dtype == F64
    assert math.isclose(gains[0].item(), expected, rel_tol=1e-12)


def test_layer_gains_predict_relu_closed_form():
    """ReLU + He: gain sqrt(n Var w / 2) = 1 on average over the blocks."""
    net = mlp(20, width=128, activation="relu", init="he", seed=0, dtype=F64)
    g = layer_gains(net, _x(64))
    assert abs(g.log().mean().exp().item() - 1) < 0.05


def test_layer_gains_track_measured_ratios():
    net = mlp(20, width=128, activation="tanh", init="xavier", seed=0, dtype=F64)
    X, y = _x(64), torch.arange(64) % 10
    measured = hidden_grad_norms(net, X, y)
    ratio = (measured[:-1] / measured[1:]) / layer_gains(net, X)
    assert ((ratio - 1).abs() < 0.2).all()


def test_theory_line_by_hand():
    line = theory_line([0.5, 2.0, 3.0], top=10.0)
    assert torch.allclose(line, torch.tensor([30.0, 60.0, 30.0, 10.0], dtype=F64))  # [10*3*2*0.5, 10*3*2, 10*3, 10]
    assert theory_line([], top=2.0).tolist() == [2.0]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_block_jacobians_multiply_to_autograd(activation):
    net = mlp(5, width=12, d_in=7, activation=activation, init="xavier", seed=1, dtype=F64)
    x = _x(1, 7, seed=2)[0]
    Js = block_jacobians(net, x)
    assert len(Js) == 5 and all(J.shape == (12, 12) for J in Js)
    J = torch.eye(12, dtype=F64)
    for J_k in Js:
        J = J_k @ J
    h0 = net.stem(x).detach()
    ref = jacobian(lambda h: torch.nn.Sequential(*net.blocks)(h), h0)
    assert torch.allclose(J, ref, rtol=0, atol=1e-12)


def test_weights_and_relative_change():
    net = mlp(2, width=8, d_in=8, d_out=3, seed=0)
    before = weights(net)
    assert len(before) == 4 and before[0] is not linear_layers(net)[0].weight
    assert relative_change(before, net).tolist() == [0.0] * 4
    with torch.no_grad():
        linear_layers(net)[1].weight.mul_(1.5)  # moves by half its norm
    change = relative_change(before, net)
    assert change[1].item() == pytest.approx(0.5, rel=1e-6) and change[0].item() == 0.0
    X, y = torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
    train(net, X, y, steps=3, lr=0.1, batch_size=8, seed=0)
    assert (relative_change(before, net) > 0).all()


def test_gradient_profile_is_cached_seeded_and_consistent():
    m1, t1 = gradient_profile("relu", "he", depth=6, n=32)
    m2, t2 = gradient_profile("relu", "he", depth=6, n=32)
    assert m1 is m2 and m1.shape == (7,) and t1.shape == (7,)
    assert not m1.flags.writeable
    assert t1[-1] == m1[-1]  # anchored at the top
    net = mlp(6, 64, activation="relu", init="he", seed=0, dtype=F64)
    from gradflow.data import digits

    X, y, _, _ = digits(seed=0, dtype=F64)
    ref = hidden_grad_norms(net, X[:32], y[:32]).numpy()
    assert (abs(m1 - ref) <= 1e-12 * ref).all()


def test_draw_profile_draws_measured_and_theory():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    out = draw_profile(ax, depth=10, activation="tanh", g=1.0)
    assert out is ax and ax.get_yscale() == "log" and len(ax.lines) == 2
    assert len(ax.lines[0].get_xdata()) == 10 and ax.lines[1].get_linestyle() == "--"
    ax = Figure().add_subplot()
    draw_profile(ax, depth=10, g=4.0, seed=1)  # all three activations, each with its theory line
    assert len(ax.lines) == 6 and len(ax.get_legend().get_texts()) == 3
    assert ax.get_legend().get_texts()[0].get_text().startswith("sigmoid: gain 0.6")

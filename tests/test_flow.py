"""Unit tests of gradflow.flow against independent references: autograd, brute force, hand values."""

import itertools
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from gradflow import flow, nets

D = torch.float64


def vec(shape, seed):
    return torch.randn(shape, dtype=D, generator=torch.Generator().manual_seed(seed))


def test_block_forward_is_the_column_formula():
    blk = flow.block(width=5, hidden=3, activation="sigmoid", seed=0)
    W2, b2, W3, b3 = blk.lin2.weight, blk.lin2.bias, blk.lin3.weight, blk.lin3.bias
    assert W2.shape == (3, 5) and W3.shape == (5, 3)
    x = vec(5, 1)
    expected = x + W3 @ torch.sigmoid(W2 @ x + b2) + b3
    assert torch.allclose(blk(x), expected, rtol=0, atol=1e-14)
    assert torch.allclose(blk(x[None])[0], expected, rtol=0, atol=1e-14)  # a batch of one row


def test_block_is_seeded_and_scaled():
    a, b = flow.block(64, seed=3, scale2=2.0, scale3=0.5), flow.block(64, seed=3, scale2=2.0, scale3=0.5)
    assert torch.equal(a.lin2.weight, b.lin2.weight) and torch.equal(a.lin3.bias, b.lin3.bias)
    torch.manual_seed(123)  # the global RNG must not matter
    c = flow.block(64, seed=3, scale2=2.0, scale3=0.5)
    assert torch.equal(a.lin2.weight, c.lin2.weight)
    assert abs(a.lin2.weight.var().item() * 64 / 4 - 1) < 0.1  # Var = scale² / fan_in
    assert abs(a.lin3.weight.var().item() * 64 / 0.25 - 1) < 0.1
    assert not torch.equal(flow.block(8, seed=0).lin2.weight, flow.block(8, seed=1).lin2.weight)


def test_block_rejects_unknown_options():
    with pytest.raises(ValueError, match="activation"):
        flow.block(4, activation="swish")
    with pytest.raises(ValueError, match="post"):
        flow.block(4, post="gelu")


def test_shortcut_and_post_relu_forward():
    blk = flow.block(4, activation="tanh", shortcut=0.5, post="relu", seed=2)
    x = vec(4, 3)
    assert torch.allclose(blk(x), torch.relu(0.5 * x + blk.branch(x)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear"])
def test_act_derivative_matches_autograd(activation):
    z = vec(50, 4).requires_grad_(True)
    a = nets.ACTIVATIONS[activation]()(z)
    (dz,) = torch.autograd.grad(a.sum(), z)
    assert torch.allclose(nets.act_derivative(activation, z.detach()), dz, rtol=0, atol=1e-14)


def test_act_derivative_hand_values():
    z = torch.tensor([0.0], dtype=D)
    assert nets.act_derivative("sigmoid", z).item() == 0.25
    assert nets.act_derivative("tanh", z).item() == 1.0
    with pytest.raises(ValueError):
        nets.act_derivative("elu", z)


@pytest.mark.parametrize("activation, width, hidden", [("sigmoid", 6, 4), ("tanh", 3, 7), ("relu", 5, 5)])
def test_two_terms_add_up_to_autograd(activation, width, hidden):
    blk = flow.block(width, hidden, activation=activation, scale2=2.0, seed=5)
    x, g = vec(width, 6), vec(width, 7)
    identity, branch = flow.two_terms(blk, x, g)
    assert torch.equal(identity, g)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(blk(xr), xr, grad_outputs=g)
    assert torch.allclose(identity + branch, ref, rtol=0, atol=1e-13)
    J = jacobian(blk, x)  # the column-form Jacobian I + W3 diag(σ') W2
    assert torch.allclose(J.T @ g, ref, rtol=0, atol=1e-13)


def test_angle_hand_values():
    e1, e2 = torch.tensor([1.0, 0.0], dtype=D), torch.tensor([0.0, 3.0], dtype=D)
    assert flow.angle(e1, e2) == pytest.approx(90.0)
    assert flow.angle(e1, 2 * e1) == pytest.approx(0.0)
    assert flow.angle(e1, -e1) == pytest.approx(180.0)
    assert flow.angle(e1, e1 + e2 / 3) == pytest.approx(45.0)


def test_states_and_input_grad():
    blocks = flow.stack(4, width=5, scale3=0.7, seed=1)
    x, g = vec(5, 2), vec(5, 3)
    xs = flow.states(blocks, x)
    assert len(xs) == 5 and torch.equal(xs[0], x)
    assert torch.allclose(xs[2], blocks[1](blocks[0](x)), rtol=0, atol=0)
    J = jacobian(lambda v: flow.states(blocks, v)[-1], x)
    assert torch.allclose(flow.input_grad(blocks, x, g), J.T @ g, rtol=0, atol=1e-13)


def test_stack_blocks_differ_and_are_seeded():
    s1, s2 = flow.stack(3, width=4, seed=0), flow.stack(3, width=4, seed=0)
    assert torch.equal(s1[2].lin3.weight, s2[2].lin3.weight)
    assert not torch.equal(s1[0].lin2.weight, s1[1].lin2.weight)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_branch_jacobians_match_autograd(activation):
    blocks = flow.stack(3, width=5, hidden=4, activation=activation, seed=2)
    x = vec(5, 3)
    xs = flow.states(blocks, x)
    for J, blk, xi in zip(flow.branch_jacobians(blocks, x), blocks, xs[:-1], strict=True):
        assert torch.allclose(J, jacobian(blk.branch, xi.detach()), rtol=0, atol=1e-13)


def _brute_force_paths(Js, g, lam):
    """Σ over all 2^L choices, grouped by the number of branches: the definition of C_kᵀ g."""
    n = g.shape[0]
    rows = torch.zeros(len(Js) + 1, n, dtype=D)
    for path in itertools.product([False, True], repeat=len(Js)):
        C = torch.eye(n, dtype=D)
        for J, through in zip(Js, path, strict=True):
            C = (J if through else lam * torch.eye(n, dtype=D)) @ C
        rows[sum(path)] += C.T @ g
    return rows


@pytest.mark.parametrize("lam", [1.0, 0.7, 1.3])
def test_path_gradients_brute_force_and_autograd(lam):
    blocks = flow.stack(5, width=4, scale3=0.9, shortcut=lam, seed=3)
    x, g = vec(4, 4), vec(4, 5)
    Js = flow.branch_jacobians(blocks, x)
    rows = flow.path_gradients(Js, g, shortcut=lam)
    assert rows.shape == (6, 4)
    assert torch.allclose(rows, _brute_force_paths(Js, g, lam), rtol=0, atol=1e-12)
    assert torch.allclose(rows.sum(dim=0), flow.input_grad(blocks, x, g), rtol=0, atol=1e-12)
    assert torch.allclose(rows[0], lam**5 * g, rtol=0, atol=1e-14)  # the direct path


def test_path_counts():
    assert flow.path_counts(2).tolist() == [0.25, 0.5, 0.25]
    c = flow.path_counts(54)
    assert c.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert c[19:36].sum().item() == pytest.approx(0.98017, abs=1e-5)  # Veit et al.: "more than 95 %"
    assert c[5:18].sum().item() == pytest.approx(0.0045367, abs=1e-6)  # Veit et al.: 0.45 %


def test_input_output_jacobian_finite_differences():
    net = nets.mlp(3, width=6, d_in=5, d_out=2, activation="tanh", init="xavier", residual=True, seed=0,
                   dtype=D)
    x = vec(5, 1)
    J = flow.input_output_jacobian(net, x)
    h0 = net.stem(x).detach()
    f = lambda h: flow.states(net.blocks, h)[-1].detach()
    eps = 1e-6
    fd = torch.stack([(f(h0 + eps * e) - f(h0 - eps * e)) / (2 * eps) for e in torch.eye(6, dtype=D)], dim=1)
    assert torch.allclose(J, fd, rtol=0, atol=1e-8)


def test_grad_ratio_is_the_product_of_shortcut_scales_without_branches():
    blocks = flow.stack(20, width=6, scale3=0.0, shortcut=0.5, seed=0)
    assert flow.grad_ratio(blocks, vec(6, 1), vec(6, 2)) == 2.0**-20
    identity = flow.stack(7, width=6, scale3=0.0, seed=0)
    assert flow.grad_ratio(identity, vec(6, 1), vec(6, 2)) == pytest.approx(1.0, abs=1e-15)
    assert math.isfinite(flow.grad_ratio(flow.stack(7, width=6, seed=0), vec(6, 1), vec(6, 2)))


@pytest.mark.parametrize("activation,post", list(itertools.product(["sigmoid", "tanh", "relu", "linear"],
                                                                   [None, "relu"])))
def test_grad_ratio_by_hand_is_autograd(activation, post):
    """grad_ratio differentiates a stack of ResidualBlock by hand; autograd is the reference."""
    for dtype, tol in ((D, 1e-13), (torch.float32, 1e-5)):
        blocks = flow.stack(9, width=7, hidden=5, activation=activation, scale3=0.9, shortcut=0.8, post=post,
                            seed=3, dtype=dtype)
        for x, g in ((vec(7, 1), vec(7, 2)), (vec((4, 7), 3), vec((4, 7), 4))):  # one row, a batch of rows
            x, g = x.to(dtype), g.to(dtype)
            ref = (torch.linalg.norm(flow.input_grad(blocks, x, g)) / torch.linalg.norm(g)).item()
            assert flow.grad_ratio(blocks, x, g) == pytest.approx(ref, rel=tol)


def test_randn_and_weights():
    a = flow.randn(3, 2, seed=4)
    assert a.shape == (3, 2) and a.dtype == D and torch.equal(a, flow.randn(3, 2, seed=4))
    blk = flow.block(5, 3, seed=0)
    W2, b2, W3 = flow.weights(blk)
    assert torch.equal(W2, blk.lin2.weight) and torch.equal(b2, blk.lin2.bias) and torch.equal(W3, blk.lin3.weight)
    assert not W2.requires_grad

"""gradflow.papers against independent references: hand-written formulas, autograd, numpy."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F_
from torch.autograd.functional import jacobian

from gradflow.nets import mlp
from gradflow.papers import (
    JACOBIAN_KINDS,
    VARIANTS,
    Unit,
    deep_jacobian,
    eval_loss,
    grid_gradients,
    hidden_state_axis,
    length_components,
    lesion_accuracy,
    lesion_logits,
    lesion_pair,
    neighbour_correlation,
    one_thread,
    path_gradient_norms,
    path_norm_sums,
    path_split,
    table,
    unit_net,
)


def _bn_eval(unit, x):
    bn = unit.norm
    return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


def _trained_stats(unit, width, seed):
    """Give the unit's BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        unit.norm.running_mean.copy_(torch.randn(width, generator=g))
        unit.norm.running_var.copy_(torch.rand(width, generator=g) + 0.5)
        unit.norm.weight.copy_(torch.randn(width, generator=g))
        unit.norm.bias.copy_(torch.randn(width, generator=g))
    return unit.eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unit_matches_its_formula(variant):
    width = 6
    unit = _trained_stats(Unit(width, variant, lam=0.3), width, seed=1)
    x = torch.randn(5, width, generator=torch.Generator().manual_seed(2))
    W = lambda v: v @ unit.linear.weight.T + unit.linear.bias  # noqa: E731
    BN = lambda v: _bn_eval(unit, v)  # noqa: E731
    want = {
        "identity (pre-activation)": x + W(torch.relu(BN(x))),
        "scaled shortcut": 0.3 * x + W(torch.relu(BN(x))),
        "original (ReLU after add)": torch.relu(x + BN(W(x))),
        "ReLU before addition": x + torch.relu(BN(W(x))),
        "BN after addition": torch.relu(BN(x + W(x))),
    }[variant]
    torch.testing.assert_close(unit(x), want)


def test_unit_net_is_seeded_and_checks_its_variant():
    a, b = unit_net("scaled shortcut", 3, seed=5), unit_net("scaled shortcut", 3, seed=5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(a.blocks) == 3 and all(isinstance(u, Unit) and u.lam == 0.5 for u in a.blocks)
    with pytest.raises(ValueError, match="unknown variant"):
        Unit(4, "gated")


def test_eval_loss_is_cross_entropy_in_eval_mode_and_restores_the_mode():
    net = mlp(2, width=8, d_in=5, d_out=3, norm="batch", seed=0)
    X, y = torch.randn(16, 5, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 3
    net.train()
    got = eval_loss(net, X, y)
    assert net.training
    net.eval()
    assert got == pytest.approx(F_.cross_entropy(net(X), y).item())


def _net_with_stats(depth, residual, seed=0):
    net = mlp(depth, width=5, d_in=4, d_out=3, norm="batch", residual=residual, init="he", seed=seed)
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(20, 4, generator=torch.Generator().manual_seed(seed)) * 2 + 1)
    return net.eval()


def test_path_gradient_norms_against_explicit_block_jacobians():
    net = _net_with_stats(3, residual=True)
    X, y = torch.randn(1, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float32), torch.tensor([2])
    hs = [h.detach() for h in net.hidden(X)]
    hL = hs[-1].clone().requires_grad_(True)
    (gL,) = torch.autograd.grad(F_.cross_entropy(net.head(net.head_act(net.head_norm(hL))), y), hL)
    Js = [jacobian(lambda h, b=b: b.branch(h.unsqueeze(0)).squeeze(0), h[0])
          for b, h in zip(net.blocks, hs[:-1], strict=True)]
    norms = path_gradient_norms(net, X, y, samples=4, seed=0)
    assert norms.shape == (4,)
    assert norms[0].item() == pytest.approx(gL.norm().item(), rel=1e-5)  # length 0: the identity path
    all_branches = gL[0] @ Js[2] @ Js[1] @ Js[0]  # row vector times J_2 J_1 J_0
    assert norms[3].item() == pytest.approx(all_branches.norm().item(), rel=1e-4)
    one_branch = [(gL[0] @ J).norm().item() for J in Js]
    assert min(one_branch) - 1e-7 <= norms[1].item() <= max(one_branch) + 1e-7


def test_path_split_adds_up_to_autograd_in_float64():
    """The rows of path_split are the length-k parts of ∂L/∂h_0: they add up to autograd's gradient."""
    net = _net_with_stats(6, residual=True).double()
    X = torch.randn(9, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.arange(9) % 3
    rows = path_split(net, X, y)
    assert rows.shape == (7, 9, 5) and not net.training
    h0 = net.stem(X).detach().requires_grad_(True)
    h = h0
    for block in net.blocks:
        h = block(h)
    (want,) = torch.autograd.grad(F_.cross_entropy(net.head(net.head_act(net.head_norm(h))), y), h0)
    torch.testing.assert_close(rows.sum(0), want, rtol=0, atol=1e-13)
    hs = [t.detach() for t in net.hidden(X)]
    hL = hs[-1].clone().requires_grad_(True)
    (gL,) = torch.autograd.grad(F_.cross_entropy(net.head(net.head_act(net.head_norm(hL))), y), hL)
    torch.testing.assert_close(rows[0], gL)  # length 0: the path that skips every branch
    all_branches = path_gradient_norms(net, X, y, samples=2, seed=0)[-1]  # length n: the one path through all
    assert rows[-1].norm().item() == pytest.approx(all_branches.item(), rel=1e-10)


def _explicit_paths(Js, g):
    """Each path's gradient J_{i_1}ᵀ ··· J_{i_k}ᵀ g, by its length k: the definition, spelled out."""
    n = len(Js)
    by_length = {k: [] for k in range(n + 1)}
    for k in range(n + 1):
        for path in itertools.combinations(range(n), k):
            M = torch.eye(len(g), dtype=torch.float64)
            for i in path:  # M = J_{i_1}ᵀ J_{i_2}ᵀ ···
                M = M @ Js[i].T
            by_length[k].append(M @ g)
    return by_length


def test_length_components_and_path_norm_sums_against_the_definition():
    g_ = torch.Generator().manual_seed(5)
    Js = [torch.randn(3, 3, generator=g_, dtype=torch.float64) for _ in range(4)]
    g = torch.randn(3, generator=g_, dtype=torch.float64)
    paths = _explicit_paths(Js, g)
    rows, sums = length_components(Js, g), path_norm_sums(Js, g)
    I = torch.eye(3, dtype=torch.float64)
    full = (I + Js[0]).T @ (I + Js[1]).T @ (I + Js[2]).T @ (I + Js[3]).T @ g
    torch.testing.assert_close(rows.sum(0), full, rtol=0, atol=1e-12)
    for k, vs in paths.items():
        torch.testing.assert_close(rows[k], sum(vs), rtol=0, atol=1e-12)
        assert sums[k].item() == pytest.approx(sum(v.norm().item() for v in vs), rel=1e-12)
        assert sums[k] >= rows[k].norm() - 1e-12  # S_k ≥ G_k: a sum of norms bounds the norm of the sum
    assert sums[0] == pytest.approx(g.norm().item()) and sums[-1] == pytest.approx(rows[-1].norm().item())


def test_lesion_pair_is_seeded_and_one_thread_restores_the_setting():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    a, b = lesion_pair(seed=3, steps=5), lesion_pair(seed=3, steps=5)
    assert len(a[0].blocks) == 8 and len(a[1].blocks) == 4 and torch.get_num_threads() == before
    for p, q in zip(a[0].parameters(), b[0].parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(a[3], b[3])


@pytest.mark.parametrize("seed", [0, 5])
def test_lesion_pair_trains_exactly_as_nets_train(seed):
    """lesion_pair trains mlp(8, residual) and mlp(4, plain) on digits(seed) exactly as nets.train does."""
    from gradflow.data import digits
    from gradflow.nets import train

    resnet, plain, X_test, y_test = lesion_pair(seed=seed)
    X, y, X_t, y_t = digits(seed=seed)
    assert torch.equal(X_test, X_t) and torch.equal(y_test, y_t)
    for net, (depth, residual) in ((resnet, (8, True)), (plain, (4, False))):
        twin = mlp(depth, width=32, norm="batch", residual=residual, init="he", seed=seed)
        with one_thread():
            train(twin, X, y, steps=60, lr=0.05, seed=seed)
        ours, theirs = net.state_dict(), twin.state_dict()
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), k


def test_lesion_logits_skips_exactly_the_dropped_blocks():
    net = _net_with_stats(4, residual=False)
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(3))
    net.train()
    torch.testing.assert_close(lesion_logits(net, X), net.eval()(X))
    with torch.no_grad():
        net.eval()
        h = net.blocks[2](net.blocks[0](net.stem(X)))
        want = net.head(net.head_act(net.head_norm(h)))
    net.train()
    torch.testing.assert_close(lesion_logits(net, X, drop=(1, 3)), want)
    assert net.training, "the net's mode is restored"
    y = lesion_logits(net, X, drop=(1, 3)).argmax(dim=1)
    assert lesion_accuracy(net, X, y, drop=(1, 3)) == 1.0


def test_grid_gradients_shape_seed_and_depth_zero():
    g = grid_gradients(3, residual=True, width=16, n_points=32, seed=4)
    assert g.shape == (32,)
    torch.testing.assert_close(g, grid_gradients(3, residual=True, width=16, n_points=32, seed=4))
    torch.testing.assert_close(grid_gradients(0, residual=True, width=16, n_points=32, seed=4),
                               grid_gradients(0, residual=False, width=16, n_points=32, seed=4))


def test_grid_gradients_two_layer_branches():
    one = grid_gradients(0, residual=True, width=16, n_points=32, seed=4)
    torch.testing.assert_close(grid_gradients(0, residual=True, width=16, n_points=32, seed=4, branch_layers=2), one)
    two = grid_gradients(3, residual=True, width=16, n_points=32, seed=4, branch_layers=2)
    assert two.shape == (32,) and not torch.allclose(two, grid_gradients(3, True, width=16, n_points=32, seed=4))


def test_grid_gradients_match_finite_differences_with_frozen_statistics():
    """Depth 0: y = v · relu(BN(x w + b)); BN's statistics come from the grid and are held fixed."""
    width, n = 8, 16
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(width, generator=g) * math.sqrt(2.0), torch.randn(width, generator=g)
    v = torch.randn(width, generator=g) / math.sqrt(width)
    x = torch.linspace(-2.0, 2.0, n, dtype=torch.float64)
    h = x[:, None] * w.double() + b.double()
    mean, std = h.mean(0), h.std(0, unbiased=False) + 1e-5
    f = lambda t: (torch.relu((t[:, None] * w.double() + b.double() - mean) / std) @ v.double())  # noqa: E731
    eps = 1e-6
    fd = (f(x + eps) - f(x - eps)) / (2 * eps)
    got = grid_gradients(0, residual=False, width=width, n_points=n, seed=0).double()
    torch.testing.assert_close(got, fd, rtol=1e-4, atol=1e-4)


def test_neighbour_correlation_against_numpy():
    rng = np.random.default_rng(0)
    for g in (rng.normal(size=100), np.cumsum(rng.normal(size=100)), np.sin(np.linspace(0, 3, 50))):
        want = np.corrcoef(g[:-1], g[1:])[0, 1]
        assert neighbour_correlation(g) == pytest.approx(want, abs=1e-12)
        assert neighbour_correlation(torch.tensor(g)) == pytest.approx(want, abs=1e-12)


def _forward(kind, depth, width, input_std, seed):
    """The net that deep_jacobian differentiates, drawn from the same generator, as a function of h_0."""
    g = torch.Generator().manual_seed(seed)
    h0 = torch.randn(width, generator=g, dtype=torch.float64) * input_std
    Ws = []
    for _ in range(depth):
        if kind in ("orthogonal linear", "tanh, orthogonal"):
            Ws.append(torch.linalg.qr(torch.randn(width, width, generator=g, dtype=torch.float64))[0])
        else:
            gain = 1.0 if kind == "Gaussian linear" else math.sqrt(2.0)
            Ws.append(torch.randn(width, width, generator=g, dtype=torch.float64) * gain / math.sqrt(width))

    def f(h):
        for W in Ws:
            if kind in ("orthogonal linear", "Gaussian linear"):
                h = W @ h
            elif kind == "tanh, orthogonal":
                h = torch.tanh(W @ h)
            elif kind == "ReLU, He":
                h = torch.relu(W @ h)
            else:
                h = h + W @ torch.relu(h) / math.sqrt(depth)
        return h

    return f, h0


@pytest.mark.parametrize("kind", JACOBIAN_KINDS)
def test_deep_jacobian_matches_autograd(kind):
    f, h0 = _forward(kind, depth=6, width=7, input_std=0.7, seed=3)
    want = jacobian(f, h0)
    torch.testing.assert_close(deep_jacobian(kind, depth=6, width=7, input_std=0.7, seed=3), want,
                               rtol=1e-10, atol=1e-12)


def test_relu_jacobian_rank_is_at_most_the_fewest_active_units():
    J, active = deep_jacobian("ReLU, He", depth=12, width=20, seed=1, with_active=True)
    assert len(active) == 12 and all(0 <= a <= 20 for a in active)
    s = torch.linalg.svdvals(J)
    assert (s < 1e-13 * s[0]).sum().item() >= 20 - min(active)  # exact zeros, in float64 near 1e-16 s_max
    _, full = deep_jacobian("orthogonal linear", depth=3, width=5, with_active=True)
    assert full == [5, 5, 5]


def test_orthogonal_linear_is_isometric_and_unknown_kind_raises():
    s = torch.linalg.svdvals(deep_jacobian("orthogonal linear", depth=20, width=10))
    torch.testing.assert_close(s, torch.ones(10, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown kind"):
        deep_jacobian("sigmoid")


def test_table_is_markdown_and_escaped_html():
    t = table(["a", "b"], [[1, "x"], [2, "<y>"]])
    assert t._repr_markdown_() == repr(t) == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | <y> |"
    assert t._repr_html_() == ('<table class="table"><thead><tr><th>a</th><th>b</th></tr></thead><tbody>'
                               "<tr><td>1</td><td>x</td></tr><tr><td>2</td><td>&lt;y&gt;</td></tr></tbody></table>")


def test_hidden_state_axis_labels_h0_at_the_first_point():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gradflow.plots import layer_norms

    fig, ax = plt.subplots()
    layer_norms(np.arange(1.0, 42.0), ax=ax)  # values for h_0 .. h_40, drawn at x = 1 .. 41
    hidden_state_axis(ax, 40)
    assert list(ax.get_xticks()) == [1, 11, 21, 31, 41]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "10", "20", "30", "40"]
    assert ax.lines[0].get_xdata()[0] == 1 and "h_0" in ax.get_xlabel()
    plt.close(fig)

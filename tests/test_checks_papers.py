"""Chapter 5's checkers accept correct variants and reject common mistakes with a message that names them."""

import math

import numpy as np
import pytest
import torch
from scipy.special import comb

from gradflow.checks.papers import (
    check_depth_correlations,
    check_forward_without,
    check_neighbour_correlation,
    check_path_length_fractions,
    check_stack_jacobian,
)
from gradflow.papers import grid_gradients


def rejects(check, *args, match, **kwargs):
    with pytest.raises(AssertionError, match=match):
        check(*args, **kwargs)


# -------------------------------------------------------------------------------- ex1: path lengths


@pytest.mark.parametrize("fn", [
    lambda n: np.array([math.comb(n, k) for k in range(n + 1)]) / 2**n,
    lambda n: [comb(n, k, exact=True) / 2**n for k in range(n + 1)],
    lambda n: torch.distributions.Binomial(n, torch.tensor(0.5)).log_prob(torch.arange(n + 1.0)).exp(),
])
def test_path_fractions_accepts(fn):
    check_path_length_fractions(fn, ns=(1, 3, 20, 54))


def test_path_fractions_rejects_counts_and_off_by_one():
    rejects(check_path_length_fractions, lambda n: [math.comb(n, k) for k in range(n + 1)],
            match="numbers of paths; divide by 2\\*\\*n")
    rejects(check_path_length_fractions, lambda n: [math.comb(n, k) / 2**n for k in range(n)],
            match="expected 4.*n \\+ 1 lengths")
    rejects(check_path_length_fractions, lambda n: np.full(n + 1, 1 / (n + 1)),
            match="C\\(3,0\\) / 2\\*\\*3 = 0.125")


def test_path_fractions_survives_broken_submissions():
    rejects(check_path_length_fractions, lambda n: None, match="returned None")
    rejects(check_path_length_fractions, lambda n: 1 / 0, match="raised ZeroDivisionError")
    rejects(check_path_length_fractions, lambda n: "abc", match="not an array of numbers")
    rejects(check_path_length_fractions, lambda n: [float("nan")] * (n + 1), match="NaN")
    rejects(check_path_length_fractions, 42, match="expected a function")

    def todo(n):
        raise NotImplementedError()

    rejects(check_path_length_fractions, todo, match="not implemented yet")


# -------------------------------------------------------------------------------- ex2: lesions


def forward_loop(net, X, drop):
    net.eval()
    with torch.no_grad():
        h = net.stem(X)
        for i, block in enumerate(net.blocks):
            if i not in drop:
                h = block(h)
        return net.head(net.head_act(net.head_norm(h)))


def forward_sequential_numpy(net, X, drop):
    net.eval()
    keep = [b for i, b in enumerate(net.blocks) if i not in set(drop)]
    body = torch.nn.Sequential(net.stem, *keep, net.head_norm, net.head_act, net.head)
    return body(X).detach().numpy()


@pytest.mark.parametrize("fn", [forward_loop, forward_sequential_numpy])
def test_forward_without_accepts(fn):
    check_forward_without(fn)
    check_forward_without(fn, cases=((True, (0, 4)), (False, (4,)), (True, (0, 1, 2, 3, 4))))


def test_forward_without_rejects_train_mode_and_no_deletion_and_off_by_one():
    def train_mode(net, X, drop):
        h = net.stem(X)
        for i, block in enumerate(net.blocks):
            if i not in drop:
                h = block(h)
        return net.head(net.head_act(net.head_norm(h)))

    rejects(check_forward_without, train_mode, match="training mode: call net.eval")
    rejects(check_forward_without, lambda net, X, drop: forward_loop(net, X, ()), match="were not removed")
    rejects(check_forward_without, lambda net, X, drop: forward_loop(net, X, tuple(i + 1 for i in drop)),
            match="block i \\+ 1 instead of block i")


def test_forward_without_rejects_zeroed_blocks_and_bad_shapes():
    def zero_block(net, X, drop):
        net.eval()
        h = net.stem(X)
        for i, block in enumerate(net.blocks):
            h = torch.zeros_like(h) if i in drop else block(h)
        return net.head(net.head_act(net.head_norm(h)))

    rejects(check_forward_without, zero_block, match="pass its input through unchanged")
    rejects(check_forward_without, lambda net, X, drop: forward_loop(net, X, drop)[:, :2],
            match="shape \\(32, 2\\).*\\(32, 4\\)")
    rejects(check_forward_without, lambda net, X, drop: None, match="returned None")


# -------------------------------------------------------------------------------- ex3: correlations


def corr_torch(g):
    a, b = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    return (a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum())


def corr_numpy(g):
    g = np.asarray(g)
    return np.corrcoef(g[:-1], g[1:])[0, 1]


@pytest.mark.parametrize("fn", [corr_torch, corr_numpy])
def test_neighbour_correlation_accepts(fn):
    check_neighbour_correlation(fn)


def test_neighbour_correlation_rejects_common_mistakes():
    rejects(check_neighbour_correlation, lambda g: np.corrcoef(g, g)[0, 1], match="correlate g with itself")
    rejects(check_neighbour_correlation, lambda g: float((g[:-1] * g[1:]).mean()), match="not a correlation: divide")
    rejects(check_neighbour_correlation,
            lambda g: float((g[:-1] @ g[1:]) / (g[:-1].norm() * g[1:].norm())),
            match="subtract the means")
    lag2 = lambda g: np.corrcoef(np.asarray(g)[:-2], np.asarray(g)[2:])[0, 1]  # noqa: E731
    rejects(check_neighbour_correlation, lag2, match="Pearson correlation")
    rejects(check_neighbour_correlation, lambda g: [0.1, 0.2], match="expected a single number")
    rejects(check_neighbour_correlation, lambda g: float("nan"), match="finite number")


def test_depth_correlations():
    ref = {r: float(np.mean([corr_numpy(grid_gradients(12, r, seed=s).numpy()) for s in (0, 1, 2)]))
           for r in (False, True)}
    check_depth_correlations(ref[False], ref[True], depth=12)
    check_depth_correlations(torch.tensor(ref[False]), np.float32(ref[True]), depth=12)
    rejects(check_depth_correlations, ref[True], ref[False], depth=12, match="swap them")
    single_seed = corr_numpy(grid_gradients(12, False, seed=0).numpy())
    rejects(check_depth_correlations, single_seed, ref[True], depth=12, match="over s = 0, 1, 2")
    rejects(check_depth_correlations, None, ref[True], depth=12, match="returned None")


# -------------------------------------------------------------------------------- ex4: stack Jacobian


def jac_loop(As, lam):
    J = torch.eye(As[0].shape[0], dtype=torch.float64)
    for A in As:
        J = (lam * torch.eye(len(A), dtype=torch.float64) + A) @ J
    return J


def jac_numpy_reduce(As, lam):
    from functools import reduce

    mats = [lam * np.eye(len(A)) + A.numpy() for A in As]
    return reduce(lambda J, M: M @ J, mats, np.eye(len(mats[0])))


@pytest.mark.parametrize("fn", [jac_loop, jac_numpy_reduce])
def test_stack_jacobian_accepts(fn):
    check_stack_jacobian(fn)


def test_stack_jacobian_rejects_order_transpose_and_missing_lambda():
    def wrong_order(As, lam):
        J = torch.eye(As[0].shape[0], dtype=torch.float64)
        for A in As:
            J = J @ (lam * torch.eye(len(A), dtype=torch.float64) + A)
        return J

    rejects(check_stack_jacobian, wrong_order, match="wrong order")
    rejects(check_stack_jacobian, lambda As, lam: jac_loop([A.T for A in As], lam), match="transposed")
    rejects(check_stack_jacobian, lambda As, lam: jac_loop(As, 1.0), match="shortcut factor is 1")
    rejects(check_stack_jacobian, lambda As, lam: jac_loop([lam * A for A in As], 1.0),
            match="scaled the branch instead")
    rejects(check_stack_jacobian, lambda As, lam: jac_loop(As, lam)[:2], match="returned shape")

"""Checkers for chapter 5's exercises (the papers' results at small scale).

Each ``check_*`` takes the student's function (or numbers), calls it on cases with known answers and
raises ``AssertionError`` with a message that names the mistake. A crash inside the student's code,
a wrong type, shape, ``None`` or NaN becomes an ``AssertionError`` too, never a bare traceback.
"""

import copy
import math

import numpy as np
import torch

from ..nets import mlp
from ..papers import grid_gradients, lesion_logits
from . import as_array, as_scalar, call

__all__ = [
    "check_path_length_fractions",
    "check_forward_without",
    "check_neighbour_correlation",
    "check_depth_correlations",
    "check_stack_jacobian",
]


# ---------------------------------------------------------------------------------------------- ex1


def _binomial(n):
    return np.array([math.comb(n, k) for k in range(n + 1)], dtype=np.float64) / 2.0**n


def check_path_length_fractions(fn, ns=(3, 54)):
    """``fn(n)`` must return the n + 1 fractions of the 2**n paths that pass through k = 0..n branches."""
    for n in ns:
        what = f"path_length_fractions({n})"
        got = as_array(call(fn, what, n), what).reshape(-1)
        if got.shape != (n + 1,):
            hint = " (paths can pass through 0, 1, ..., n branches: that is n + 1 lengths)" \
                if got.size == n else ""
            raise AssertionError(f"{what} returned {got.size} values; expected {n + 1}{hint}")
        if not np.all(np.isfinite(got)):
            raise AssertionError(f"{what} contains NaN or infinite values")
        want = _binomial(n)
        total = got.sum()
        if n > 1 and math.isclose(total, 2.0**n, rel_tol=1e-6):
            raise AssertionError(f"{what} sums to {total:.6g} = 2**{n}: these are the numbers of paths; "
                                 "divide by 2**n to get fractions")
        if not math.isclose(total, 1.0, rel_tol=1e-4):
            raise AssertionError(f"{what} sums to {total:.6g}; the fractions of all paths must sum to 1")
        bad = np.flatnonzero(~np.isclose(got, want, rtol=1e-4, atol=1e-12))  # float32 is fine
        if bad.size:
            k = int(bad[0])
            raise AssertionError(f"{what}[{k}] is {got[k]:.6g}; the fraction of paths through exactly {k} "
                                 f"of {n} branches is C({n},{k}) / 2**{n} = {want[k]:.6g}")


# ---------------------------------------------------------------------------------------------- ex2


def _mistakes(net, X, drop):
    """Logits that common mistakes produce, with the message that names each one."""
    n = len(net.blocks)
    shifted = tuple(i + 1 for i in drop if i + 1 < n)
    twin = copy.deepcopy(net).train()  # a training-mode pass updates BatchNorm's running statistics
    with torch.no_grad():
        h = twin.stem(X)
        for i, block in enumerate(twin.blocks):
            if i not in drop:
                h = block(h)
        train_mode = twin.head(twin.head_act(twin.head_norm(h)))
    out = [
        (lesion_logits(net, X, ()), "your logits are those of the whole net: the blocks in `drop` were not removed"),
        (train_mode, "your logits are those of the net in training mode: call net.eval() first, so that "
                     "BatchNorm uses its running statistics"),
    ]
    if shifted != tuple(drop):
        out.append((lesion_logits(net, X, shifted), "you removed block i + 1 instead of block i: "
                                                     "`drop` holds 0-based indices into net.blocks"))
    return out


def check_forward_without(fn, cases=((True, (2,)), (False, (0,)), (True, (1, 3)), (True, ()))):
    """``fn(net, X, drop)`` must return the logits of ``net`` in eval mode with the blocks in ``drop`` skipped."""
    for seed, (residual, drop) in enumerate(cases):
        kind = "residual" if residual else "plain"
        net = mlp(5, width=8, d_in=6, d_out=4, norm="batch", residual=residual, init="he", seed=seed)
        X = torch.randn(32, 6, generator=torch.Generator().manual_seed(100 + seed))
        net.train()
        with torch.no_grad():  # give BatchNorm running statistics that differ from a batch's
            for _ in range(3):
                net(X * 2 + 1)
        net.train()
        what = f"forward_without(net, X, drop={drop}) for a {kind} net"
        got = as_array(call(fn, what, copy.deepcopy(net), X.clone(), drop), what)
        if got.shape != (32, 4):
            raise AssertionError(f"{what} returned shape {got.shape}; expected the logits, shape (32, 4) "
                                 "for 32 inputs and 4 classes")
        want = lesion_logits(net, X, drop).double().numpy()
        if np.allclose(got, want, rtol=1e-4, atol=1e-5):
            continue
        for wrong, message in _mistakes(net, X, drop):
            if np.allclose(got, wrong.double().numpy(), rtol=1e-4, atol=1e-5):
                raise AssertionError(f"{what}: {message}")
        err = np.abs(got - want).max()
        raise AssertionError(f"{what}: the logits differ from the lesioned net's by up to {err:.3g}; a "
                             "deleted block must pass its input through unchanged, h_(i+1) = h_i, and the "
                             "stem and head must stay")


# ---------------------------------------------------------------------------------------------- ex3


def _lag1(g):
    g = np.asarray(g, dtype=np.float64)
    a, b = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _acf1(g):
    """The textbook autocorrelation estimator at lag 1 (one overall mean and variance): also accepted."""
    c = np.asarray(g, dtype=np.float64) - np.mean(g)
    return float(c[:-1] @ c[1:] / (c @ c))


def _uncentred(g):
    g = np.asarray(g, dtype=np.float64)
    return float(g[:-1] @ g[1:] / np.sqrt((g[:-1] @ g[:-1]) * (g[1:] @ g[1:])))


def check_neighbour_correlation(fn):
    """``fn(g)`` must return the correlation between ``g[i]`` and ``g[i+1]`` of a 1-D tensor ``g``."""
    t = torch.linspace(-2, 2, 64, dtype=torch.float64)
    noise = torch.randn(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cases = [
        ("a sine wave", torch.sin(3 * t)),
        ("a straight line", 3 * t + 1),
        ("an alternating sequence +1, -1, +1, ...", torch.tensor([(-1.0) ** i for i in range(50)])),
        ("white noise", noise),
        ("white noise plus 5", noise + 5),
        ("white noise times 1000", noise * 1000),
    ]
    for name, g in cases:
        what = f"your correlation for {name}"
        got = as_scalar(call(fn, what, g.clone()), what)
        want = _lag1(g.numpy())
        if abs(got - want) < 1e-6 or abs(got - _acf1(g.numpy())) < 1e-6:
            continue
        arr = g.numpy()
        a, b = arr[:-1] - arr[:-1].mean(), arr[1:] - arr[1:].mean()
        unscaled = (np.mean(a * b), np.sum(a * b), np.mean(arr[:-1] * arr[1:]), np.sum(arr[:-1] * arr[1:]))
        if any(abs(got - u) <= 1e-6 * max(1.0, abs(u)) for u in unscaled):
            raise AssertionError(f"{what} is {got:.4g}, a covariance or mean product, not a correlation: divide by "
                                 f"the product of the two standard deviations (the answer is {want:.4f})")
        if abs(got - _uncentred(g.numpy())) < 1e-6:
            raise AssertionError(f"{what} is {got:.4f} but should be {want:.4f}: subtract the means of g[:-1] "
                                 "and g[1:] before multiplying (a correlation, not a cosine)")
        if abs(got - 1.0) < 1e-9 and abs(want - 1.0) > 1e-6:
            raise AssertionError(f"{what} is 1.0, but it should be {want:.4f}: did you correlate g with itself "
                                 "instead of g[:-1] with g[1:]?")
        if abs(got) > 1 + 1e-9:
            raise AssertionError(f"{what} is {got:.4g}, outside [-1, 1]: divide the covariance by the product "
                                 "of the two standard deviations")
        if "plus 5" in name:
            raise AssertionError(f"{what} is {got:.4f} but should be {want:.4f}, the same as without the 5: "
                                 "subtract the means before multiplying")
        raise AssertionError(f"{what} is {got:.4f}; the Pearson correlation of g[:-1] and g[1:] is {want:.4f}")


def reference_depth_correlation(depth, residual, seeds=(0, 1, 2)):
    """The mean neighbour correlation of ``grid_gradients(depth, residual, seed=s)`` over ``seeds``."""
    return float(np.mean([_lag1(grid_gradients(depth, residual, seed=s).numpy()) for s in seeds]))


def check_depth_correlations(plain, residual, depth=12):
    """The student's mean correlations at ``depth`` (seeds 0, 1, 2) for the plain and the residual net."""
    for value, is_residual in ((plain, False), (residual, True)):
        kind = "residual" if is_residual else "plain"
        got = as_scalar(value, f"your {kind} correlation at depth {depth}")
        want = reference_depth_correlation(depth, is_residual)
        if abs(got - want) > 1e-4:
            other = reference_depth_correlation(depth, not is_residual)
            if abs(got - other) <= 1e-4:
                raise AssertionError(f"your {kind} correlation, {got:.4f}, is the "
                                     f"{'plain' if is_residual else 'residual'} net's: swap them")
            raise AssertionError(f"your {kind} correlation at depth {depth} is {got:.4f}; averaging "
                                 f"neighbour_correlation(grid_gradients({depth}, residual={is_residual}, seed=s)) "
                                 f"over s = 0, 1, 2 gives {want:.4f}")


# ---------------------------------------------------------------------------------------------- ex4


def _product(As, lam, order="right"):
    n = As[0].shape[0]
    J = torch.eye(n, dtype=torch.float64)
    for A in As:
        step = lam * torch.eye(n, dtype=torch.float64) + A
        J = step @ J if order == "right" else J @ step
    return J


def check_stack_jacobian(fn):
    """``fn(As, lam)`` must return ``∂x_L/∂x_0`` of ``x_{i+1} = lam x_i + A_i x_i`` (column vectors)."""
    g = torch.Generator().manual_seed(4)
    for L, n, lam in ((3, 4, 0.5), (1, 3, 2.0), (5, 6, 1.0), (4, 2, 0.0)):
        As = [torch.randn(n, n, generator=g, dtype=torch.float64) for _ in range(L)]
        what = f"stack_jacobian(As, lam={lam}) with {L} matrices of shape ({n}, {n})"
        got = as_array(call(fn, what, [A.clone() for A in As], lam), what)
        if got.shape != (n, n):
            raise AssertionError(f"{what} returned shape {got.shape}; expected ({n}, {n})")

        def x_L(x0, As=As, lam=lam):
            for A in As:
                x0 = lam * x0 + A @ x0
            return x0

        want = torch.autograd.functional.jacobian(x_L, torch.zeros(n, dtype=torch.float64)).numpy()
        if np.allclose(got, want, rtol=1e-8, atol=1e-10):
            continue
        wrong = [
            (_product(As, lam, order="left"), "you multiplied in the wrong order: the last block's factor "
             "goes on the left, (λI + A_{L-1}) ··· (λI + A_0)"),
            (_product([A.T for A in As], lam), "you transposed the A_i: for x_{i+1} = λ x_i + A_i x_i (column "
             "vectors) the block's Jacobian is λI + A_i"),
            (_product(As, 1.0), "your shortcut factor is 1: with a scaled shortcut each block's Jacobian "
             "is λI + A_i"),
            (_product([lam * A for A in As], 1.0), "you scaled the branch instead of the shortcut: each "
             "block's Jacobian is λI + A_i"),
        ]
        for J, message in wrong:
            if message is not None and np.allclose(got, as_array(J, "reference"), rtol=1e-8, atol=1e-10):
                raise AssertionError(f"{what}: {message}")
        err = np.abs(got - want).max()
        raise AssertionError(f"{what} differs from autograd's Jacobian by up to {err:.3g}")

"""The chapter 3 checkers accept every correct solution, name each common mistake, and are registered."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from gradflow import flow
from gradflow.checks import exercise
from gradflow.checks import flow as check

D = torch.float64


def raises(fn, *args, match, **kwargs):
    with pytest.raises(AssertionError, match=match):
        fn(*args, **kwargs)


def weights(blk):
    return blk.lin2.weight.detach(), blk.lin2.bias.detach(), blk.lin3.weight.detach()


def test_every_grade_id_is_registered_with_plain_cases():
    ids = {f"ch3-ex{i}-tests": ex for i, ex in enumerate(
        [check.BLOCK_GRAD, check.BRANCH_TERMS, check.PATH_SPLIT, check.POST_RELU_JACOBIAN, check.LAMBDA_STAR], 1)}
    for grade_id, ex in ids.items():
        assert exercise.REGISTRY[grade_id] == [ex]
        for seed in (0, 1, 12345):
            cases = ex.cases(seed)
            assert json.loads(json.dumps(cases, allow_nan=False)) == cases  # plain data
        assert ex.cases(1) != ex.cases(2)  # the grader's seed changes the cases


@pytest.mark.parametrize("ex", [check.BLOCK_GRAD, check.BRANCH_TERMS, check.PATH_SPLIT, check.POST_RELU_JACOBIAN,
                                check.LAMBDA_STAR])
def test_judges_never_crash_on_junk(ex):
    cases = ex.cases(0)[:1]
    for junk in (None, "x", 3, [1, 2], {"__array__": [[1.0]], "dtype": "float64", "shape": [1, 1]},
                 {"__error__": "boom", "kind": "exception"}, {"__float__": "nan"}, [[float("inf")] * 3] * 2):
        assert isinstance(ex.verdict(cases, [exercise.to_plain(junk)]), str)


# Exercise 1: block_grad ---------------------------------------------------------------------------------

def grad_rows(blk, X, G):
    W2, b2, W3 = weights(blk)
    s = torch.sigmoid(X @ W2.T + b2)
    return G + ((G @ W3) * s * (1 - s)) @ W2


def grad_loop_numpy(blk, X, G):  # one column vector at a time, numpy out
    W2, b2, W3 = (t.numpy() for t in weights(blk))
    out = []
    for x, g in zip(X.numpy(), G.numpy(), strict=True):
        s = 1 / (1 + np.exp(-(W2 @ x + b2)))
        out.append(g + W2.T @ np.diag(s * (1 - s)) @ W3.T @ g)
    return np.array(out)


def grad_autograd(blk, X, G):
    X = X.clone().requires_grad_(True)
    return torch.autograd.grad(blk(X), X, grad_outputs=G)[0]


def grad_float32(blk, X, G):
    return grad_rows(blk, X, G).float()


@pytest.mark.parametrize("fn", [grad_rows, grad_loop_numpy, grad_autograd, grad_float32])
def test_block_grad_accepts_correct(fn):
    check.block_grad(fn)
    check.block_grad(fn, hidden=True)


def test_block_grad_names_mistakes():
    def no_identity(blk, X, G):
        return grad_rows(blk, X, G) - G

    def no_sigma_prime(blk, X, G):
        W2, _, W3 = weights(blk)
        return G + G @ W3 @ W2

    def sigma_not_derivative(blk, X, G):
        W2, b2, W3 = weights(blk)
        return G + ((G @ W3) * torch.sigmoid(X @ W2.T + b2)) @ W2

    def no_bias(blk, X, G):
        W2, _, W3 = weights(blk)
        s = torch.sigmoid(X @ W2.T)
        return G + ((G @ W3) * s * (1 - s)) @ W2

    def identity_twice(blk, X, G):
        return grad_rows(blk, X, G) + G

    def branch_twice(blk, X, G):  # the case the old message named but never checked
        return 2 * grad_rows(blk, X, G) - G

    def seed_formula(blk, X, G):
        W2, _, W3 = weights(blk)
        return G + G @ W2 @ W3  # shapes do not match when hidden != width

    raises(check.block_grad, no_identity, match="identity term G is missing")
    raises(check.block_grad, no_sigma_prime, match="activation term")
    raises(check.block_grad, sigma_not_derivative, match="σ'")
    raises(check.block_grad, no_bias, match="bias b2")
    raises(check.block_grad, identity_twice, match="identity term G is counted twice")
    raises(check.block_grad, branch_twice, match="branch term is counted twice")
    raises(check.block_grad, seed_formula, match="raised RuntimeError")


def test_block_grad_survives_bad_submissions():
    def not_done(blk, X, G):
        raise NotImplementedError()

    raises(check.block_grad, not_done, match="not implemented")
    raises(check.block_grad, lambda blk, X, G: None, match="returned None")
    raises(check.block_grad, lambda blk, X, G: G[0], match=r"shape \(5,\)")
    raises(check.block_grad, lambda blk, X, G: G * float("nan"), match="NaN")
    raises(check.block_grad, lambda blk, X, G: "gradient", match="not an array")
    raises(check.block_grad, 42, match="should be a function")


# Exercise 2: branch_terms (He et al.'s equation, block by block) ------------------------------------------

def bt_jacobians(blocks, x0, g):
    rows = []
    for i, blk in enumerate(blocks):
        rows.append(jacobian(lambda x, i=i, blk=blk: blk.branch(flow.states(blocks[:i], x)[-1]), x0).T @ g)
    return torch.stack(rows)


def bt_vjp_numpy(blocks, x0, g):
    x = x0.clone().requires_grad_(True)
    xs = flow.states(blocks, x)
    rows = [torch.autograd.grad(b.branch(xi), x, grad_outputs=g, retain_graph=True)[0]
            for b, xi in zip(blocks, xs[:-1], strict=True)]
    return np.stack([r.numpy() for r in rows]).tolist()


def bt_chain(blocks, x0, g):  # by hand: (∂F_i/∂x_0)ᵀ g = (∂x_(i-1)/∂x_0)ᵀ J_iᵀ g, walking back with J
    Js = flow.branch_jacobians(blocks, x0)
    rows = []
    for i in range(len(Js)):
        v = Js[i].T @ g
        for J in reversed(Js[:i]):
            v = v + J.T @ v
        rows.append(v)
    return torch.stack(rows).float()


@pytest.mark.parametrize("fn", [bt_jacobians, bt_vjp_numpy, bt_chain])
def test_branch_terms_accepts_correct(fn):
    check.branch_terms(fn)
    check.branch_terms(fn, hidden=True)


def test_branch_terms_closes_the_shortcut():
    """Issue 13: the old exercise 2 passed with `input_grad - g`, which skips the exercise. Now it cannot."""
    raises(check.branch_terms, lambda blocks, x0, g: flow.input_grad(blocks, x0, g) - g, match="one row per block")


def test_branch_terms_names_mistakes():
    def local_only(blocks, x0, g):
        return torch.stack([J.T @ g for J in flow.branch_jacobians(blocks, x0)])

    def cumulative(blocks, x0, g):
        return torch.cumsum(bt_jacobians(blocks, x0, g), dim=0)

    def with_identity(blocks, x0, g):
        return bt_jacobians(blocks, x0, g) + g

    def no_transpose(blocks, x0, g):
        return torch.stack([jacobian(lambda x, i=i, blk=blk: blk.branch(flow.states(blocks[:i], x)[-1]), x0) @ g
                            for i, blk in enumerate(blocks)])

    def rows_swapped(blocks, x0, g):
        rows = bt_jacobians(blocks, x0, g)
        return rows.flip(0)

    raises(check.branch_terms, local_only, match="only F_i's own Jacobian")
    raises(check.branch_terms, cumulative, match="cumulative")
    raises(check.branch_terms, with_identity, match="includes the identity term")
    raises(check.branch_terms, no_transpose, match="transpose")
    raises(check.branch_terms, rows_swapped, match="rows .* are wrong")
    raises(check.branch_terms, lambda blocks, x0, g: None, match="returned None")


# Exercise 3: path_split -------------------------------------------------------------------------------

def split_rows(Js, g, lam):
    rows = torch.zeros(len(Js) + 1, len(g), dtype=D)
    rows[0] = g
    for J in reversed(Js):
        rows[1:] = lam * rows[1:] + rows[:-1] @ J
        rows[0] = lam * rows[0]
    return rows


def split_float32_zeros(Js, g, lam):
    """Issue 13: a float32 `torch.zeros` (the default dtype) was rejected as "rows do not add up (1.5e-7)"."""
    rows = torch.zeros(len(Js) + 1, len(g))
    rows[0] = g
    for J in reversed(Js):
        rows[1:] = lam * rows[1:] + rows[:-1] @ J.float()
        rows[0] = lam * rows[0]
    return rows


def split_brute_force_numpy(Js, g, lam):
    n, L = len(g), len(Js)
    rows = np.zeros((L + 1, n))
    for path in itertools.product([0, 1], repeat=L):
        C = np.eye(n)
        for J, through in zip(Js, path, strict=True):
            C = (J.numpy() if through else lam * np.eye(n)) @ C
        rows[sum(path)] += C.T @ g.numpy()
    return rows.tolist()  # a nested list is fine too


def split_columns(Js, g, lam):  # columns instead of rows, transposed at the end
    cols = [g] + [torch.zeros_like(g) for _ in Js]
    for J in Js[::-1]:
        cols = [lam * cols[0]] + [lam * cols[k] + J.T @ cols[k - 1] for k in range(1, len(cols))]
    return torch.stack(cols)


@pytest.mark.parametrize("fn", [split_rows, split_float32_zeros, split_brute_force_numpy, split_columns])
def test_path_split_accepts_correct(fn):
    check.path_split(fn)
    check.path_split(fn, hidden=True)


def test_path_split_names_mistakes():
    def no_lambda(Js, g, lam):
        return split_rows(Js, g, 1.0)

    def lambda_on_branch(Js, g, lam):
        return split_rows([lam * J for J in Js], g, 1.0)

    def lambda_on_row0_only(Js, g, lam):
        rows = torch.zeros(len(Js) + 1, len(g), dtype=D)
        rows[0] = g
        for J in reversed(Js):
            rows[1:] = rows[1:] + rows[:-1] @ J
            rows[0] = lam * rows[0]
        return rows

    def input_first(Js, g, lam):
        return split_rows(list(reversed(Js)), g, lam)

    def no_transpose(Js, g, lam):
        return split_rows([J.T for J in Js], g, lam)

    def all_in_row_zero(Js, g, lam):
        rows = split_rows(Js, g, lam)
        out = torch.zeros_like(rows)
        out[0] = rows.sum(dim=0)
        return out

    raises(check.path_split, no_lambda, match="λ is missing")
    raises(check.path_split, lambda_on_branch, match="branch step instead of the skip")
    raises(check.path_split, lambda_on_row0_only, match="only row 0")
    raises(check.path_split, input_first, match="wrong order")
    raises(check.path_split, no_transpose, match="transpose")
    raises(check.path_split, all_in_row_zero, match="rows .* are wrong")
    raises(check.path_split, lambda Js, g, lam: split_rows(Js, g, lam) * 1.01, match="do not add up")


def test_path_split_survives_bad_submissions():
    raises(check.path_split, lambda Js, g, lam: None, match="returned None")
    raises(check.path_split, lambda Js, g, lam: g, match="shape")
    raises(check.path_split, lambda Js, g, lam: 1 / 0, match="ZeroDivisionError")


# Exercise 4: post_relu_jacobian ---------------------------------------------------------------------------

def jac_matrix(blk, x):
    W2, b2, W3 = weights(blk)
    inner = torch.eye(len(x), dtype=D) + W3 @ torch.diag(1 - torch.tanh(W2 @ x + b2) ** 2) @ W2
    return torch.diag((x + blk.branch(x) > 0).to(D)) @ inner


def jac_rows_numpy(blk, x):  # zero the rows of switched-off outputs, numpy out
    W2, b2, W3 = (t.numpy() for t in weights(blk))
    xn = x.numpy()
    z = W2 @ xn + b2
    J = np.eye(len(xn)) + W3 @ ((1 - np.tanh(z) ** 2)[:, None] * W2)
    y = xn + W3 @ np.tanh(z) + blk.lin3.bias.detach().numpy()
    J[y <= 0, :] = 0.0
    return J


@pytest.mark.parametrize("fn", [jac_matrix, jac_rows_numpy, lambda blk, x: jac_matrix(blk, x).float()])
def test_post_relu_jacobian_accepts_correct(fn):
    check.post_relu_jacobian(fn)
    check.post_relu_jacobian(fn, hidden=True)


def test_post_relu_jacobian_names_mistakes():
    def no_mask(blk, x):
        W2, b2, W3 = weights(blk)
        return torch.eye(len(x), dtype=D) + W3 @ torch.diag(1 - torch.tanh(W2 @ x + b2) ** 2) @ W2

    def mask_right(blk, x):
        return no_mask(blk, x) @ torch.diag((x + blk.branch(x) > 0).to(D))

    def mask_on_x(blk, x):
        return torch.diag((x > 0).to(D)) @ no_mask(blk, x)

    def mask_branch_only(blk, x):
        return torch.eye(len(x), dtype=D) + torch.diag((x + blk.branch(x) > 0).to(D)) @ (
            no_mask(blk, x) - torch.eye(len(x), dtype=D))

    raises(check.post_relu_jacobian, no_mask, match="mask is missing")
    raises(check.post_relu_jacobian, mask_right, match="wrong side")
    raises(check.post_relu_jacobian, mask_on_x, match="x > 0")
    raises(check.post_relu_jacobian, mask_branch_only, match="identity term too")
    raises(check.post_relu_jacobian, lambda blk, x: jac_matrix(blk, x).T, match="transpose")
    raises(check.post_relu_jacobian, lambda blk, x: None, match="returned None")
    raises(check.post_relu_jacobian, lambda blk, x: torch.eye(3), match="shape")


# Exercise 5: lambda_star ---------------------------------------------------------------------------

def lambda_bisect(depth, seed):
    lo, hi = 0.5, 1.0
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        blocks = flow.stack(depth, width=16, activation="tanh", scale3=0.5, shortcut=mid, seed=seed)
        ratio = flow.grad_ratio(blocks, flow.randn(16, seed=seed + 3), flow.randn(16, seed=seed + 4))
        lo, hi = (mid, hi) if ratio < 1e-3 else (lo, mid)
    return (lo + hi) / 2


def test_lambda_star_accepts_correct():
    check.lambda_star(lambda_bisect)
    check.lambda_star(lambda d, s: torch.tensor(lambda_bisect(d, s), dtype=torch.float32))
    check.lambda_star(lambda d, s: np.array([check.lambda_reference(d, s) + 0.004]), hidden=True)


def test_lambda_reference_is_far_from_the_direct_path():
    """The crossing is well below where λ^L alone reaches 10^-3: the branches carry gradient."""
    for depth, seed in ((30, 0), (20, 1), (40, 2)):
        ref = check.lambda_reference(depth, seed)
        assert 1e-3 ** (1 / depth) - ref > 0.03
        assert check.task_ratio(ref - 0.01, depth, seed) < 1e-3 < check.task_ratio(ref + 0.01, depth, seed)


def test_lambda_ratio_crosses_once():
    """The judge's two-ratio test needs one crossing of 10^-3 on [0.5, 1] (the ratio is not monotone
    near λ = 1, where it is about 1, but it crosses the threshold once)."""
    lams = np.linspace(0.5, 1.0, 11)
    for case in check._lambda_cases(0) + check._lambda_cases(check.LAMBDA_STAR.hidden_seed):
        below = [check.task_ratio(lam, case["depth"], case["seed"]) < 1e-3 for lam in lams]
        assert below[0] and not below[-1] and sum(a != b for a, b in itertools.pairwise(below)) == 1, case


def test_lambda_star_names_mistakes():
    raises(check.lambda_star, lambda d, s: 1e-3 ** (1 / d), match="direct path alone")
    raises(check.lambda_star, lambda d, s: 1e-3 ** (1 / (d - 1)), match="power 1/")
    raises(check.lambda_star, lambda d, s: check.lambda_reference(d, s) + 0.05, match="above the threshold")
    raises(check.lambda_star, lambda d, s: check.lambda_reference(d, s) - 0.05, match="below the threshold")
    raises(check.lambda_star, lambda d, s: None, match="returned None")
    raises(check.lambda_star, lambda d, s: "0.72", match="not an array|text")
    raises(check.lambda_star, lambda d, s: float("nan"), match="not a finite number")

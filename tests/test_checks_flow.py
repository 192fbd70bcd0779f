"""The chapter 3 checkers accept every correct solution and name each common mistake."""

import itertools

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from gradflow import flow
from gradflow.checks import flow as check

D = torch.float64


def raises(fn, *args, match, **kwargs):
    with pytest.raises(AssertionError, match=match):
        fn(*args, **kwargs)


def weights(blk):
    return blk.lin2.weight.detach(), blk.lin2.bias.detach(), blk.lin3.weight.detach()


# Exercise 1: block_grad ---------------------------------------------------------------------------------

HIDDEN_1 = [(4, 4, 1, 1), (8, 3, 10, 2), (3, 9, 2, 3)]


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


@pytest.mark.parametrize("fn", [grad_rows, grad_loop_numpy, grad_autograd])
def test_block_grad_accepts_correct(fn):
    check.block_grad(fn)
    check.block_grad(fn, cases=HIDDEN_1)


def test_block_grad_names_mistakes():
    def no_identity(blk, X, G):
        return grad_rows(blk, X, G) - G

    def no_sigma_prime(blk, X, G):
        W2, _, W3 = weights(blk)
        return G + G @ W3 @ W2

    def sigma_not_derivative(blk, X, G):
        W2, b2, W3 = weights(blk)
        return G + ((G @ W3) * torch.sigmoid(X @ W2.T + b2)) @ W2

    def seed_formula(blk, X, G):
        W2, _, W3 = weights(blk)
        return G + G @ W2 @ W3  # shapes do not match when hidden != width

    raises(check.block_grad, no_identity, match="identity term")
    raises(check.block_grad, no_sigma_prime, match="activation term")
    raises(check.block_grad, sigma_not_derivative, match="σ'")
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


# Exercise 2: path_split -------------------------------------------------------------------------------

HIDDEN_2 = [(1, 3, 0.5, 1), (7, 4, 1.0, 2), (6, 5, 1.2, 3)]


def split_rows(Js, g, lam):
    rows = torch.zeros(len(Js) + 1, len(g), dtype=D)
    rows[0] = g
    for J in reversed(Js):
        rows[1:] = lam * rows[1:] + rows[:-1] @ J
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


@pytest.mark.parametrize("fn", [split_rows, split_brute_force_numpy, split_columns])
def test_path_split_accepts_correct(fn):
    check.path_split(fn)
    check.path_split(fn, cases=HIDDEN_2)


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


def test_path_split_survives_bad_submissions():
    raises(check.path_split, lambda Js, g, lam: None, match="returned None")
    raises(check.path_split, lambda Js, g, lam: g, match="shape")
    raises(check.path_split, lambda Js, g, lam: 1 / 0, match="ZeroDivisionError")


# Exercise 3: lambda_threshold ---------------------------------------------------------------------------

def test_lambda_threshold_accepts_correct():
    ref = check.lambda_reference()
    assert 0.70 < ref < 0.74  # far from the direct-path answer 0.794
    for value in (ref, ref + 0.004, np.float64(ref - 0.004), torch.tensor(ref), np.array([ref])):
        check.lambda_threshold(value)


def test_lambda_threshold_names_mistakes():
    raises(check.lambda_threshold, 1e-3 ** (1 / 30), match="direct path alone")
    raises(check.lambda_threshold, 1e-3 ** (1 / 29), match="power 1/29 or 1/31")
    raises(check.lambda_threshold, 0.9, match="above the threshold")
    raises(check.lambda_threshold, 0.6, match="below the threshold")
    raises(check.lambda_threshold, None, match="lam_star is None")
    raises(check.lambda_threshold, "0.72", match="should be a number")
    raises(check.lambda_threshold, float("nan"), match="between 0.5 and 1")


# Exercise 4: post_relu_jacobian ---------------------------------------------------------------------------

HIDDEN_4 = [(4, 4, 1), (8, 3, 2), (5, 9, 3)]


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


@pytest.mark.parametrize("fn", [jac_matrix, jac_rows_numpy])
def test_post_relu_jacobian_accepts_correct(fn):
    check.post_relu_jacobian(fn)
    check.post_relu_jacobian(fn, cases=HIDDEN_4)


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
    raises(check.post_relu_jacobian, lambda blk, x: None, match="returned None")
    raises(check.post_relu_jacobian, lambda blk, x: torch.eye(3), match="shape")


# Exercise 2: branch_term (He et al.'s equation) ----------------------------------------------------------

HIDDEN_BT = [(3, 4, 1), (7, 6, 2), (1, 5, 3)]


def branch_sum_of(blocks):
    def S(x):
        xs = flow.states(blocks, x)
        return sum(b.branch(xi) for b, xi in zip(blocks, xs[:-1], strict=True))
    return S


def bt_jacobian(blocks, x0, g):
    return jacobian(branch_sum_of(blocks), x0).T @ g


def bt_vjp_numpy(blocks, x0, g):
    x = x0.clone().requires_grad_(True)
    (v,) = torch.autograd.grad(branch_sum_of(blocks)(x), x, grad_outputs=g)
    return v.numpy()


def bt_difference(blocks, x0, g):  # the full gradient minus the identity term: also correct
    return flow.input_grad(blocks, x0, g) - g


@pytest.mark.parametrize("fn", [bt_jacobian, bt_vjp_numpy, bt_difference])
def test_branch_term_accepts_correct(fn):
    check.branch_term(fn)
    check.branch_term(fn, cases=HIDDEN_BT)


def test_branch_term_names_mistakes():
    def full(blocks, x0, g):
        return flow.input_grad(blocks, x0, g)

    def single_branch_paths(blocks, x0, g):
        return sum(J.T @ g for J in flow.branch_jacobians(blocks, x0))

    def first_block_only(blocks, x0, g):
        return jacobian(blocks[0].branch, x0).T @ g

    def no_transpose(blocks, x0, g):
        return jacobian(branch_sum_of(blocks), x0) @ g

    raises(check.branch_term, full, match="includes the identity term")
    raises(check.branch_term, single_branch_paths, match="single branch")
    raises(check.branch_term, first_block_only, match="only F_1")
    raises(check.branch_term, no_transpose, match="transpose")
    raises(check.branch_term, lambda blocks, x0, g: None, match="returned None")
    raises(check.branch_term, lambda blocks, x0, g: [1.0, 2.0], match="shape")

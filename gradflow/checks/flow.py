"""Checkers for chapter 3's exercises (how gradients flow through skip connections).

Each checker calls the student's function on fresh seeded inputs, compares with a reference computed by
autograd or by :mod:`gradflow.flow`, and raises ``AssertionError`` with a message that names the mistake.
Outputs may be torch tensors, numpy arrays or nested lists; loops and vectorised code are both fine.
"""

import math

import numpy as np
import torch

from .. import flow
from . import as_float64, call

__all__ = ["block_grad", "branch_term", "path_split", "lambda_threshold", "post_relu_jacobian", "LAMBDA_TASK"]

ATOL = 1e-8  # float64 throughout; any correct formula is within ~1e-14

# The stack of exercise 4: ‖∇x_0‖ / ‖∇x_30‖ = THRESHOLD at the λ the student must find.
LAMBDA_TASK = dict(depth=30, width=16, activation="tanh", scale3=0.5, seed=0, x_seed=3, g_seed=4, threshold=1e-3)


def _vec(shape, seed):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _close(a, b):
    return torch.allclose(a, b, rtol=1e-7, atol=ATOL)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# Exercise 1 ---------------------------------------------------------------------------------------

def block_grad(fn, cases=((5, 7, 3, 0),)):
    """Check ``fn(blk, X, G) -> ∇_X L`` for sigmoid blocks; each case is (width, hidden, batch, seed)."""
    for width, hidden, batch, seed in cases:
        blk = flow.block(width, hidden, activation="sigmoid", seed=seed)
        X, G = _vec((batch, width), seed + 100), _vec((batch, width), seed + 200)
        Xr = X.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(blk(Xr), Xr, grad_outputs=G)
        out = as_float64(call(fn, "block_grad", blk, X.clone(), G.clone()), (batch, width),
                      f"block_grad for X of shape {tuple(X.shape)}")
        if _close(out, ref):
            continue
        W2, b2, W3 = (t.detach() for t in (blk.lin2.weight, blk.lin2.bias, blk.lin3.weight))
        s = torch.sigmoid(X @ W2.T + b2)
        mistakes = {
            "the identity term G is missing (you returned only the branch term)": ((G @ W3) * s * (1 - s)) @ W2,
            "the activation term σ'(z) is missing (the branch is G @ W3 @ W2 without σ')": G + G @ W3 @ W2,
            "σ' is evaluated wrongly: for the sigmoid σ'(z) = σ(z)(1 - σ(z)), at z = X @ W2.T + b2":
                G + ((G @ W3) * s) @ W2,
            "the bias b2 is missing from z = X @ W2.T + b2": G + ((G @ W3) * (torch.sigmoid(X @ W2.T)
                                                                   * (1 - torch.sigmoid(X @ W2.T)))) @ W2,
            "your result is the branch term scaled twice / the identity term counted twice":
                2 * G + ((G @ W3) * s * (1 - s)) @ W2,
        }
        for message, wrong in mistakes.items():
            if _close(out, wrong):
                raise AssertionError(f"block_grad is wrong for width {width}, hidden {hidden}: {message}")
        raise AssertionError(f"block_grad differs from autograd (relative error {_rel(out, ref):.2g}) for width "
                             f"{width}, hidden {hidden}, batch {batch}; check the order and transposes: "
                             "in row form ∇_X L = G + ((G @ W3) * σ'(z)) @ W2")


# Exercise 2 ---------------------------------------------------------------------------------------

def _branch_sum(blocks, x):
    xs = flow.states(blocks, x)
    return sum(b.branch(xi) for b, xi in zip(blocks, xs[:-1], strict=True))


def branch_term(fn, cases=((5, 8, 0),)):
    """Check ``fn(blocks, x0, g) -> (∂/∂x_0 Σ_i F_i(x_i))ᵀ g``; each case is (depth, width, seed)."""
    for depth, width, seed in cases:
        blocks = flow.stack(depth, width=width, activation="tanh", scale3=0.8, seed=seed)
        x0, g = _vec(width, seed + 100), _vec(width, seed + 200)
        full = flow.input_grad(blocks, x0, g)
        ref = full - g  # He et al.'s eq. 5: ∇x_0 E = g + (∂/∂x_0 Σ F)ᵀ g
        out = as_float64(call(fn, "branch_term", blocks, x0.clone(), g.clone()), (width,),
                      f"branch_term for {depth} blocks of width {width}")
        if _close(out, ref):
            continue
        Js = flow.branch_jacobians(blocks, x0)
        dS = torch.autograd.functional.jacobian(lambda x, blocks=blocks: _branch_sum(blocks, x), x0)
        mistakes = {
            "your result includes the identity term g: return only the branch term (the full gradient minus g)":
                full,
            "you kept only the paths through a single branch (Σ J_iᵀ g): each x_i depends on x_0 through the "
            "blocks before it, so compute the x_i from x0 inside the function you differentiate":
                sum(J.T @ g for J in Js),
            "you differentiated only F_1: the later F_i depend on x_0 too, through x_i":
                Js[0].T @ g,
            "a transpose is missing: the gradient is (∂S/∂x_0)ᵀ g, not (∂S/∂x_0) g": dS @ g,
        }
        for message, wrong in mistakes.items():
            if _close(out, wrong.detach()):
                raise AssertionError(f"branch_term is wrong ({depth} blocks): {message}")
        raise AssertionError(f"branch_term differs from the branch term of He et al.'s equation (relative error "
                             f"{_rel(out, ref):.2g}, {depth} blocks of width {width}); together with g it must "
                             "give the full gradient at x_0")


# Exercise 3 ---------------------------------------------------------------------------------------

def _reference_split(Js, g, lam, order="output-first", transpose=True, lam_on="skip"):
    rows = torch.zeros(len(Js) + 1, g.shape[0], dtype=torch.float64)
    rows[0] = g
    seq = list(reversed(Js)) if order == "output-first" else list(Js)
    for J in seq:
        M = J if transpose else J.T  # rows @ J is (Jᵀ r)ᵀ; rows @ J.T is the untransposed mistake
        if lam_on == "skip":
            rows = torch.cat([lam * rows[:1], lam * rows[1:] + rows[:-1] @ M])
        elif lam_on == "row0":  # λ applied to the direct path only
            rows = torch.cat([lam * rows[:1], rows[1:] + rows[:-1] @ M])
        elif lam_on == "branch":
            rows = torch.cat([rows[:1], rows[1:] + lam * rows[:-1] @ M])
        else:  # λ ignored
            rows = torch.cat([rows[:1], rows[1:] + rows[:-1] @ M])
    return rows


def path_split(fn, cases=((5, 6, 0.8, 0),)):
    """Check ``fn(jacobians, g, lam) -> rows`` (shape (L+1, n)); each case is (L, n, λ, seed)."""
    for L, n, lam, seed in cases:
        blocks = flow.stack(L, width=n, scale3=0.8, shortcut=lam, seed=seed)
        x, g = _vec(n, seed + 100), _vec(n, seed + 200)
        Js = flow.branch_jacobians(blocks, x)
        ref = flow.path_gradients(Js, g, shortcut=lam)
        out = as_float64(call(fn, "path_split", [J.clone() for J in Js], g.clone(), lam), (L + 1, n),
                      f"path_split for {L} blocks of width {n}")
        if _close(out, ref):
            continue
        full = flow.input_grad(blocks, x, g)
        mistakes = {
            "λ is missing: each block whose branch a path skips contributes λI, so row k gets λ^(L-k)":
                _reference_split(Js, g, lam, lam_on="none"),
            "λ multiplies only row 0: every block's skip multiplies every row by λ, then J moves row k-1 to row k":
                _reference_split(Js, g, lam, lam_on="row0"),
            "λ multiplies the branch step instead of the skip: the block's Jacobian is λI + J, not I + λJ":
                _reference_split(Js, g, lam, lam_on="branch"),
            "the Jacobians are multiplied in the wrong order: start from the output (J_L) and walk to the input":
                _reference_split(Js, g, lam, order="input-first"),
            "a transpose is missing: the gradient goes back through J_iᵀ (as a row: r @ J_i, not r @ J_i.T)":
                _reference_split(Js, g, lam, transpose=False),
        }
        for message, wrong in mistakes.items():
            if _close(out, wrong):
                raise AssertionError(f"path_split is wrong (L = {L}, λ = {lam}): {message}")
        if not _close(out.sum(dim=0), full):
            raise AssertionError(f"the rows of path_split do not add up to the full gradient (relative error "
                                 f"{_rel(out.sum(dim=0), full):.2g}, L = {L}, λ = {lam})")
        bad = [k for k in range(L + 1) if not _close(out[k], ref[k])]
        raise AssertionError(f"the rows add up to the full gradient, but rows {bad} are wrong (L = {L}, λ = {lam}): "
                             "row k must hold only the paths through exactly k branches")


# Exercise 4 ---------------------------------------------------------------------------------------

def _task_ratio(lam, task=LAMBDA_TASK):
    blocks = flow.stack(task["depth"], width=task["width"], activation=task["activation"], scale3=task["scale3"],
                        shortcut=lam, seed=task["seed"])
    x, g = _vec(task["width"], task["x_seed"]), _vec(task["width"], task["g_seed"])
    return flow.grad_ratio(blocks, x, g)


def lambda_reference(task=LAMBDA_TASK, lo=0.5, hi=1.0, tol=1e-6):
    """The λ at which the exercise's gradient ratio crosses the threshold, by bisection."""
    key = (tuple(sorted(task.items())), lo, hi, tol)
    if key not in _LAMBDA_CACHE:
        _LAMBDA_CACHE[key] = _bisect(task, lo, hi, tol)
    return _LAMBDA_CACHE[key]


_LAMBDA_CACHE = {}


def _bisect(task, lo, hi, tol):
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _task_ratio(mid, task) < task["threshold"] else (lo, mid)
    return (lo + hi) / 2


def lambda_threshold(lam_star, tol=0.005, task=LAMBDA_TASK):
    """Check the student's λ for exercise 4 (within ``tol`` of the crossing)."""
    if isinstance(lam_star, torch.Tensor) and lam_star.numel() == 1:
        lam_star = lam_star.item()
    if isinstance(lam_star, np.ndarray) and lam_star.size == 1:
        lam_star = lam_star.item()
    if lam_star is None:
        raise AssertionError("lam_star is None: set it to the λ you found (a number between 0.5 and 1)")
    if isinstance(lam_star, bool) or not isinstance(lam_star, (int, float, np.floating, np.integer)):
        raise AssertionError(f"lam_star should be a number, got {type(lam_star).__name__}")
    lam_star = float(lam_star)
    if not math.isfinite(lam_star):
        raise AssertionError(f"lam_star is {lam_star}; it should be a number between 0.5 and 1")
    ref = lambda_reference(task)
    if abs(lam_star - ref) <= tol:
        return
    L, thr = task["depth"], task["threshold"]
    if abs(lam_star - thr ** (1 / L)) < 1e-3:
        raise AssertionError(f"lam_star = {lam_star:.4f} is threshold^(1/{L}), where the direct path alone (λ^{L}) "
                             f"falls to {thr:g}; the branches carry gradient too, so measure the ratio with "
                             "flow.grad_ratio on the stack")
    if abs(lam_star - thr ** (1 / (L - 1))) < 1e-3 or abs(lam_star - thr ** (1 / (L + 1))) < 1e-3:
        raise AssertionError(f"lam_star = {lam_star:.4f} is the threshold to the power 1/{L - 1} or 1/{L + 1}; the "
                             f"stack has {L} blocks, and the branches carry gradient too: measure the ratio "
                             "with flow.grad_ratio")
    if not 0 < lam_star < 2:
        raise AssertionError(f"lam_star = {lam_star:g} is outside the range searched (0.5 to 1)")
    ratio = _task_ratio(lam_star, task)
    side = "above" if ratio > thr else "below"
    raise AssertionError(f"at λ = {lam_star:.4f} the gradient ratio is {ratio:.3g}, {side} the threshold {thr:g}; "
                         f"the crossing is more than {tol} away (is the ratio ‖∇x_0‖ / ‖∇x_{L}‖?)")


# Exercise 5 ---------------------------------------------------------------------------------------

def post_relu_jacobian(fn, cases=((6, 5, 0),)):
    """Check ``fn(blk, x) -> ∂y/∂x`` for ``y = ReLU(x + F(x))`` (tanh branch); each case is (width, hidden, seed)."""
    for width, hidden, seed in cases:
        blk = flow.block(width, hidden, activation="tanh", post="relu", scale3=1.5, seed=seed)
        x = _vec(width, seed + 100)
        ref = torch.autograd.functional.jacobian(blk, x)
        out = as_float64(call(fn, "post_relu_jacobian", blk, x.clone()), (width, width),
                      f"post_relu_jacobian for width {width}")
        if _close(out, ref):
            continue
        with torch.no_grad():
            W2, b2, W3 = blk.lin2.weight, blk.lin2.bias, blk.lin3.weight
            inner = torch.eye(width, dtype=torch.float64) + W3 @ torch.diag(1 - torch.tanh(W2 @ x + b2) ** 2) @ W2
            D = torch.diag((x + blk.branch(x) > 0).to(torch.float64))
            Dx = torch.diag((x > 0).to(torch.float64))
        mistakes = {
            "the ReLU's mask is missing: this is I + J, the Jacobian without the ReLU after the addition": inner,
            "the mask multiplies on the wrong side: the ReLU comes last, so its diag(1[y > 0]) goes on the left":
                inner @ D,
            "the mask uses x > 0; the ReLU acts on y = x + F(x), so the mask is 1[x + F(x) > 0]": Dx @ inner,
            "the mask is applied to the branch only; it multiplies the identity term too": torch.eye(width) + D @ (
                inner - torch.eye(width, dtype=torch.float64)),
        }
        for message, wrong in mistakes.items():
            if _close(out, wrong.to(torch.float64)):
                raise AssertionError(f"post_relu_jacobian is wrong: {message}")
        raise AssertionError(f"post_relu_jacobian differs from autograd (relative error {_rel(out, ref):.2g}); "
                             "it should be diag(1[x + F(x) > 0]) (I + W3 diag(tanh'(W2 x + b2)) W2)")

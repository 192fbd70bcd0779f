"""Checkers for chapter 3's exercises (how gradients flow through skip connections).

Every checker is an :class:`~gradflow.checks.exercise.Exercise`: cases drawn from a seed as plain data,
a probe that builds the blocks from the case and calls the student's function (in the student's
process; a sandbox when grading), and a judge that rebuilds the same blocks, computes the reference
with autograd or :mod:`gradflow.flow`, and names the mistake. Outputs may be torch tensors, NumPy
arrays or nested lists; float32 answers are judged to float32 precision.

=========  =======================  ==================  =======================================
exercise   answer                   grade_id            page
=========  =======================  ==================  =======================================
1          ``block_grad``           ``ch3-ex1-tests``   gradient_flow.ipynb (the block's gradient)
2          ``branch_terms``         ``ch3-ex2-tests``   gradient_flow.ipynb (He et al.'s eq. 5)
3          ``path_split``           ``ch3-ex3-tests``   gradient_flow.ipynb (paths)
4          ``post_relu_jacobian``   ``ch3-ex4-tests``   gradient_flow.ipynb (a ReLU after the sum)
5          ``lambda_star``          ``ch3-ex5-tests``   measured.ipynb (the growth law)
=========  =======================  ==================  =======================================
"""

import functools

import numpy as np
import torch

from .. import flow
from . import as_array, as_scalar
from .exercise import Exercise, register, value

__all__ = ["BLOCK_GRAD", "BRANCH_TERMS", "PATH_SPLIT", "POST_RELU_JACOBIAN", "LAMBDA_STAR", "block_grad",
           "branch_terms", "path_split", "post_relu_jacobian", "lambda_star", "lambda_reference", "LAMBDA_TASK"]

F64 = torch.float64

# The stacks of exercise 5: λ* where ‖∇x_0 E‖ / ‖∇x_L E‖ falls to the threshold.
LAMBDA_TASK = dict(width=16, activation="tanh", scale3=0.5, threshold=1e-3, lo=0.5, hi=1.0)


def _vec(shape, seed):
    return torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(int(seed)))


def _seeds(seed, n):
    return [int(s) for s in np.random.default_rng(int(seed)).integers(0, 2**31, size=n)]


def _answer(out, name, shape):
    """The probe's output as a float64 tensor of ``shape``, and whether it came in float64."""
    raw = value(out, name)
    precise = not (isinstance(raw, np.ndarray) and raw.dtype.kind == "f" and raw.dtype != np.float64)
    arr = as_array(raw, name)
    if arr.shape != tuple(shape):
        raise AssertionError(f"{name} returned shape {arr.shape}; expected {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        raise AssertionError(f"{name} returned NaN or infinite values")
    return torch.from_numpy(arr), precise


def _close(a, b, precise=True):
    """``a`` matches ``b`` to float64 rounding (or float32's, for a float32 answer)."""
    rtol, atol = (1e-7, 1e-8) if precise else (1e-4, 1e-5)
    return torch.allclose(a, b.to(F64), rtol=rtol, atol=atol * (1 + b.abs().max().item()))


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# ---------------------------------------------------------------- exercise 1: the block's gradient, batched

def _block_grad_cases(seed):
    shapes = [(5, 7, 3), (4, 4, 1), (8, 3, 10), (3, 9, 2)]
    return [{"width": w, "hidden": h, "batch": b, "seed": s} for (w, h, b), s in zip(shapes, _seeds(seed, 4),
                                                                                        strict=True)]


def _block_grad_problem(case):
    blk = flow.block(case["width"], case["hidden"], activation="sigmoid", seed=case["seed"])
    X = _vec((case["batch"], case["width"]), case["seed"] + 100)
    G = _vec((case["batch"], case["width"]), case["seed"] + 200)
    return blk, X, G


def _block_grad_probe(fn, case):
    blk, X, G = _block_grad_problem(case)
    return fn(blk, X.clone(), G.clone())


def _block_grad_judge(case, out):
    blk, X, G = _block_grad_problem(case)
    width, hidden = case["width"], case["hidden"]
    got, precise = _answer(out, f"block_grad for X of shape {tuple(X.shape)}", X.shape)
    Xr = X.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(blk(Xr), Xr, grad_outputs=G)
    if _close(got, ref, precise):
        return
    W2, b2, W3 = flow.weights(blk)
    s = torch.sigmoid(X @ W2.T + b2)
    s0 = torch.sigmoid(X @ W2.T)
    branch = ((G @ W3) * s * (1 - s)) @ W2
    mistakes = {
        "the identity term G is missing (you returned only the branch term)": branch,
        "the activation term σ'(z) is missing (the branch term is G @ W3 @ W2 without σ')": G + G @ W3 @ W2,
        "you multiplied by σ(z) where the chain rule needs σ'(z) = σ(z)(1 − σ(z)), at z = X @ W2.T + b2":
            G + ((G @ W3) * s) @ W2,
        "the bias b2 is missing from z = X @ W2.T + b2": G + ((G @ W3) * s0 * (1 - s0)) @ W2,
        "the identity term G is counted twice": 2 * G + branch,
        "the branch term is counted twice": G + 2 * branch,
    }
    if W2.shape[0] == W2.shape[1]:
        mistakes["W2 and W3 are swapped: in row form the gradient meets W3 first, G @ W3, then σ', then W2"] = \
            G + ((G @ W2) * s * (1 - s)) @ W3
    for message, wrong in mistakes.items():
        if _close(got, wrong, precise):
            raise AssertionError(f"block_grad is wrong for width {width}, hidden {hidden}: {message}")
    raise AssertionError(f"block_grad differs from autograd (relative error {_rel(got, ref):.2g}) for width "
                         f"{width}, hidden {hidden}, batch {case['batch']}; check the order and transposes: "
                         "in row form ∇_X L = G + ((G @ W3) * σ'(z)) @ W2")


BLOCK_GRAD = register("ch3-ex1-tests", Exercise(
    "block_grad", ["block_grad"], _block_grad_cases, _block_grad_probe, _block_grad_judge))


def block_grad(fn, hidden=False):
    """Exercise 1: ``fn(blk, X, G) -> ∇_X L`` for a sigmoid block and a batch of rows."""
    BLOCK_GRAD.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 2: He et al.'s eq. 5, block by block

def _branch_cases(seed):
    specs = [(5, 8), (3, 4), (7, 6), (1, 5)]
    return [{"depth": d, "width": w, "seed": s} for (d, w), s in zip(specs, _seeds(seed, 4), strict=True)]


def _branch_problem(case):
    blocks = flow.stack(case["depth"], width=case["width"], activation="tanh", scale3=0.8, seed=case["seed"])
    return blocks, _vec(case["width"], case["seed"] + 100), _vec(case["width"], case["seed"] + 200)


def _branch_probe(fn, case):
    blocks, x0, g = _branch_problem(case)
    return fn(blocks, x0.clone(), g.clone())


def _branch_rows(blocks, x0, g):
    """Row i: (∂F_i(x_{i-1}) / ∂x_0)ᵀ g, by autograd (the reference)."""
    x = x0.clone().requires_grad_(True)
    xs, rows = flow.states(blocks, x), []
    for blk, xi in zip(blocks, xs[:-1], strict=True):
        (r,) = torch.autograd.grad(blk.branch(xi), x, grad_outputs=g, retain_graph=True)
        rows.append(r)
    return torch.stack(rows)


def _branch_judge(case, out):
    blocks, x0, g = _branch_problem(case)
    L, n = case["depth"], case["width"]
    name = f"branch_terms for {L} blocks of width {n}"
    raw = value(out, name)
    arr = as_array(raw, name)
    if arr.shape in ((n,), (1, n)) and L > 1:
        raise AssertionError(f"{name} returned one vector; return one row per block, shape ({L}, {n}): row i is "
                             "the part of the branch term that comes from F_i (their sum is He et al.'s branch term)")
    got, precise = _answer(raw, name, (L, n))
    ref = _branch_rows(blocks, x0, g)
    if _close(got, ref, precise):
        return
    full = flow.input_grad(blocks, x0, g)
    Js = flow.branch_jacobians(blocks, x0)
    local = torch.stack([J.T @ g for J in Js])
    mistakes = {
        "row i uses only F_i's own Jacobian at x_(i−1), J_iᵀ g: x_(i−1) depends on x_0 through the blocks before "
        "it, so differentiate F_i(x_(i−1)) with respect to x_0, computing x_(i−1) from x0 inside the graph": local,
        "a transpose is missing: each row is (∂F_i/∂x_0)ᵀ g, not (∂F_i/∂x_0) g":
            torch.stack([torch.autograd.functional.jacobian(
                lambda v, i=i: blocks[i].branch(flow.states(blocks[:i], v)[-1]), x0) @ g for i in range(L)]),
        "your rows are cumulative (row i holds the branch terms of blocks 1..i); each row should hold one block's":
            torch.cumsum(ref, dim=0),
        "each row includes the identity term g: return only the branch parts (their sum plus g is the gradient)":
            ref + g,
    }
    for message, wrong in mistakes.items():
        if _close(got, wrong.detach(), precise):
            raise AssertionError(f"branch_terms is wrong ({L} blocks): {message}")
    total = got.sum(dim=0) + g
    if _close(total, full, precise):
        bad = [i for i in range(L) if not _close(got[i], ref[i], precise)]
        raise AssertionError(f"the rows add up to He et al.'s branch term (g plus their sum is the gradient), but "
                             f"rows {bad} are wrong ({L} blocks): row i must hold the part that comes from F_i alone")
    raise AssertionError(f"g plus the sum of your rows is not the gradient at x_0 (relative error "
                         f"{_rel(total, full):.2g}, {L} blocks of width {n}): each row is (∂F_i(x_(i−1))/∂x_0)ᵀ g")


BRANCH_TERMS = register("ch3-ex2-tests", Exercise(
    "branch_terms", ["branch_terms"], _branch_cases, _branch_probe, _branch_judge))


def branch_terms(fn, hidden=False):
    """Exercise 2: ``fn(blocks, x0, g)`` returns the rows ``(∂F_i(x_{i-1})/∂x_0)ᵀ g``, one per block."""
    BRANCH_TERMS.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 3: paths through scaled shortcuts

def _split_cases(seed):
    specs = [(5, 6, 0.8), (1, 3, 0.5), (7, 4, 1.0), (6, 5, 1.2)]
    return [{"depth": d, "width": w, "lam": lam, "seed": s}
            for (d, w, lam), s in zip(specs, _seeds(seed, 4), strict=True)]


def _split_problem(case):
    blocks = flow.stack(case["depth"], width=case["width"], scale3=0.8, shortcut=case["lam"], seed=case["seed"])
    x, g = _vec(case["width"], case["seed"] + 100), _vec(case["width"], case["seed"] + 200)
    return blocks, flow.branch_jacobians(blocks, x), x, g


def _split_probe(fn, case):
    _, Js, _, g = _split_problem(case)
    return fn([J.clone() for J in Js], g.clone(), case["lam"])


def _reference_split(Js, g, lam, order="output-first", transpose=True, lam_on="skip"):
    rows = torch.zeros(len(Js) + 1, g.shape[0], dtype=F64)
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


def _split_judge(case, out):
    blocks, Js, x, g = _split_problem(case)
    L, n, lam = case["depth"], case["width"], case["lam"]
    got, precise = _answer(out, f"path_split for {L} blocks of width {n}", (L + 1, n))
    ref = flow.path_gradients(Js, g, shortcut=lam)
    if _close(got, ref, precise):
        return
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
        if _close(got, wrong, precise):
            raise AssertionError(f"path_split is wrong (L = {L}, λ = {lam}): {message}")
    if not _close(got.sum(dim=0), full, precise):
        raise AssertionError(f"the rows of path_split do not add up to the full gradient (relative error "
                             f"{_rel(got.sum(dim=0), full):.2g}, L = {L}, λ = {lam})")
    bad = [k for k in range(L + 1) if not _close(got[k], ref[k], precise)]
    raise AssertionError(f"the rows add up to the full gradient, but rows {bad} are wrong (L = {L}, λ = {lam}): "
                         "row k must hold only the paths through exactly k branches")


PATH_SPLIT = register("ch3-ex3-tests", Exercise(
    "path_split", ["path_split"], _split_cases, _split_probe, _split_judge))


def path_split(fn, hidden=False):
    """Exercise 3: ``fn(jacobians, g, lam) -> rows`` of shape (L+1, n), row k = C_kᵀ g."""
    PATH_SPLIT.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 4: a ReLU after the addition

def _post_cases(seed):
    specs = [(6, 5), (4, 4), (8, 3), (5, 9)]
    return [{"width": w, "hidden": h, "seed": s} for (w, h), s in zip(specs, _seeds(seed, 4), strict=True)]


def _post_problem(case):
    blk = flow.block(case["width"], case["hidden"], activation="tanh", post="relu", scale3=1.5, seed=case["seed"])
    return blk, _vec(case["width"], case["seed"] + 100)


def _post_probe(fn, case):
    blk, x = _post_problem(case)
    return fn(blk, x.clone())


def _post_judge(case, out):
    blk, x = _post_problem(case)
    width = case["width"]
    got, precise = _answer(out, f"post_relu_jacobian for width {width}", (width, width))
    ref = torch.autograd.functional.jacobian(blk, x)
    if _close(got, ref, precise):
        return
    eye = torch.eye(width, dtype=F64)
    with torch.no_grad():
        W2, b2, W3 = flow.weights(blk)
        inner = eye + W3 @ torch.diag(1 - torch.tanh(W2 @ x + b2) ** 2) @ W2
        D = torch.diag((x + blk.branch(x) > 0).to(F64))
        Dx = torch.diag((x > 0).to(F64))
    mistakes = {
        "the ReLU's mask is missing: this is I + J, the Jacobian without the ReLU after the addition": inner,
        "the mask multiplies on the wrong side: the ReLU comes last, so its diag(1[y > 0]) goes on the left":
            inner @ D,
        "the mask uses x > 0; the ReLU acts on y = x + F(x), so the mask is 1[x + F(x) > 0]": Dx @ inner,
        "the mask is applied to the branch only; it multiplies the identity term too": eye + D @ (inner - eye),
        "this is the transpose of the Jacobian: ∂y/∂x has one row per output y_i": (D @ inner).T,
    }
    for message, wrong in mistakes.items():
        if _close(got, wrong, precise):
            raise AssertionError(f"post_relu_jacobian is wrong: {message}")
    raise AssertionError(f"post_relu_jacobian differs from autograd (relative error {_rel(got, ref):.2g}); "
                         "it should be diag(1[x + F(x) > 0]) (I + W3 diag(tanh'(W2 x + b2)) W2)")


POST_RELU_JACOBIAN = register("ch3-ex4-tests", Exercise(
    "post_relu_jacobian", ["post_relu_jacobian"], _post_cases, _post_probe, _post_judge))


def post_relu_jacobian(fn, hidden=False):
    """Exercise 4: ``fn(blk, x) -> ∂y/∂x`` for ``y = ReLU(x + F(x))`` with a tanh branch."""
    POST_RELU_JACOBIAN.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 5: how small may λ be?

def task_ratio(lam, depth, seed, task=LAMBDA_TASK):
    """‖∇x_0 E‖ / ‖∇x_L E‖ for the exercise's stack with shortcut ``lam`` (input seed+3, gradient seed+4)."""
    blocks = flow.stack(depth, width=task["width"], activation=task["activation"], scale3=task["scale3"],
                        shortcut=lam, seed=seed)
    return flow.grad_ratio(blocks, flow.randn(task["width"], seed=seed + 3), flow.randn(task["width"], seed=seed + 4))


@functools.lru_cache(maxsize=64)
def lambda_reference(depth, seed, tol=1e-4, task=None):
    """The λ at which the exercise's gradient ratio crosses the threshold, by bisection (the ratio grows with λ)."""
    task = LAMBDA_TASK if task is None else task
    lo, hi = task["lo"], task["hi"]
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if task_ratio(mid, depth, seed, task) < task["threshold"] else (lo, mid)
    return (lo + hi) / 2


def _lambda_cases(seed):
    rng = np.random.default_rng(int(seed))
    return [{"depth": d, "seed": int(s)} for d, s in zip((30, 20, 40), rng.integers(0, 2**31 - 10, size=3),
                                                         strict=True)]


def _lambda_probe(fn, case):
    return fn(case["depth"], case["seed"])


TOLERANCE = 0.005  # the λ asked for: within this of the crossing


def _lambda_judge(case, out):
    depth, seed = case["depth"], case["seed"]
    name = f"lambda_star({depth}, {seed})"
    raw = value(out, name)
    if raw is None:
        raise AssertionError(f"{name} returned None: return the λ you found (a number between 0.5 and 1)")
    lam = as_scalar(raw, name)
    thr = LAMBDA_TASK["threshold"]
    if abs(lam - thr ** (1 / depth)) < 1e-3:
        raise AssertionError(f"{name} = {lam:.4f} is threshold^(1/{depth}), where the direct path alone (λ^{depth}) "
                             f"falls to {thr:g}; the branches carry gradient too, so measure the ratio with "
                             "flow.grad_ratio on the stack")
    if not 0 < lam < 2:
        raise AssertionError(f"{name} = {lam:g} is outside the range searched (0.5 to 1)")
    # The crossing is within TOLERANCE of lam exactly when the ratio is below the threshold at
    # lam - TOLERANCE and not below it at lam + TOLERANCE: the ratio crosses the threshold once on
    # [0.5, 1] (test_lambda_ratio_crosses_once), so two ratios decide, not a bisection of the judge's own.
    below, above = (task_ratio(lam + s * TOLERANCE, depth, seed) for s in (-1, 1))
    if below < thr <= above:
        return
    if abs(lam - thr ** (1 / (depth - 1))) < 1e-3 or abs(lam - thr ** (1 / (depth + 1))) < 1e-3:
        raise AssertionError(f"{name} = {lam:.4f} is the threshold to the power 1/{depth - 1} or 1/{depth + 1}; the "
                             f"stack has {depth} blocks, and the branches carry gradient too: measure the ratio "
                             "with flow.grad_ratio")
    ratio = task_ratio(lam, depth, seed)
    side = "above" if ratio >= thr else "below"
    raise AssertionError(f"at λ = {lam:.4f} the gradient ratio of the stack (depth {depth}, seed {seed}) is "
                         f"{ratio:.3g}, {side} the threshold {thr:g}; the crossing is more than {TOLERANCE} away "
                         f"(is the ratio ‖∇x_0‖ / ‖∇x_{depth}‖, with the input randn(16, seed=seed + 3) and the "
                         "gradient randn(16, seed=seed + 4)?)")


LAMBDA_STAR = register("ch3-ex5-tests", Exercise(
    "lambda_star", ["lambda_star"], _lambda_cases, _lambda_probe, _lambda_judge, timeout=60))


def lambda_star(fn, hidden=False):
    """Exercise 5: ``fn(depth, seed)`` finds the λ at which the stack's gradient ratio falls to 10^-3."""
    LAMBDA_STAR.check(fn, hidden=hidden)

"""Checkers for chapter 2's exercises (residual blocks).

Each checker calls the student's function on fresh seeded inputs, compares with a reference, and raises
``AssertionError`` with a message that names the mistake. Outputs may be torch tensors, numpy arrays or
nested lists; loops and vectorised code are both fine.
"""

import math

import numpy as np
import torch
from torch import nn

from . import as_float64, call

__all__ = ["residual_block", "zero_last_linear", "paths_by_length", "projection_block", "branch_scale"]

ATOL = 1e-9  # float64 throughout; any correct formula is within ~1e-14
TIMEOUT = 20  # seconds a student's function may run (only enforced in the main thread, on Unix)


def _call(fn, name, *args, hint=""):
    """:func:`gradflow.checks.call` with this chapter's time limit (read at call time)."""
    return call(fn, name, *args, hint=hint, timeout=TIMEOUT)


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


_SHAPE_HINT = ("Weights are stored like nn.Linear's: W has shape (out, in), so a batch x of row vectors "
               "is multiplied as x @ W.T.")


def _diagnose(out, expected, candidates, what):
    """Raise an AssertionError naming the first known mistake ``out`` matches, else the largest error."""
    if torch.allclose(out, expected, rtol=0, atol=ATOL):
        return
    for wrong, message in candidates:
        if wrong.shape == out.shape and torch.allclose(out, wrong, rtol=0, atol=ATOL):
            raise AssertionError(f"{what}: {message}")
    err = (out - expected).abs().max().item()
    raise AssertionError(f"{what}: the output differs from the correct one by up to {err:.3g}")


def residual_block(fn, seed=0, batch=4, d=5, hidden=7):
    """Check exercise 1: ``fn(x, W1, b1, W2, b2) == x + relu(x @ W1.T + b1) @ W2.T + b2``."""
    gen = torch.Generator().manual_seed(seed)
    x, W1, b1 = _randn(gen, batch, d), _randn(gen, hidden, d), _randn(gen, hidden)
    W2, b2 = _randn(gen, d, hidden), _randn(gen, d)
    args = [t.clone() for t in (x, W1, b1, W2, b2)]
    out = as_float64(_call(fn, "residual_block", *args, hint=_SHAPE_HINT), (batch, d), "residual_block")
    branch = torch.relu(x @ W1.T + b1) @ W2.T + b2
    _diagnose(out, x + branch, [
        (branch, "this is F(x) alone: the block must add the input, y = x + F(x)"),
        (torch.relu(x + branch), "you applied relu after the addition (the original post-activation "
                                  "block); this exercise asks for y = x + F(x), nothing after the sum"),
        (x + torch.relu(x @ W1.T + b1) @ W2.T, "the bias b2 of the second layer is missing"),
        (x + torch.relu(x @ W1.T) @ W2.T + b2, "the bias b1 of the first layer is missing"),
        (x + (x @ W1.T + b1) @ W2.T + b2, "the relu between the two layers is missing"),
        (2 * x + branch, "the input is added twice"),
    ], "residual_block")


def _branches(seed, d, h):
    """Two seeded branches with non-zero biases: a two-layer MLP and a pre-activation BatchNorm branch."""
    gen = torch.Generator().manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d)).double()
    pre = nn.Sequential(nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(),
                        nn.Linear(h, d)).double()
    with torch.no_grad():
        for p in list(mlp.parameters()) + list(pre.parameters()):
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5)  # all non-zero
    return [("a Linear-ReLU-Linear branch", mlp), ("a pre-activation BatchNorm branch", pre)]


def zero_last_linear(fn, seed=0, widths=(6, 10)):
    """Check exercise 2: ``fn(branch)`` zeroes the last ``nn.Linear`` of ``branch`` in place, nothing else."""
    d, h = widths
    for label, branch in _branches(seed, d, h):
        linears = [m for m in branch.modules() if isinstance(m, nn.Linear)]
        before = {k: v.clone() for k, v in branch.state_dict().items()}
        _call(fn, "zero_last_linear_", branch)
        linears = [m for m in branch.modules() if isinstance(m, nn.Linear)]  # in case a layer was replaced
        last = linears[-1]
        if all((m.weight == 0).all() and (m.bias == 0).all() for m in linears):
            raise AssertionError("you zeroed every nn.Linear of the branch; then the earlier layers get zero "
                                 "gradients and the block never learns. Zero only the last one")
        if (linears[0].weight == 0).all() and not (last.weight == 0).all():
            raise AssertionError("you zeroed the first nn.Linear of the branch; zero the last one "
                                 "(the layer whose output is added to x)")
        if not (last.weight == 0).all():
            raise AssertionError(f"on {label}, the last nn.Linear's weight is not zero "
                                 "(did you modify a copy instead of the branch itself, in place?)")
        if not (last.bias == 0).all():
            raise AssertionError("the last nn.Linear's weight is zero but its bias is not: the block then "
                                 "computes x + b, not x")
        last_names = {name for name, p in branch.named_parameters() if p is last.weight or p is last.bias}
        for name, value in branch.state_dict().items():
            if name.split(".")[-1] in ("running_mean", "running_var", "num_batches_tracked"):
                continue
            if name not in last_names and not torch.equal(value, before[name]):
                raise AssertionError(f"on {label}, parameter {name!r} changed; only the last nn.Linear "
                                     "should be zeroed")
        x = _randn(torch.Generator().manual_seed(seed + 1), 8, d)
        with torch.no_grad():
            if not torch.equal(x + branch(x), x):
                raise AssertionError(f"on {label}, x + F(x) is not exactly x after your function")


def paths_by_length(fn, lengths=(0, 1, 4, 10)):
    """Check exercise 3: ``fn(L)[k] == C(L, k)`` for ``k = 0..L``."""
    for L in lengths:
        out = _call(fn, "paths_by_length", L, hint="there are 2^L paths: count them with a formula instead")
        if out is None:
            raise AssertionError("paths_by_length returned None: did you forget `return`?")
        if isinstance(out, torch.Tensor):
            out = out.tolist()
        try:
            values = list(np.asarray(out).ravel().tolist()) if not isinstance(out, (list, tuple)) else list(out)
            values = [v.item() if hasattr(v, "item") else v for v in values]
            assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        except (AssertionError, TypeError, ValueError):
            raise AssertionError(f"paths_by_length({L}) should return a list of numbers, got {out!r:.80}") from None
        expected = [math.comb(L, k) for k in range(L + 1)]
        if len(values) == 1 and values[0] == 2**L and L > 0:
            raise AssertionError(f"paths_by_length({L}) returned [{2**L}], the total number of paths; return "
                                 f"the number for each length k = 0..{L}")
        if len(values) != L + 1:
            extra = " (k runs from 0 to L, both included)" if len(values) == L else ""
            raise AssertionError(f"paths_by_length({L}) returned {len(values)} numbers; expected L + 1 = "
                                 f"{L + 1}{extra}")
        for k, (v, e) in enumerate(zip(values, expected, strict=True)):
            if not math.isclose(v, e, rel_tol=1e-12):
                raise AssertionError(f"paths_by_length({L})[{k}] is {v}; the number of paths through exactly "
                                     f"{k} of {L} branches is C({L}, {k}) = {e}")


def projection_block(fn, seed=0, d_in=5, d_out=3, hidden=4):
    """Check exercise 4: ``fn(x, W1, b1, W2, b2, Ws)`` with a projection ``Ws``, and with ``Ws=None``."""
    gen = torch.Generator().manual_seed(seed)
    x, W1, b1 = _randn(gen, 6, d_in), _randn(gen, hidden, d_in), _randn(gen, hidden)
    W2, b2, Ws = _randn(gen, d_out, hidden), _randn(gen, d_out), _randn(gen, d_out, d_in)
    branch = torch.relu(x @ W1.T + b1) @ W2.T + b2
    args = [t.clone() for t in (x, W1, b1, W2, b2, Ws)]
    out = as_float64(_call(fn, "projection_block", *args, hint=_SHAPE_HINT), (6, d_out), "projection_block")
    _diagnose(out, x @ Ws.T + branch, [
        (branch, "the shortcut x @ Ws.T is missing"),
        (x @ Ws.T, "the branch F(x) is missing"),
        (torch.relu(x @ Ws.T + branch), "you applied relu after the addition; nothing comes after the sum"),
    ], "projection_block")
    W2s, b2s = _randn(gen, d_in, hidden), _randn(gen, d_in)
    args = [t.clone() for t in (x, W1, b1, W2s, b2s)]
    out = as_float64(_call(fn, "projection_block", *args, None,
                        hint="with Ws=None the shortcut is the identity: use x itself"),
                  (6, d_in), "projection_block with Ws=None")
    same = torch.relu(x @ W1.T + b1) @ W2s.T + b2s
    _diagnose(out, x + same, [(same, "with Ws=None the block must still add x (the identity shortcut)")],
              "projection_block with Ws=None")


def _growth(a, L):
    return math.exp(L * math.log1p(a * a))  # (1 + a^2)^L, without overflow for moderate values


def branch_scale(fn, depths=(1, 2, 10, 50, 200), measure=False):
    """Check exercise 5: ``fn(L)`` gives ``1.5 <= (1 + a^2)^L <= 4`` (and, with ``measure``, on a real net)."""
    for L in depths:
        out = _call(fn, "branch_scale", L)
        try:
            a = float(out.item() if hasattr(out, "item") else out)
        except (TypeError, ValueError, RuntimeError):
            raise AssertionError(f"branch_scale({L}) should return a number, got {out!r:.80}") from None
        if not math.isfinite(a) or a <= 0:
            raise AssertionError(f"branch_scale({L}) returned {a}; the scale must be a positive number")
        try:
            growth = _growth(a, L)
        except OverflowError:
            growth = math.inf
        if growth > 4:
            raise AssertionError(f"with a = {a:.4g} and L = {L} the mean square grows by (1 + a²)^L = {growth:.3g}, "
                                 "more than 4: the scale is too large for this depth (does it depend on L?)")
        if growth < 1.5:
            raise AssertionError(f"with a = {a:.4g} and L = {L} the mean square grows only by (1 + a²)^L = "
                                 f"{growth:.4g}, less than 1.5: the branches barely contribute; a is too small")
    if measure:
        from ..data import digits
        from ..nets import mlp

        a = float(fn(50))
        X = digits(seed=0)[0]
        with torch.no_grad():
            hs = mlp(50, width=256, residual=True, init="he", branch_scale=a, seed=0).hidden(X)
        ratio = (hs[-1].pow(2).mean() / hs[0].pow(2).mean()).item()
        if not 1.2 <= ratio <= 5:
            raise AssertionError(f"on a real 50-block network, a = {a:.4g} makes the mean square grow by "
                                 f"{ratio:.3g}; expected between 1.5 and 4 (up to sampling noise)")

"""The chapter 2 checkers accept correct variants and reject common mistakes with a message that names them."""

import math

import numpy as np
import pytest
import torch

from gradflow.checks import residual as check


def rejects(checker, fn, *words, **kwargs):
    with pytest.raises(AssertionError) as err:
        checker(fn, **kwargs)
    message = str(err.value)
    for w in words:
        assert w.lower() in message.lower(), f"{w!r} not in {message!r}"
    return message


# exercise 1 ---------------------------------------------------------------------------------------

def block_torch(x, W1, b1, W2, b2):
    return x + torch.relu(x @ W1.T + b1) @ W2.T + b2


def block_numpy(x, W1, b1, W2, b2):
    x, W1, b1, W2, b2 = (np.asarray(t) for t in (x, W1, b1, W2, b2))
    return x + np.maximum(x @ W1.T + b1, 0) @ W2.T + b2


def block_loops(x, W1, b1, W2, b2):
    out = []
    for row in x:
        h = torch.clamp(W1 @ row + b1, min=0)
        out.append((row + W2 @ h + b2).tolist())
    return out


def block_inplace(x, W1, b1, W2, b2):
    x += torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, W1, b1)), W2, b2)
    return x


@pytest.mark.parametrize("fn", [block_torch, block_numpy, block_loops, block_inplace])
def test_residual_block_accepts(fn):
    check.residual_block(fn)
    check.residual_block(fn, seed=11, batch=1, d=3, hidden=9)


def test_residual_block_rejects():
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: torch.relu(x @ W1.T + b1) @ W2.T + b2,
            "F(x) alone", "add the input")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: torch.relu(x + torch.relu(x @ W1.T + b1) @ W2.T + b2),
            "relu after the addition")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: x + torch.relu(x @ W1 + b1) @ W2 + b2,
            "raised RuntimeError", "x @ W.T")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: x + torch.relu(x @ W1.T + b1) @ W2.T, "b2")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: x + (x @ W1.T + b1) @ W2.T + b2, "relu", "missing")


def test_residual_block_survives_bad_outputs():
    rejects(check.residual_block, lambda *a: None, "returned None")
    rejects(check.residual_block, lambda *a: "hello", "not an array")
    rejects(check.residual_block, lambda x, *a: x[0], "shape (5,)", "expected (4, 5)")
    rejects(check.residual_block, lambda x, *a: x * float("nan"), "nan")
    rejects(check.residual_block, lambda *a: 1 / 0, "ZeroDivisionError")

    def todo(*a):
        raise NotImplementedError()

    rejects(check.residual_block, todo, "not implemented")
    rejects(check.residual_block, 42, "should be a function")


# exercise 2 ---------------------------------------------------------------------------------------

def zero_last(branch):
    last = [m for m in branch.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


def zero_last_init(branch):
    for m in reversed(branch):
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
            return branch


def zero_last_replace(branch):
    i = max(i for i, m in enumerate(branch) if isinstance(m, torch.nn.Linear))
    old = branch[i]
    new = torch.nn.Linear(old.in_features, old.out_features).to(old.weight.dtype)
    torch.nn.init.zeros_(new.weight)
    torch.nn.init.zeros_(new.bias)
    branch[i] = new
    return branch


@pytest.mark.parametrize("fn", [zero_last, zero_last_init, zero_last_replace])
def test_zero_last_linear_accepts(fn):
    check.zero_last_linear(fn)
    check.zero_last_linear(fn, seed=5, widths=(3, 17))


def test_zero_last_linear_rejects():
    def zero_all(branch):
        for m in branch.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.zeros_(m.weight)
                torch.nn.init.zeros_(m.bias)

    def zero_first(branch):
        m = [m for m in branch.modules() if isinstance(m, torch.nn.Linear)][0]
        torch.nn.init.zeros_(m.weight)
        torch.nn.init.zeros_(m.bias)

    def weight_only(branch):
        torch.nn.init.zeros_([m for m in branch.modules() if isinstance(m, torch.nn.Linear)][-1].weight)

    def on_a_copy(branch):
        import copy

        zero_last(copy.deepcopy(branch))

    def also_bn(branch):
        zero_last(branch)
        for m in branch.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                torch.nn.init.ones_(m.weight)

    rejects(check.zero_last_linear, zero_all, "every nn.Linear", "never learns")
    rejects(check.zero_last_linear, zero_first, "first nn.Linear")
    rejects(check.zero_last_linear, weight_only, "bias is not", "x + b")
    rejects(check.zero_last_linear, on_a_copy, "not zero", "in place")
    rejects(check.zero_last_linear, also_bn, "changed")
    rejects(check.zero_last_linear, lambda b: b.nope, "raised AttributeError")


# exercise 3 ---------------------------------------------------------------------------------------

def paths_formula(L):
    return [math.comb(L, k) for k in range(L + 1)]


def paths_pascal(L):
    row = [1]
    for _ in range(L):
        row = [a + b for a, b in zip([0] + row, row + [0], strict=True)]
    return row


def paths_numpy(L):
    return np.array([math.comb(L, k) for k in range(L + 1)], dtype=np.int64)


def paths_torch(L):
    return torch.tensor([math.comb(L, k) for k in range(L + 1)])


@pytest.mark.parametrize("fn", [paths_formula, paths_pascal, paths_numpy, paths_torch])
def test_paths_by_length_accepts(fn):
    check.paths_by_length(fn)
    check.paths_by_length(fn, lengths=(1, 7, 54, 60))


def test_paths_by_length_rejects():
    rejects(check.paths_by_length, lambda L: [math.comb(L, k) for k in range(L)], "expected L + 1", "both included")
    rejects(check.paths_by_length, lambda L: [2**L], "total number of paths")
    rejects(check.paths_by_length, lambda L: [math.comb(L, k) * 2 for k in range(L + 1)], "C(")
    rejects(check.paths_by_length, lambda L: [L] * (L + 1), "paths through exactly")
    rejects(check.paths_by_length, lambda L: None, "returned None")
    rejects(check.paths_by_length, lambda L: "abc", "list of numbers")


def test_paths_by_length_times_out(monkeypatch):
    import time

    monkeypatch.setattr(check, "TIMEOUT", 1)
    rejects(check.paths_by_length, lambda L: time.sleep(5), "took more than 1 s")


# exercise 4 ---------------------------------------------------------------------------------------

def proj_torch(x, W1, b1, W2, b2, Ws=None):
    s = x if Ws is None else x @ Ws.T
    return s + torch.relu(x @ W1.T + b1) @ W2.T + b2


def proj_numpy(x, W1, b1, W2, b2, Ws=None):
    x, W1, b1, W2, b2 = (np.asarray(t) for t in (x, W1, b1, W2, b2))
    s = x if Ws is None else x @ np.asarray(Ws).T
    return s + np.maximum(0, x @ W1.T + b1) @ W2.T + b2


@pytest.mark.parametrize("fn", [proj_torch, proj_numpy])
def test_projection_block_accepts(fn):
    check.projection_block(fn)
    check.projection_block(fn, seed=7, d_in=2, d_out=9, hidden=4)


def test_projection_block_rejects():
    rejects(check.projection_block, lambda x, W1, b1, W2, b2, Ws=None: x @ Ws + torch.relu(x @ W1.T + b1) @ W2.T + b2,
            "raised", "x @ W.T")
    rejects(check.projection_block, lambda x, W1, b1, W2, b2, Ws=None: x @ Ws.T + torch.relu(x @ W1.T + b1) @ W2.T + b2,
            "Ws=None", "identity")
    rejects(check.projection_block, lambda x, W1, b1, W2, b2, Ws=None: torch.relu(x @ W1.T + b1) @ W2.T + b2,
            "shortcut", "missing")
    rejects(check.projection_block, lambda x, W1, b1, W2, b2, Ws=None: x + torch.relu(x @ W1.T + b1) @ W2.T + b2,
            "raised RuntimeError")

    def no_identity(x, W1, b1, W2, b2, Ws=None):
        s = 0 if Ws is None else x @ Ws.T
        return s + torch.relu(x @ W1.T + b1) @ W2.T + b2

    rejects(check.projection_block, no_identity, "must still add x")


# exercise 5 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [lambda L: 1 / math.sqrt(L), lambda L: np.float64(0.9 / np.sqrt(L)),
                                lambda L: torch.tensor(1.1 / L**0.5)])
def test_branch_scale_accepts(fn):
    check.branch_scale(fn)
    check.branch_scale(fn, depths=(1, 3, 50, 999), measure=True)


def test_branch_scale_rejects():
    rejects(check.branch_scale, lambda L: 1.0, "too large", "depend on L")
    rejects(check.branch_scale, lambda L: 1 / L, "too small")
    rejects(check.branch_scale, lambda L: 0.0, "positive")
    rejects(check.branch_scale, lambda L: float("nan"), "positive")
    rejects(check.branch_scale, lambda L: "a", "should return a number")
    rejects(check.branch_scale, lambda L: 1 / math.sqrt(50), "too small", "L = 1 ")

"""The chapter 2 checkers accept correct variants, reject common mistakes with a message that names them,
and are registered under the test cells' grade ids."""

import copy
import json
import math

import numpy as np
import pytest
import torch

from gradflow.checks import exercise
from gradflow.checks import residual as check
from gradflow.nets import Block


def rejects(checker, fn, *words, **kwargs):
    with pytest.raises(AssertionError) as err:
        checker(fn, **kwargs)
    message = str(err.value)
    for w in words:
        assert w.lower() in message.lower(), f"{w!r} not in {message!r}"
    return message


EXERCISES = [check.RESIDUAL_BLOCK, check.ZERO_LAST_LINEAR, check.DEEPEN, check.GROWTH, check.BRANCH_SCALE]


def test_every_grade_id_is_registered_with_plain_cases():
    for i, ex in enumerate(EXERCISES, 1):
        assert exercise.REGISTRY[f"ch2-ex{i}-tests"] == [ex]
        for seed in (0, 1, 12345):
            cases = ex.cases(seed)
            assert json.loads(json.dumps(cases, allow_nan=False)) == cases  # plain data
        assert ex.cases(1) != ex.cases(2)  # the grader's seed changes the cases


@pytest.mark.parametrize("ex", EXERCISES)
def test_judges_never_crash_on_junk(ex):
    cases = ex.cases(0)[:1]
    for junk in (None, "x", 3, [1, 2], {"a": 1}, [{"state": 5, "F": None}] * 2, {"type": "Sequential", "layers": 7},
                 {"type": "Sequential", "layers": [{"type": "Block", "W": "w"}] * 4},
                 {"__error__": "boom", "kind": "exception"}, [[float("nan")] * 3] * 2):
        assert isinstance(ex.verdict(cases, [exercise.to_plain(junk)]), str)


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


def block_float32(x, W1, b1, W2, b2):
    x, W1, b1, W2, b2 = (t.float() for t in (x, W1, b1, W2, b2))
    return x + torch.relu(x @ W1.T + b1) @ W2.T + b2


@pytest.mark.parametrize("fn", [block_torch, block_numpy, block_loops, block_inplace, block_float32])
def test_residual_block_accepts(fn):
    check.residual_block(fn)
    check.residual_block(fn, hidden=True)


def test_residual_block_rejects():
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: torch.relu(x @ W1.T + b1) @ W2.T + b2,
            "F(x) alone", "add the input")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: torch.relu(x + torch.relu(x @ W1.T + b1) @ W2.T + b2),
            "relu after the addition")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: x + torch.relu(x @ W1 + b1) @ W2 + b2,
            "raised RuntimeError")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: x + torch.relu(x @ W1.T + b1) @ W2.T, "b2")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: x + (x @ W1.T + b1) @ W2.T + b2, "relu", "missing")
    rejects(check.residual_block, lambda x, W1, b1, W2, b2: 2 * x + torch.relu(x @ W1.T + b1) @ W2.T + b2, "twice")


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
    return branch


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
    check.zero_last_linear(fn, hidden=True)


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
        zero_last(copy.deepcopy(branch))

    def also_bn(branch):
        zero_last(branch)
        for m in branch.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                torch.nn.init.ones_(m.weight)

    rejects(check.zero_last_linear, zero_all, "every nn.Linear", "constant")
    rejects(check.zero_last_linear, zero_first, "first nn.Linear")
    rejects(check.zero_last_linear, weight_only, "bias is not", "x + b")
    rejects(check.zero_last_linear, on_a_copy, "not zero", "in place")
    rejects(check.zero_last_linear, also_bn, "changed")
    rejects(check.zero_last_linear, lambda b: b.nope, "raised AttributeError")

    def last_module(branch):  # right only while the branch ends in its last nn.Linear
        torch.nn.init.zeros_(branch[-1].weight)
        torch.nn.init.zeros_(branch[-1].bias)

    rejects(check.zero_last_linear, last_module, "Dropout", "branch.modules()")


# exercise 3 ---------------------------------------------------------------------------------------

def _new_block(n, c, dtype=torch.float64):
    new = Block(n, "relu").to(dtype)
    with torch.no_grad():
        new.linear.weight.copy_(torch.eye(n))
        new.linear.bias.copy_(-c)
    return new


def deepen_scalar_shift(blocks, X):
    blocks = copy.deepcopy(blocks)
    c = max(0.0, -blocks(X).min().item())
    with torch.no_grad():
        blocks[-1].linear.bias += c
    return torch.nn.Sequential(*blocks, _new_block(X.shape[1], torch.full((X.shape[1],), c, dtype=torch.float64)))


def deepen_per_unit_shift(blocks, X):  # a shift per unit, just enough; a list of blocks is fine
    blocks = copy.deepcopy(blocks)
    c = torch.clamp(-blocks(X).min(dim=0).values, min=0)
    with torch.no_grad():
        blocks[-1].linear.bias += c
    return [*blocks, _new_block(X.shape[1], c)]


def deepen_generous(blocks, X):  # any c ≥ −min h_L works
    blocks = copy.deepcopy(blocks)
    c = 10 * (1 + blocks(X).abs().max().item())
    with torch.no_grad():
        blocks[-1].linear.bias += c
    return torch.nn.Sequential(*blocks, _new_block(X.shape[1], torch.full((X.shape[1],), c, dtype=torch.float64)))


def deepen_float32(blocks, X):
    return torch.nn.Sequential(*deepen_scalar_shift(blocks, X)).float()


@pytest.mark.parametrize("fn", [deepen_scalar_shift, deepen_per_unit_shift, deepen_generous, deepen_float32])
def test_deepen_accepts(fn):
    check.deepen(fn)
    check.deepen(fn, hidden=True)


def test_deepen_rejects():
    n_of = lambda X: X.shape[1]  # noqa: E731

    def no_shift(blocks, X):
        return torch.nn.Sequential(*copy.deepcopy(blocks), _new_block(n_of(X), torch.zeros(n_of(X))))

    def shift_not_undone(blocks, X):
        new = deepen_scalar_shift(blocks, X)
        with torch.no_grad():
            new[-1].linear.bias.zero_()
        return new

    def shift_too_small(blocks, X):
        blocks = copy.deepcopy(blocks)
        c = 0.5 * max(0.0, -blocks(X).min().item())
        with torch.no_grad():
            blocks[-1].linear.bias += c
        return torch.nn.Sequential(*blocks, _new_block(n_of(X), torch.full((n_of(X),), c, dtype=torch.float64)))

    def in_the_middle(blocks, X):  # trivially exact (the next block applies a ReLU anyway), but not appended
        blocks = list(copy.deepcopy(blocks))
        return torch.nn.Sequential(*blocks[:1], _new_block(n_of(X), torch.zeros(n_of(X))), *blocks[1:])

    def residual_new_block(blocks, X):
        new = Block(n_of(X), "relu", residual=True).double()
        torch.nn.init.zeros_(new.linear.weight)
        torch.nn.init.zeros_(new.linear.bias)
        return torch.nn.Sequential(*copy.deepcopy(blocks), new)

    def same_depth(blocks, X):
        return copy.deepcopy(blocks)

    def not_a_stack(blocks, X):
        return blocks(X)

    rejects(check.deepen, no_shift, "relu(h_L)", "clips the negative")
    rejects(check.deepen, shift_not_undone, "shifted by c", "−c")
    rejects(check.deepen, shift_too_small, "too small")
    rejects(check.deepen, in_the_middle, "append it at the end")
    rejects(check.deepen, residual_new_block, "residual block", "plain")
    rejects(check.deepen, same_depth, "expected")
    rejects(check.deepen, not_a_stack, "returned a Tensor")
    rejects(check.deepen, lambda blocks, X: None, "returned a NoneType")

    def in_place(blocks, X):  # right function, but the caller's stack is changed
        c = max(0.0, -blocks(X).min().item())
        with torch.no_grad():
            blocks[-1].linear.bias += c
        return torch.nn.Sequential(*blocks, _new_block(n_of(X), torch.full((n_of(X),), c, dtype=torch.float64)))

    rejects(check.deepen, in_place, "copy.deepcopy(blocks)")


# exercise 4 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [lambda L, a, v: (1 + a * a * v / 2) ** L,
                                lambda L, a, v: math.exp(L * math.log1p(a**2 * v / 2)),
                                lambda L, a, v: np.prod([1 + a**2 * v / 2] * L) if L else 1.0,
                                lambda L, a, v: torch.tensor(1 + a * a * v / 2, dtype=torch.float32) ** L])
def test_growth_accepts(fn):
    check.growth(fn)
    check.growth(fn, hidden=True)


@pytest.mark.parametrize("fn, words", [
    (lambda L, a, v: (1 + a * a * v) ** L, "half of the mean square"),
    (lambda L, a, v: (1 + a * v / 2) ** L, "enters squared"),
    (lambda L, a, v: (1 + a * a) ** L, "He case v = 2"),
    (lambda L, a, v: 1 + L * a * a * v / 2, "product, not a sum"),
    (lambda L, a, v: (a * a * v / 2) ** L, "plain stack"),
    (lambda L, a, v: (1 + a * a * v / 2) ** (L / 2), "root mean square"),
    (lambda L, a, v: (1 + a * a * v / 2) ** (L - 1), "one block too few"),
    (lambda L, a, v: (1 + a * a * v / 4) ** L, "once, not twice"),
    (lambda L, a, v: 2.0, "variance law gives"),
    (lambda L, a, v: None, "returned None"),
])
def test_growth_rejects(fn, words):
    rejects(check.growth, fn, words)


# exercise 5 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [lambda L: 1 / math.sqrt(L), lambda L: np.float64(0.9 / np.sqrt(L)),
                                lambda L: torch.tensor(1.1 / L**0.5)])
def test_branch_scale_accepts(fn):
    check.branch_scale(fn)
    check.branch_scale(fn, hidden=True)


@pytest.mark.parametrize("bound", [4.0, 1.5])
def test_branch_scale_accepts_the_exact_boundaries(bound):
    """Issue 13: √(4^(1/L) − 1) and √(1.5^(1/L) − 1) were rejected by rounding; in float32 too they pass."""
    check.branch_scale(lambda L: math.sqrt(bound ** (1 / L) - 1), hidden=True)
    check.branch_scale(lambda L: torch.sqrt(torch.tensor(bound) ** (1 / L) - 1), hidden=True)


def test_branch_scale_rejects():
    rejects(check.branch_scale, lambda L: 1.0, "too large", "depend on L")
    rejects(check.branch_scale, lambda L: 1 / L, "too small")
    rejects(check.branch_scale, lambda L: 0.0, "positive")
    rejects(check.branch_scale, lambda L: -0.1, "positive")
    rejects(check.branch_scale, lambda L: float("nan"), "not a finite number")
    rejects(check.branch_scale, lambda L: "a", "not an array of numbers")
    rejects(check.branch_scale, lambda L: [0.1, 0.2], "single number")
    rejects(check.branch_scale, lambda L: 1 / math.sqrt(50), "too small", "L = 1 ")
    message = rejects(check.branch_scale, lambda L: math.sqrt(4.01 ** (1 / L) - 1), "too large")
    assert "float64" in message  # just outside the bound: the message says precision may be the problem

"""The chapter 1 checkers accept correct variants and reject common mistakes with a message naming them."""

import math

import numpy as np
import pytest
import torch

from gradflow.checks import vanishing as ck

# ---------------------------------------------------------------- exercise 1


def sp_torch(z):
    s = torch.sigmoid(z)
    return s * (1 - s)


def sp_numpy(z):  # numpy in, numpy out, via exp
    z = np.asarray(z)
    e = np.exp(-z)
    return e / (1 + e) ** 2


def sp_loop(z):  # a loop over elements, returned as a nested list-compatible tensor
    flat = [1 / (1 + math.exp(-v)) for v in z.reshape(-1).tolist()]
    return torch.tensor([s * (1 - s) for s in flat], dtype=torch.float64).reshape(z.shape)


@pytest.mark.parametrize("fn", [sp_torch, sp_numpy, sp_loop])
def test_sigmoid_derivative_accepts(fn):
    ck.check_sigmoid_derivative(fn)
    ck.check_sigmoid_derivative(fn, hidden=True)


@pytest.mark.parametrize("fn, words", [
    (lambda z: z * (1 - z), "z(1 − z)"),
    (lambda z: torch.sigmoid(z), "σ(z) itself"),
    (lambda z: torch.sigmoid(z.float()), "σ(z) itself"),  # in float32 too
    (lambda z: 1 - torch.sigmoid(z) ** 2, "tanh"),
    (lambda z: torch.exp(-z) / (1 + torch.exp(-z)), "squared"),
    (lambda z: sp_torch(z).reshape(-1), "shape (12,) for an input of shape (3, 4)"),
    (lambda z: None, "return"),
    (lambda z: 0.5 * sp_torch(z), "at 0 is 0.125; σ'(0) is 0.25"),
    (lambda z: float("nan") * z, "non-finite"),
    ("not a function", "should be a function"),
])
def test_sigmoid_derivative_rejects(fn, words):
    with pytest.raises(AssertionError) as info:
        ck.check_sigmoid_derivative(fn)
    assert words in str(info.value)


def test_sigmoid_derivative_not_implemented():
    def fn(z):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented"):
        ck.check_sigmoid_derivative(fn)


# ---------------------------------------------------------------- exercise 2


def chain_loop(w, b, x):
    a, grad = x, 1.0
    for j in range(len(w)):
        a = torch.sigmoid(w[j] * a + b[j])
        grad = grad * (w[j] if j else 1.0) * a * (1 - a)
    return grad  # a 0-d tensor


def chain_numpy(w, b, x):
    w, b = np.asarray(w), np.asarray(b)
    zs, a = [], x
    for wj, bj in zip(w, b, strict=True):
        zs.append(wj * a + bj)
        a = 1 / (1 + np.exp(-zs[-1]))
    sp = [1 / (1 + np.exp(-z)) * (1 - 1 / (1 + np.exp(-z))) for z in zs]
    return np.array([sp[0] * np.prod([w[j] * sp[j] for j in range(1, len(w))])])  # one-element array


def chain_autograd(w, b, x):  # autograd is also a correct answer for the checker
    b = b.clone().requires_grad_()
    a = torch.tensor(x, dtype=torch.float64)
    for j in range(len(w)):
        a = torch.sigmoid(w[j] * a + b[j])
    return torch.autograd.grad(a, b)[0][0]


@pytest.mark.parametrize("fn", [chain_loop, chain_numpy, chain_autograd])
def test_chain_grad_accepts(fn):
    ck.check_chain_grad(fn)
    ck.check_chain_grad(fn, hidden=True)


def _with_w1(w, b, x):
    return chain_loop(w, b, x) * w[0]


def _no_first_sp(w, b, x):
    s = torch.sigmoid(w[0] * x + b[0])
    return chain_loop(w, b, x) / (s * (1 - s))


def _sigma_not_prime(w, b, x):
    a, grad = x, 1.0
    for j in range(len(w)):
        a = torch.sigmoid(w[j] * a + b[j])
        grad = grad * (w[j] if j else 1.0) * a
    return grad


def _x_everywhere(w, b, x):
    grad = 1.0
    for j in range(len(w)):
        s = torch.sigmoid(w[j] * x + b[j])
        grad = grad * (w[j] if j else 1.0) * s * (1 - s)
    return grad


@pytest.mark.parametrize("fn, words", [
    (_with_w1, "no factor w_1"),
    (_no_first_sp, "σ'(z_1)"),
    (_sigma_not_prime, "σ(z_j) where the chain rule needs σ'(z_j)"),
    (_x_everywhere, "use x for every layer"),
    (lambda w, b, x: torch.ones(2), "2 numbers"),
    (lambda w, b, x: "0.1", "not numbers"),
    (lambda w, b, x: 1.0, "autograd gives"),
])
def test_chain_grad_rejects(fn, words):
    with pytest.raises(AssertionError) as info:
        ck.check_chain_grad(fn)
    assert words in str(info.value)


# ---------------------------------------------------------------- exercise 3


def biases_torch(w, x):
    a = torch.full_like(w, 0.5)
    a[0] = x
    return -w * a


def biases_list(w, x):
    out, a = [], x
    for wj in w.tolist():
        out.append(-wj * a)
        a = 0.5
    return out


@pytest.mark.parametrize("fn", [biases_torch, biases_list])
def test_exploding_biases_accepts(fn):
    ck.check_exploding_biases(fn)
    ck.check_exploding_biases(fn, hidden=True)


@pytest.mark.parametrize("fn, words", [
    (lambda w, x: -w * x, "b_j = −w_j x for every layer"),
    (lambda w, x: -w / 2, "b_1 = −w_1 x"),
    (lambda w, x: -biases_torch(w, x), "wrong sign"),
    (lambda w, x: biases_torch(w, x).float(), "compute the biases in float64"),
    (lambda w, x: torch.zeros_like(w), "not 0"),
    (lambda w, x: -w[:2] * x, "2 biases for a chain of 4"),
    (lambda w, x: None, "return"),
])
def test_exploding_biases_rejects(fn, words):
    with pytest.raises(AssertionError) as info:
        ck.check_exploding_biases(fn)
    assert words in str(info.value)


@pytest.mark.parametrize("value", [25, 25.0, torch.tensor(25.0), np.float64(100 * 0.25)])
def test_nielsen_factor_accepts(value):
    ck.check_nielsen_factor(value)


@pytest.mark.parametrize("value, words", [(100, "multiply by σ'(0)"), (400, "divided"), (0.25, "multiply by w"),
                                          (50, "not σ(0)"), (None, "set `factor`"), ("twenty-five", "not numbers"),
                                          (3.0, "w = 100")])
def test_nielsen_factor_rejects(value, words):
    with pytest.raises(AssertionError) as info:
        ck.check_nielsen_factor(value)
    assert words in str(info.value)


# ---------------------------------------------------------------- exercise 4


def leaky_numpy(n, alpha):
    return np.sqrt(2.0 / (n * (1 + np.square(alpha))))


def leaky_torch(n, alpha):  # a 0-d float32 tensor is accepted: the check needs 5 digits
    e2 = (1 + torch.tensor(alpha, dtype=torch.float32) ** 2) / 2
    return (1 / (n * e2)).sqrt()


def leaky_pytorch_gain(n, alpha):  # PyTorch's own gain for kaiming_normal_, sqrt(2 / (1 + a^2)), is right too
    return torch.nn.init.calculate_gain("leaky_relu", alpha) / math.sqrt(n)


def leaky_numeric(n, alpha):  # E[sigma'(h)^2] estimated from samples: close enough
    h = np.linspace(-1, 1, 200_001)
    e2 = np.mean(np.where(h > 0, 1.0, alpha) ** 2)
    return math.sqrt(1 / (n * e2))


@pytest.mark.parametrize("fn", [lambda n, a: math.sqrt(2 / ((1 + a * a) * n)), leaky_numpy, leaky_torch,
                                leaky_pytorch_gain, leaky_numeric])
def test_leaky_std_accepts(fn):
    ck.check_leaky_std(fn)
    ck.check_leaky_std(fn, hidden=True)


@pytest.mark.parametrize("fn, words", [
    (lambda n, a: math.sqrt(2 / n), "He's std for ReLU"),
    (lambda n, a: math.sqrt(2 / ((1 + a) * n)), "contributes α², not α"),
    (lambda n, a: math.sqrt(2 / ((1 + a) ** 2 * n)), "(1 + α)²"),
    (lambda n, a: 2 / ((1 + a * a) * n), "variance"),
    (lambda n, a: math.sqrt(1 / ((1 + a * a) * n)), "(1 + α²)/2 and Var w = 2/((1 + α²) n)"),
    (lambda n, a: math.sqrt((1 + a * a) / (2 * n)), "multiplied by E[σ'(h)²] instead of dividing"),
    (lambda n, a: math.sqrt(1 / n), "Xavier's scale"),
    (lambda n, a: math.sqrt(2 / (1 + a * a)) / n, "whole 2/((1 + α²) fan_in)"),
    (lambda n, a: 1.0, "critical condition"),
    (lambda n, a: None, "return"),
])
def test_leaky_std_rejects(fn, words):
    with pytest.raises(AssertionError) as info:
        ck.check_leaky_std(fn)
    assert words in str(info.value)


def test_leaky_std_says_what_the_wrong_std_does():
    with pytest.raises(AssertionError, match=r"a layer's gain is 0\.958, so 30 layers .* factor 0\.28"):
        ck.check_leaky_std(lambda n, a: math.sqrt(2 / ((1 + a) * n)))


# ---------------------------------------------------------------- exercise 5


def window_closed(w):
    w = abs(w)
    if w < 4:
        return 0.0
    r = math.sqrt(1 - 4 / w)
    return 2 / w * math.log((1 + r) / (1 - r))


def window_numeric(w):  # brute force on a grid of a: a correct, approximate answer
    a = np.linspace(-3, 3, 600001)
    s = 1 / (1 + np.exp(-w * a))
    inside = np.abs(w * s * (1 - s)) >= 1
    return float(inside.sum() * (a[1] - a[0]))


@pytest.mark.parametrize("fn, best_w, best_width", [(window_closed, 6.89, 0.4477),
                                                    (window_numeric, torch.tensor(6.9), np.float64(0.448))])
def test_window_accepts(fn, best_w, best_width):
    ck.check_window(fn, best_w, best_width)
    ck.check_window(fn, best_w, best_width, hidden=True)


@pytest.mark.parametrize("fn, best_w, best_width, words", [
    (lambda w: window_closed(w) * abs(w), 6.89, 0.4477, "width in z"),
    (lambda w: window_closed(w) / 2, 6.89, 0.4477, "half the width"),
    (lambda w: 0.1, 6.89, 0.4477, "width is 0"),
    (window_closed, 4.0, 0.4477, "best_w = 4"),
    (window_closed, 6.89, 0.5, "best_width = 0.5"),
    (window_closed, None, 0.4477, "set `best_w`"),
    (window_closed, 6.89, None, "set `best_width`"),
])
def test_window_rejects(fn, best_w, best_width, words):
    with pytest.raises(AssertionError) as info:
        ck.check_window(fn, best_w, best_width)
    assert words in str(info.value)


def test_window_negative_w_hidden():
    with pytest.raises(AssertionError, match="negative w"):
        ck.check_window(lambda w: window_closed(w) if w > 0 else 0.0, 6.89, 0.4477, hidden=True)


def test_window_reference_values():
    assert ck.window_width_reference(3.99) == 0.0
    assert ck.window_width_reference(-6.9) == ck.window_width_reference(6.9)
    assert abs(ck.window_width_reference(ck.BEST_W) - ck.BEST_WIDTH) < 1e-6


def test_float32_biases_are_fine_when_the_weights_are_small():
    def biases32(w, x):
        return biases_torch(w, x).float()

    ck.EXPLODING_BIASES.judge({"w": [1.0, 2.0], "x": 0.5}, biases32(torch.tensor([1.0, 2.0]), 0.5).numpy())


def test_every_chapter_one_test_cell_is_registered():
    from gradflow.checks.exercise import REGISTRY, plain_cases

    expected = {"ch1-ex1-tests": [ck.SIGMOID_DERIVATIVE], "ch1-ex2-tests": [ck.CHAIN_GRAD],
                "ch1-ex3-tests": [ck.NIELSEN_FACTOR, ck.EXPLODING_BIASES], "ch1-ex4-tests": [ck.LEAKY_STD],
                "ch1-ex5-tests": [ck.WINDOW, ck.BEST_WINDOW]}
    for grade_id, exercises in expected.items():
        assert REGISTRY[grade_id] == exercises
        for exercise in exercises:  # cases are plain data, and differ between seeds where they are drawn
            assert plain_cases(exercise, 0) and plain_cases(exercise, 5) is not None


@pytest.mark.parametrize("exercise", [ck.SIGMOID_DERIVATIVE, ck.CHAIN_GRAD, ck.NIELSEN_FACTOR, ck.EXPLODING_BIASES,
                                      ck.LEAKY_STD, ck.WINDOW, ck.BEST_WINDOW])
def test_judges_never_crash_on_junk(exercise):
    cases = exercise.cases(3)
    for junk in [None, "x", [1, 2, 3], {"__array__": [1.0], "dtype": "float64", "shape": [1]}, float("nan"),
                 [[1], [2, 3]], {"a": 1}, -1e308]:
        assert isinstance(exercise.verdict(cases, [junk] * len(cases)), str)


def test_float32_answers_are_accepted_where_precision_does_not_matter():
    ck.check_sigmoid_derivative(lambda z: sp_torch(z.float()))  # float32 out
    ck.check_chain_grad(lambda w, b, x: chain_loop(w.float(), b.float(), float(x)))
    ck.check_leaky_std(lambda n, a: np.float32(math.sqrt(2 / ((1 + a * a) * n))))
    ck.check_window(lambda w: np.float32(window_closed(w)), np.float32(6.9), np.float32(0.4477))

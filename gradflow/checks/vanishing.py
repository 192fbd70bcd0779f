"""Checkers for chapter 1's exercises (vanishing and exploding gradients).

Every exercise is an :class:`~gradflow.checks.exercise.Exercise`: cases drawn from a seed as plain
data, a probe that calls the student's code on one case, and a judge that computes the reference
itself and raises ``AssertionError`` with a message that names the mistake. The ``check_*``
functions that the test cells call are thin wrappers. They accept any correct implementation:
torch or numpy, loops or vectorised, floats or 0-d tensors. A wrong type, shape, ``None`` or NaN
becomes an ``AssertionError`` too, never a traceback.

Test cell (grade_id) -> exercises: ``ch1-ex1-tests`` SIGMOID_DERIVATIVE; ``ch1-ex2-tests``
CHAIN_GRAD; ``ch1-ex3-tests`` NIELSEN_FACTOR, EXPLODING_BIASES; ``ch1-ex4-tests`` LEAKY_STD;
``ch1-ex5-tests`` WINDOW, BEST_WINDOW.
"""

import math

import numpy as np
import torch

from ..nets import act_derivative
from . import as_array, as_scalar
from .exercise import Exercise, register, value

__all__ = [
    "SIGMOID_DERIVATIVE",
    "CHAIN_GRAD",
    "NIELSEN_FACTOR",
    "EXPLODING_BIASES",
    "LEAKY_STD",
    "WINDOW",
    "BEST_WINDOW",
    "check_sigmoid_derivative",
    "check_chain_grad",
    "check_exploding_biases",
    "check_nielsen_factor",
    "check_leaky_std",
    "check_window",
    "leaky_std_reference",
    "window_width_reference",
]

BEST_W = 6.8942  # argmax of the window width (Nielsen, ch. 5, problem: "about 6.9")
BEST_WIDTH = 0.447743  # the maximum width ("about 0.45")


# ---------------------------------------------------------------- plumbing


def _close(a, b, rel=1e-6, abs_=1e-12):
    return abs(a - b) <= abs_ + rel * abs(b)


def _set(out, name, what):
    """A value the student sets (not a function): None means the cell was not filled in yet."""
    if out is None:
        raise AssertionError(f"set `{name}` to {what} (it is still None)")
    return as_scalar(value(out, name), name)


# ---------------------------------------------------------------- exercise 1: sigma'


def _sigmoid_derivative_cases(seed):
    """A fine grid for the bound, a grid with 0 in it, and random shapes (a 0-d tensor too)."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (2, 3, 5), ()]
    cases = [{"z": np.linspace(-10, 10, 2001).tolist(), "bound": True}]
    cases += [{"z": np.linspace(-3, 3, 201).tolist()}]
    cases += [{"z": rng.uniform(-8, 8, size=shape).tolist()} for shape in shapes]
    return cases


def _sigmoid_derivative_probe(fn, case):
    return fn(torch.tensor(case["z"], dtype=torch.float64))


def _sigmoid_derivative_judge(case, out):
    name = "sigmoid_derivative"
    z = torch.tensor(case["z"], dtype=torch.float64)
    raw = value(out, name)
    # float32 is accepted: σ(1 − σ) then loses digits where σ ≈ 1 (|z| near 10: about 1e-3 relative)
    rtol, atol = (1e-3, 1e-7) if getattr(raw, "dtype", None) in (np.float32, np.float16) else (1e-6, 1e-9)
    out = as_array(raw, name)
    if out.shape != tuple(z.shape):
        raise AssertionError(f"{name} returned shape {out.shape} for an input of shape {tuple(z.shape)}; "
                             "it should act elementwise and keep the shape")
    if not np.all(np.isfinite(out)):
        bad = z.numpy()[~np.isfinite(out)].ravel()[0]
        raise AssertionError(f"{name} returned a non-finite value at z = {bad:g}")
    ref = act_derivative("sigmoid", z).numpy()
    if not np.allclose(out, ref, rtol=rtol, atol=atol):
        zz, s = z.numpy(), torch.sigmoid(z).numpy()
        guesses = [
            (s, "you returned σ(z) itself, not its derivative σ(z)(1 − σ(z))"),
            (zz * (1 - zz), "you computed z(1 − z): apply σ first, σ'(z) = σ(z)(1 − σ(z))"),
            (1 - s**2, "you computed 1 − σ(z)², which is the pattern of tanh' = 1 − tanh²; for the sigmoid "
                       "it is σ(z)(1 − σ(z))"),
            (s * (1 + s), "you computed σ(z)(1 + σ(z)); the derivative is σ(z)(1 − σ(z))"),
            (np.exp(-zz) / (1 + np.exp(-zz)), "you computed e^(−z)/(1 + e^(−z)) = 1 − σ(z); the denominator "
                                              "must be squared: e^(−z)/(1 + e^(−z))²"),
        ]
        for wrong, hint in guesses:
            if np.allclose(out, wrong, rtol=rtol, atol=atol, equal_nan=False):
                raise AssertionError(hint)
        at0 = np.flatnonzero(np.isclose(zz.ravel(), 0.0))
        if at0.size and not np.isclose(out.ravel()[at0[0]], 0.25, atol=1e-9):
            raise AssertionError(f"your derivative at 0 is {out.ravel()[at0[0]]:.6g}; σ'(0) is 0.25")
        i = int(np.argmax(np.abs(out - ref).ravel()))
        raise AssertionError(f"at z = {zz.ravel()[i]:.6g} your derivative is {out.ravel()[i]:.6g}; "
                             f"σ'(z) is {ref.ravel()[i]:.6g}")
    if case.get("bound"):  # the bound, numerically: on a fine grid the maximum is 1/4, reached at z = 0
        i = int(np.argmax(out))
        assert abs(out[i] - 0.25) < 1e-12 and abs(z[i].item()) < 1e-12, (
            f"on a grid of z the maximum of your derivative is {out[i]:.6g} at z = {z[i].item():.3g}; "
            "it should be 0.25 at z = 0")


SIGMOID_DERIVATIVE = Exercise("sigmoid_derivative", ["sigmoid_derivative"], _sigmoid_derivative_cases,
                              _sigmoid_derivative_probe, _sigmoid_derivative_judge)
register("ch1-ex1-tests", SIGMOID_DERIVATIVE)


def check_sigmoid_derivative(fn, hidden=False):
    """``fn(z)`` must return sigma'(z) = sigma(z)(1 - sigma(z)) elementwise, same shape, peak 1/4 at 0."""
    SIGMOID_DERIVATIVE.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 2: the scalar chain


def _chain_autograd(w, b, x):
    """dC/db_1 for the chain z_j = w_j a_{j-1} + b_j, a_j = sigma(z_j), a_0 = x, C = a_L."""
    b = torch.as_tensor(b, dtype=torch.float64).clone().requires_grad_(True)
    a = torch.tensor(float(x), dtype=torch.float64)
    for j in range(len(w)):
        a = torch.sigmoid(float(w[j]) * a + b[j])
    (g,) = torch.autograd.grad(a, b)
    return g[0].item()


def _sigmoid(z):
    return 0.5 * (1 + math.tanh(z / 2))  # sigma(z) without overflow for large |z|


def _chain_zs(w, b, x, use_x=False):
    zs, a = [], float(x)
    for j in range(len(w)):
        z = float(w[j]) * (float(x) if use_x else a) + float(b[j])
        zs.append(z)
        a = _sigmoid(z)
    return zs


def _sp(z):
    s = _sigmoid(z)
    return s * (1 - s)


def _chain_cases(seed):
    """Chains of lengths 4, 1, 2, 5 and 7 with w ~ N(0, 4), b ~ N(0, 1), x ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    return [{"w": (2 * rng.standard_normal(L)).tolist(), "b": rng.standard_normal(L).tolist(),
             "x": float(rng.standard_normal())} for L in (4, 1, 2, 5, 7)]


def _chain_probe(fn, case):
    w = torch.tensor(case["w"], dtype=torch.float64)
    b = torch.tensor(case["b"], dtype=torch.float64)
    return fn(w, b, case["x"])


def _chain_judge(case, out):
    name = "chain_grad_b1"
    w, b, x = case["w"], case["b"], case["x"]
    got = as_scalar(value(out, name), name)
    ref = _chain_autograd(w, b, x)
    if _close(got, ref, rel=1e-6, abs_=1e-15):
        return
    zs = _chain_zs(w, b, x)
    sps = [_sp(z) for z in zs]
    prod = lambda fs: math.prod(fs) if fs else 1.0  # noqa: E731
    guesses = [
        (ref * w[0], "your value is the true gradient times w_1: b_1 enters z_1 = w_1 x + b_1 "
                     "directly, so ∂C/∂b_1 has no factor w_1"),
        (ref / sps[0], "you left out σ'(z_1), the first factor (b_1 changes a_1 by σ'(z_1) per unit)"),
        (ref / sps[-1], "you left out σ'(z_L), the last factor: C = a_L = σ(z_L)"),
        (prod([_sigmoid(z) for z in zs]) * prod(w[1:]),
         "you multiplied σ(z_j) where the chain rule needs σ'(z_j) = σ(z_j)(1 − σ(z_j))"),
        (prod([_sp(z) for z in _chain_zs(w, b, x, use_x=True)]) * prod(w[1:]),
         "your z_j use x for every layer; layer j's input is a_{j-1} = σ(z_{j-1}), so z_j = w_j a_{j-1} + b_j"),
    ]
    for wrong, hint in guesses:
        if _close(got, wrong, rel=1e-6, abs_=1e-15):
            raise AssertionError(hint)
    raise AssertionError(f"for w = {[round(v, 4) for v in w]}, b = {[round(v, 4) for v in b]}, "
                         f"x = {x:.4f} you returned {got:.6g}; autograd gives ∂C/∂b_1 = {ref:.6g}")


CHAIN_GRAD = register("ch1-ex2-tests", Exercise("chain_grad_b1", ["chain_grad_b1"], _chain_cases, _chain_probe,
                                                _chain_judge))


def check_chain_grad(fn, hidden=False):
    """``fn(w, b, x)`` must return dC/db_1 of the scalar sigmoid chain (C = a_L), as autograd gives it."""
    CHAIN_GRAD.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 3: Nielsen's exploding chain


def _biases_cases(seed):
    """Nielsen's chain (w_j = 100), a one-layer chain, and chains of random large weights of either sign."""
    rng = np.random.default_rng(seed)
    cases = [{"w": [100.0] * 4, "x": 0.7}, {"w": [100.0], "x": round(float(rng.uniform(-2, 2)), 3)}]
    for L in (6, 5):
        w = (rng.choice([-1.0, 1.0], L) * rng.uniform(3, 100, L)).round(2).tolist()
        cases.append({"w": w, "x": round(float(rng.uniform(-3, 3)), 3)})
    return cases


def _biases_probe(fn, case):
    return fn(torch.tensor(case["w"], dtype=torch.float64), case["x"])


def _biases_judge(case, out):
    name = "exploding_biases"
    w, x = case["w"], case["x"]
    raw = value(out, name)
    b = as_array(raw, name).ravel()
    if b.shape != (len(w),):
        raise AssertionError(f"{name} returned {b.size} biases for a chain of {len(w)} layers")
    if not np.all(np.isfinite(b)):
        raise AssertionError(f"{name} returned non-finite biases {b.tolist()}")
    zs = _chain_zs(w, b, x)
    if all(abs(z) < 1e-6 for z in zs):
        ref = 0.25 * math.prod(wj / 4 for wj in w[1:])
        got = _chain_autograd(w, b, x)
        assert _close(got, ref, rel=1e-6), f"∂C/∂b_1 = {got:.6g}, expected {ref:.6g}"
        return
    w_arr = np.asarray(w)
    a_prev = np.array([x] + [0.5] * (len(w) - 1))
    j = next(i for i, z in enumerate(zs) if abs(z) >= 1e-6)
    low_precision = getattr(raw, "dtype", None) in (np.float32, np.float16)
    if low_precision and np.allclose(b, -w_arr * a_prev, rtol=1e-5, atol=1e-5):
        raise AssertionError(f"your biases are right to {np.dtype(raw.dtype).name} precision, but z_{j + 1} = "
                             f"{zs[j]:.3g}: a rounding error in z_1 is multiplied by |w_j σ'(0)| = |w_j|/4 at "
                             "every layer above (the exploding gradient itself), so compute the biases in float64, "
                             "the precision of w")
    if len(w) > 1 and abs(zs[0]) < 1e-6 and np.allclose(b, -w_arr * x):
        raise AssertionError(f"z_1 = 0 but z_2 = {zs[1]:.4g}: you used b_j = −w_j x for every layer; after "
                             "the first layer the input is a_{j−1} = σ(0) = 1/2, so b_j = −w_j/2 for j ≥ 2")
    if abs(x - 0.5) > 1e-9 and np.allclose(b, -w_arr / 2):
        raise AssertionError(f"z_1 = {zs[0]:.4g}: you used b_j = −w_j/2 for every layer, but the first layer's "
                             "input is a_0 = x, so b_1 = −w_1 x")
    if np.allclose(b, w_arr * a_prev) and np.any(b != 0):
        raise AssertionError("your biases have the wrong sign: z_j = w_j a_(j−1) + b_j = 0 needs b_j = −w_j a_(j−1)")
    raise AssertionError(f"with w = {w} and x = {x}, your biases give z_{j + 1} = {zs[j]:.6g}, not 0 "
                         f"(z_j = w_j a_(j−1) + b_j, with a_0 = x and a_j = σ(z_j))")


def _nielsen_factor_judge(case, out):
    v = _set(out, "factor", "the size of one factor w σ'(z) for w = 100 and z = 0")
    if _close(v, 25.0, rel=1e-9):
        return
    hints = {100.0: "that is w alone: multiply by σ'(0) = 1/4",
             400.0: "you divided by σ'(0) = 1/4 instead of multiplying",
             0.25: "that is σ'(0) alone: multiply by w = 100",
             50.0: "that is w σ(0) = 100 · 1/2: the factor holds the derivative σ'(0) = 1/4, not σ(0)",
             2500.0: "that is w · σ'(0) for w = 10 000? use w = 100 and σ'(0) = 1/4"}
    for wrong, hint in hints.items():
        if _close(v, wrong, rel=1e-9):
            raise AssertionError(f"factor = {v:g}: {hint}")
    raise AssertionError(f"factor = {v:g}; one factor is w σ'(z_j) with w = 100 and σ'(0) = 1/4")


# a value, not a function: one case, and the probe hands the value back as it is
NIELSEN_FACTOR = Exercise("factor", ["factor"], lambda seed: [None], lambda factor, case: factor,
                          _nielsen_factor_judge, functions=())
EXPLODING_BIASES = Exercise("exploding_biases", ["exploding_biases"], _biases_cases, _biases_probe, _biases_judge)
register("ch1-ex3-tests", NIELSEN_FACTOR, EXPLODING_BIASES)


def check_nielsen_factor(factor):
    """The size of one factor w σ'(z) for w = 100 and z = 0: 25."""
    NIELSEN_FACTOR.check(factor)


def check_exploding_biases(fn, hidden=False):
    """``fn(w, x)`` must return biases that make every z_j = 0; then dC/db_1 = (1/4) prod_{j>=2} (w_j / 4)."""
    EXPLODING_BIASES.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 4: the critical scale of a leaky ReLU


def leaky_std_reference(fan_in, alpha):
    """std of w that gives a leaky-ReLU layer (slope ``alpha`` below 0) gain 1: sqrt(2 / ((1 + alpha^2) fan_in))."""
    return math.sqrt(2 / ((1 + alpha**2) * fan_in))


def _leaky_cases(seed):
    """The usual slopes, ReLU (alpha = 0), the linear case (alpha = 1), and random fan-ins and slopes."""
    rng = np.random.default_rng(seed)
    # alpha = 0 is not first: there several mistakes coincide (Xavier's and a dropped 1/2, say)
    cases = [{"fan_in": 64, "alpha": 0.1}, {"fan_in": 100, "alpha": 0.2}, {"fan_in": 64, "alpha": 0.0},
             {"fan_in": 16, "alpha": 1.0}]
    cases += [{"fan_in": int(rng.integers(2, 2000)), "alpha": round(float(rng.uniform(0.01, 0.6)), 3)}
              for _ in range(3)]
    return cases


def _leaky_probe(fn, case):
    return fn(case["fan_in"], case["alpha"])


def _leaky_judge(case, out):
    name = "leaky_std"
    n, a = case["fan_in"], case["alpha"]
    got = as_scalar(value(out, name), name)
    ref = leaky_std_reference(n, a)
    if _close(got, ref, rel=1e-5):
        return
    e2 = (1 + a**2) / 2  # E[leaky'(h)^2] for symmetric h
    hints = [
        (math.sqrt(2 / n), "that is He's std for ReLU: with slope α the negative half of the units passes "
                           "the gradient times α, so E[σ'(h)²] = (1 + α²)/2, not 1/2"),
        (math.sqrt(2 / ((1 + a) * n)), "you used (1 + α)/2 for E[σ'(h)²]: the derivative enters squared, so "
                                       "the negative half contributes α², not α"),
        (math.sqrt(2 / ((1 + a) ** 2 * n)), "you used (1 + α)²; the two halves of the units contribute 1 and α² "
                                            "separately: E[σ'(h)²] = (1 + α²)/2"),
        (2 / ((1 + a**2) * n), "you returned the variance; the standard deviation is its square root"),
        (math.sqrt(1 / ((1 + a**2) * n)), "you set n Var w (1 + α²) = 1; each half of the units holds half "
                                          "the mass, so E[σ'(h)²] = (1 + α²)/2 and Var w = 2/((1 + α²) n)"),
        (math.sqrt(e2 / n), "you multiplied by E[σ'(h)²] instead of dividing: n Var w · E[σ'(h)²] = 1 gives "
                            "Var w = 1/(n E[σ'(h)²])"),
        (math.sqrt(1 / n), "√(1/fan_in) is Xavier's scale (n Var w = 1), which assumes σ'(0) = 1; the leaky "
                           "ReLU has E[σ'(h)²] = (1 + α²)/2 < 1"),
        (math.sqrt(2 / (1 + a**2)) / n, "the square root applies to the whole 2/((1 + α²) fan_in)"),
    ]
    gain = got / ref  # the gain of one layer is proportional to the std
    effect = (f" (with your std a layer's gain is {gain:.3g}, so 30 layers change the gradient by a factor "
              f"{gain**30:.2g})") if gain > 0 else ""
    for wrong, hint in hints:
        if _close(got, wrong, rel=1e-5) and not _close(wrong, ref, rel=1e-5):
            raise AssertionError(f"leaky_std({n}, {a}) = {got:.6g}: {hint}{effect}")
    raise AssertionError(f"leaky_std({n}, {a}) = {got:.6g}; the critical condition n Var w · E[σ'(h)²] = 1 with "
                         f"E[σ'(h)²] = (1 + α²)/2 gives {ref:.6g}{effect}")


LEAKY_STD = register("ch1-ex4-tests", Exercise("leaky_std", ["leaky_std"], _leaky_cases, _leaky_probe,
                                               _leaky_judge))


def check_leaky_std(fn, hidden=False):
    """``fn(fan_in, alpha)`` must return sqrt(2 / ((1 + alpha^2) fan_in)), the critical std of a leaky ReLU."""
    LEAKY_STD.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 5: Nielsen's window


def window_width_reference(w):
    """Width of the set of inputs a with |w σ'(w a + b)| ≥ 1 (independent of b): 0 when |w| < 4."""
    w = abs(float(w))
    if w < 4:
        return 0.0
    r = math.sqrt(1 - 4 / w)
    return (2 / w) * math.log(w * (1 + r) / 2 - 1)


def _window_cases(seed):
    rng = np.random.default_rng(seed)
    ws = [2.0, 5.0, 6.9, 10.0, -6.0]
    ws += [round(float(v), 3) for v in (rng.uniform(0.5, 3.9), rng.uniform(4.2, 12), rng.uniform(12, 100),
                                        -rng.uniform(4.5, 30))]
    return [{"w": w} for w in ws]


def _window_judge(case, out):
    name = "window_width"
    w = case["w"]
    got = as_scalar(value(out, name), name)
    ref = window_width_reference(w)
    if abs(got - ref) <= 2e-3 + 1e-3 * ref:
        return
    if ref == 0:
        raise AssertionError(f"window_width({w:g}) = {got:.4g}; for |w| < 4 the factor |w σ'(z)| ≤ |w|/4 < 1 "
                             "everywhere, so the width is 0")
    if abs(got - ref * abs(w)) <= 2e-3 + 1e-3 * ref * abs(w):
        raise AssertionError(f"window_width({w:g}) = {got:.4g} is the width in z = w a + b; the width in a "
                             f"is |w| times smaller ({ref:.4g})")
    if abs(got - ref / 2) <= 2e-3:
        raise AssertionError(f"window_width({w:g}) = {got:.4g} is half the width: the window in z is "
                             "symmetric around 0, from −z* to +z*")
    if w < 0:
        raise AssertionError(f"window_width({w:g}) = {got:.4g}; for negative w the window is the same as for "
                             f"|w| (σ' is even), {ref:.4g}")
    raise AssertionError(f"window_width({w:g}) = {got:.4g}; expected {ref:.4g}")


def _best_window_judge(case, out):
    if not isinstance(out, list) or len(out) != 2:
        raise AssertionError("set `best_w` and `best_width` to two numbers")
    bw = _set(out[0], "best_w", "the w > 0 where the window is widest")
    bwidth = _set(out[1], "best_width", "the largest width")
    if abs(bwidth - BEST_WIDTH) <= 3e-3 and not 6.7 <= abs(bw) <= 7.1:
        raise AssertionError(f"best_width = {bwidth:.4g} is right, but best_w = {bw:.4g}: the width is largest "
                             f"near |w| ≈ {BEST_W:.2f}")
    assert 6.7 <= abs(bw) <= 7.1, f"best_w = {bw:.4g}; the width is largest near |w| ≈ {BEST_W:.2f}"
    assert abs(bwidth - BEST_WIDTH) <= 3e-3, (f"best_width = {bwidth:.4g}; the largest width is "
                                              f"≈ {BEST_WIDTH:.3f}")


WINDOW = Exercise("window_width", ["window_width"], _window_cases, lambda fn, case: fn(case["w"]), _window_judge)
BEST_WINDOW = Exercise("best_window", ["best_w", "best_width"], lambda seed: [None],
                       lambda best_w, best_width, case: [best_w, best_width], _best_window_judge, functions=())
register("ch1-ex5-tests", WINDOW, BEST_WINDOW)


def check_window(fn, best_w, best_width, hidden=False):
    """``fn(w)`` must give the window width; ``best_w`` and ``best_width`` its maximiser and maximum."""
    WINDOW.check(fn, hidden=hidden)
    BEST_WINDOW.check(best_w, best_width)

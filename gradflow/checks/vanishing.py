"""Checkers for chapter 1's exercises (vanishing and exploding gradients).

Each ``check_*`` function raises ``AssertionError`` with a message that names the mistake, and
accepts any correct implementation: torch or numpy, loops or vectorised, floats or 0-d tensors.
A wrong type, shape, ``None`` or NaN becomes an ``AssertionError`` too, never a traceback.
"""

import math

import numpy as np
import torch

from ..nets import act_derivative
from . import as_array, as_scalar, call
from .exercise import Exercise, register, value

__all__ = [
    "check_sigmoid_derivative",
    "check_chain_grad",
    "check_exploding_biases",
    "check_nielsen_factor",
    "check_he_std",
    "check_window",
    "window_width_reference",
]

BEST_W = 6.8942  # argmax of the window width (Nielsen, ch. 5, problem: "about 6.9")
BEST_WIDTH = 0.447743  # the maximum width ("about 0.45")


# ---------------------------------------------------------------- plumbing


def _close(a, b, rel=1e-6, abs_=1e-12):
    return abs(a - b) <= abs_ + rel * abs(b)


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
    out = as_array(value(out, name), name)
    if out.shape != tuple(z.shape):
        raise AssertionError(f"{name} returned shape {out.shape} for an input of shape {tuple(z.shape)}; "
                             "it should act elementwise and keep the shape")
    if not np.all(np.isfinite(out)):
        bad = z.numpy()[~np.isfinite(out)].ravel()[0]
        raise AssertionError(f"{name} returned a non-finite value at z = {bad:g}")
    ref = act_derivative("sigmoid", z).numpy()
    if not np.allclose(out, ref, rtol=1e-6, atol=1e-9):
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
            if np.allclose(out, wrong, rtol=1e-6, atol=1e-9, equal_nan=False):
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
    b = b.clone().requires_grad_(True)
    a = torch.tensor(float(x), dtype=torch.float64)
    for j in range(len(w)):
        a = torch.sigmoid(w[j] * a + b[j])
    (g,) = torch.autograd.grad(a, b)
    return g[0].item()


def _chain_zs(w, b, x, use_x=False):
    zs, a = [], float(x)
    for j in range(len(w)):
        z = w[j].item() * (float(x) if use_x else a) + b[j].item()
        zs.append(z)
        a = 1 / (1 + math.exp(-z))
    return zs


def _sp(z):
    s = 1 / (1 + math.exp(-z))
    return s * (1 - s)


def _chain_cases(hidden):
    seeds = [0, 1, 2] if not hidden else [10, 11, 12, 13, 14, 15]
    lengths = [4, 3, 5] if not hidden else [1, 2, 6, 7, 4, 5]
    for seed, L in zip(seeds, lengths, strict=True):
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(L, generator=g, dtype=torch.float64) * 2
        b = torch.randn(L, generator=g, dtype=torch.float64)
        x = float(torch.randn(1, generator=g, dtype=torch.float64))
        yield w, b, x


def check_chain_grad(fn, hidden=False):
    """``fn(w, b, x)`` must return dC/db_1 of the scalar sigmoid chain (C = a_L), as autograd gives it."""
    name = "chain_grad_b1"
    for w, b, x in _chain_cases(hidden):
        got = as_scalar(call(fn, name, w.clone(), b.clone(), x), name)
        ref = _chain_autograd(w, b, x)
        if _close(got, ref, rel=1e-6, abs_=1e-15):
            continue
        zs = _chain_zs(w, b, x)
        sps = [_sp(z) for z in zs]
        prod = lambda fs: math.prod(fs) if fs else 1.0  # noqa: E731
        guesses = [
            (ref * w[0].item(), "your value is the true gradient times w_1: b_1 enters z_1 = w_1 x + b_1 "
                                "directly, so ∂C/∂b_1 has no factor w_1"),
            (ref / sps[0], "you left out σ'(z_1), the first factor (b_1 changes a_1 by σ'(z_1) per unit)"),
            (ref / sps[-1], "you left out σ'(z_L), the last factor: C = a_L = σ(z_L)"),
            (prod([1 / (1 + math.exp(-z)) for z in zs]) * prod([wj.item() for wj in w[1:]]),
             "you multiplied σ(z_j) where the chain rule needs σ'(z_j) = σ(z_j)(1 − σ(z_j))"),
        ]
        zx = _chain_zs(w, b, x, use_x=True)
        guesses.append((prod([_sp(z) for z in zx]) * prod([wj.item() for wj in w[1:]]),
                        "your z_j use x for every layer; layer j's input is a_{j-1} = σ(z_{j-1}), "
                        "so z_j = w_j a_{j-1} + b_j"))
        for wrong, hint in guesses:
            if _close(got, wrong, rel=1e-6, abs_=1e-15):
                raise AssertionError(hint)
        raise AssertionError(f"for w = {[round(v, 4) for v in w.tolist()]}, b = {[round(v, 4) for v in b.tolist()]}, "
                             f"x = {x:.4f} you returned {got:.6g}; autograd gives ∂C/∂b_1 = {ref:.6g}")


# ---------------------------------------------------------------- exercise 3: Nielsen's exploding chain


def check_exploding_biases(fn, hidden=False):
    """``fn(w, x)`` must return biases that make every z_j = 0; then dC/db_1 = (1/4) prod_{j>=2} (w_j / 4)."""
    name = "exploding_biases"
    cases = [([100.0] * 4, 0.7)] if not hidden else [([100.0] * 6, -1.3), ([3.0, -50.0, 100.0, 8.0, 20.0], 2.5),
                                                     ([100.0], 0.2)]
    for w_list, x in cases:
        w = torch.tensor(w_list, dtype=torch.float64)
        b = as_array(call(fn, name, w.clone(), x), name).ravel()
        if b.shape != (len(w_list),):
            raise AssertionError(f"{name} returned {b.size} biases for a chain of {len(w_list)} layers")
        if not np.all(np.isfinite(b)):
            raise AssertionError(f"{name} returned non-finite biases {b.tolist()}")
        zs = _chain_zs(w, torch.tensor(b), x)
        if all(abs(z) < 1e-9 for z in zs):
            ref = 0.25 * math.prod(wj / 4 for wj in w_list[1:])
            got = _chain_autograd(w, torch.tensor(b), x)
            assert _close(got, ref, rel=1e-9), f"∂C/∂b_1 = {got:.6g}, expected {ref:.6g}"
            continue
        if len(w_list) > 1 and abs(zs[0]) < 1e-9 and np.allclose(b, -w.numpy() * x):
            raise AssertionError(f"z_1 = 0 but z_2 = {zs[1]:.4g}: you used b_j = −w_j x for every layer; after "
                                 "the first layer the input is a_{j−1} = σ(0) = 1/2, so b_j = −w_j/2 for j ≥ 2")
        j = next(i for i, z in enumerate(zs) if abs(z) >= 1e-9)
        raise AssertionError(f"with w = {w_list} and x = {x}, your biases give z_{j + 1} = {zs[j]:.6g}, not 0 "
                             f"(z_j = w_j a_(j−1) + b_j, with a_0 = x and a_j = σ(z_j))")


def _nielsen_factor_judge(case, out):
    v = as_scalar(value(out, "factor"), "factor")
    if _close(v, 25.0, rel=1e-9):
        return
    hints = {100.0: "that is w alone: multiply by σ'(0) = 1/4",
             400.0: "you divided by σ'(0) = 1/4 instead of multiplying",
             0.25: "that is σ'(0) alone: multiply by w = 100",
             2500.0: "that is w · σ'(0) for w = 10 000? use w = 100 and σ'(0) = 1/4"}
    for wrong, hint in hints.items():
        if _close(v, wrong, rel=1e-9):
            raise AssertionError(f"factor = {v:g}: {hint}")
    raise AssertionError(f"factor = {v:g}; one factor is w σ'(z_j) with w = 100 and σ'(0) = 1/4")


# a value, not a function: one case, and the probe hands the value back as it is
NIELSEN_FACTOR = Exercise("factor", ["factor"], lambda seed: [None], lambda factor, case: factor,
                          _nielsen_factor_judge, functions=())


def check_nielsen_factor(factor):
    """The size of one factor w σ'(z) for w = 100 and z = 0: 25."""
    NIELSEN_FACTOR.check(factor)


# ---------------------------------------------------------------- exercise 4: He initialisation


def check_he_std(fn, hidden=False):
    """``fn(fan_in)`` must return sqrt(2 / fan_in); a 30-block ReLU net with that std keeps its gradient."""
    name = "he_std"
    fans = [64, 16, 100] if not hidden else [1, 3, 512, 1000]
    for n in fans:
        got = as_scalar(call(fn, name, n), name)
        ref = math.sqrt(2 / n)
        if _close(got, ref, rel=1e-6):
            continue
        hints = [
            (2 / n, "you returned the variance 2/fan_in; the standard deviation is its square root"),
            (math.sqrt(1 / n), "√(1/fan_in) keeps n·Var w = 1, which is right for tanh near 0 but gives a ReLU "
                               "layer a gain of √(1/2): the ReLU zeroes half the units, so Var w must double"),
            (math.sqrt(1 / (3 * n)), "that is PyTorch's default (Var w = 1/(3 fan_in)), not He's"),
            (math.sqrt(2) / n, "√2/fan_in: the square root applies to the whole 2/fan_in"),
            (1 / math.sqrt(2 * n), "√(1/(2 fan_in)) halves the variance instead of doubling it"),
        ]
        for wrong, hint in hints:
            if _close(got, wrong, rel=1e-6):
                raise AssertionError(f"he_std({n}) = {got:.6g}: {hint}")
        raise AssertionError(f"he_std({n}) = {got:.6g}; He et al. need n·Var w · E[relu'(z)²] = 1 with "
                             f"E[relu'(z)²] = 1/2")
    # consequence: a 30-block ReLU net initialised with this std keeps its gradient within one order
    from ..vanishing import gradient_profile

    measured, _ = gradient_profile("relu", as_scalar(call(fn, name, 64), name) * 8.0, depth=30)
    ratio = measured[0] / measured[-1]
    assert 0.1 < ratio < 10, (f"with std = he_std(64) a 30-block ReLU net's gradient changes by a factor {ratio:.3g} "
                              "from the top to the bottom; expected within one order of magnitude")


# ---------------------------------------------------------------- exercise 5: Nielsen's window


def window_width_reference(w):
    """Width of the set of inputs a with |w σ'(w a + b)| ≥ 1 (independent of b): 0 when |w| < 4."""
    w = abs(float(w))
    if w < 4:
        return 0.0
    r = math.sqrt(1 - 4 / w)
    return (2 / w) * math.log(w * (1 + r) / 2 - 1)


def check_window(fn, best_w, best_width, hidden=False):
    """``fn(w)`` must give the window width; ``best_w`` and ``best_width`` its maximiser and maximum."""
    name = "window_width"
    ws = [2.0, 5.0, 6.9, 10.0] if not hidden else [3.9, 4.5, 8.0, 20.0, 100.0, -10.0, -6.0]
    for w in ws:
        got = as_scalar(call(fn, name, w), name)
        ref = window_width_reference(w)
        if abs(got - ref) <= 2e-3 + 1e-3 * ref:
            continue
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
    bw = as_scalar(best_w, "best_w")
    bwidth = as_scalar(best_width, "best_width")
    assert 6.7 <= abs(bw) <= 7.1, f"best_w = {bw:.4g}; the width is largest near |w| ≈ {BEST_W:.2f}"
    assert abs(bwidth - BEST_WIDTH) <= 3e-3, (f"best_width = {bwidth:.4g}; the largest width is "
                                              f"≈ {BEST_WIDTH:.3f}")

"""Checkers for chapter 5's exercises (the papers' results at small scale).

Every checker is an :class:`~gradflow.checks.exercise.Exercise`: cases drawn from a seed as plain
data, a probe that calls the student's code on one case (in the student's process, or a sandbox
when grading), and a judge that computes the reference itself and names the mistake. The
``check_*`` functions are the thin wrappers the notebooks' test cells call.

Exercises are numbered in the order of the chapter's pages:

- exercise 1 (degradation): ``bn_growth_rate``, BatchNorm's growth rate for any activation;
- exercise 2 (shortcuts): ``stack_jacobian`` of a scaled linear stack;
- exercise 3 (paths): ``length_components`` (the exact split, G_k), ``path_norm_sums`` (S_k) and
  ``veit_measured`` (which of the two Veit et al. measured);
- exercise 4 (paths): ``deletion_drops`` (a lesion study) and its conclusion, ``residual_worst``
  and ``plain_best``;
- exercise 5 (shattered): ``lag1_correlation`` and ``correlation_at``.
"""

import copy
import functools
import itertools
import math

import numpy as np
import torch

from ..nets import mlp
from ..papers import (
    grid_gradients,
    length_components,
    lesion_accuracy,
    lesion_logits,
    lesion_pair,
    one_thread,
    path_norm_sums,
)
from . import as_array, as_scalar
from .exercise import Exercise, register, value

__all__ = [
    "STACK_JACOBIAN",
    "LENGTH_COMPONENTS",
    "PATH_NORM_SUMS",
    "VEIT_MEASURED",
    "DELETION_DROPS",
    "LESION_CONCLUSION",
    "LAG1_CORRELATION",
    "DEPTH_CORRELATION",
    "check_stack_jacobian",
    "check_length_components",
    "check_path_norm_sums",
    "check_veit_measured",
    "check_deletion_drops",
    "check_lesion_conclusion",
    "check_neighbour_correlation",
    "check_depth_correlations",
    "BN_GROWTH_RATE",
    "check_bn_growth_rate",
    "bn_growth_reference",
    "lesion_reference",
]


# ---------------------------------------------------------------- plumbing


def _pair(got, want, lo=4, hi=12):
    """``got`` and ``want`` printed with just enough decimals to tell them apart."""
    for d in range(lo, hi + 1):
        a, b = f"{got:.{d}f}", f"{want:.{d}f}"
        if a != b:
            return a, b
    return f"{got:.{hi}g}", f"{want:.{hi}g}"


def _matrices(rng, count, n, scale):
    return [(rng.standard_normal((n, n)) * scale).tolist() for _ in range(count)]


def _is_float32(out):
    return isinstance(out, np.ndarray) and out.dtype in (np.float32, np.float16)


def _array_of(out, name, shape, what):
    """The student's output as a float64 array of ``shape``, or an AssertionError that says what is wrong."""
    arr = as_array(value(out, name), name)
    if arr.shape != tuple(shape):
        raise AssertionError(f"{what} returned shape {arr.shape}; expected {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        raise AssertionError(f"{what} returned NaN or infinite values")
    return arr


def _close(got, want, rel):
    """Equal up to ``rel`` times the largest entry of ``want`` (relative to the answer's scale)."""
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    return bool(np.all(np.abs(got - want) <= rel * scale + 1e-300))


# ---------------------------------------------------------------- exercise 2: the Jacobian of a scaled stack


def _stack_cases(seed):
    """Fixed shapes (one with all A_i = 0, where the answer is λ^L I) and random ones from the seed."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4, 0.5), (1, 3, 2.0), (5, 6, 1.0), (4, 2, 0.0)]
    shapes += [(int(rng.integers(2, 7)), int(rng.integers(2, 6)), float(rng.choice([0.5, 0.9, 1.5]))) for _ in range(2)]
    cases = [{"As": _matrices(rng, L, n, 1 / math.sqrt(n)), "lam": lam} for L, n, lam in shapes]
    cases.append({"As": [[[0.0, 0.0], [0.0, 0.0]]] * 30, "lam": 0.5})
    return cases


def _stack_probe(fn, case):
    return fn([torch.tensor(A, dtype=torch.float64) for A in case["As"]], case["lam"])


def _stack_product(As, lam, order="right"):
    n = As[0].shape[0]
    J = np.eye(n)
    for A in As:
        step = lam * np.eye(n) + A
        J = step @ J if order == "right" else J @ step
    return J


def _stack_judge(case, out):
    As = [np.array(A, dtype=np.float64) for A in case["As"]]
    lam, L, n = float(case["lam"]), len(As), As[0].shape[0]
    what = f"stack_jacobian(As, lam={lam}) with {L} matrices of shape ({n}, {n})"
    got = _array_of(out, "stack_jacobian", (n, n), what)
    want = _stack_product(As, lam)
    rel = 1e-5 if _is_float32(value(out, "stack_jacobian")) else 1e-9  # float32 arithmetic is fine here
    if _close(got, want, rel):
        return
    if not np.any(As[0]):
        raise AssertionError(f"{what}: with every A_i = 0 each block is λI, so the Jacobian is λ^L I = "
                             f"{lam}^{L} I = {lam ** L:.3g} I; your [0, 0] entry is {got[0, 0]:.3g}")
    wrong = [
        (_stack_product(As, lam).T, "you returned the transpose of ∂x_L/∂x_0: its row i holds the derivatives "
         "of output i (column vectors), so it is (λI + A_{L-1}) ··· (λI + A_0), not that product transposed"),
        (_stack_product(As, lam, order="left"), "you multiplied in the wrong order: the last block's factor "
         "goes on the left, (λI + A_{L-1}) ··· (λI + A_0)"),
        (_stack_product([A.T for A in As], lam), "you transposed the A_i: for x_{i+1} = λ x_i + A_i x_i (column "
         "vectors) the block's Jacobian is λI + A_i"),
        (_stack_product(As, 1.0), "your shortcut factor is 1: with a scaled shortcut each block's Jacobian "
         "is λI + A_i"),
        (_stack_product([lam * A for A in As], 1.0), "you scaled the branch instead of the shortcut: each "
         "block's Jacobian is λI + A_i"),
    ]
    for J, message in wrong:
        if _close(got, J, 1e-5):
            raise AssertionError(f"{what}: {message}")
    err = float(np.max(np.abs(got - want)))
    raise AssertionError(f"{what} differs from the product (λI + A_{{L-1}}) ··· (λI + A_0) by up to {err:.3g}")


STACK_JACOBIAN = Exercise("stack_jacobian", ["stack_jacobian"], _stack_cases, _stack_probe, _stack_judge)
register("ch5-ex2-tests", STACK_JACOBIAN)


def check_stack_jacobian(fn, hidden=False):
    """``fn(As, lam)`` must return ``∂x_L/∂x_0`` of ``x_{i+1} = lam x_i + A_i x_i`` (column vectors)."""
    STACK_JACOBIAN.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 3: S_k and G_k


def _stack_of_jacobians(seed):
    """Small stacks (n blocks, width d): branch Jacobians J_i and a top gradient g, not symmetric."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (1, 3), (5, 3), (6, 2)] + [(int(rng.integers(2, 7)), int(rng.integers(2, 5))) for _ in range(2)]
    return [{"Js": _matrices(rng, n, d, 0.7 / math.sqrt(d)), "g": rng.standard_normal(d).tolist()}
            for n, d in shapes]


def _js_probe(fn, case):
    return fn([torch.tensor(J, dtype=torch.float64) for J in case["Js"]], torch.tensor(case["g"], dtype=torch.float64))


def _variants(case, make):
    """What common mistakes give: ``make(Js, g)`` with the blocks reversed and/or the Jacobians untransposed."""
    Js = [np.array(J) for J in case["Js"]]
    g = np.array(case["g"])
    return [
        (make(Js[::-1], g), "the factors are in the wrong order: a path through the blocks i_1 < ... < i_k "
                            "carries J_{i_1}ᵀ ··· J_{i_k}ᵀ g (the last block's Jᵀ acts on g first)"),
        (make([J.T for J in Js], g), "the Jacobians are not transposed: the gradient goes back through Jᵀ "
                                     "(column vectors: ∇_x E = Jᵀ ∇_y E)"),
        (make([J.T for J in Js[::-1]], g), "you multiplied the forward product J_{i_k} ··· J_{i_1} into g: the "
                                           "gradient needs the transposes, J_{i_1}ᵀ ··· J_{i_k}ᵀ g"),
    ]


def _float64(Js, g):
    return [np.asarray(J, dtype=np.float64) for J in Js], np.asarray(g, dtype=np.float64)


def _components(Js, g):
    return length_components(*_float64(Js, g)).numpy()


def _squared_sums(Js, g):
    """The sum over the paths through k of the blocks of the *squared* norm of each path's vector (a mistake)."""
    Js, g = _float64(Js, g)
    n = len(Js)
    out = np.zeros(n + 1)
    for k in range(n + 1):
        for path in itertools.combinations(range(n), k):
            v = g
            for i in reversed(path):
                v = Js[i].T @ v
            out[k] += float(v @ v)
    return out


def _sums(Js, g):
    return path_norm_sums(*_float64(Js, g)).numpy()


def _components_judge(case, out):
    name = "length_components"
    n, d = len(case["Js"]), len(case["g"])
    what = f"length_components for {n} blocks of width {d}"
    raw = value(out, name)
    arr = as_array(raw, name)
    if arr.shape == (n + 1,):
        raise AssertionError(f"{what} returned {n + 1} numbers: return the component vectors, shape ({n + 1}, {d}), "
                             "not their norms (G_k is the norm of row k)")
    if arr.shape == (n, d):
        raise AssertionError(f"{what} returned {n} rows; there are {n + 1} lengths, k = 0, 1, ..., {n} "
                             "(row 0 is g itself: the path that skips every branch)")
    got = _array_of(out, name, (n + 1, d), what)
    want = _components(case["Js"], case["g"])
    rel = 1e-5 if _is_float32(raw) else 1e-9
    if _close(got, want, rel):
        return
    for wrong, message in _variants(case, _components):
        if _close(got, wrong, 1e-6):
            raise AssertionError(f"{what}: {message}")
    if _close(got, want[::-1], 1e-6):
        raise AssertionError(f"{what}: your rows are in reverse order: row k must hold the paths through k branches, "
                             "so row 0 is g itself and the last row is the one path through every branch")
    if _close(got.sum(axis=0), want.sum(axis=0), 1e-6):
        raise AssertionError(f"{what}: your rows add up to the gradient but are not split by length: row k must "
                             "hold exactly the paths through k branches")
    k = int(np.argmax(np.abs(got - want).max(axis=1)))
    raise AssertionError(f"{what}: row {k} is wrong (it should be the sum of J_{{i_1}}ᵀ ··· J_{{i_k}}ᵀ g over all "
                         f"sets of {k} blocks i_1 < ... < i_k); the rows must add up to (I + J_0)ᵀ ··· (I + J_n-1)ᵀ g")


LENGTH_COMPONENTS = Exercise("length_components", ["length_components"], _stack_of_jacobians, _js_probe,
                             _components_judge)


def check_length_components(fn, hidden=False):
    """``fn(Js, g)`` must return the ``(n + 1, d)`` rows of ∇_{x_0}E split by path length."""
    LENGTH_COMPONENTS.check(fn, hidden=hidden)


def _sums_judge(case, out):
    name = "path_norm_sums"
    n, d = len(case["Js"]), len(case["g"])
    what = f"path_norm_sums for {n} blocks of width {d}"
    raw = value(out, name)
    arr = as_array(raw, name)
    if arr.size == n + 1:
        arr = arr.reshape(-1)
    elif arr.shape == (n + 1, d):
        raise AssertionError(f"{what} returned vectors; S_k is a number for each length k: the sum of the norms "
                             "of the paths' gradients")
    got = _array_of(arr, name, (n + 1,), what)
    want = _sums(case["Js"], case["g"])
    rel = 1e-5 if _is_float32(raw) else 1e-9
    if _close(got, want, rel):
        return
    G = np.linalg.norm(_components(case["Js"], case["g"]), axis=1)
    if _close(got, G, 1e-6):
        raise AssertionError(f"{what}: these are G_k, the norms of the sums (of length_components' rows); S_k "
                             "adds the norms of the individual paths, so S_k ≥ G_k")
    squared = _squared_sums(case["Js"], case["g"])
    if _close(got, squared, 1e-6) or _close(got, np.sqrt(squared), 1e-6):
        raise AssertionError(f"{what}: you added the squared norms of the paths' vectors (or took the root of that "
                             "sum); S_k adds the norms themselves, one norm per path")
    counts = np.array([math.comb(n, k) for k in range(n + 1)], dtype=np.float64)
    if _close(got, want / counts, 1e-6):
        raise AssertionError(f"{what}: you averaged over the C(n, k) paths of each length; S_k is their sum "
                             "(Veit et al. multiplied the mean by the number of paths)")
    for wrong, message in _variants(case, _sums):
        if _close(got, wrong, 1e-6):
            raise AssertionError(f"{what}: {message}")
    k = int(np.argmax(np.abs(got - want)))
    a, b = _pair(got[k], want[k])
    raise AssertionError(f"{what}: S_{k} is {a} but should be {b}, the sum over the C({n},{k}) paths through k = {k} "
                         "of the blocks of the norm of J_{i_1}ᵀ ··· J_{i_k}ᵀ g")


PATH_NORM_SUMS = Exercise("path_norm_sums", ["path_norm_sums"], _stack_of_jacobians, _js_probe, _sums_judge)


def check_path_norm_sums(fn, hidden=False):
    """``fn(Js, g)`` must return S_k, k = 0..n: the sum of the norms of the paths through k branches."""
    PATH_NORM_SUMS.check(fn, hidden=hidden)


def _veit_judge(case, out):
    got = value(out, "veit_measured")
    if got is None:
        raise AssertionError('set `veit_measured` to "S" or "G"')
    text = got.strip().upper().replace("_", "").replace("ₖ", "K") if isinstance(got, str) else None
    if text not in ("S", "SK", "G", "GK"):
        raise AssertionError(f'veit_measured should be the text "S" or "G", not {got!r:.40}')
    if text.startswith("G"):
        raise AssertionError("veit_measured: Veit et al. sampled single paths, measured each one's gradient norm "
                             "and multiplied the mean by the number of paths of that length: a sum of norms")


VEIT_MEASURED = Exercise("veit_measured", ["veit_measured"], lambda seed: [None], lambda answer, case: answer,
                         _veit_judge, functions=())
register("ch5-ex3a-tests", LENGTH_COMPONENTS)
register("ch5-ex3b-tests", PATH_NORM_SUMS, VEIT_MEASURED)


def check_veit_measured(answer):
    """Which quantity Veit et al.'s "total gradient magnitude" is: "S" (a sum of path norms)."""
    VEIT_MEASURED.check(answer)


# ---------------------------------------------------------------- exercise 4: a lesion study


def _lesion_cases(seed):
    rng = np.random.default_rng(seed)
    cases = [{"residual": True, "depth": 5, "seed": 0}, {"residual": False, "depth": 4, "seed": 1}]
    cases += [{"residual": bool(rng.integers(2)), "depth": int(rng.integers(2, 7)), "seed": int(rng.integers(10**6))}]
    return cases


def _lesion_net(case):
    """A small BatchNorm MLP whose running statistics differ from a batch's, its inputs and labels."""
    seed = int(case["seed"])
    net = mlp(int(case["depth"]), width=8, d_in=6, d_out=4, norm="batch", residual=bool(case["residual"]),
              init="he", seed=seed)
    X = torch.randn(40, 6, generator=torch.Generator().manual_seed(seed + 1))
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(X * 2 + 1)
    y = lesion_logits(net, X).argmax(dim=1)  # the intact net is right on every input
    net.train()
    return net, X, y


def _lesion_probe(fn, case):
    net, X, y = _lesion_net(case)
    return fn(copy.deepcopy(net), X.clone(), y.clone())


def _drops(net, X, y, shift=0):
    intact = lesion_accuracy(net, X, y)
    n = len(net.blocks)
    return np.array([intact - lesion_accuracy(net, X, y, drop=(i + shift,)) for i in range(n)])


@torch.no_grad()
def _zeroed_drops(net, X, y):
    """A mistake: 'deleting' block i by setting its output to zero instead of passing its input on."""
    twin = copy.deepcopy(net).eval()
    out = []
    for skip in [None, *range(len(twin.blocks))]:
        h = twin.stem(X)
        for i, block in enumerate(twin.blocks):
            h = torch.zeros_like(h) if i == skip else block(h)
        out.append((twin.head(twin.head_act(twin.head_norm(h))).argmax(dim=1) == y).double().mean().item())
    return out[0] - np.array(out[1:])


def _train_mode_drops(net, X, y):
    twin = copy.deepcopy(net).train()
    out = []
    with torch.no_grad():
        for skip in [None, *range(len(twin.blocks))]:
            h = twin.stem(X)
            for i, block in enumerate(twin.blocks):
                if i != skip:
                    h = block(h)
            out.append((twin.head(twin.head_act(twin.head_norm(h))).argmax(dim=1) == y).double().mean().item())
    return out[0] - np.array(out[1:])


def _lesion_judge(case, out):
    net, X, y = _lesion_net(case)
    n, kind = len(net.blocks), "residual" if case["residual"] else "plain"
    what = f"deletion_drops for a {kind} net of {n} blocks"
    got = _array_of(out, "deletion_drops", (n,), what)
    want = _drops(net, X, y)
    tol = 1 / len(y) + 1e-9  # one input's verdict may flip on a near tie
    if np.all(np.abs(got - want) <= tol):
        return
    intact = lesion_accuracy(net, X, y)
    mistakes = [
        (intact - want, "these are the accuracies with each block deleted, not the drops: subtract them from "
                        "the intact net's accuracy"),
        (-want, "the sign is flipped: a drop is the intact accuracy minus the lesioned one"),
        (100 * want, "give the drops as fractions (0.05), not in percent"),
        (len(y) * want, f"these are numbers of images; give the drops as fractions of the {len(y)} inputs"),
        (_zeroed_drops(net, X, y), "you replaced the deleted block's output by zeros; a deleted block passes its "
                                   "input on unchanged, h_(i+1) = h_i"),
        (np.zeros(n), "no block was deleted: a deleted block passes its input on unchanged, h_(i+1) = h_i"),
        (_train_mode_drops(net, X, y), "your accuracies are those of the net in training mode: call net.eval() "
                                       "first, so that BatchNorm uses its running statistics"),
    ]
    if n > 1:
        mistakes.append((np.append(_drops(net, X, y, shift=1)[:-1], 0.0), "you deleted block i + 1 instead of "
                                                                          "block i (0-based indices into net.blocks)"))
    for wrong, message in mistakes:
        if np.all(np.abs(got - np.asarray(wrong)) <= tol):
            raise AssertionError(f"{what}: {message}")
    i = int(np.argmax(np.abs(got - want)))
    raise AssertionError(f"{what}: the drop for block {i} is {got[i]:.3f}; deleting it (h_(i+1) = h_i, stem and "
                         f"head kept, eval mode) changes the accuracy from {intact:.3f} by {want[i]:.3f}")


DELETION_DROPS = Exercise("deletion_drops", ["deletion_drops"], _lesion_cases, _lesion_probe, _lesion_judge)
register("ch5-ex4a-tests", DELETION_DROPS)


def check_deletion_drops(fn, hidden=False):
    """``fn(net, X, y)`` must return, for each block, the drop in accuracy when that block alone is deleted."""
    DELETION_DROPS.check(fn, hidden=hidden)


@functools.lru_cache(maxsize=8)
def lesion_reference(seed):
    """The single-deletion drops of :func:`gradflow.papers.lesion_pair`'s two nets: (residual, plain)."""
    resnet, plain, X_test, y_test = lesion_pair(seed=seed)
    with one_thread():
        return _drops(resnet, X_test, y_test), _drops(plain, X_test, y_test), lesion_accuracy(resnet, X_test, y_test)


LESION_TOLERANCE = 0.015  # about seven of the 449 test images: training differs in the last bits between machines


def _conclusion_judge(case, out):
    out = value(out, "your answers")
    worst, best, seed = (value(v, name) for v, name in zip(out, ("residual_worst", "plain_best", "SEED"),
                                                             strict=True))
    for v, name in ((worst, "residual_worst"), (best, "plain_best")):
        if v is None:
            raise AssertionError(f"set `{name}` to the number your lesion study gives (a fraction, e.g. 0.05)")
    seed = int(as_scalar(seed, "SEED"))
    if not 0 <= seed < 10**6:
        raise AssertionError(f"SEED = {seed}: use the notebook's SEED (a small non-negative whole number)")
    worst, best = as_scalar(worst, "residual_worst"), as_scalar(best, "plain_best")
    res, pl, _ = lesion_reference(seed)
    ok = lambda got, want: abs(got - want) <= LESION_TOLERANCE  # noqa: E731
    if ok(worst, res.max()) and ok(best, pl.min()):
        return
    if max(worst, best) > 1:
        raise AssertionError("give the drops as fractions of the test set (0.05 for five points), not in percent")
    if ok(worst, pl.min()) and ok(best, res.max()):
        raise AssertionError("residual_worst and plain_best are swapped")
    if not ok(worst, res.max()):
        if ok(worst, res.min()):
            raise AssertionError(f"residual_worst = {worst:.3f} is the smallest drop; the question is the largest: "
                                 "the block whose deletion hurts the residual net most")
        raise AssertionError(f"residual_worst = {worst:.3f}; the largest of deletion_drops(resnet, X_test, y_test) "
                             f"for the nets of lesion_pair(seed={seed}) is {res.max():.3f}")
    if ok(best, pl.max()):
        raise AssertionError(f"plain_best = {best:.3f} is the largest drop; the question is the smallest: the "
                             "layer whose deletion hurts the plain net least")
    raise AssertionError(f"plain_best = {best:.3f}; the smallest of deletion_drops(plain, X_test, y_test) for the "
                         f"nets of lesion_pair(seed={seed}) is {pl.min():.3f}")


LESION_CONCLUSION = Exercise("lesion conclusion", ["residual_worst", "plain_best", "SEED"], lambda seed: [None],
                             lambda worst, best, seed, case: [worst, best, seed], _conclusion_judge, functions=(),
                             timeout=60)
register("ch5-ex4b-tests", LESION_CONCLUSION)


def check_lesion_conclusion(residual_worst, plain_best, seed):
    """The largest single-deletion drop of the residual net and the smallest of the plain net (lesion_pair(seed))."""
    LESION_CONCLUSION.check(residual_worst, plain_best, seed)


# ---------------------------------------------------------------- exercise 5: shattered gradients


def _lag1(g):
    """Pearson correlation of g[:-1] and g[1:] (each with its own mean and spread)."""
    g = np.asarray(g, dtype=np.float64)
    a, b = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _acf1(g):
    """The textbook autocorrelation estimator at lag 1 (one overall mean and variance): also accepted."""
    c = np.asarray(g, dtype=np.float64) - np.mean(g)
    return float(c[:-1] @ c[1:] / (c @ c))


def _uncentred(g):
    g = np.asarray(g, dtype=np.float64)
    return float(g[:-1] @ g[1:] / np.sqrt((g[:-1] @ g[:-1]) * (g[1:] @ g[1:])))


ESTIMATORS = "the Pearson correlation of g[:-1] and g[1:] (or the textbook lag-1 autocorrelation)"


def _series_cases(seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(-2, 2, 64)
    noise = np.random.default_rng(0).standard_normal(256)
    cases = [("a sine wave", np.sin(3 * t)), ("a straight line", 3 * t + 1),
             ("an alternating sequence +1, -1, +1, ...", np.array([(-1.0) ** i for i in range(50)])),
             ("white noise", noise), ("white noise plus 5", noise + 5), ("white noise times 1000", noise * 1000)]
    walk = np.cumsum(rng.standard_normal(int(rng.integers(20, 200))))
    ar = np.zeros(int(rng.integers(30, 120)))
    phi = float(rng.uniform(-0.9, 0.9))
    for i in range(1, len(ar)):
        ar[i] = phi * ar[i - 1] + rng.standard_normal()
    cases += [("a random walk", walk), (f"an AR(1) series with coefficient {phi:.2f}", ar)]
    return [{"name": name, "g": g.tolist()} for name, g in cases]


def _series_probe(fn, case):
    return fn(torch.tensor(case["g"], dtype=torch.float64))


def _lag1_judge(case, out):
    g = np.array(case["g"], dtype=np.float64)
    what = f"your correlation for {case['name']}"
    got = as_scalar(value(out, "lag1_correlation"), what)
    pearson, acf = _lag1(g), _acf1(g)
    if abs(got - pearson) < 1e-6 or abs(got - acf) < 1e-6:
        return
    a, b = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    unscaled = (np.mean(a * b), np.sum(a * b), np.mean(g[:-1] * g[1:]), np.sum(g[:-1] * g[1:]))
    shown, want = _pair(got, pearson)
    if any(abs(got - u) <= 1e-6 * max(1.0, abs(u)) for u in unscaled):
        raise AssertionError(f"{what} is {got:.4g}, a covariance or mean product, not a correlation: divide by "
                             f"the product of the two standard deviations (the answer is {pearson:.4f})")
    if abs(got - _uncentred(g)) < 1e-6:
        raise AssertionError(f"{what} is {shown} but should be {want}: subtract the means of g[:-1] and g[1:] "
                             "before multiplying (a correlation, not a cosine)")
    if abs(got - 1.0) < 1e-9 and abs(pearson - 1.0) > 1e-6:
        raise AssertionError(f"{what} is 1.0, but it should be {pearson:.4f}: did you correlate g with itself "
                             "instead of g[:-1] with g[1:]?")
    if abs(got) > 1 + 1e-9:
        raise AssertionError(f"{what} is {got:.4g}, outside [-1, 1]: divide the covariance by the product of the two "
                             "standard deviations")
    if "plus 5" in case["name"]:
        raise AssertionError(f"{what} is {shown} but should be {want}, the same as without the 5: subtract the "
                             "means before multiplying")
    raise AssertionError(f"{what} is {shown}; {ESTIMATORS} is {want}")


LAG1_CORRELATION = Exercise("lag1_correlation", ["lag1_correlation"], _series_cases, _series_probe, _lag1_judge)


def check_neighbour_correlation(fn, hidden=False):
    """``fn(g)`` must return the correlation between ``g[i]`` and ``g[i+1]`` of a 1-D tensor ``g``."""
    LAG1_CORRELATION.check(fn, hidden=hidden)


def _depth_cases(seed):
    cases = [{"depth": 12, "residual": False, "seeds": [0, 1, 2]}, {"depth": 12, "residual": True, "seeds": [0, 1, 2]}]
    if seed:
        rng = np.random.default_rng(seed)
        s = int(rng.integers(100))
        cases = [{"depth": int(rng.integers(3, 20)), "residual": bool(r), "seeds": [s, s + 1, s + 2]} for r in (0, 1)]
    return cases


def _depth_probe(fn, case):
    return fn(case["depth"], case["residual"], list(case["seeds"]))


@functools.lru_cache(maxsize=64)
def _depth_reference(depth, residual, seeds):
    with one_thread():
        grads = [grid_gradients(depth, residual, seed=s).numpy() for s in seeds]
    pearson, acf = [_lag1(g) for g in grads], [_acf1(g) for g in grads]
    return (float(np.mean(pearson)), float(np.mean(acf)), pearson[0], acf[0],
            float(np.median(pearson)), float(np.median(acf)))


def _depth_judge(case, out):
    depth, residual, seeds = int(case["depth"]), bool(case["residual"]), tuple(int(s) for s in case["seeds"])
    kind = "residual" if residual else "plain"
    what = f"correlation_at({depth}, residual={residual}, seeds={list(seeds)})"
    got = as_scalar(value(out, "correlation_at"), what)
    pearson, acf, first_p, first_a, median_p, median_a = _depth_reference(depth, residual, seeds)
    tol = 2e-5  # float32 gradients: the same estimator agrees to ~1e-6 on any machine
    close = lambda *refs: any(abs(got - r) <= tol for r in refs)  # noqa: E731
    if close(pearson, acf):
        return
    first, median = close(first_p, first_a), close(median_p, median_a)
    if first or median:  # the median of the seeds' values is one of them: say both when they coincide
        alone = f"the correlation for seed {seeds[0]} alone"
        taken = f"{alone} (here also the median over the seeds)" if first and median else (
            "the median over the seeds" if median else alone)
        raise AssertionError(f"{what} = {got:.4f} is {taken}: average (the mean of) lag1_correlation over all "
                             f"the seeds given ({len(seeds)} of them)")
    other_p, other_a = _depth_reference(depth, not residual, seeds)[:2]
    if abs(got - other_p) <= tol or abs(got - other_a) <= tol:
        raise AssertionError(f"{what} = {got:.4f} is the {'plain' if residual else 'residual'} net's value: pass "
                             "`residual` on to grid_gradients")
    shown, want = _pair(got, pearson)
    raise AssertionError(f"{what} is {shown}; averaging your lag1_correlation of grid_gradients({depth}, "
                         f"residual={residual}, seed=s) over the seeds gives {want} for the {kind} net "
                         f"({ESTIMATORS})")


DEPTH_CORRELATION = Exercise("correlation_at", ["correlation_at"], _depth_cases, _depth_probe, _depth_judge)
register("ch5-ex5-tests", LAG1_CORRELATION, DEPTH_CORRELATION)


def check_depth_correlations(fn, hidden=False):
    """``fn(depth, residual, seeds)``: the mean neighbour correlation of ``grid_gradients`` over ``seeds``."""
    DEPTH_CORRELATION.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 1: BatchNorm's growth rate


def _activation(case):
    """``(phi, dphi)`` for the case's activation, acting elementwise on float64 tensors."""
    name = case["activation"]
    if name == "relu":
        return torch.relu, lambda z: (z > 0).to(z.dtype)
    if name == "leaky_relu":
        a = float(case["slope"])
        return (lambda z: torch.where(z > 0, z, a * z),
                lambda z: torch.where(z > 0, torch.ones_like(z), torch.full_like(z, a)))
    if name == "tanh":
        return torch.tanh, lambda z: 1 - torch.tanh(z) ** 2
    if name == "sigmoid":
        return torch.sigmoid, lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z))
    if name == "softplus":
        return torch.nn.functional.softplus, torch.sigmoid
    if name == "linear":
        return (lambda z: z), torch.ones_like
    raise ValueError(f"unknown activation {name!r}")


def _describe(case):
    return f"leaky ReLU with slope {case['slope']:.3g}" if case["activation"] == "leaky_relu" else case["activation"]


def _bn_cases(seed):
    cases = [{"activation": "relu"}, {"activation": "tanh"}, {"activation": "leaky_relu", "slope": 0.2},
             {"activation": "sigmoid"}]
    if seed:
        rng = np.random.default_rng(seed)
        cases = [{"activation": "leaky_relu", "slope": round(float(rng.uniform(0.01, 0.6)), 4)},
                 {"activation": str(rng.choice(["softplus", "sigmoid", "tanh"]))}, {"activation": "relu"},
                 {"activation": "linear"}]
    return cases


def _bn_probe(fn, case):
    phi, dphi = _activation(case)
    return fn(phi, dphi)


@functools.lru_cache(maxsize=64)
def _gaussian_moments(key):
    """E[φ'²], E[φ], E[φ²], E[φ'] for z ~ N(0, 1): midpoint rule on [-12, 12], a cell edge at 0 (the kinks)."""
    case = dict(key)
    phi, dphi = _activation(case)
    h = 1e-4
    z = torch.arange(-12 + h / 2, 12, h, dtype=torch.float64)
    w = torch.exp(-z**2 / 2) / math.sqrt(2 * math.pi) * h
    f, d = phi(z), dphi(z)
    return tuple(float((w * v).sum()) for v in (d**2, f, f**2, d))


def bn_growth_reference(case):
    """√(E[φ'(z)²] / Var φ(z)), z ~ N(0, 1): the growth of the gradient's norm per BatchNorm block."""
    d2, m1, m2, _ = _gaussian_moments(tuple(sorted(case.items())))
    return math.sqrt(d2 / (m2 - m1**2))


# "four significant digits": a relative error below 4e-4 (half a unit in the fourth digit for rates of 1 to 1.25). A
# trapezoid rule with a node at the ReLU kink and spacing 1e-3 is off by 2.5e-4 and passes; 200 Gauss-Hermite nodes
# (9e-4, the kink) and 10^7 random samples (about 5e-4) do not.
BN_RATE_TOLERANCE = 4e-4


def _bn_judge(case, out):
    what = f"bn_growth_rate for {_describe(case)}"
    got = as_scalar(value(out, "bn_growth_rate"), what)
    d2, m1, m2, d1 = _gaussian_moments(tuple(sorted(case.items())))
    want = math.sqrt(d2 / (m2 - m1**2))
    if abs(got - want) <= BN_RATE_TOLERANCE * want:
        return
    shown, right = _pair(got, want)
    mistakes = [
        (want**2, "that is r², the growth of the mean *squared* gradient: take the square root"),
        (1 / want, "that is 1/r: E[φ'(z)²] goes in the numerator, the variance that BatchNorm divides by in the "
                   "denominator"),
        (math.sqrt(d1**2 / (m2 - m1**2)), "you used the square of the mean, E[φ'(z)]²; the backward pass multiplies "
                                          "the squared gradient by the mean of the square, E[φ'(z)²]"),
        (math.sqrt(d2 / m2), "you divided by E[φ(z)²]; BatchNorm divides by the spread of its input over the batch, "
                             "the variance Var φ(z) = E[φ(z)²] − E[φ(z)]²"),
    ]
    for wrong, message in mistakes:
        if abs(got - wrong) <= BN_RATE_TOLERANCE * abs(wrong):
            raise AssertionError(f"{what} is {shown}: {message}")
    if abs(got - want) <= 0.02 * want:
        raise AssertionError(f"{what} is {shown}, close to {right} but off by {abs(got - want) / want:.1e} of it, "
                             "more than four significant digits allow: integrate numerically on a fine grid (random "
                             "samples are too noisy; a grid from -8 to 8 with 100 000 points is plenty)")
    raise AssertionError(f"{what} is {shown}; √(E[φ'(z)²] / Var φ(z)) for z ~ N(0, 1) is {right}")


BN_GROWTH_RATE = Exercise("bn_growth_rate", ["bn_growth_rate"], _bn_cases, _bn_probe, _bn_judge)
register("ch5-ex1-tests", BN_GROWTH_RATE)


def check_bn_growth_rate(fn, hidden=False):
    """``fn(phi, dphi)`` must return √(E[φ'(z)²] / Var φ(z)) for z ~ N(0, 1), to four significant digits."""
    BN_GROWTH_RATE.check(fn, hidden=hidden)

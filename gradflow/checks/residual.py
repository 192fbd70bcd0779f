"""Checkers for chapter 2's exercises (residual blocks), as :class:`~gradflow.checks.exercise.Exercise` objects.

Each exercise draws its cases from a seed as plain data, runs the student's code on them in a *probe*
(the student's process; a sandbox when grading) and hands the outputs to a *judge*, which recomputes
the reference itself and raises ``AssertionError`` with a message that names the mistake. Outputs may
be torch tensors, NumPy arrays or nested lists, float64 or float32; loops and vectorised code are fine.

=========  =====================  ==================  ======================================
exercise   answer                 grade_id            page
=========  =====================  ==================  ======================================
1          ``residual_block``     ``ch2-ex1-tests``   residual.ipynb (the block in code)
2          ``zero_last_linear_``  ``ch2-ex2-tests``   residual.ipynb (the identity at zero)
3          ``deepen``             ``ch2-ex3-tests``   residual.ipynb (nested function classes)
4          ``growth``             ``ch2-ex4-tests``   signal.ipynb (the variance law)
5          ``branch_scale``       ``ch2-ex5-tests``   signal.ipynb (the fixes)
=========  =====================  ==================  ======================================

The ``check_*``-style wrappers (``residual_block(fn)``, ...) keep the names the test cells call.
"""

import math

import numpy as np
import torch
from torch import nn

from ..nets import Block, mlp
from . import as_array, as_scalar
from .exercise import Exercise, StudentError, register, value

__all__ = ["RESIDUAL_BLOCK", "ZERO_LAST_LINEAR", "DEEPEN", "GROWTH", "BRANCH_SCALE", "residual_block",
           "zero_last_linear", "deepen", "growth", "branch_scale", "growth_reference"]

F64 = torch.float64
_SHAPE_HINT = ("Weights are stored like nn.Linear's: W has shape (out, in), so a batch x of row vectors "
               "is multiplied as x @ W.T.")


# ---------------------------------------------------------------- plumbing

def _tensor(data):
    return torch.tensor(data, dtype=F64)


def _rng(seed):
    return np.random.default_rng(int(seed))


def _tolerance(precise, scale):
    """Absolute tolerance for a float64 (``precise``) or float32 answer, on numbers of size ``scale``."""
    eps = 1e-9 if precise else 2e-5  # float32 rounding is ~1e-7 per operation
    return eps * (1.0 + scale)


def _array(out, name, shape):
    """``out`` (plain data from a probe) as a float64 array of ``shape`` and its own precision, or an AssertionError.

    The precision (float64 or lower) decides the tolerance: a float32 answer is right to float32 rounding.
    """
    raw = value(out, name)
    precise = not (isinstance(raw, np.ndarray) and raw.dtype.kind == "f" and raw.dtype != np.float64)
    arr = as_array(raw, name)
    if arr.shape != tuple(shape):
        raise AssertionError(f"{name} returned shape {arr.shape}; expected {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        raise AssertionError(f"{name} returned NaN or infinite values")
    return arr, precise


def _diagnose(out, ref, candidates, what, precise=True):
    """Pass if ``out`` matches ``ref``; else raise naming the first known mistake ``out`` matches."""
    tol = _tolerance(precise, float(np.abs(ref).max(initial=0.0)))
    if np.allclose(out, ref, rtol=0, atol=tol):
        return
    for wrong, message in candidates:
        wrong = np.asarray(wrong)
        if wrong.shape == out.shape and np.allclose(out, wrong, rtol=0, atol=tol):
            raise AssertionError(f"{what}: {message}")
    err = float(np.abs(out - ref).max())
    raise AssertionError(f"{what}: the output differs from the correct one by up to {err:.3g}")


# ---------------------------------------------------------------- exercise 1: the forward pass

def _block_cases(seed):
    rng = _rng(seed)
    shapes = [(4, 5, 7), (1, 3, 9), (6, 2, 2)]
    cases = []
    for batch, d, hidden in shapes:
        draw = lambda *shape: rng.standard_normal(shape).tolist()  # noqa: E731
        cases.append({"x": draw(batch, d), "W1": draw(hidden, d), "b1": draw(hidden), "W2": draw(d, hidden),
                      "b2": draw(d)})
    return cases


def _block_probe(fn, case):
    args = [_tensor(case[k]) for k in ("x", "W1", "b1", "W2", "b2")]
    return fn(*args)


def _block_judge(case, out):
    x, W1, b1, W2, b2 = (np.asarray(case[k], dtype=np.float64) for k in ("x", "W1", "b1", "W2", "b2"))
    arr, precise = _array(out, "residual_block", x.shape)
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    branch = relu(x @ W1.T + b1) @ W2.T + b2
    _diagnose(arr, x + branch, [
        (branch, "this is F(x) alone: the block must add the input, y = x + F(x)"),
        (relu(x + branch), "you applied relu after the addition (the original post-activation block); this "
                           "exercise asks for y = x + F(x), nothing after the sum"),
        (x + relu(x @ W1.T + b1) @ W2.T, "the bias b2 of the second layer is missing"),
        (x + relu(x @ W1.T) @ W2.T + b2, "the bias b1 of the first layer is missing"),
        (x + (x @ W1.T + b1) @ W2.T + b2, "the relu between the two layers is missing"),
        (2 * x + branch, "the input is added twice"),
    ], "residual_block", precise)


RESIDUAL_BLOCK = register("ch2-ex1-tests", Exercise(
    "residual_block", ["residual_block"], _block_cases, _block_probe, _block_judge))


def residual_block(fn, hidden=False):
    """Exercise 1: ``fn(x, W1, b1, W2, b2) == x + relu(x @ W1.T + b1) @ W2.T + b2``."""
    RESIDUAL_BLOCK.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 2: zero-init gives the identity

_BRANCH_LABELS = ("a Linear-ReLU-Linear branch", "a pre-activation BatchNorm branch",
                  "a Linear-GELU-Linear-Dropout branch (a transformer's MLP)")


def _branches(seed, d, h):
    """Three seeded branches with non-zero parameters: a two-layer MLP, a pre-activation BatchNorm branch, and
    a transformer-style MLP whose last module is a Dropout (so the last module is not the last nn.Linear)."""
    gen = torch.Generator().manual_seed(int(seed))
    mlp_ = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d)).double()
    pre = nn.Sequential(nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(),
                        nn.Linear(h, d)).double()
    ffn = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d), nn.Dropout(0.1)).double()
    with torch.no_grad():
        for p in list(mlp_.parameters()) + list(pre.parameters()) + list(ffn.parameters()):
            p.copy_(torch.rand(p.shape, generator=gen, dtype=F64) + 0.5)  # all non-zero
    return [mlp_, pre, ffn]


def _zero_cases(seed):
    rng = _rng(seed)
    return [{"seed": int(rng.integers(2**31)), "d": d, "h": h} for d, h in ((6, 10), (3, 17))]


def _zero_probe(fn, case):
    x = torch.randn(8, case["d"], generator=torch.Generator().manual_seed(case["seed"] + 1), dtype=F64)
    outs = []
    for branch in _branches(case["seed"], case["d"], case["h"]):
        fn(branch)
        branch.eval()  # BatchNorm from its running statistics: the forward pass changes nothing
        with torch.no_grad():
            y = branch(x)
        outs.append({"state": dict(branch.state_dict()), "F": y})
    return outs


def _zero_judge(case, out):
    name = "zero_last_linear_"
    if isinstance(out, StudentError) and "'Dropout' object has no attribute" in out.message:
        raise AssertionError(f"{name} failed on {_BRANCH_LABELS[2]}: {out.message}. The last module of a branch "
                             "need not be an nn.Linear; find the last nn.Linear among branch.modules()")
    out = value(out, name)
    if not isinstance(out, list) or len(out) != len(_BRANCH_LABELS) or not all(isinstance(o, dict) for o in out):
        raise AssertionError(f"{name}: the branches could not be inspected after your function ran")
    for label, branch, got in zip(_BRANCH_LABELS, _branches(case["seed"], case["d"], case["h"]), out, strict=True):
        before = {k: v.numpy() for k, v in branch.state_dict().items()}
        after = got.get("state")
        if not isinstance(after, dict) or set(after) != set(before):
            raise AssertionError(f"on {label}, the branch's layers changed: zero the last nn.Linear's parameters "
                                 "in place instead of adding or removing layers")
        after = {k: as_array(value(v, k), k) for k, v in after.items()}
        linears = [f"{i}" for i, m in enumerate(branch) if isinstance(m, nn.Linear)]
        first, last = linears[0], linears[-1]
        is_zero = lambda key, after=after, before=before: (  # noqa: E731
            after[key].shape == before[key].shape and not after[key].any())
        if all(is_zero(f"{i}.weight") and is_zero(f"{i}.bias") for i in linears):
            raise AssertionError("you zeroed every nn.Linear of the branch; then the branch's hidden units are "
                                 "all 0 and its first layer never gets a gradient, so the block learns at most "
                                 "a constant. Zero only the last one")
        if is_zero(f"{first}.weight") and not is_zero(f"{last}.weight"):
            raise AssertionError("you zeroed the first nn.Linear of the branch; zero the last one "
                                 "(the layer whose output is added to x)")
        if not is_zero(f"{last}.weight"):
            raise AssertionError(f"on {label}, the last nn.Linear's weight is not zero "
                                 "(did you modify a copy instead of the branch itself, in place?)")
        if not is_zero(f"{last}.bias"):
            raise AssertionError("the last nn.Linear's weight is zero but its bias is not: the block then "
                                 "computes x + b, not x")
        for key, old in before.items():
            if key.startswith(f"{last}.") or key.split(".")[-1] in ("running_mean", "running_var",
                                                                    "num_batches_tracked"):
                continue
            if after[key].shape != old.shape or not np.array_equal(after[key], old):
                raise AssertionError(f"on {label}, parameter {key!r} changed; only the last nn.Linear "
                                     "should be zeroed")
        F = as_array(value(got.get("F"), "F(x)"), "F(x)")
        if F.shape != (8, case["d"]) or F.any():
            raise AssertionError(f"on {label}, F(x) is not exactly 0 after your function, so x + F(x) is not x")


ZERO_LAST_LINEAR = register("ch2-ex2-tests", Exercise(
    "zero_last_linear_", ["zero_last_linear_"], _zero_cases, _zero_probe, _zero_judge))


def zero_last_linear(fn, hidden=False):
    """Exercise 2: ``fn(branch)`` zeroes the last ``nn.Linear`` of ``branch`` in place, nothing else."""
    ZERO_LAST_LINEAR.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 3: a deeper plain net that nests

def _deepen_cases(seed):
    rng = _rng(seed)
    specs = [(3, 8), (1, 5), (5, 16)]
    return [{"depth": depth, "width": width, "seed": int(rng.integers(2**31)), "n": 200, "spread": 1.5}
            for depth, width in specs]


def deepen_problem(case):
    """The plain stack and the inputs of one case: ``(blocks, X)``, float64, from the case's seed alone."""
    net = mlp(case["depth"], width=case["width"], d_in=case["width"], d_out=case["width"], init="he",
              seed=case["seed"], dtype=F64)
    X = case["spread"] * torch.randn(case["n"], case["width"], dtype=F64,
                                     generator=torch.Generator().manual_seed(case["seed"] + 1))
    return nn.Sequential(*net.blocks), X


def _deepen_probe(fn, case):
    blocks, X = deepen_problem(case)
    new = fn(blocks, X.clone())
    if not isinstance(new, (nn.Sequential, nn.ModuleList, list, tuple)):
        return {"type": type(new).__name__}
    # the bias of the caller's last block after the call: changed means blocks itself was modified
    original = blocks[-1].linear.bias.detach().clone()
    layers = []
    for m in new:
        if not isinstance(m, Block):
            layers.append({"type": type(m).__name__})
            continue
        layers.append({"type": "Block", "residual": bool(m.residual), "norm": type(m.norm).__name__,
                       "act": type(m.act).__name__, "W": m.linear.weight.detach(), "b": m.linear.bias.detach()})
    return {"type": "Sequential", "layers": layers, "original_last_bias": original}


def _stack_forward(Ws, bs, X):
    """A plain pre-activation stack h -> W relu(h) + b, in NumPy (float64 or the answer's precision)."""
    h = X
    for W, b in zip(Ws, bs, strict=True):
        h = np.maximum(h, 0) @ W.T + b
    return h


def _deepen_judge(case, out):
    name = "deepen"
    out = value(out, name)
    if not isinstance(out, dict) or out.get("type") != "Sequential":
        kind = out.get("type") if isinstance(out, dict) else type(out).__name__
        raise AssertionError(f"{name} returned a {kind}; return an nn.Sequential of Blocks (for example "
                             "nn.Sequential(*blocks, new_block) after changing a copy of the last block)")
    blocks, X = deepen_problem(case)
    L, n = case["depth"], case["width"]
    layers = out.get("layers") or []
    if len(layers) != L + 1:
        raise AssertionError(f"{name} returned {len(layers)} blocks for a stack of {L}; expected {L + 1}: "
                             "the original blocks and one new block at the end")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("type") != "Block":
            raise AssertionError(f"layer {i} of your stack is a {layer.get('type') if isinstance(layer, dict) else '?'}"
                                 ", not a gradflow.nets.Block")
        if layer.get("residual"):
            raise AssertionError(f"block {i} is a residual block; this exercise is about plain nets: every block "
                                 "must have residual=False")
        if layer.get("norm") != "Identity" or layer.get("act") != "ReLU":
            raise AssertionError(f"block {i} has norm {layer.get('norm')} and activation {layer.get('act')}; "
                                 "the blocks are plain ReLU blocks without normalisation")
    raws = [value(layer.get(k), k) for layer in layers for k in ("W", "b")]
    precise = not any(isinstance(r, np.ndarray) and r.dtype.kind == "f" and r.dtype != np.float64 for r in raws)
    Ws = [as_array(r, "W") for r in raws[0::2]]
    bs = [as_array(r, "b") for r in raws[1::2]]
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        if W.shape != (n, n) or b.shape != (n,) or not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise AssertionError(f"block {i} has a weight of shape {W.shape} and a bias of shape {b.shape}; "
                                 f"expected ({n}, {n}) and ({n},), finite")
    W0 = [blk.linear.weight.detach().numpy() for blk in blocks]
    b0 = [blk.linear.bias.detach().numpy() for blk in blocks]
    X = X.numpy()
    for i in range(L):
        if not np.allclose(Ws[i], W0[i], atol=1e-6):
            if np.allclose(Ws[i], np.eye(n), atol=1e-6):
                raise AssertionError(f"your new block is block {i}; append it at the end, after the last original "
                                     "block (the stack's output is its last hidden state, used as it is)")
            raise AssertionError(f"the weight of block {i} changed; keep the original blocks' weights and change "
                                 "only the bias of the last original block")
        if i < L - 1 and not np.allclose(bs[i], b0[i], atol=1e-6):
            raise AssertionError(f"the bias of block {i} changed; only the last original block's bias may change")
    try:
        original = as_array(value(out.get("original_last_bias"), "bias"), "bias")
    except AssertionError:
        original = None
    if original is not None and original.shape == b0[-1].shape and not np.array_equal(original, b0[-1]):
        raise AssertionError("the bias of the last block of `blocks` itself changed: work on copy.deepcopy(blocks), "
                             "so that the network you were given still computes what it did")
    ref = _stack_forward(W0, b0, X)
    got = _stack_forward(Ws, bs, X)
    tol = (1e-9 if precise else 2e-5) * (1 + float(np.abs(ref).max()))
    if np.allclose(got, ref, rtol=0, atol=tol):
        return
    h_L = _stack_forward(W0[:-1], b0[:-1], X)
    h_L = np.maximum(h_L, 0) @ W0[-1].T  # the last original block without its bias: h_L = this + b_L
    c = bs[L - 1] - b0[L - 1]  # the shift of the last original block's bias
    shifted = h_L + bs[L - 1]  # h_L + c, what reaches the new block
    W_new, b_new = Ws[L], bs[L]
    err = float(np.abs(got - ref).max())
    if np.allclose(got, np.maximum(ref, 0), atol=tol):
        raise AssertionError("your new block outputs relu(h_L): its relu clips the negative entries of h_L. Raise "
                             "the last block's bias by a shift c ≥ −min(h_L) so that every value reaching the new "
                             "block is ≥ 0, and give the new block the bias −c")
    if not np.allclose(W_new, np.eye(n), atol=1e-6):
        raise AssertionError(f"the new block's weight is not the identity matrix (max deviation "
                             f"{np.abs(W_new - np.eye(n)).max():.3g}); with W = I and a shift c it computes "
                             "relu(h_L + c) − c = h_L")
    if np.abs(c).max() == 0:
        raise AssertionError("the last block's bias is unchanged, so the new block's relu still clips the negative "
                             "entries of h_L: raise that bias by c ≥ −min(h_L)")
    if np.allclose(got, ref + c, atol=tol) or np.allclose(b_new, 0, atol=1e-12):
        raise AssertionError("the output is shifted by c: the new block's bias must be −c to undo the shift")
    worst = float(shifted.min())
    if worst < -tol:
        raise AssertionError(f"the shift is too small: on these inputs h_L + c reaches {worst:.4g} < 0, where the "
                             "new block's relu clips it. Choose c from the data, c ≥ −min(h_L) over every unit and "
                             "every input of X")
    if not np.allclose(b_new, -c, atol=1e-6):
        raise AssertionError("the new block's bias is not −c (minus the shift you added to the last block's bias)")
    hint = (": that is float32 rounding; did a tensor you made (torch.full, torch.tensor, torch.eye without "
            "dtype=torch.float64) come out float32?" if err < 1e-4 * (1 + float(np.abs(ref).max())) else "")
    raise AssertionError(f"your deeper stack differs from the original by up to {err:.3g} on X{hint}")


DEEPEN = register("ch2-ex3-tests", Exercise("deepen", ["deepen"], _deepen_cases, _deepen_probe, _deepen_judge))


def deepen(fn, hidden=False):
    """Exercise 3: ``fn(blocks, X)`` returns a plain stack one block deeper that computes the same function on X."""
    DEEPEN.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 4: the variance law, any init

def growth_reference(L, a, v):
    """``q_L / q_0 = (1 + a² v / 2)^L`` for ReLU branches with weight variance ``v / fan_in``."""
    return (1 + a * a * v / 2) ** L


def _growth_cases(seed):
    rng = _rng(seed)
    cases = [{"L": 10, "a": 0.6, "v": 1 / 3}, {"L": 50, "a": 1.0, "v": 2.0}, {"L": 1, "a": 0.3, "v": 1.0},
             {"L": 20, "a": 1 / math.sqrt(20), "v": 2.0}]
    cases += [{"L": int(rng.integers(2, 60)), "a": float(rng.uniform(0.1, 1.0)), "v": float(rng.uniform(0.2, 3.0))}
              for _ in range(3)]
    return cases


def _growth_probe(fn, case):
    return fn(case["L"], case["a"], case["v"])


def _growth_judge(case, out):
    L, a, v = case["L"], case["a"], case["v"]
    got = as_scalar(value(out, "growth"), "growth")
    ref = growth_reference(L, a, v)
    close = lambda x, y: abs(x - y) <= 1e-5 * abs(y)  # noqa: E731 - float32 arithmetic passes too
    if close(got, ref):
        return
    call = f"growth({L}, {a:.4g}, {v:.4g}) = {got:.6g}"
    hints = [
        ((1 + a * a * v) ** L, "the ReLU keeps only half of the mean square of a symmetric input, "
                               "E[relu(h)²] = q/2: the factor is 1 + a² v / 2"),
        ((1 + a * v / 2) ** L, "the branch scale enters squared: a mean square scales with a²"),
        ((1 + a * a) ** L, "that is the He case v = 2; for weights of variance v / fan_in the branch multiplies "
                           "the mean square by v / 2"),
        (1 + L * a * a * v / 2, "the mean squares add block after block, but each block adds a² v / 2 times the "
                                "current q_l, not of q_0: the growth is a product, not a sum (a sum is the "
                                "BatchNorm case)"),
        ((a * a * v / 2) ** L, "that is a plain stack (no shortcut): the shortcut adds q_l itself, so the factor "
                               "per block is 1 + a² v / 2"),
        ((1 + a * a * v / 2) ** (L / 2), "that is the growth of the root mean square; the exercise asks for the "
                                         "mean square q_L / q_0"),
        ((1 + a * a * v / 2) ** (L - 1), "one block too few: L blocks give L factors"),
        ((1 + a * a * v / 2) ** (L + 1), "one block too many: L blocks give L factors"),
        ((1 + a * a * v / 4) ** L, "the ReLU halves the mean square once, not twice: the factor is 1 + a² v / 2"),
    ]
    for wrong, hint in hints:
        if close(got, wrong) and not close(wrong, ref):
            raise AssertionError(f"{call}: {hint}")
    raise AssertionError(f"{call}; the variance law gives {ref:.6g} (each block multiplies q by 1 + a² v / 2)")


GROWTH = register("ch2-ex4-tests", Exercise("growth", ["growth"], _growth_cases, _growth_probe, _growth_judge))


def growth(fn, hidden=False):
    """Exercise 4: ``fn(L, a, v)`` predicts ``q_L / q_0 = (1 + a² v / 2)^L``."""
    GROWTH.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 5: a branch scale for any depth

LOW, HIGH = 1.5, 4.0  # the allowed growth of the mean square over the whole stack
SLACK = 2e-4  # relative: a boundary answer computed in float32 (4^(1/L) − 1 loses digits) still passes


def _scale_cases(seed):
    rng = _rng(seed)
    depths = [1, 2, 10, 50, 200, 1000] + sorted(int(d) for d in rng.integers(3, 1000, size=3))
    return [{"L": d} for d in depths]


def _scale_probe(fn, case):
    return fn(case["L"])


def _log_growth(a, L):
    return L * math.log1p(a * a)  # log (1 + a²)^L, without overflow


def _scale_judge(case, out):
    L = case["L"]
    raw = value(out, "branch_scale")
    try:
        a = as_scalar(raw, f"branch_scale({L})")
    except AssertionError as err:
        raise AssertionError(f"{err} (branch_scale should return one number, the scale a)") from None
    if not a > 0:
        raise AssertionError(f"branch_scale({L}) returned {a:g}; the scale must be a positive number")
    log_g = _log_growth(a, L)
    low, high = math.log(LOW) + math.log1p(-SLACK), math.log(HIGH) + math.log1p(SLACK)
    if low <= log_g <= high:
        return
    growth_ = math.exp(min(log_g, 700.0))
    near = abs(log_g - (high if log_g > high else low)) < 1e-2
    precision = (" That is just outside the bound: if you computed a in float32, do it in float64 (4^(1/L) − 1 "
                 "loses digits to rounding), or choose a inside the range" if near else "")
    if log_g > high:
        raise AssertionError(f"with a = {a:.6g} and L = {L} the mean square grows by (1 + a²)^L = {growth_:.6g}, "
                             f"more than {HIGH:g}: the scale is too large for this depth (does it depend on L?)."
                             + precision)
    raise AssertionError(f"with a = {a:.6g} and L = {L} the mean square grows only by (1 + a²)^L = {growth_:.6g}, "
                         f"less than {LOW:g}: the branches barely contribute; a is too small." + precision)


BRANCH_SCALE = register("ch2-ex5-tests", Exercise(
    "branch_scale", ["branch_scale"], _scale_cases, _scale_probe, _scale_judge))


def branch_scale(fn, hidden=False):
    """Exercise 5: ``fn(L)`` gives ``1.5 <= (1 + a^2)^L <= 4`` for every depth ``L``."""
    BRANCH_SCALE.check(fn, hidden=hidden)

"""Checkers for chapter 4's exercises (the ResNet architecture), as :class:`~.exercise.Exercise` objects.

Each exercise draws its cases from a seed as plain data, a probe runs the student's code on one case
(in the student's process), and a judge recomputes the reference itself and names the mistake. The
``check_*`` functions are what the notebook's test cells call.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F_
from torch import nn

from .. import convnets
from ..nets import weight_grad_norms
from . import as_array, as_scalar
from .exercise import Exercise, register, value

__all__ = [
    "SHORTCUT_A",
    "PROJECTION",
    "POSTACT_JACOBIAN",
    "PARAM_COUNT",
    "GRAD_NORMS",
    "check_shortcut_a",
    "check_projection",
    "check_postact_jacobian",
    "check_param_count",
    "check_grad_norms",
    "param_count_reference",
]


def _close(out, ref, rtol=1e-5, atol=1e-6):
    return out.shape == ref.shape and np.allclose(out, ref, rtol=rtol, atol=atol)


def _tensor(data, dtype=torch.float32):
    return torch.tensor(data, dtype=dtype)


def _randn(rng, shape):
    return rng.standard_normal(shape).round(4).tolist()


# ---------------------------------------------------------------- exercise 1: option A


def _shortcut_a_cases(seed):
    rng = np.random.default_rng(seed)
    shapes = [((2, 3, 8, 8), 6), ((1, 4, 6, 6), 8), ((3, 2, 5, 5), 4), ((2, 16, 4, 4), 32)]
    if seed % 2:  # the hidden cases: other sizes, odd maps, more than doubled channels
        shapes = [((2, 5, 7, 7), 10), ((1, 8, 4, 6), 16), ((2, 3, 3, 3), 9), ((1, 1, 2, 2), 2)]
    return [{"x": _randn(rng, shape), "c_out": c_out} for shape, c_out in shapes]


def _shortcut_a_probe(fn, case):
    return fn(_tensor(case["x"]), case["c_out"])


def _shortcut_a_judge(case, out):
    name = "shortcut_a"
    x = np.asarray(case["x"], dtype=np.float32)
    n, c, h, w = x.shape
    c_out = case["c_out"]
    out = as_array(value(out, name), name)
    kept = x[:, :, ::2, ::2]
    want = (n, c_out, kept.shape[2], kept.shape[3])
    if out.shape != want:
        hints = [
            ((n, c_out, h, w), "the map keeps its size: option A keeps every other pixel, x[:, :, ::2, ::2], "
                               "so that it matches the stride-2 branch"),
            ((n, c, kept.shape[2], kept.shape[3]), "the channels are not padded: add c_out − c_in channels of "
                                                   "zeros"),
            ((n, c, h, w), "that is x itself: subsample with stride 2 and pad the channels with zeros"),
            ((n, c, kept.shape[2], kept.shape[3] + c_out - c), "you padded the width: F.pad's list starts with "
                                                               "the last dimension, so the channels come fifth and "
                                                               "sixth, F.pad(x, (0, 0, 0, 0, 0, c_out - c_in))"),
            ((n, c_out, h // 2, w // 2), f"for a {h}×{w} map the stride-2 branch gives {kept.shape[2]}×"
                                         f"{kept.shape[3]} (it is centred on pixels 0, 2, 4, ...): use "
                                         "x[:, :, ::2, ::2]"),
        ]
        hint = next((text for shape, text in hints if out.shape == shape), "")
        raise AssertionError(f"{name} returned shape {out.shape} for x of shape {x.shape} and c_out = {c_out}; "
                             f"expected {want}" + (f": {hint}" if hint else ""))
    if not np.all(np.isfinite(out)):
        raise AssertionError(f"{name} returned NaN or infinite values")
    # the c original channels, in order, as one contiguous block; every other channel zero
    for start in range(c_out - c + 1):
        rest = np.delete(out, range(start, start + c), axis=1)
        if _close(out[:, start:start + c], kept, atol=1e-6) and not rest.any():
            return
    odd = x[:, :, 1::2, 1::2]
    if odd.shape == kept.shape and _close(out[:, :c], odd):
        raise AssertionError("you kept the pixels at odd positions; the stride-2 branch (3×3, padding 1) is centred "
                             "on pixels 0, 2, 4, ..., so keep x[:, :, ::2, ::2]")
    pooled = F_.avg_pool2d(torch.tensor(x), 2, ceil_mode=True).numpy()
    if pooled.shape == kept.shape and _close(out[:, :c], pooled):
        raise AssertionError("you averaged 2×2 windows; option A keeps one pixel of each, x[:, :, ::2, ::2], "
                             "an identity on the pixels it keeps")
    if not any(_close(out[:, s:s + c], kept) for s in range(c_out - c + 1)):
        raise AssertionError("the input's channels are not in the output unchanged: option A is an identity on "
                             "the kept pixels (x[:, :, ::2, ::2]), with the new channels added as zeros")
    raise AssertionError(f"the {c_out - c} new channels must be zeros (option A adds no parameter and no "
                         "information); yours are not")


SHORTCUT_A = Exercise("shortcut_a", ["shortcut_a"], _shortcut_a_cases, _shortcut_a_probe, _shortcut_a_judge)
register("ch4-ex1-tests", SHORTCUT_A)


def check_shortcut_a(fn, hidden=False):
    """``fn(x, c_out)``: option A for a stride-2 block (keep x[:, :, ::2, ::2], pad channels with zeros)."""
    SHORTCUT_A.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 2: option B's projection


def _projection_cases(seed):
    rng = np.random.default_rng(seed)
    layouts = [(16, 32, 2, (2, 16, 8, 8)), (4, 8, 2, (3, 4, 5, 5)), (3, 6, 1, (2, 3, 4, 4))]
    if seed % 2:
        layouts = [(8, 16, 2, (2, 8, 6, 6)), (5, 5, 1, (2, 5, 3, 3)), (2, 12, 2, (4, 2, 7, 7))]
    return [{"c_in": a, "c_out": b, "stride": s, "x": _randn(rng, shape)} for a, b, s, shape in layouts]


def _projection_probe(fn, case):
    m = fn(case["c_in"], case["c_out"], case["stride"])
    if not isinstance(m, nn.Module):
        return {"not_module": type(m).__name__}
    m.train()
    out = m(_tensor(case["x"]))
    return {"out": out, "params": [[k, p.detach()] for k, p in m.named_parameters()],
            "modules": [type(s).__name__ for s in m.modules()]}


def _bn_train(z):
    mean = z.mean(axis=(0, 2, 3), keepdims=True)
    var = z.var(axis=(0, 2, 3), keepdims=True)
    return (z - mean) / np.sqrt(var + 1e-5)


def _projection_judge(case, out):
    name = "projection"
    out = value(out, name)
    if not isinstance(out, dict):
        raise AssertionError(f"{name}: the answer could not be read")
    if "not_module" in out:
        raise AssertionError(f"{name} returned a {out['not_module']}, not a module (nn.Module): return for "
                             "example nn.Sequential(conv, bn)")
    c_in, c_out, s = case["c_in"], case["c_out"], case["stride"]
    x = np.asarray(case["x"], dtype=np.float32)
    params = [(str(k), as_array(value(p, k), k)) for k, p in out["params"]]
    modules = [str(m) for m in out["modules"]]
    what = f"{name}({c_in}, {c_out}, {s})"
    kernels = [p for _, p in params if p.ndim == 4]
    if not kernels:
        raise AssertionError(f"{what} has no convolution: option B projects with a 1×1 nn.Conv2d")
    if len(kernels) > 1:
        raise AssertionError(f"{what} has {len(kernels)} convolutions; the projection is one 1×1 convolution")
    W = kernels[0]
    if W.shape[2:] != (1, 1):
        raise AssertionError(f"{what}: your convolution has {W.shape[2]}×{W.shape[3]} kernels; the projection is a "
                             f"1×1 convolution ({c_in * c_out} weights, not {W.size})")
    if W.shape[:2] != (c_out, c_in):
        raise AssertionError(f"{what}: your convolution maps {W.shape[1]} channels to {W.shape[0]}; it should map "
                             f"c_in = {c_in} to c_out = {c_out}")
    if "BatchNorm2d" not in modules:
        raise AssertionError(f"{what} has no BatchNorm2d: option B is a 1×1 convolution followed by BatchNorm "
                             "(modules: " + ", ".join(modules[:6]) + ")")
    vectors = [k for k, p in params if p.ndim == 1]
    if len(vectors) == 3:
        raise AssertionError(f"{what}: your convolution has a bias. The BatchNorm after it subtracts each channel's "
                             "mean, which cancels any bias, so the convolution takes bias=False "
                             "(as in He et al.'s code and torchvision)")
    total = sum(p.size for _, p in params)
    if total != c_in * c_out + 2 * c_out:
        raise AssertionError(f"{what} has {total} parameters; a 1×1 convolution without bias and a BatchNorm2d on "
                             f"c_out channels have {c_in} · {c_out} + 2 · {c_out} = {c_in * c_out + 2 * c_out}")
    y = as_array(value(out["out"], "the projection's output"), "the projection's output")
    z = F_.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(W), stride=s).numpy()
    if y.shape != z.shape:
        hint = " (pass stride to the convolution)" if y.shape[2] == x.shape[2] and s != 1 else ""
        raise AssertionError(f"{what} turns a {x.shape} input into {y.shape}; expected {z.shape}{hint}")
    gamma_beta = [p for _, p in params if p.ndim == 1]
    ref = _bn_train(z)
    if all(np.allclose(p, 1) or np.allclose(p, 0) for p in gamma_beta) and _close(y, ref, atol=1e-4):
        return
    if _close(y, np.maximum(ref, 0), atol=1e-4):
        raise AssertionError(f"{what} ends with a ReLU; the shortcut has none (the block's ReLU comes after the "
                             "addition)")
    if _close(y, z / np.sqrt(1 + 1e-5), atol=1e-4):
        raise AssertionError(f"{what} normalises with the running statistics (eval mode) even in training mode")
    xb = torch.tensor(_bn_train(x.astype(np.float64)))
    if _close(y, F_.conv2d(xb, torch.tensor(W), stride=s).numpy(), atol=1e-4):
        raise AssertionError(f"{what} applies BatchNorm before the convolution, on the input's {c_in} channels; "
                             f"it comes after, on the {c_out} output channels")
    raise AssertionError(f"{what}: in training mode the output should be BN(conv1x1(x)) (with BN's γ = 1, β = 0 "
                         "as initialised); yours differs. Keep PyTorch's initialisation of the BatchNorm")


PROJECTION = Exercise("projection", ["projection"], _projection_cases, _projection_probe, _projection_judge)
register("ch4-ex2-tests", PROJECTION)


def check_projection(fn, hidden=False):
    """``fn(c_in, c_out, stride)`` must return a 1x1 convolution (no bias, given stride) followed by BatchNorm2d."""
    PROJECTION.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 3: a stack of original blocks


def _postact_cases(seed):
    rng = np.random.default_rng(seed)
    layouts = [(2, 5), (3, 3), (1, 4)] if seed % 2 == 0 else [(2, 3), (4, 5), (1, 6), (5, 2)]
    cases = []
    for L, m in layouts:
        sums = []
        for _ in range(L):
            s = rng.standard_normal(m)
            s[np.abs(s) < 0.05] += 0.3  # no sum is (nearly) 0, where relu' is a convention
            s[0], s[-1] = abs(s[0]), -abs(s[-1])  # both signs in every block
            sums.append(s.tolist())
        J_Fs = [(rng.standard_normal((m, m)) / math.sqrt(m)).tolist() for _ in range(L)]
        cases.append({"J_Fs": J_Fs, "sums": sums})
    return cases


def _postact_probe(fn, case):
    return fn([_tensor(J, torch.float64) for J in case["J_Fs"]], [_tensor(s, torch.float64) for s in case["sums"]])


def _product(factors):
    """factors listed input first; the product applies the first one first: F_L ... F_2 F_1."""
    out = np.eye(factors[0].shape[0])
    for f in factors:
        out = f @ out
    return out


def _postact_judge(case, out):
    name = "postact_stack_jacobian"
    J_Fs = [np.asarray(J) for J in case["J_Fs"]]
    sums = [np.asarray(s) for s in case["sums"]]
    L, m = len(sums), len(sums[0])
    out = as_array(value(out, name), name)
    if out.shape != (m, m):
        raise AssertionError(f"{name} returned shape {out.shape} for {L} block{'s' * (L > 1)} of width {m}; "
                             f"expected ({m}, {m})")
    if not np.all(np.isfinite(out)):
        raise AssertionError(f"{name} returned NaN or infinite values")
    I = np.eye(m)
    D = [np.diag((s > 0).astype(float)) for s in sums]
    blocks = [d @ (I + J) for d, J in zip(D, J_Fs, strict=True)]
    ref = _product(blocks)
    if _close(out, ref, rtol=1e-5, atol=1e-6):
        return
    guesses = [
        (_product([I + J for J in J_Fs]), "that is the product of I + ∂F_k/∂x: the ReLU after each addition "
                                          "multiplies block k's factor by D_k = diag(relu'(s_k))"),
        (_product([(I + J) @ d for d, J in zip(D, J_Fs, strict=True)]),
         "you multiplied by D_k on the right; the ReLU comes last in a block, so its derivative stands on the "
         "left: D_k (I + ∂F_k/∂x)"),
        (_product([I + d @ J for d, J in zip(D, J_Fs, strict=True)]),
         "you applied relu' to the branch only; it acts on the sum, so it cuts the identity too: D_k (I + ∂F_k/∂x)"),
        (_product(blocks[::-1]), "the factors are in the wrong order: the first block's factor acts first, so "
                                 "it stands on the right: D_L (I + J_L) ... D_1 (I + J_1)"),
        (ref.T, "you returned the transpose (the matrix that carries gradients backwards); ∂x_L/∂x_0 has x_L's "
                "index in its rows"),
        (_product([np.diag((s < 0).astype(float)) @ (I + J) for s, J in zip(sums, J_Fs, strict=True)]),
         "relu'(s) is 1 where s > 0 and 0 where s < 0; you swapped them"),
        (I + sum(J_Fs), "I + Σ ∂F_k/∂x is only the first-order part of the product, without the ReLUs"),
        (blocks[-1], "that is the last block's Jacobian alone; multiply all L of them"),
        (blocks[0], "that is the first block's Jacobian alone; multiply all L of them"),
    ]
    for wrong, hint in guesses:
        if _close(out, wrong, rtol=1e-5, atol=1e-6):
            raise AssertionError(f"for {L} block{'s' * (L > 1)}: {hint}")
    i, j = np.unravel_index(int(np.argmax(np.abs(out - ref))), ref.shape)
    raise AssertionError(f"for {L} block{'s' * (L > 1)} of width {m}, entry ({i}, {j}) of your Jacobian is "
                         f"{out[i, j]:.6g}; D_L (I + ∂F_L/∂x) ... D_1 (I + ∂F_1/∂x) has {ref[i, j]:.6g}")


POSTACT_JACOBIAN = Exercise("postact_stack_jacobian", ["postact_stack_jacobian"], _postact_cases, _postact_probe,
                            _postact_judge)
register("ch4-ex3-tests", POSTACT_JACOBIAN)


def check_postact_jacobian(fn, hidden=False):
    """``fn(J_Fs, sums)``: the Jacobian of a stack of blocks x_k = relu(x_(k-1) + F_k(x_(k-1))), input first."""
    POSTACT_JACOBIAN.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 4: parameters from the layout


def param_count_reference(n, widths, classes=10, option="A", in_channels=3, **mistakes):
    """The parameter count of a CIFAR-style ResNet of BasicBlocks, by formula; ``mistakes`` switch parts off.

    ``bn=False`` leaves out BatchNorm, ``conv_bias=True`` adds a bias to every convolution, ``fc_bias=False``
    drops the fc bias, ``projection_bn=False`` drops the projections' BN, ``option`` 'A', 'B' or 'C',
    ``stem_from`` replaces the input channels of the stem.
    """
    bn, conv_bias = mistakes.get("bn", True), mistakes.get("conv_bias", False)
    proj_bn = mistakes.get("projection_bn", True)
    c0 = mistakes.get("stem_from", in_channels)

    def conv(c_in, c_out, k):
        return k * k * c_in * c_out + (c_out if conv_bias else 0) + (2 * c_out if bn else 0)

    total, c = conv(c0, widths[0], 3), widths[0]
    for i, w in enumerate(widths):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            total += conv(c, w, 3) + conv(w, w, 3)
            if option == "C" or (option == "B" and (stride != 1 or c != w)):
                total += c * w + (2 * w if bn and proj_bn else 0) + (w if conv_bias else 0)
            c = w
    return total + c * classes + (classes if mistakes.get("fc_bias", True) else 0)


def _param_count_cases(seed):
    rng = np.random.default_rng(seed)
    cases = [{"n": 3, "widths": [16, 32, 64], "classes": 10, "option": "A"}]
    for option in "ABC":
        k = int(rng.integers(2, 5))
        widths = sorted(int(v) for v in rng.choice([4, 6, 8, 12, 16, 24, 32], size=k, replace=False))
        cases.append({"n": int(rng.integers(1, 4)), "widths": widths, "classes": int(rng.integers(2, 20)),
                      "option": option})
    if seed % 2:
        cases += [{"n": 18, "widths": [16, 32, 64], "classes": 10, "option": "A"},
                  {"n": 2, "widths": [8, 8, 16], "classes": 5, "option": "B"}]
    return cases


def _param_count_probe(fn, case):
    return fn(case["n"], list(case["widths"]), case["classes"], case["option"])


def _module_count(case):
    """The reference, counted on the module itself (built on the meta device: no memory)."""
    with torch.device("meta"):
        net = convnets.cifar_resnet(case["n"], option=case["option"], widths=case["widths"],
                                    classes=case["classes"])
    return convnets.count_params(net)


def _param_count_judge(case, out):
    name = "count_params"
    got = as_scalar(value(out, name), name)
    ref = _module_count(case)
    if got == ref:
        return
    n, widths, classes, option = case["n"], case["widths"], case["classes"], case["option"]
    call = f"count_params({n}, {widths}, {classes}, {option!r})"
    if abs(got - round(got)) > 1e-9:
        raise AssertionError(f"{call} = {got}: a number of parameters is a whole number")
    base = {"n": n, "widths": widths, "classes": classes, "option": option}
    guesses = [
        ({"bn": False}, "you left out the BatchNorm parameters: γ and β, 2 per channel, after every convolution"),
        ({"conv_bias": True}, "you counted a bias in every convolution; a convolution followed by BatchNorm has "
                              "none (bias=False)"),
        ({"fc_bias": False}, f"the fully connected layer has a bias too: {classes} more numbers"),
        ({"projection_bn": False}, "each projection is a 1×1 convolution followed by BatchNorm: count its 2 · c_out "
                                   "BN parameters"),
        ({"stem_from": widths[0]}, f"the first convolution reads the image's 3 channels, not {widths[0]}"),
        ({"option": "A"}, f"that is option A's count (no projection); option {option} adds projections"),
        ({"option": "B"}, f"that is option B's count (projections only where the shape changes); option "
                          f"{option} {'has none' if option == 'A' else 'projects at every block'}"),
        ({"option": "C"}, f"that is option C's count (a projection at every block); option {option} "
                          f"{'has none' if option == 'A' else 'projects only where the shape changes'}"),
    ]
    for change, hint in guesses:
        if change.get("option") == option:
            continue
        if got == param_count_reference(**{**base, **change}):
            raise AssertionError(f"{call} = {int(got):,}; the module has {ref:,}: {hint}")
    raise AssertionError(f"{call} = {int(got):,}; the module has {ref:,} parameters")


PARAM_COUNT = Exercise("count_params", ["count_params"], _param_count_cases, _param_count_probe,
                       _param_count_judge)
register("ch4-ex4-tests", PARAM_COUNT)


def check_param_count(fn, hidden=False):
    """``fn(n, widths, classes, option)`` must return the parameter count of that CIFAR-style ResNet."""
    PARAM_COUNT.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 5: per-layer gradient norms


def _grad_norm_cases(seed):
    rng = np.random.default_rng(seed)
    layouts = [(1, True, "A"), (1, False, "A"), (2, True, "B")]
    if seed % 2:
        layouts = [(2, False, "A"), (1, True, "B"), (3, True, "A")]
    return [{"n": n, "residual": r, "option": o, "width": int(rng.integers(2, 5)), "batch": int(rng.integers(8, 17)),
             "seed": int(rng.integers(0, 2**31))} for n, r, o in layouts]


def _grad_norm_setup(case):
    net = convnets.digit_net(case["n"], case["residual"], width=case["width"], option=case["option"],
                             seed=case["seed"])
    g = torch.Generator().manual_seed(case["seed"] + 1)
    X = torch.randn(case["batch"], 1, 8, 8, generator=g)
    y = torch.randint(10, (case["batch"],), generator=g)
    return net, X, y


def _grad_norm_probe(fn, case):
    return fn(*_grad_norm_setup(case))


def _grad_norm_judge(case, out):
    name = "conv_grad_norms"
    got = as_array(value(out, name), name).ravel()
    net, X, y = _grad_norm_setup(case)
    layers = convnets.weighted_layers(net)
    ref = weight_grad_norms(net, X, y, layers=layers).numpy()
    what = f"for a {6 * case['n'] + 2}-layer {'residual' if case['residual'] else 'plain'} net"
    if got.shape == ref.shape and np.allclose(got, ref, rtol=1e-4, atol=1e-7):
        return
    n_proj = sum(1 for k, m in net.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" in k.split("."))
    n_bn = sum(1 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    if got.shape != ref.shape:
        hint = ""
        if got.size == ref.size + n_proj and n_proj:
            hint = f": you included the {n_proj} shortcut projections; count the main path's layers only"
        elif got.size == ref.size + n_bn:
            hint = ": you included the BatchNorm layers' γ; report the convolutions and the fc layer"
        elif got.size == ref.size - 1:
            hint = ": the last weighted layer, the fully connected one, is missing (or the stem)"
        raise AssertionError(f"{name} returned {got.size} numbers {what}; it has {ref.size} weighted layers "
                             f"(stem, 2 per block, fc){hint}")
    if np.allclose(got, ref[::-1], rtol=1e-4, atol=1e-7):
        raise AssertionError("your norms run from the output to the input; list them input first")
    if np.allclose(got, ref**2, rtol=1e-4, atol=1e-9):
        raise AssertionError("you returned squared norms; take the square root (tensor.norm())")
    if np.allclose(got, ref * case["batch"], rtol=1e-4, atol=1e-6):
        raise AssertionError("you used the summed loss; F.cross_entropy averages over the batch, as the probes of "
                             "this course do")
    fresh, _, _ = _grad_norm_setup(case)  # running statistics as built: the forward above moved them
    fresh.eval()
    eval_ref = weight_grad_norms(fresh, X, y, layers=convnets.weighted_layers(fresh)).numpy()
    if np.allclose(got, eval_ref, rtol=1e-4, atol=1e-7):
        raise AssertionError("you measured in eval mode; BatchNorm should use the batch's statistics, as in "
                             "training (leave the net in train mode)")
    i = int(np.argmax(np.abs(got - ref) / (ref + 1e-12)))
    raise AssertionError(f"{what}: layer {i + 1}'s norm is {got[i]:.6g}, expected {ref[i]:.6g} "
                         "(‖∂L/∂W‖ with L the mean cross-entropy, BatchNorm in train mode)")


GRAD_NORMS = Exercise("conv_grad_norms", ["conv_grad_norms"], _grad_norm_cases, _grad_norm_probe,
                      _grad_norm_judge)
register("ch4-ex5-tests", GRAD_NORMS)


def check_grad_norms(fn, hidden=False):
    """``fn(net, X, y)``: ‖∂L/∂W‖ of every weighted layer on the main path, input first (L mean cross-entropy)."""
    GRAD_NORMS.check(fn, hidden=hidden)

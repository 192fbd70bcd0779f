"""Checkers for chapter 6's exercises (residual connections in Transformers).

Every checker is an :class:`~gradflow.checks.exercise.Exercise`: cases drawn from a seed as plain
data, a probe that calls the student's code on one case, and a judge that computes the reference
itself and names the mistake. The ``check_*`` functions are the thin wrappers the test cells call.

1. ``layernorm_jacobian(x, gamma, eps)``: the Jacobian of per-token LayerNorm with a gain (placement page);
2. ``post_ln_bound(blocks, x)``: the Post-LN gradient bound, a product of ``‖I + F'‖₂ / σ(s)``;
3. ``rezero_alpha_grads(blocks, x, g)``: the gradient of ReZero's gates at α = 0 (without-norm page);
4. ``fixup_init(blocks)``: Fixup's rules 1 and 2, in place;
5. ``deepnorm_constants(N, M)``: DeepNet's α and β for encoder, decoder, or both.
"""

import math

import numpy as np
import torch

from ..transformer import branches, deepnorm_constants
from . import as_array, as_scalar
from .exercise import Exercise, register, value

__all__ = [
    "LAYERNORM_JACOBIAN",
    "POST_LN_BOUND",
    "REZERO_GRADS",
    "FIXUP_INIT",
    "DEEPNORM",
    "check_layernorm_jacobian",
    "check_post_ln_bound",
    "check_rezero_grads",
    "check_fixup_init",
    "check_deepnorm",
    "ln_jacobian_reference",
    "post_ln_bound_reference",
]

F64 = torch.float64


def _close(a, b, rtol=1e-7, atol=1e-10):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


# ---------------------------------------------------------------- exercise 1: the LayerNorm Jacobian


def _block(x, gamma, eps, variant=None):
    """One token's Jacobian (or a common mistake) of ``gamma * (x - mean) / sigma``."""
    d = x.size
    eye, ones = np.eye(d), np.ones((d, d)) / d
    c = x - x.mean()
    var = x.var(ddof=1) if variant == "unbiased" and d > 1 else x.var()
    sigma = math.sqrt(var + (0.0 if variant == "no eps" else eps))
    if sigma == 0:
        return np.full((d, d), np.nan)
    xh = c / sigma
    frac = 1 / (d - 1) if variant == "unbiased" and d > 1 else 1 / d
    P = {"no mean": eye - np.outer(xh, xh) * frac, "no var": eye - ones,
         "no 1/d": eye - ones - np.outer(xh, xh)}.get(variant, eye - ones - np.outer(xh, xh) * frac)
    if variant == "no gain":
        return P / sigma
    if variant == "gain right":
        return P * gamma[None, :] / sigma
    return gamma[:, None] * P / sigma


def ln_jacobian_reference(x, gamma, eps, variant=None):
    """The ``(T d) x (T d)`` Jacobian of LayerNorm with gain ``gamma`` applied to each row of ``x``.

    Block diagonal (tokens do not mix), one block ``diag(γ) (I - 1 1ᵀ/d - x̂ x̂ᵀ/d) / σ`` per token,
    ``σ = sqrt(var x_t + eps)`` (biased variance). ``variant`` makes a common mistake instead.
    """
    x, gamma = np.atleast_2d(np.asarray(x, dtype=np.float64)), np.asarray(gamma, dtype=np.float64)
    if variant == "one vector":  # LayerNorm over the whole flattened sequence
        return _block(x.ravel(), np.tile(gamma, x.shape[0]), eps)
    T, d = x.shape
    out = np.zeros((T * d, T * d))
    for t in range(T):
        out[t * d:(t + 1) * d, t * d:(t + 1) * d] = _block(x[t], gamma, eps, variant)
    return out


_LN_HINTS = {
    "no gain": "the gain γ is missing: LN(x) = γ ⊙ (x − μ)/σ, so each row i of a block is multiplied by γ_i",
    "gain right": "γ multiplies the output, so it scales the rows (diag(γ) on the left), not the columns",
    "one vector": "LayerNorm normalises each token (row) on its own: the Jacobian is block diagonal, "
                  "one d × d block per token, not one LayerNorm over the whole flattened sequence",
    "no mean": "the term −1 1ᵀ/d is missing: the mean μ depends on every x_j too (∂μ/∂x_j = 1/d)",
    "no var": "the term −x̂ x̂ᵀ/d is missing: σ depends on x too (∂σ/∂x_j = (x_j − μ)/(d σ))",
    "no 1/d": "the x̂ x̂ᵀ term needs a factor 1/d (∂σ/∂x_j = (x_j − μ)/(d σ))",
    "unbiased": "you used the unbiased variance (divide by d − 1); LayerNorm divides by d",
    "no eps": "eps is missing: σ = √(var x + eps)",
}


def _ln_cases(seed):
    rng = np.random.default_rng(seed)
    cases = []
    for T, d, scale, eps in [(1, 4, 3.0, 1e-5), (3, 5, 1.0, 1e-5), (4, 8, 2.0, 1e-5), (2, 6, 0.2, 0.05)]:
        x = rng.normal(rng.normal(0, 2), scale, size=(T, d))
        gamma = rng.uniform(0.5, 2.0, size=d)
        cases.append({"x": x.tolist(), "gamma": gamma.tolist(), "eps": eps})
    return cases


def _ln_probe(fn, case):
    return fn(torch.tensor(case["x"], dtype=F64), torch.tensor(case["gamma"], dtype=F64), case["eps"])


def _ln_judge(case, out):
    name = "layernorm_jacobian"
    x, gamma, eps = np.asarray(case["x"], dtype=np.float64), np.asarray(case["gamma"]), float(case["eps"])
    T, d = x.shape
    got = as_array(value(out, name), name)
    if got.shape != (T * d, T * d):
        raise AssertionError(f"{name} returned shape {got.shape} for x of shape ({T}, {d}); the Jacobian of "
                             f"the flattened output by the flattened input is {T * d} × {T * d}")
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{name} returned NaN or infinite entries")
    ref = ln_jacobian_reference(x, gamma, eps)
    single = getattr(out, "dtype", None) == np.float32  # float32 arithmetic is fine: a looser tolerance
    if _close(got, ref, rtol=2e-5 if single else 1e-7, atol=1e-6 if single else 1e-10):
        return
    for variant, hint in _LN_HINTS.items():
        wrong = ln_jacobian_reference(x, gamma, eps, variant)
        if wrong.shape == got.shape and _close(got, wrong, rtol=1e-5 if single else 1e-7, atol=1e-9):
            raise AssertionError(f"{name}: {hint}")
    i, j = np.unravel_index(int(np.argmax(np.abs(got - ref))), ref.shape)
    raise AssertionError(f"{name}: for x of shape ({T}, {d}) (eps = {eps:g}), entry [{i}, {j}] is {got[i, j]:.6g}; "
                         f"the Jacobian has {ref[i, j]:.6g} (compare with torch.autograd.functional.jacobian "
                         "of torch.nn.functional.layer_norm with weight=gamma)")


LAYERNORM_JACOBIAN = Exercise("layernorm_jacobian", ["layernorm_jacobian"], _ln_cases, _ln_probe, _ln_judge)
register("ch6-ex1-tests", LAYERNORM_JACOBIAN)


def check_layernorm_jacobian(fn, hidden=False):
    """``fn(x, gamma, eps)`` must return the Jacobian of per-token LayerNorm with gain ``gamma``."""
    LAYERNORM_JACOBIAN.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 2: the Post-LN bound


def _stack(case):
    blocks = branches(case["depth"], case["width"], case["hidden"], seed=case["seed"])
    return blocks, torch.tensor(case["x"], dtype=F64)


def _ln(s, eps=1e-5):
    return (s - s.mean()) / torch.sqrt(s.var(unbiased=False) + eps)


def post_ln_bound_reference(blocks, x, eps=1e-5, variant=None):
    """``∏_k ‖I + F_k'(x_{k-1})‖₂ / σ(s_k)`` with ``s_k = x_{k-1} + F_k(x_{k-1})``, ``x_k = LN(s_k)``.

    ``variant`` computes a common mistake instead (for the judge's messages).
    """
    bound = 1.0
    d = x.shape[0]
    with torch.no_grad():
        for F in blocks:
            lin1, lin2 = F[0], F[2]
            act = (lin1.weight @ x + lin1.bias > 0).to(x.dtype)
            Fp = lin2.weight @ (act[:, None] * lin1.weight)
            s = x + F(x)
            sigma = torch.sqrt(s.var(unbiased=False) + eps).item()
            if variant == "no identity":
                num = torch.linalg.matrix_norm(Fp, 2).item()
            elif variant == "triangle":
                num = 1.0 + torch.linalg.matrix_norm(Fp, 2).item()
            elif variant == "frobenius":
                num = torch.linalg.matrix_norm(torch.eye(d, dtype=x.dtype) + Fp, "fro").item()
            else:
                num = torch.linalg.matrix_norm(torch.eye(d, dtype=x.dtype) + Fp, 2).item()
            if variant == "times sigma":
                bound *= num * sigma
            elif variant == "output sigma":
                y = _ln(s, eps)
                bound *= num / torch.sqrt(y.var(unbiased=False) + eps).item()
            elif variant == "input sigma":
                bound *= num / torch.sqrt(x.var(unbiased=False) + eps).item()
            elif variant == "no sigma":
                bound *= num
            else:
                bound *= num / sigma
            x = _ln(s, eps)
    return bound


def _bound_cases(seed):
    rng = np.random.default_rng(seed)
    cases = []
    for depth, width in [(1, 6), (3, 8), (5, 8)]:
        x = rng.normal(0, 1, size=width)
        cases.append({"depth": depth, "width": width, "hidden": 2 * width,
                      "seed": int(rng.integers(1 << 30)), "x": x.tolist()})
    return cases


def _bound_probe(fn, case):
    blocks, x = _stack(case)
    return fn(blocks, x)


def _bound_judge(case, out):
    name = "post_ln_bound"
    got = as_scalar(value(out, name), name)
    blocks, x = _stack(case)
    ref = post_ln_bound_reference(blocks, x)
    if math.isclose(got, ref, rel_tol=1e-6):
        return
    hints = {
        "no identity": "you used ‖F'‖₂; a Post-LN sub-layer's Jacobian is J_LN(s) (I + F'): keep the identity",
        "triangle": "that is (1 + ‖F'‖₂)/σ, a looser bound (the triangle inequality); the exercise asks for "
                    "‖I + F'‖₂ itself",
        "frobenius": "you used the Frobenius norm of I + F'; the bound uses the spectral norm (ord=2), "
                     "the largest singular value",
        "times sigma": "you multiplied by σ(s); the LayerNorm Jacobian divides by σ(s): its norm is 1/σ(s)",
        "output sigma": "you took σ of the LayerNorm's output (≈ 1); the factor is 1/σ(s) of its input "
                        "s = x + F(x)",
        "input sigma": "you took σ of the sub-layer's input x; the LayerNorm acts on s = x + F(x)",
        "no sigma": "the factor 1/σ(s) of the LayerNorm Jacobian is missing",
    }
    for variant, hint in hints.items():
        if math.isclose(got, post_ln_bound_reference(blocks, x, variant=variant), rel_tol=1e-6):
            raise AssertionError(f"{name} = {got:.6g}: {hint}")
    raise AssertionError(f"{name} = {got:.6g} for a stack of {case['depth']} sub-layers of width "
                         f"{case['width']}; the bound ∏ ‖I + F_k'‖₂ / σ(s_k) is {ref:.6g} (did you move x "
                         "to x_k = LN(s_k) before the next sub-layer?)")


POST_LN_BOUND = Exercise("post_ln_bound", ["post_ln_bound"], _bound_cases, _bound_probe, _bound_judge)
register("ch6-ex2-tests", POST_LN_BOUND)


def check_post_ln_bound(fn, hidden=False):
    """``fn(blocks, x)`` must return the product of ``‖I + F_k'‖₂ / σ(s_k)`` over a Post-LN stack."""
    POST_LN_BOUND.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 3: ReZero at α = 0


def _rezero_cases(seed):
    rng = np.random.default_rng(seed)
    cases = []
    for depth, width in [(1, 4), (4, 6), (6, 8)]:
        cases.append({"depth": depth, "width": width, "hidden": 2 * width, "seed": int(rng.integers(1 << 30)),
                      "x": rng.normal(0, 1, size=width).tolist(), "g": rng.normal(0, 1, size=width).tolist()})
    return cases


def _rezero_probe(fn, case):
    blocks, x = _stack(case)
    return fn(blocks, x, torch.tensor(case["g"], dtype=F64))


def _rezero_reference(case, variant=None):
    blocks, x = _stack(case)
    g = torch.tensor(case["g"], dtype=F64)
    out, h = [], x
    with torch.no_grad():
        for F in blocks:
            if variant == "alpha one":
                out.append(torch.dot(g, F(h)).item())
                h = h + F(h)
            elif variant == "x":
                out.append(torch.dot(g, x).item())
            else:
                out.append(torch.dot(g, F(x)).item())
    return np.array(out)


def _rezero_judge(case, out):
    name = "rezero_alpha_grads"
    got = as_array(value(out, name), name).ravel()
    n = case["depth"]
    if got.size != n:
        raise AssertionError(f"{name} returned {got.size} numbers for a stack of {n} blocks; return one "
                             "gradient ∂L/∂α_i per block")
    ref = _rezero_reference(case)
    if _close(got, ref, rtol=1e-6, atol=1e-9):
        return
    if np.allclose(got, 0):
        raise AssertionError(f"{name} returned zeros: at α = 0 the branch weights get no gradient, but the "
                             "gates do: ∂L/∂α_i = ⟨∇_{x_i} L, F_i(x_{i−1})⟩, and F_i(x) ≠ 0")
    if _close(np.abs(got), np.abs(ref), rtol=1e-6, atol=1e-9):
        raise AssertionError(f"{name}: the signs are wrong; ∂L/∂α_i = ⟨g, F_i(x)⟩, a signed number")
    if _close(got, _rezero_reference(case, "alpha one"), rtol=1e-6, atol=1e-9):
        raise AssertionError(f"{name}: you evaluated the branches along a stack with α = 1; at α = 0 every "
                             "x_i equals x, and every ∇_{x_i} L equals g")
    if _close(got, _rezero_reference(case, "x"), rtol=1e-6, atol=1e-9):
        raise AssertionError(f"{name}: you returned ⟨g, x⟩; the gate multiplies the branch, so the "
                             "gradient is ⟨g, F_i(x)⟩")
    i = int(np.argmax(np.abs(got - ref)))
    raise AssertionError(f"{name}: for block {i + 1} of {n} you returned {got[i]:.6g}; autograd gives "
                         f"∂L/∂α_{i + 1} = {ref[i]:.6g}")


REZERO_GRADS = Exercise("rezero_alpha_grads", ["rezero_alpha_grads"], _rezero_cases, _rezero_probe,
                        _rezero_judge)
register("ch6-ex3-tests", REZERO_GRADS)


def check_rezero_grads(fn, hidden=False):
    """``fn(blocks, x, g)`` must return ``∂L/∂α_i`` at α = 0 for ``L = <g, x_n>`` (one per block)."""
    REZERO_GRADS.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 4: Fixup


def _fixup_cases(seed):
    rng = np.random.default_rng(seed)
    return [{"depth": depth, "layers": m, "width": 4, "hidden": 6, "seed": int(rng.integers(1 << 30))}
            for depth, m in [(4, 2), (16, 3), (9, 4)]]


def _fixup_blocks(case):
    return branches(case["depth"], case["width"], case["hidden"], layers=case["layers"], seed=case["seed"])


def _fixup_probe(fn, case):
    blocks = _fixup_blocks(case)
    ret = fn(blocks)
    if isinstance(ret, (list, tuple)) and all(isinstance(b, torch.nn.Module) for b in ret):
        blocks = ret  # returned instead of changed in place: judge what came back
    return [[m.weight.detach() for m in blk.modules() if isinstance(m, torch.nn.Linear)] for blk in blocks]


def _fixup_judge(case, out):
    name = "fixup_init"
    out = value(out, name)
    L, m = case["depth"], case["layers"]
    original = [[lin.weight.detach().numpy() for lin in blk if isinstance(lin, torch.nn.Linear)]
                for blk in _fixup_blocks(case)]
    if not isinstance(out, list) or len(out) != L or any(not isinstance(b, list) or len(b) != m for b in out):
        raise AssertionError(f"{name}: the blocks no longer have {m} linear layers each; change the weights in "
                             "place (with torch.no_grad()), do not rebuild the blocks")
    scale = L ** (-1 / (2 * m - 2))
    for k, (mine, orig) in enumerate(zip(out, original, strict=True)):
        for i, (w, w0) in enumerate(zip(mine, orig, strict=True)):
            w = as_array(w, name)
            if w.shape != w0.shape:
                raise AssertionError(f"{name}: block {k + 1}, layer {i + 1} has shape {w.shape}, not {w0.shape}")
            if i == m - 1:
                if np.allclose(w, 0):
                    continue
                if _close(w, scale * w0):
                    raise AssertionError(f"{name}: rule 1 sets the last layer of each branch to 0; you scaled it")
                raise AssertionError(f"{name}: block {k + 1}'s last layer is not zero (Fixup's rule 1)")
            if _close(w, scale * w0):
                continue
            if np.allclose(w, 0):
                raise AssertionError(f"{name}: only the last layer of a branch starts at zero; the others are "
                                     f"scaled by L^(−1/(2m−2))")
            if _close(w, w0):
                raise AssertionError(f"{name}: block {k + 1}, layer {i + 1} is unchanged; rule 2 scales it by "
                                     f"L^(−1/(2m−2)) = {scale:.4g} (L = {L} branches of m = {m} layers)")
            for wrong, hint in [(L ** -0.5, "L^(−1/2) is the rule for m = 2 only; use L^(−1/(2m−2))"),
                                (L ** (-1 / (2 * m) - 2), "mind the brackets: the exponent is −1/(2m − 2)"),
                                (L ** (-1 / (2 * m)), "the exponent is −1/(2m − 2), not −1/(2m)"),
                                (scale ** 2, "you scaled twice")]:
                if _close(w, wrong * w0):
                    raise AssertionError(f"{name}: block {k + 1}, layer {i + 1} is scaled by {wrong:.4g}: {hint}")
            raise AssertionError(f"{name}: block {k + 1}, layer {i + 1} should be the original weight times "
                                 f"L^(−1/(2m−2)) = {scale:.4g} (L = {L}, m = {m})")


FIXUP_INIT = Exercise("fixup_init", ["fixup_init"], _fixup_cases, _fixup_probe, _fixup_judge)
register("ch6-ex4-tests", FIXUP_INIT)


def check_fixup_init(fn, hidden=False):
    """``fn(blocks)`` must apply Fixup's rules 1 and 2 in place to a list of L branches of m layers."""
    FIXUP_INIT.check(fn, hidden=hidden)


# ---------------------------------------------------------------- exercise 5: DeepNorm's constants


def _deepnorm_cases(seed):
    rng = np.random.default_rng(seed)
    n = [int(v) for v in rng.integers(2, 200, size=4)]
    return [{"N": n[0], "M": 0}, {"N": 0, "M": n[1]}, {"N": n[2], "M": n[3]}, {"N": 6, "M": 0}]


def _deepnorm_probe(fn, case):
    return fn(case["N"], case["M"])


def _deepnorm_reference(N, M):
    if M == 0:
        return {"encoder": deepnorm_constants(N), "decoder": None}
    if N == 0:
        return {"encoder": None, "decoder": deepnorm_constants(0, M)}
    return {"encoder": deepnorm_constants(N, M), "decoder": ((3 * M) ** 0.25, (12 * M) ** -0.25)}


def _pair(v, name, part):
    arr = as_array(v, f"{name}[{part!r}]").ravel()
    if arr.size != 2:
        raise AssertionError(f"{name}[{part!r}] should be a pair (alpha, beta), not {arr.size} numbers")
    return float(arr[0]), float(arr[1])


def _deepnorm_judge(case, out):
    name = "deepnorm_constants"
    out = value(out, name)
    N, M = case["N"], case["M"]
    if not isinstance(out, dict) or set(out) != {"encoder", "decoder"}:
        raise AssertionError(f"{name}({N}, {M}) should return a dict with the keys 'encoder' and 'decoder'")
    ref = _deepnorm_reference(N, M)
    for part in ("encoder", "decoder"):
        want, got = ref[part], out[part]
        if want is None:
            if got is not None:
                raise AssertionError(f"{name}({N}, {M}): a model without {part} layers has no {part} "
                                     "constants: use None")
            continue
        if got is None:
            raise AssertionError(f"{name}({N}, {M}): the {part} needs its (alpha, beta)")
        a, b = _pair(got, name, part)
        if math.isclose(a, want[0], rel_tol=1e-6) and math.isclose(b, want[1], rel_tol=1e-6):
            continue
        if math.isclose(a, want[1], rel_tol=1e-6) and math.isclose(b, want[0], rel_tol=1e-6):
            raise AssertionError(f"{name}({N}, {M}): alpha and beta are swapped: alpha > 1 up-weights the "
                                 "shortcut, beta < 1 shrinks the initial weights")
        layers = N if part == "encoder" else M
        if N and M and math.isclose(a, (2 * layers) ** 0.25, rel_tol=1e-6):
            raise AssertionError(f"{name}({N}, {M}): for an encoder-decoder model the {part} uses its own "
                                 "row of DeepNet's table, not the encoder-only or decoder-only one")
        if math.isclose(a, layers ** 0.25, rel_tol=1e-6) or math.isclose(b, layers ** -0.25, rel_tol=1e-6):
            raise AssertionError(f"{name}({N}, {M}): the constants are (2N)^(1/4) and (8N)^(−1/4), not "
                                 "N^(±1/4)")
        raise AssertionError(f"{name}({N}, {M}): the {part}'s (alpha, beta) = ({a:.6g}, {b:.6g}); DeepNet's "
                             f"table gives ({want[0]:.6g}, {want[1]:.6g})")


DEEPNORM = Exercise("deepnorm_constants", ["deepnorm_constants"], _deepnorm_cases, _deepnorm_probe,
                    _deepnorm_judge)
register("ch6-ex5-tests", DEEPNORM)


def check_deepnorm(fn, hidden=False):
    """``fn(N, M)`` must return {'encoder': (alpha, beta) or None, 'decoder': (alpha, beta) or None}."""
    DEEPNORM.check(fn, hidden=hidden)

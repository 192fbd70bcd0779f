"""Chapter 6's checkers: correct variants pass (torch or NumPy, loops, float32 where allowed),
each named mistake is refused with its message, and every grade id is registered."""

import math

import numpy as np
import pytest
import torch

from gradflow.checks import transformer as ct
from gradflow.checks.exercise import REGISTRY

EPS = 1e-5


# ---------------------------------------------------------------- exercise 1


def ln_block(x, gamma, eps):
    d = x.shape[0]
    s = torch.sqrt(x.var(unbiased=False) + eps)
    xh = (x - x.mean()) / s
    return gamma[:, None] * (torch.eye(d, dtype=x.dtype) - 1 / d - torch.outer(xh, xh) / d) / s


def ln_jac_torch(x, gamma, eps):
    return torch.block_diag(*[ln_block(row, gamma, eps) for row in x])


def ln_jac_autograd(x, gamma, eps):
    f = lambda v: torch.nn.functional.layer_norm(v.reshape(x.shape), x.shape[-1:], weight=gamma,  # noqa: E731
                                                 eps=eps).reshape(-1)
    return torch.autograd.functional.jacobian(f, x.reshape(-1))


def ln_jac_loops(x, gamma, eps):
    T, d = x.shape
    out = [[0.0] * (T * d) for _ in range(T * d)]
    for t in range(T):
        row = [float(v) for v in x[t]]
        mu = sum(row) / d
        s = math.sqrt(sum((v - mu) ** 2 for v in row) / d + eps)
        for i in range(d):
            for j in range(d):
                out[t * d + i][t * d + j] = float(gamma[i]) * ((i == j) - 1 / d
                                                              - (row[i] - mu) * (row[j] - mu) / (d * s * s)) / s
    return out


@pytest.mark.parametrize("fn", [ln_jac_torch, ln_jac_autograd, ln_jac_loops,
                                lambda x, g, eps: ln_jac_torch(x, g, eps).float(),
                                lambda x, g, eps: ln_jac_torch(x, g, eps).numpy()])
def test_layernorm_jacobian_accepts_correct_variants(fn):
    ct.check_layernorm_jacobian(fn)
    ct.check_layernorm_jacobian(fn, hidden=True)


def _ln_wrong(kind):
    def fn(x, gamma, eps):
        T, d = x.shape
        blocks = []
        for row in x:
            c = row - row.mean()
            s = torch.sqrt(row.var(unbiased=kind == "unbiased") + (0 if kind == "no eps" else eps))
            xh = c / s
            eye, ones = torch.eye(d, dtype=x.dtype), torch.full((d, d), 1 / d, dtype=x.dtype)
            frac = 1 / (d - 1) if kind == "unbiased" else 1 / d
            P = {"no mean": eye - torch.outer(xh, xh) / d, "no var": eye - ones}.get(
                kind, eye - ones - torch.outer(xh, xh) * frac)
            blocks.append({"no gain": P / s, "gain right": P * gamma[None, :] / s}.get(kind, gamma[:, None] * P / s))
        if kind == "shape":
            return blocks[0]
        if kind == "one vector":
            return ln_jac_autograd(x.reshape(1, -1), gamma.repeat(T), eps)
        return torch.block_diag(*blocks)
    return fn


@pytest.mark.parametrize("kind, words", [
    ("no mean", "1 1ᵀ/d is missing"), ("no var", "x̂ x̂ᵀ/d is missing"), ("no gain", "gain γ is missing"),
    ("gain right", "scales the rows"), ("unbiased", "unbiased variance"), ("no eps", "eps is missing"),
    ("shape", "returned shape"), ("one vector", "block diagonal"),
])
def test_layernorm_jacobian_names_mistakes(kind, words):
    with pytest.raises(AssertionError, match=words.replace("(", r"\(")):
        ct.check_layernorm_jacobian(_ln_wrong(kind))


def test_layernorm_jacobian_none_and_crash():
    with pytest.raises(AssertionError, match="None"):
        ct.check_layernorm_jacobian(lambda x, g, eps: None)
    with pytest.raises(AssertionError, match="not implemented"):
        ct.check_layernorm_jacobian(lambda x, g, eps: (_ for _ in ()).throw(NotImplementedError()))


# ---------------------------------------------------------------- exercise 2


def bound_solution(blocks, x, variant=None):
    bound = 1.0
    for F in blocks:
        W1, b1, W2 = F[0].weight, F[0].bias, F[2].weight
        with torch.no_grad():
            Fp = W2 @ torch.diag((W1 @ x + b1 > 0).double()) @ W1
            s = x + F(x)
            sigma = torch.sqrt(s.var(unbiased=False) + EPS)
            eye = torch.eye(len(x), dtype=x.dtype)
            num = {"no identity": torch.linalg.matrix_norm(Fp, 2),
                   "frobenius": torch.linalg.matrix_norm(eye + Fp)}.get(variant, torch.linalg.matrix_norm(eye + Fp, 2))
            bound = bound * (num * sigma if variant == "times sigma" else num / sigma)
            x = (s - s.mean()) / sigma
    return bound


def bound_numpy(blocks, x):
    x = x.numpy()
    out = 1.0
    for F in blocks:
        W1, b1 = F[0].weight.detach().numpy(), F[0].bias.detach().numpy()
        W2, b2 = F[2].weight.detach().numpy(), F[2].bias.detach().numpy()
        z = W1 @ x + b1
        s = x + W2 @ np.maximum(z, 0) + b2
        J = np.eye(len(x)) + W2 @ np.diag((z > 0) * 1.0) @ W1
        sigma = np.sqrt(s.var() + EPS)
        out *= np.linalg.norm(J, 2) / sigma
        x = (s - s.mean()) / sigma
    return out


@pytest.mark.parametrize("fn", [bound_solution, bound_numpy, lambda b, x: float(bound_solution(b, x))])
def test_post_ln_bound_accepts(fn):
    ct.check_post_ln_bound(fn)
    ct.check_post_ln_bound(fn, hidden=True)


@pytest.mark.parametrize("variant, words", [("no identity", "keep the identity"),
                                            ("frobenius", "Frobenius"), ("times sigma", "multiplied by σ")])
def test_post_ln_bound_names_mistakes(variant, words):
    with pytest.raises(AssertionError, match=words):
        ct.check_post_ln_bound(lambda b, x: bound_solution(b, x, variant))


def test_post_ln_bound_is_an_upper_bound():
    case = ct._bound_cases(0)[2]
    blocks, x = ct._stack(case)
    x0 = x.clone().requires_grad_()
    h = x0
    for F in blocks:
        h = torch.nn.functional.layer_norm(h + F(h), h.shape, eps=EPS)
    g = torch.randn(len(x), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(h, x0, grad_outputs=g)
    assert grad.norm() / g.norm() <= ct.post_ln_bound_reference(blocks, x)


# ---------------------------------------------------------------- exercise 3


def rezero_autograd(blocks, x, g):
    alphas = torch.zeros(len(blocks), dtype=x.dtype, requires_grad=True)
    h = x
    for a, F in zip(alphas, blocks, strict=True):
        h = h + a * F(h)
    (grad,) = torch.autograd.grad(h, alphas, grad_outputs=g)
    return grad


def rezero_formula(blocks, x, g):
    with torch.no_grad():
        return [torch.dot(g, F(x)).item() for F in blocks]


@pytest.mark.parametrize("fn", [rezero_autograd, rezero_formula,
                                lambda b, x, g: np.array(rezero_formula(b, x, g), dtype=np.float32)])
def test_rezero_accepts(fn):
    ct.check_rezero_grads(fn)
    ct.check_rezero_grads(fn, hidden=True)


def test_rezero_names_mistakes():
    with pytest.raises(AssertionError, match="returned zeros"):
        ct.check_rezero_grads(lambda b, x, g: torch.zeros(len(b)))

    def alpha_one(blocks, x, g):
        out, h = [], x
        with torch.no_grad():
            for F in blocks:
                out.append(torch.dot(g, F(h)).item())
                h = h + F(h)
        return out

    with pytest.raises(AssertionError, match="α = 1"):
        ct.check_rezero_grads(alpha_one)
    with pytest.raises(AssertionError, match="signs"):
        ct.check_rezero_grads(lambda b, x, g: [abs(v) for v in rezero_formula(b, x, g)])
    with pytest.raises(AssertionError, match="numbers for a stack"):
        ct.check_rezero_grads(lambda b, x, g: torch.stack([F(x).detach() for F in b]))


# ---------------------------------------------------------------- exercise 4


def fixup_solution(blocks, scale_last=False, exponent=None, zero_last=True):
    L = len(blocks)
    with torch.no_grad():
        for blk in blocks:
            linears = [m for m in blk if isinstance(m, torch.nn.Linear)]
            m = len(linears)
            scale = L ** (exponent if exponent is not None else -1 / (2 * m - 2))
            for lin in linears[:-1]:
                lin.weight.mul_(scale)
            if zero_last:
                linears[-1].weight.zero_()
            elif scale_last:
                linears[-1].weight.mul_(scale)


def test_fixup_accepts_in_place_and_returned():
    ct.check_fixup_init(fixup_solution)
    ct.check_fixup_init(fixup_solution, hidden=True)

    def returning(blocks):
        fixup_solution(blocks)
        return blocks

    ct.check_fixup_init(returning)


def test_fixup_names_mistakes():
    with pytest.raises(AssertionError, match="scaled it"):
        ct.check_fixup_init(lambda b: fixup_solution(b, scale_last=True, zero_last=False))
    with pytest.raises(AssertionError, match="is unchanged"):
        ct.check_fixup_init(lambda b: fixup_solution(b, exponent=0.0))
    with pytest.raises(AssertionError, match="m = 2 only"):
        ct.check_fixup_init(lambda b: fixup_solution(b, exponent=-0.5))
    with pytest.raises(AssertionError, match="not −1/\\(2m\\)"):
        ct.check_fixup_init(lambda b: fixup_solution(b, exponent=-1 / (2 * len([m for m in b[0] if isinstance(
            m, torch.nn.Linear)]))))

    def rebuild(blocks):
        return [torch.nn.Linear(2, 2) for _ in blocks]

    with pytest.raises(AssertionError, match="in place"):
        ct.check_fixup_init(rebuild)


# ---------------------------------------------------------------- exercise 5


def deepnorm_solution(N, M):
    if M == 0:
        return {"encoder": ((2 * N) ** 0.25, (8 * N) ** -0.25), "decoder": None}
    if N == 0:
        return {"encoder": None, "decoder": ((2 * M) ** 0.25, (8 * M) ** -0.25)}
    return {"encoder": (0.81 * (N**4 * M) ** (1 / 16), 0.87 * (N**4 * M) ** (-1 / 16)),
            "decoder": ((3 * M) ** 0.25, (12 * M) ** -0.25)}


def test_deepnorm_accepts():
    ct.check_deepnorm(deepnorm_solution)
    ct.check_deepnorm(deepnorm_solution, hidden=True)
    ct.check_deepnorm(lambda N, M: {k: None if v is None else torch.tensor(v)
                                    for k, v in deepnorm_solution(N, M).items()})


def test_deepnorm_names_mistakes():
    def swapped(N, M):
        return {k: None if v is None else (v[1], v[0]) for k, v in deepnorm_solution(N, M).items()}

    with pytest.raises(AssertionError, match="swapped"):
        ct.check_deepnorm(swapped)

    def single_table(N, M):
        out = deepnorm_solution(N, M)
        if N and M:
            out = {"encoder": deepnorm_solution(N, 0)["encoder"], "decoder": deepnorm_solution(0, M)["decoder"]}
        return out

    with pytest.raises(AssertionError, match="its own"):
        ct.check_deepnorm(single_table)
    with pytest.raises(AssertionError, match="keys"):
        ct.check_deepnorm(lambda N, M: ((2 * N) ** 0.25, (8 * N) ** -0.25))
    with pytest.raises(AssertionError, match="no decoder"):
        ct.check_deepnorm(lambda N, M: {"encoder": deepnorm_solution(max(N, 1), 0)["encoder"],
                                        "decoder": (1.0, 1.0)})


def test_every_grade_id_is_registered():
    for k, ex in enumerate([ct.LAYERNORM_JACOBIAN, ct.POST_LN_BOUND, ct.REZERO_GRADS, ct.FIXUP_INIT, ct.DEEPNORM],
                           start=1):
        assert REGISTRY[f"ch6-ex{k}-tests"] == [ex]


def test_judges_never_crash_on_junk():
    for ex in [ct.LAYERNORM_JACOBIAN, ct.POST_LN_BOUND, ct.REZERO_GRADS, ct.FIXUP_INIT, ct.DEEPNORM]:
        cases = ex.cases(3)
        for junk in [None, "text", [1, 2], {"__array__": [[1.0]], "dtype": "float64", "shape": [1, 1]},
                     {"__dict__": [["encoder", 3]]}, {"__float__": "nan"}]:
            assert isinstance(ex.verdict(cases, [junk] * len(cases)), str)

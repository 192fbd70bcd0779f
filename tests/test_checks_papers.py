"""Chapter 5's checkers accept correct variants and reject common mistakes with a message that names them."""

import math
from functools import reduce
from itertools import combinations

import numpy as np
import pytest
import torch

from gradflow.checks import exercise as ex
from gradflow.checks import papers as P
from gradflow.papers import grid_gradients


def rejects(check, *args, match, **kwargs):
    with pytest.raises(AssertionError, match=match):
        check(*args, **kwargs)


# ---------------------------------------------------------------- exercise 2: stack Jacobian


def jac_loop(As, lam):
    J = torch.eye(As[0].shape[0], dtype=torch.float64)
    for A in As:
        J = (lam * torch.eye(len(A), dtype=torch.float64) + A) @ J
    return J


def jac_numpy_reduce(As, lam):
    mats = [lam * np.eye(len(A)) + A.numpy() for A in As]
    return reduce(lambda J, M: M @ J, mats, np.eye(len(mats[0])))


@pytest.mark.parametrize("fn", [
    jac_loop,
    jac_numpy_reduce,
    lambda As, lam: jac_loop(As, lam).float(),  # float32 arithmetic is fine here
    lambda As, lam: jac_loop(As, lam).tolist(),  # the answer that crashed the old hidden J[0, 0] test
])
def test_stack_jacobian_accepts(fn):
    P.check_stack_jacobian(fn)
    P.check_stack_jacobian(fn, hidden=True)


def test_stack_jacobian_rejects_order_transpose_and_missing_lambda():
    def wrong_order(As, lam):
        J = torch.eye(As[0].shape[0], dtype=torch.float64)
        for A in As:
            J = J @ (lam * torch.eye(len(A), dtype=torch.float64) + A)
        return J

    rejects(P.check_stack_jacobian, wrong_order, match="wrong order")
    rejects(P.check_stack_jacobian, lambda As, lam: jac_loop([A.T for A in As], lam), match="transposed")
    rejects(P.check_stack_jacobian, lambda As, lam: jac_loop(As, 1.0), match="shortcut factor is 1")
    rejects(P.check_stack_jacobian, lambda As, lam: jac_loop([lam * A for A in As], 1.0),
            match="scaled the branch instead")
    rejects(P.check_stack_jacobian, lambda As, lam: jac_loop(As, lam)[:2], match="returned shape")
    rejects(P.check_stack_jacobian, lambda As, lam: jac_loop(As, lam).T, match="returned the transpose")


def test_stack_jacobian_accepts_autograd():
    def by_autograd(As, lam):
        def stack(x):
            for A in As:
                x = lam * x + A @ x
            return x

        return torch.autograd.functional.jacobian(stack, torch.zeros(len(As[0]), dtype=torch.float64))

    P.check_stack_jacobian(by_autograd)
    P.check_stack_jacobian(by_autograd, hidden=True)
    rejects(P.check_stack_jacobian, lambda As, lam: None, match="returned None")


def test_stack_jacobian_names_the_zero_branch_case():
    """With every A_i = 0 the answer is λ^L I; λ I (one block's worth) is refused with that formula."""
    def one_block_only(As, lam):
        return jac_loop(As, lam) if any(A.abs().sum() > 0 for A in As) else lam * torch.eye(len(As[0]))

    rejects(P.check_stack_jacobian, one_block_only, match=r"λ\^L I = 0.5\^30 I")


# ---------------------------------------------------------------- exercise 3: G_k and S_k


def components_loop(Js, g):
    n = len(Js)
    rows = [torch.zeros_like(g) for _ in range(n + 1)]
    for k in range(n + 1):
        for path in combinations(range(n), k):
            v = g
            for i in reversed(path):
                v = Js[i].T @ v
            rows[k] = rows[k] + v
    return torch.stack(rows)


def components_numpy_dp(Js, g):
    rows = np.zeros((len(Js) + 1, len(g)))
    rows[0] = g.numpy()
    for J in reversed(Js):
        rows[1:] = rows[1:] + rows[:-1] @ J.numpy()
    return rows


def sums_loop(Js, g, size=lambda v: float(torch.linalg.norm(v))):
    """S_k by enumerating every path (``size`` measures each path's gradient: its norm, or a mistake)."""
    n = len(Js)
    out = []
    for k in range(n + 1):
        total = 0.0
        for path in combinations(range(n), k):
            v = g
            for i in reversed(path):
                v = Js[i].T @ v
            total += size(v)
        out.append(total)
    return out


@pytest.mark.parametrize("fn", [components_loop, components_numpy_dp,
                                lambda Js, g: components_loop(Js, g).float()])
def test_length_components_accepts(fn):
    P.check_length_components(fn)
    P.check_length_components(fn, hidden=True)


def test_length_components_rejects_order_transposes_norms_and_missing_rows():
    rejects(P.check_length_components, lambda Js, g: components_loop(Js[::-1], g), match="wrong order")
    rejects(P.check_length_components, lambda Js, g: components_loop([J.T for J in Js], g),
            match="not transposed")
    rejects(P.check_length_components, lambda Js, g: components_loop([J.T for J in Js[::-1]], g),
            match="forward product")
    rejects(P.check_length_components, lambda Js, g: components_loop(Js, g).norm(dim=1), match="not their norms")
    rejects(P.check_length_components, lambda Js, g: components_loop(Js, g)[1:], match="row 0 is g itself")

    def lumped(Js, g):  # the whole gradient in the last row
        rows = components_loop(Js, g)
        out = torch.zeros_like(rows)
        out[-1] = rows.sum(0)
        return out

    rejects(P.check_length_components, lumped, match="not split by length")
    rejects(P.check_length_components, lambda Js, g: components_loop(Js, g).flip(0), match="reverse order")


def test_path_norm_sums_and_veit():
    P.check_path_norm_sums(sums_loop)
    P.check_path_norm_sums(lambda Js, g: torch.tensor(sums_loop(Js, g), dtype=torch.float32), hidden=True)
    rejects(P.check_path_norm_sums, lambda Js, g: components_loop(Js, g).norm(dim=1), match="these are G_k")

    def mean_not_sum(Js, g):
        return [s / math.comb(len(Js), k) for k, s in enumerate(sums_loop(Js, g))]

    rejects(P.check_path_norm_sums, mean_not_sum, match="you averaged")
    rejects(P.check_path_norm_sums, lambda Js, g: sums_loop([J.T for J in Js], g), match="not transposed")
    rejects(P.check_path_norm_sums, components_loop, match="returned vectors")

    def squared(Js, g):
        return sums_loop(Js, g, size=lambda v: float(v @ v))

    rejects(P.check_path_norm_sums, squared, match="squared norms")
    rejects(P.check_path_norm_sums, lambda Js, g: [math.sqrt(s) for s in squared(Js, g)], match="squared norms")
    for answer in ("S", " s ", "S_k", "Sₖ"):
        P.check_veit_measured(answer)
    rejects(P.check_veit_measured, "G", match="sum of norms")
    rejects(P.check_veit_measured, None, match='set `veit_measured` to "S" or "G"')
    rejects(P.check_veit_measured, 1.0, match='the text "S" or "G"')


# ---------------------------------------------------------------- exercise 4: lesions


def accuracies_without(net, X, y):
    net.eval()
    with torch.no_grad():
        def acc(drop):
            h = net.stem(X)
            for i, block in enumerate(net.blocks):
                if i not in drop:
                    h = block(h)
            return (net.head(net.head_act(net.head_norm(h))).argmax(dim=1) == y).double().mean().item()

        return acc(()), [acc((i,)) for i in range(len(net.blocks))]


def drops_loop(net, X, y):
    intact, lesioned = accuracies_without(net, X, y)
    return [intact - a for a in lesioned]


def drops_sequential_numpy(net, X, y):
    net.eval()
    blocks = list(net.blocks)

    def acc(keep):
        body = torch.nn.Sequential(net.stem, *keep, net.head_norm, net.head_act, net.head)
        return (body(X).argmax(dim=1) == y).float().mean().detach().numpy()

    intact = acc(blocks)
    return np.array([intact - acc(blocks[:i] + blocks[i + 1:]) for i in range(len(blocks))])


@pytest.mark.parametrize("fn", [drops_loop, drops_sequential_numpy])
def test_deletion_drops_accepts(fn):
    P.check_deletion_drops(fn)
    P.check_deletion_drops(fn, hidden=True)


def test_deletion_drops_rejects_common_mistakes():
    rejects(P.check_deletion_drops, lambda net, X, y: accuracies_without(net, X, y)[1],
            match="accuracies with each block deleted, not the drops")
    rejects(P.check_deletion_drops, lambda net, X, y: [-d for d in drops_loop(net, X, y)], match="sign is flipped")
    rejects(P.check_deletion_drops, lambda net, X, y: [100 * d for d in drops_loop(net, X, y)], match="percent")
    rejects(P.check_deletion_drops, lambda net, X, y: [0.0] * len(net.blocks), match="no block was deleted")

    def train_mode(net, X, y):
        with torch.no_grad():
            def acc(skip):
                h = net.stem(X)
                for i, block in enumerate(net.blocks):
                    if i != skip:
                        h = block(h)
                return (net.head(net.head_act(net.head_norm(h))).argmax(dim=1) == y).double().mean().item()

            return [acc(None) - acc(i) for i in range(len(net.blocks))]

    rejects(P.check_deletion_drops, train_mode, match="training mode: call net.eval")
    rejects(P.check_deletion_drops, lambda net, X, y: drops_loop(net, X, y)[:-1], match="returned shape")
    rejects(P.check_deletion_drops, lambda net, X, y: [len(y) * d for d in drops_loop(net, X, y)],
            match="numbers of images")

    def zeroed(net, X, y):
        net.eval()
        with torch.no_grad():
            def acc(skip):
                h = net.stem(X)
                for i, block in enumerate(net.blocks):
                    h = torch.zeros_like(h) if i == skip else block(h)
                return (net.head(net.head_act(net.head_norm(h))).argmax(dim=1) == y).double().mean().item()

            return [acc(None) - acc(i) for i in range(len(net.blocks))]

    rejects(P.check_deletion_drops, zeroed, match="replaced the deleted block's output by zeros")


def test_lesion_conclusion():
    res, plain, _ = P.lesion_reference(0)
    P.check_lesion_conclusion(res.max(), plain.min(), 0)
    P.check_lesion_conclusion(torch.tensor(res.max()), np.float32(plain.min()), 0)
    rejects(P.check_lesion_conclusion, plain.min(), res.max(), 0, match="swapped")
    rejects(P.check_lesion_conclusion, 100 * res.max(), 100 * plain.min(), 0, match="not in percent")
    rejects(P.check_lesion_conclusion, res.min(), plain.min(), 0, match="is the smallest drop")
    rejects(P.check_lesion_conclusion, res.max(), plain.max(), 0, match="is the largest drop")
    rejects(P.check_lesion_conclusion, None, plain.min(), 0, match="set `residual_worst`")
    assert res.max() < 0.3 < 0.5 < plain.min(), "the conclusion the exercise asks for"


# ---------------------------------------------------------------- exercise 5: correlations


def corr_torch(g):
    a, b = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    return (a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum())


def corr_numpy(g):
    g = np.asarray(g)
    return np.corrcoef(g[:-1], g[1:])[0, 1]


def acf_textbook(g):
    c = np.asarray(g, dtype=np.float64) - np.mean(np.asarray(g))
    return float(c[:-1] @ c[1:] / (c @ c))


def correlation_at(lag1):
    return lambda depth, residual, seeds: float(np.mean([float(lag1(grid_gradients(depth, residual, seed=s)))
                                                         for s in seeds]))


@pytest.mark.parametrize("fn", [corr_torch, corr_numpy, acf_textbook])
def test_neighbour_and_depth_correlation_accept_the_same_functions(fn):
    """Issue 13 #7: the textbook estimator passed part (a) and was refused in part (b) (0.2099 vs 0.2102)."""
    P.check_neighbour_correlation(fn)
    P.check_neighbour_correlation(fn, hidden=True)
    P.check_depth_correlations(correlation_at(fn))
    P.check_depth_correlations(correlation_at(fn), hidden=True)


def test_neighbour_correlation_rejects_common_mistakes():
    check = P.check_neighbour_correlation
    rejects(check, lambda g: np.corrcoef(g, g)[0, 1], match="correlate g with itself")
    rejects(check, lambda g: float((g[:-1] * g[1:]).mean()), match="not a correlation: divide")
    lag2 = lambda g: np.corrcoef(np.asarray(g)[:-2], np.asarray(g)[2:])[0, 1]  # noqa: E731
    rejects(check, lag2, match="Pearson correlation")
    rejects(check, lambda g: [0.1, 0.2], match="expected a single number")
    rejects(check, lambda g: float("nan"), match="finite number")


def test_the_cosine_message_shows_two_different_numbers():
    """Issue 13 #7: the old message read "0.9835 but should be 0.9835"."""
    cosine = lambda g: float((g[:-1] @ g[1:]) / (g[:-1].norm() * g[1:].norm()))  # noqa: E731
    with pytest.raises(AssertionError, match="subtract the means") as err:
        P.check_neighbour_correlation(cosine)
    got, want = (s.split(" ")[0] for s in str(err.value).split(" is ", 1)[1].split(" but should be "))
    assert got != want.rstrip(":"), str(err.value)


def test_depth_correlations_reject_single_seed_and_swapped_flag():
    one_seed = lambda depth, residual, seeds: float(corr_numpy(grid_gradients(depth, residual, seed=seeds[0])))  # noqa: E731
    rejects(P.check_depth_correlations, one_seed, match="seed 0 alone")
    swapped = lambda depth, residual, seeds: correlation_at(corr_numpy)(depth, not residual, seeds)  # noqa: E731
    rejects(P.check_depth_correlations, swapped, match="pass `residual` on")
    median = lambda depth, residual, seeds: float(np.median([corr_numpy(grid_gradients(depth, residual, seed=s))  # noqa: E731
                                                              for s in seeds]))
    rejects(P.check_depth_correlations, median, match="median over the seeds")
    with pytest.raises(AssertionError) as err:
        P.check_depth_correlations(lambda depth, residual, seeds: 0.5)
    assert "neighbour_correlation" not in str(err.value), "the message must not point to the forbidden function"


# ---------------------------------------------------------------- exercise 1: BatchNorm's growth rate


def _gauss_mean(f, z):
    pdf = torch.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    return torch.trapezoid(f * pdf, z).item()


def rate_trapezoid(phi, dphi, ends=10.0, points=200_001):
    z = torch.linspace(-ends, ends, points, dtype=torch.float64)
    var = _gauss_mean(phi(z) ** 2, z) - _gauss_mean(phi(z), z) ** 2
    return math.sqrt(_gauss_mean(dphi(z) ** 2, z) / var)


def rate_scipy(phi, dphi):
    from scipy import integrate

    pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    at = lambda f, t: float(f(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    mean = lambda g: integrate.quad(lambda t: g(t) * pdf(t), -12, 12, points=[0], limit=200)[0]  # noqa: E731
    var = mean(lambda t: at(phi, t) ** 2) - mean(lambda t: at(phi, t)) ** 2
    return torch.tensor(mean(lambda t: at(dphi, t) ** 2) / var).sqrt()


@pytest.mark.parametrize("fn", [rate_trapezoid, rate_scipy])
def test_bn_growth_rate_accepts(fn):
    P.check_bn_growth_rate(fn)
    P.check_bn_growth_rate(fn, hidden=True)


def test_bn_growth_rate_reference_and_poincare():
    relu = P.bn_growth_reference({"activation": "relu"})
    assert relu == pytest.approx(math.sqrt(math.pi / (math.pi - 1)), rel=1e-9)
    assert P.bn_growth_reference({"activation": "linear"}) == pytest.approx(1.0, rel=1e-9)
    for case in P._bn_cases(0) + P._bn_cases(7):  # Poincaré: Var φ(z) ≤ E[φ'(z)²], so r ≥ 1
        assert P.bn_growth_reference(case) >= 1 - 1e-12


def test_bn_growth_rate_rejects_common_mistakes():
    check = P.check_bn_growth_rate
    rejects(check, lambda phi, dphi: rate_trapezoid(phi, dphi) ** 2, match="take the square root")
    rejects(check, lambda phi, dphi: 1 / rate_trapezoid(phi, dphi), match="goes in the numerator")

    def square_of_mean(phi, dphi):
        z = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
        var = _gauss_mean(phi(z) ** 2, z) - _gauss_mean(phi(z), z) ** 2
        return math.sqrt(_gauss_mean(dphi(z), z) ** 2 / var)

    def uncentred(phi, dphi):
        z = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
        return math.sqrt(_gauss_mean(dphi(z) ** 2, z) / _gauss_mean(phi(z) ** 2, z))

    def sampled(phi, dphi):
        z = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return math.sqrt((dphi(z) ** 2).mean().item() / phi(z).var().item())

    rejects(check, square_of_mean, match="square of the mean")
    rejects(check, uncentred, match="the variance Var φ")
    rejects(check, sampled, match="four significant digits allow")
    rejects(check, lambda phi, dphi: rate_trapezoid(phi, dphi, points=801), match="four significant digits allow")

    def gauss_hermite(phi, dphi):  # exact for polynomials, but the ReLU's kink costs it 1e-3
        x, w = np.polynomial.hermite_e.hermegauss(200)
        z, w = torch.tensor(x), torch.tensor(w) / math.sqrt(2 * math.pi)
        mean = lambda v: float((v * w).sum())  # noqa: E731
        return math.sqrt(mean(dphi(z) ** 2) / (mean(phi(z) ** 2) - mean(phi(z)) ** 2))

    rejects(check, gauss_hermite, match="four significant digits allow")
    rejects(check, lambda phi, dphi: None, match="returned None")


def test_bn_growth_rate_accepts_four_significant_digits():
    """The trapezoid rule, a node on the kink, spacing 1e-3: 1.2109 for ReLU (1.2112), four digits, so accepted."""
    coarse = lambda phi, dphi: rate_trapezoid(phi, dphi, points=20_001)  # noqa: E731
    assert round(coarse(torch.relu, lambda z: (z > 0).to(z.dtype)), 3) == round(math.sqrt(math.pi / (math.pi - 1)), 3)
    P.check_bn_growth_rate(coarse)
    P.check_bn_growth_rate(coarse, hidden=True)


# ---------------------------------------------------------------- the registry and hostile outputs


def test_every_grade_id_is_registered():
    """Exercises are numbered in page order: 1 degradation, 2 shortcuts, 3 and 4 paths, 5 shattered."""
    ids = {"ch5-ex1-tests", "ch5-ex2-tests", "ch5-ex3a-tests", "ch5-ex3b-tests", "ch5-ex4a-tests", "ch5-ex4b-tests",
           "ch5-ex5-tests"}
    assert ids <= set(ex.REGISTRY)
    assert ex.REGISTRY["ch5-ex1-tests"] == [P.BN_GROWTH_RATE]
    assert ex.REGISTRY["ch5-ex2-tests"] == [P.STACK_JACOBIAN]
    assert ex.REGISTRY["ch5-ex3b-tests"] == [P.PATH_NORM_SUMS, P.VEIT_MEASURED]
    assert ex.REGISTRY["ch5-ex4b-tests"] == [P.LESION_CONCLUSION]
    assert ex.REGISTRY["ch5-ex5-tests"] == [P.LAG1_CORRELATION, P.DEPTH_CORRELATION]
    for grade_id in ids:
        for exercise in ex.REGISTRY[grade_id]:
            assert ex.module_of(exercise) == "gradflow.checks.papers"
            ex.plain_cases(exercise, 12345)  # plain data for the sandbox


@pytest.mark.parametrize("exercise", [P.STACK_JACOBIAN, P.LENGTH_COMPONENTS, P.PATH_NORM_SUMS, P.VEIT_MEASURED,
                                      P.DELETION_DROPS, P.LAG1_CORRELATION, P.DEPTH_CORRELATION,
                                      P.BN_GROWTH_RATE])
def test_judges_survive_junk(exercise):
    cases = exercise.cases(0)
    for junk in (None, "x", [1, 2], {"__array__": [[1, 2], [3]], "dtype": "float64", "shape": [2, 2]},
                 {"__float__": "nan"}, {"__error__": "boom", "kind": "exception"}):
        assert isinstance(exercise.verdict(cases, [junk] * len(cases)), str)

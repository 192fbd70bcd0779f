"""Unit tests of gradflow.residual (chapter 2), against hand-computed values and independent references."""

import itertools
import math

import pytest
import torch

from gradflow import residual as R
from gradflow.nets import mlp

torch.set_num_threads(1)


def test_tail_mean_by_hand():
    assert R.tail_mean([5, 1, 2, 3], n=3) == 2.0
    assert R.tail_mean([4.0], n=30) == 4.0
    assert R.tail_mean(range(100)) == sum(range(70, 100)) / 30


def test_second_moments_by_hand():
    hs = [torch.tensor([[1.0, -1.0], [3.0, 1.0]]), torch.zeros(3, 2)]
    assert R.second_moments(hs).tolist() == [3.0, 0.0]


def test_variance_theory_by_hand():
    assert R.variance_theory(2, 1.0).tolist() == [1.0, 2.0, 4.0]
    assert R.variance_theory(2, 0.5, q0=2.0).tolist() == [2.0, 2.5, 3.125]
    assert R.variance_theory(3, 1.0, q0=1.5, norm="batch").tolist() == [1.5, 2.5, 3.5, 4.5]
    assert R.variance_theory(4, 0.0).tolist() == [1.0] * 5


@pytest.mark.parametrize("kwargs, lo, hi", [(dict(), 1.8, 2.1), (dict(branch_scale=0.5), 1.18, 1.3)])
def test_variance_growth_matches_theory_on_a_wide_net(kwargs, lo, hi):
    from gradflow.data import digits

    X = digits(seed=0)[0]
    with torch.no_grad():
        q = R.second_moments(mlp(20, width=256, residual=True, init="he", seed=1, **kwargs).hidden(X))
    rate = (q[-1] / q[0]).item() ** (1 / 20)
    assert lo < rate < hi  # theory: 1 + a^2


def test_digits_run_is_seeded_and_cached():
    run = R.digits_run(3, True, steps=5)
    assert len(run.losses) == 5 and len(run.grad_norms) == 3 + 2
    assert R.digits_run(3, True, steps=5) is run  # cached
    again = R.digits_run.__wrapped__(3, True, steps=5)
    assert again.losses == run.losses and again.grad_norms == run.grad_norms
    assert 0.0 <= run.train_acc <= 1.0 and 0.0 <= run.test_acc <= 1.0
    other = R.digits_run.__wrapped__(3, True, steps=5, seed=1)  # another split, weights and batches
    assert other.losses != run.losses and other.grad_norms != run.grad_norms


def test_identity_fit():
    zero = R.identity_fit(3, True, zero_init_last=True, steps=5)
    assert zero == (0.0,) * 5  # exactly the identity, and it stays there
    plain = R.identity_fit.__wrapped__(3, False, steps=5)
    assert plain == R.identity_fit.__wrapped__(3, False, steps=5) and plain[0] > 0
    # the first loss is the MSE of the untrained stack, computed independently
    g = torch.Generator().manual_seed(0)
    X = 2 * torch.rand(256, 32, generator=g)
    stack = torch.nn.Sequential(*mlp(3, width=32, d_in=32, d_out=32, init="he", seed=0).blocks)
    assert math.isclose(plain[0], torch.nn.functional.mse_loss(stack(X), X).item(), rel_tol=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
def test_degradation_claims_hold_for_other_seeds(seed):
    """The claims residual.ipynb asserts for its SEED hold for other seeds (split, weights and batches)."""
    depths = (4, 10, 20, 40)
    runs = {(d, s): R.digits_run(d, s, steps=120, seed=seed) for d in depths for s in (False, True)}
    plain = [R.tail_mean(runs[d, False].losses) for d in depths]
    assert all(a < b for a, b in itertools.pairwise(plain))
    assert plain[0] < 0.15 and plain[-1] > 1.5
    assert all(R.tail_mean(runs[d, True].losses) < 0.15 for d in depths)
    assert runs[40, False].train_acc < 0.5 < 0.95 < runs[40, True].train_acc
    assert runs[40, False].test_acc < 0.5
    g_plain, g_res = runs[40, False].grad_norms, runs[40, True].grad_norms
    assert min(g_plain) > min(g_res) and g_plain[0] / g_plain[-1] > 100


@pytest.mark.parametrize("seed", [1, 2])
def test_identity_and_explorer_claims_hold_for_other_seeds(seed):
    plain = R.identity_fit(10, False, seed=seed)
    res = R.identity_fit(10, True, branch_scale=1 / math.sqrt(10), seed=seed)
    assert plain[-1] > 0.25 and res[-1] < 2 / 3 * plain[-1]
    assert res[-51] - res[-1] > 3 * (plain[-51] - plain[-1])
    runs = {(d, s, a): R.digits_run(d, s, norm=None, branch_scale=a, steps=120, lr=0.02, seed=seed)
            for d in (4, 12, 40) for s, a in ((False, 1.0), (True, 1.0), (True, 1 / math.sqrt(d)))}
    final = {key: R.tail_mean(run.losses) for key, run in runs.items()}
    assert all(final[d, True, 1 / math.sqrt(d)] < 0.2 for d in (4, 12, 40))
    assert final[40, False, 1.0] > 1.0 and not final[40, True, 1.0] < 2.0
    g_plain = runs[40, False, 1.0].grad_norms
    assert max(g_plain) / min(g_plain) < 30 and min(runs[40, True, 1.0].grad_norms) > 1e4

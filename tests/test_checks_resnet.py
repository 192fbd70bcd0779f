"""Chapter 4's checkers accept correct variants and reject common mistakes with a message naming them."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradflow import convnets
from gradflow.checks import resnet as ck
from gradflow.checks.exercise import REGISTRY


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread is fastest, and far faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

def rejects(check, fn, words):
    with pytest.raises(AssertionError) as info:
        check(fn)
    assert words in str(info.value), str(info.value)


def test_every_test_cell_is_registered():
    assert REGISTRY["ch4-ex1-tests"] == [ck.SHORTCUT_A]
    assert REGISTRY["ch4-ex2-tests"] == [ck.PROJECTION]
    assert REGISTRY["ch4-ex3-tests"] == [ck.POSTACT_JACOBIAN]
    assert REGISTRY["ch4-ex4-tests"] == [ck.PARAM_COUNT]
    assert REGISTRY["ch4-ex5-tests"] == [ck.GRAD_NORMS]


# ---------------------------------------------------------------- exercise 1: option A


def a_pad(x, c_out):
    x = x[:, :, ::2, ::2]
    return F.pad(x, (0, 0, 0, 0, 0, c_out - x.shape[1]))


def a_both_sides(x, c_out):  # zeros split between both ends, as some CIFAR implementations do
    x = x[:, :, ::2, ::2]
    extra = c_out - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


def a_numpy(x, c_out):
    x = np.asarray(x)[:, :, ::2, ::2]
    zeros = np.zeros((x.shape[0], c_out - x.shape[1], *x.shape[2:]), dtype=x.dtype)
    return np.concatenate([x, zeros], axis=1)


def a_loop(x, c_out):
    n, c, h, w = x.shape
    out = torch.zeros(n, c_out, (h + 1) // 2, (w + 1) // 2)
    for i in range(0, h, 2):
        for j in range(0, w, 2):
            out[:, :c, i // 2, j // 2] = x[:, :, i, j]
    return out


@pytest.mark.parametrize("fn", [a_pad, a_both_sides, a_numpy, a_loop])
def test_shortcut_a_accepts(fn):
    ck.check_shortcut_a(fn)
    ck.check_shortcut_a(fn, hidden=True)
    ck.SHORTCUT_A.check(fn, seed=12345)


@pytest.mark.parametrize("fn, words", [
    (lambda x, c: F.pad(x, (0, 0, 0, 0, 0, c - x.shape[1])), "keeps its size"),
    (lambda x, c: x[:, :, ::2, ::2], "not padded"),
    (lambda x, c: F.pad(x[:, :, ::2, ::2], (0, c - x.shape[1])), "you padded the width"),
    (lambda x, c: F.pad(x[:, :, 1::2, 1::2], (0, 0, 0, 0, 0, c - x.shape[1])), "odd positions"),
    (lambda x, c: F.pad(F.avg_pool2d(x, 2, ceil_mode=True), (0, 0, 0, 0, 0, c - x.shape[1])), "averaged"),
    (lambda x, c: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, c - x.shape[1]), value=1.0), "must be zeros"),
    (lambda x, c: torch.cat([x[:, :, ::2, ::2]] * (c // x.shape[1]) + [x[:, :c % x.shape[1], ::2, ::2]], 1),
     "must be zeros"),
    (lambda x, c: 2 * a_pad(x, c), "unchanged"),
    (lambda x, c: None, "return"),
    ("not a function", "should be a function"),
])
def test_shortcut_a_rejects(fn, words):
    rejects(ck.check_shortcut_a, fn, words)


def test_shortcut_a_odd_maps():
    def floor_half(x, c):  # x[:, :, :h//2*2:2] drops the last row of an odd map
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        return a_pad(x[:, :, :h, :w], c)

    rejects(ck.check_shortcut_a, floor_half, "pixels 0, 2, 4")


# ---------------------------------------------------------------- exercise 2: option B's projection


def proj_seq(c_in, c_out, stride):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


class ProjModule(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_out)  # registered first: the order must not matter
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=(1, 1), stride=(stride, stride), bias=False)

    def forward(self, x):
        return self.bn(self.conv(x))


@pytest.mark.parametrize("fn", [proj_seq, ProjModule, convnets.projection])
def test_projection_accepts(fn):
    ck.check_projection(fn)
    ck.check_projection(fn, hidden=True)


class BNFirst(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        self.extra = nn.Parameter(torch.zeros(c_out - c_in + c_out)) if c_out > c_in else None

    def forward(self, x):
        return self.conv(self.bn(x))


@pytest.mark.parametrize("fn, words", [
    (lambda a, b, s: nn.Sequential(nn.Conv2d(a, b, 1, stride=s), nn.BatchNorm2d(b)), "has a bias"),
    (lambda a, b, s: nn.Sequential(nn.Conv2d(a, b, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(b)),
     "3×3 kernels"),
    (lambda a, b, s: nn.Conv2d(a, b, 1, stride=s, bias=False), "no BatchNorm2d"),
    (lambda a, b, s: nn.Sequential(nn.Conv2d(a, b, 1, bias=False), nn.BatchNorm2d(b)), "stride"),
    (lambda a, b, s: nn.Sequential(nn.Conv2d(a, b, 1, stride=s, bias=False), nn.BatchNorm2d(b), nn.ReLU()),
     "ReLU"),
    (lambda a, b, s: nn.Sequential(nn.Conv2d(a, b, 1, stride=s, bias=False), nn.BatchNorm2d(b)).eval(),
     None),  # the probe puts the module in training mode: accepted
    (lambda a, b, s: nn.Sequential(nn.Conv2d(a, b, 1, stride=s, bias=False), nn.BatchNorm2d(b),
                                   nn.BatchNorm2d(b)), "parameters"),
    (lambda a, b, s: nn.Sequential(nn.Conv2d(b, a, 1, stride=s, bias=False), nn.BatchNorm2d(a)), "raised RuntimeError"),
    (lambda a, b, s: "conv + bn", "not a module"),
    (lambda a, b, s: nn.Sequential(), "no convolution"),
])
def test_projection_rejects(fn, words):
    if words is None:
        ck.check_projection(fn)
        return
    rejects(ck.check_projection, fn, words)


class EvalBN(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return F.batch_norm(self.conv(x), self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                            training=False)


def test_projection_names_eval_mode_normalisation():
    rejects(ck.check_projection, EvalBN, "eval mode")


# ---------------------------------------------------------------- exercise 3: a stack of original blocks


def stack_torch(J_Fs, sums):
    J = torch.eye(len(sums[0]), dtype=torch.float64)
    for J_F, s in zip(J_Fs, sums, strict=True):
        J = torch.diag((s > 0).double()) @ (torch.eye(len(s), dtype=torch.float64) + J_F) @ J
    return J


def stack_numpy_rows(J_Fs, sums):  # zero the rows where s < 0, multiply from the output side
    J = np.eye(len(sums[0]))
    for J_F, s in reversed(list(zip(J_Fs, sums, strict=True))):
        block = np.eye(len(s)) + np.asarray(J_F)
        block[np.asarray(s) <= 0] = 0.0
        J = J @ block
    return J


def stack_float32(J_Fs, sums):
    return stack_torch(J_Fs, sums).float()


def stack_autograd(J_Fs, sums):  # linear branches with those Jacobians, through autograd
    x0 = torch.zeros(len(sums[0]), dtype=torch.float64)

    def f(x):
        for J_F, s in zip(J_Fs, sums, strict=True):
            x = torch.relu(s + x + J_F @ x)  # at x = 0 the sum is s and dF/dx = J_F
            x = x - torch.relu(s).detach()  # shift back so the next block is evaluated at 0
        return x

    return torch.autograd.functional.jacobian(f, x0)


@pytest.mark.parametrize("fn", [stack_torch, stack_numpy_rows, stack_float32, stack_autograd])
def test_postact_accepts(fn):
    ck.check_postact_jacobian(fn)
    ck.check_postact_jacobian(fn, hidden=True)


def _stack(factor, order=1):
    def fn(J_Fs, sums):
        pairs = list(zip(J_Fs, sums, strict=True))[::order]
        J = torch.eye(len(sums[0]), dtype=torch.float64)
        for J_F, s in pairs:
            J = factor(J_F, s, torch.eye(len(s), dtype=torch.float64), torch.diag((s > 0).double())) @ J
        return J

    return fn


@pytest.mark.parametrize("fn, words", [
    (_stack(lambda J, s, I, D: I + J), "the ReLU after each addition"),
    (_stack(lambda J, s, I, D: (I + J) @ D), "on the right"),
    (_stack(lambda J, s, I, D: I + D @ J), "branch only"),
    (_stack(lambda J, s, I, D: D @ (I + J), order=-1), "wrong order"),
    (lambda J_Fs, sums: stack_torch(J_Fs, sums).T, "transpose"),
    (_stack(lambda J, s, I, D: torch.diag((s < 0).double()) @ (I + J)), "swapped"),
    (lambda J_Fs, sums: torch.eye(len(sums[0]), dtype=torch.float64) + sum(J_Fs), "first-order"),
    (lambda J_Fs, sums: stack_torch(J_Fs[-1:], sums[-1:]), "last block's Jacobian alone"),
    (lambda J_Fs, sums: stack_torch(J_Fs, sums)[:-1], "shape"),
    (lambda J_Fs, sums: stack_torch(J_Fs, sums) * float("nan"), "NaN"),
    (lambda J_Fs, sums: 1.01 * stack_torch(J_Fs, sums), "entry"),
])
def test_postact_rejects(fn, words):
    rejects(ck.check_postact_jacobian, fn, words)


# ---------------------------------------------------------------- exercise 4: parameters from the layout


def count_loop(n, widths, classes, option):
    total, c = 9 * 3 * widths[0] + 2 * widths[0], widths[0]
    for i, w in enumerate(widths):
        for j in range(n):
            stride = 2 if i and not j else 1
            total += 9 * c * w + 9 * w * w + 4 * w
            if option == "C" or (option == "B" and (stride > 1 or c != w)):
                total += c * w + 2 * w
            c = w
    return total + c * classes + classes


def count_by_building(n, widths, classes, option):
    with torch.device("meta"):
        net = convnets.cifar_resnet(n, option=option, widths=widths, classes=classes)
    return torch.tensor(float(sum(p.numel() for p in net.parameters())))  # a 0-d float tensor


@pytest.mark.parametrize("fn", [count_loop, count_by_building, lambda *a: np.int64(count_loop(*a))])
def test_param_count_accepts(fn):
    ck.check_param_count(fn)
    ck.check_param_count(fn, hidden=True)


def test_param_count_reference_is_the_module():
    for case in ck._param_count_cases(0) + ck._param_count_cases(1):
        assert ck.param_count_reference(**case) == ck._module_count(case)


@pytest.mark.parametrize("mistake, words", [
    ({"bn": False}, "BatchNorm parameters"),
    ({"conv_bias": True}, "bias in every convolution"),
    ({"fc_bias": False}, "has a bias too"),
    ({"projection_bn": False}, "1×1 convolution followed by BatchNorm"),
    ({"stem_from": "w0"}, "3 channels"),
])
def test_param_count_rejects(mistake, words):
    def fn(n, widths, classes, option):
        m = {k: (widths[0] if v == "w0" else v) for k, v in mistake.items()}
        return ck.param_count_reference(n, widths, classes, option, **m)

    rejects(ck.check_param_count, fn, words)


@pytest.mark.parametrize("wrong", ["A", "B", "C"])
def test_param_count_names_the_other_options(wrong):
    def fn(n, widths, classes, option):
        return ck.param_count_reference(n, widths, classes, wrong)

    rejects(ck.check_param_count, fn, f"that is option {wrong}'s count")


def test_param_count_other_failures():
    rejects(ck.check_param_count, lambda *a: count_loop(*a) + 0.5, "whole number")
    rejects(ck.check_param_count, lambda *a: count_loop(*a) + 7, "the module has")
    rejects(ck.check_param_count, lambda *a: "269722", "text")


# ---------------------------------------------------------------- exercise 5: gradient norms


def norms_backward(net, X, y):
    layers = [m for name, m in net.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name]
    net.zero_grad()
    F.cross_entropy(net(X), y).backward()
    return [m.weight.grad.norm().item() for m in layers]


def norms_autograd_grad(net, X, y):  # torch.autograd.grad, float64 norms, a numpy array
    layers = convnets.weighted_layers(net)
    grads = torch.autograd.grad(F.cross_entropy(net(X), y), [m.weight for m in layers])
    return np.array([math.sqrt((g.double() ** 2).sum().item()) for g in grads])


@pytest.mark.parametrize("fn", [norms_backward, norms_autograd_grad])
def test_grad_norms_accepts(fn):
    ck.check_grad_norms(fn)
    ck.check_grad_norms(fn, hidden=True)


def norms_with(kind):
    def fn(net, X, y):
        if kind == "eval":
            net.eval()
        loss = F.cross_entropy(net(X), y, reduction="sum" if kind == "sum" else "mean")
        net.zero_grad()
        loss.backward()
        if kind == "projections":
            layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        elif kind == "bn":
            layers = [m for name, m in net.named_modules() if "shortcut" not in name
                      and isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
        else:
            layers = convnets.weighted_layers(net)
        norms = [m.weight.grad.norm().item() for m in layers]
        if kind == "reversed":
            norms = norms[::-1]
        if kind == "squared":
            norms = [v**2 for v in norms]
        return norms

    return fn


@pytest.mark.parametrize("kind, words", [
    ("projections", "shortcut projections"),
    ("bn", "BatchNorm"),
    ("reversed", "from the output"),
    ("squared", "squared"),
    ("sum", "summed loss"),
    ("eval", "eval mode"),
])
def test_grad_norms_rejects(kind, words):
    fn = norms_with(kind)
    with pytest.raises(AssertionError) as info:
        ck.check_grad_norms(fn)
        ck.check_grad_norms(fn, hidden=True)
    assert words in str(info.value), str(info.value)


def test_judges_survive_junk():
    for exercise in [ck.SHORTCUT_A, ck.PROJECTION, ck.POSTACT_JACOBIAN, ck.PARAM_COUNT, ck.GRAD_NORMS]:
        cases = exercise.cases(0)
        for junk in [[None] * len(cases), [{"__dict__": []}] * len(cases), [[1, [2]]] * len(cases),
                     [{"__array__": [1.0], "dtype": "float32", "shape": [1]}] * len(cases), "x", []]:
            assert isinstance(exercise.verdict(cases, junk), str)

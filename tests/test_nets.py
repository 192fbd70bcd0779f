"""gradflow.nets against hand-written forward passes, autograd and the initialisations' variances."""

import math

import pytest
import torch
import torch.nn.functional as F

from gradflow import nets
from gradflow.data import teacher_task

torch.set_default_dtype(torch.float32)


def _layer(fan_in=400, fan_out=300):
    return torch.nn.Linear(fan_in, fan_out)


@pytest.mark.parametrize(
    "scheme, expected",
    [("default", 1 / (3 * 400)), ("xavier", 2 / 700), ("he", 2 / 400), ("normal", 1.0), (0.5, 0.25 / 400)],
)
def test_init_variance(scheme, expected):
    layer = nets.init_linear(_layer(), scheme, torch.Generator().manual_seed(0))
    var = layer.weight.detach().double().var().item()
    assert var == pytest.approx(expected, rel=0.03)  # 120,000 draws: about 0.4 % standard error


def test_default_init_is_not_he():
    layer = nets.init_linear(_layer(), "default", torch.Generator().manual_seed(0))
    assert layer.weight.abs().max().item() <= 1 / math.sqrt(400)
    assert layer.weight.var().item() < 0.2 * (2 / 400)


def test_orthogonal_and_zero_init():
    layer = nets.init_linear(_layer(50, 50), "orthogonal", torch.Generator().manual_seed(1))
    W = layer.weight.detach().double()
    assert torch.allclose(W @ W.T, torch.eye(50, dtype=torch.float64), atol=1e-5)
    assert layer.bias.abs().max() == 0
    zero = nets.init_linear(_layer(), "zero", torch.Generator())
    assert zero.weight.abs().max() == 0 and zero.bias.abs().max() == 0


def test_unknown_init_and_activation_and_norm_are_clear_errors():
    with pytest.raises(ValueError, match="unknown init scheme 'kaiming'"):
        nets.init_linear(_layer(), "kaiming", torch.Generator())
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nets.mlp(2, activation="gelu")
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        nets.mlp(2, norm="group")


def test_seeded_and_independent_of_global_rng():
    torch.manual_seed(123)
    a = nets.mlp(3, seed=7)
    torch.manual_seed(999)
    b = nets.mlp(3, seed=7)
    c = nets.mlp(3, seed=8)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_linear_layers_are_input_to_output():
    net = nets.mlp(5, width=8, d_in=3, d_out=2)
    layers = nets.linear_layers(net)
    assert len(layers) == 5 + 2
    assert layers[0].in_features == 3 and layers[-1].out_features == 2


@pytest.mark.parametrize("activation, act", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("relu", torch.relu)])
def test_plain_forward_is_the_usual_chain(activation, act):
    net = nets.mlp(3, width=6, d_in=4, d_out=3, activation=activation, init="xavier", seed=0, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Ws = [(layer.weight, layer.bias) for layer in nets.linear_layers(net)]
    h = x @ Ws[0][0].T + Ws[0][1]
    for W, b in Ws[1:]:
        h = act(h) @ W.T + b
    assert torch.allclose(net(x), h, atol=1e-12)


def test_residual_forward_adds_scaled_shortcut():
    net = nets.mlp(2, width=5, d_in=5, d_out=2, activation="tanh", residual=True, shortcut=0.5,
                   branch_scale=0.3, init="he", seed=1, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    stem, b1, b2, head = nets.linear_layers(net)
    h = stem(x)
    for lin in (b1, b2):
        h = 0.5 * h + 0.3 * (torch.tanh(h) @ lin.weight.T + lin.bias)
    assert torch.allclose(net.hidden(x)[-1], h, atol=1e-12)
    assert torch.allclose(net(x), torch.tanh(h) @ head.weight.T + head.bias, atol=1e-12)


def test_zero_init_last_makes_blocks_the_identity():
    net = nets.mlp(10, width=7, d_in=7, residual=True, zero_init_last=True, seed=3, dtype=torch.float64)
    x = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    hs = net.hidden(x)
    for h in hs[1:]:
        assert torch.equal(h, hs[0])


def test_batchnorm_and_layernorm_build_and_run():
    X, y = teacher_task(n=64, dim=16, classes=4, seed=0)
    for norm in ("batch", "layer"):
        net = nets.mlp(4, width=16, d_in=16, d_out=4, norm=norm, residual=True, seed=0)
        assert net(X).shape == (64, 4)


def test_weight_grad_norms_match_autograd():
    X, y = teacher_task(n=32, dim=16, classes=4, seed=1, dtype=torch.float64)
    net = nets.mlp(4, width=12, d_in=16, d_out=4, activation="tanh", seed=2, dtype=torch.float64)
    norms = nets.weight_grad_norms(net, X, y)
    layers = nets.linear_layers(net)
    grads = torch.autograd.grad(F.cross_entropy(net(X), y), [layer.weight for layer in layers])
    assert torch.allclose(norms, torch.stack([g.norm() for g in grads]), rtol=1e-12)
    assert all(p.grad is None for p in net.parameters())  # the probe leaves no gradients behind


def test_hidden_grad_norms_match_finite_differences():
    X, y = teacher_task(n=16, dim=8, classes=3, seed=3, dtype=torch.float64)
    net = nets.mlp(3, width=8, d_in=8, d_out=3, activation="sigmoid", init="xavier", seed=4, dtype=torch.float64)
    norms = nets.hidden_grad_norms(net, X, y)
    assert norms.shape == (4,)
    # dL/dh_0 by central differences on the stem's bias (h_0 = stem(x): d/db0 = sum over the batch)
    b = net.stem.bias
    eps, fd = 1e-6, torch.zeros_like(b)
    with torch.no_grad():
        for i in range(len(b)):
            b[i] += eps
            up = F.cross_entropy(net(X), y)
            b[i] -= 2 * eps
            down = F.cross_entropy(net(X), y)
            b[i] += eps
            fd[i] = (up - down) / (2 * eps)
    hs = net.hidden(X)
    logits = net.head(net.head_act(net.head_norm(hs[-1])))
    (g0,) = torch.autograd.grad(F.cross_entropy(logits, y), [hs[0]])
    assert torch.allclose(g0.sum(0), fd, atol=1e-8)
    assert norms[0].item() == pytest.approx(g0.norm().item(), rel=1e-12)


def test_train_is_deterministic_and_learns():
    X, y = teacher_task(n=256, dim=16, classes=4, seed=0)
    runs = []
    for _ in range(2):
        net = nets.mlp(2, width=32, d_in=16, d_out=4, activation="relu", init="he", seed=0)
        runs.append(nets.train(net, X, y, steps=150, lr=0.05, batch_size=64, seed=0))
    assert runs[0] == runs[1]
    assert sum(runs[0][-10:]) / 10 < 0.5 * sum(runs[0][:10]) / 10
    assert nets.accuracy(net, X, y) > 0.8
    assert net.training  # accuracy restores the mode it found


def _torch_optim_train(net, X, y, steps, lr, optimizer, warmup=0, seed=0, batch_size=64, **options):
    """nets.train's loop written with torch.optim: the reference for its own SGD and Adam steps."""
    g = torch.Generator().manual_seed(seed)
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, **options)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=lr, **options)
    losses = []
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = nets.warmup_lr(step, lr, warmup)
        idx = torch.randint(len(y), (batch_size,), generator=g)
        loss = F.cross_entropy(net(X[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("optimizer, lr, warmup", [("sgd", 0.05, 0), ("sgd", 0.05, 10), ("adam", 0.01, 0),
                                                   ("adam", 0.01, 10)])
@pytest.mark.parametrize("foreach", [False, True])
def test_train_steps_are_torch_optims_bit_for_bit(optimizer, lr, warmup, foreach):
    """sgd_step / adam_step do torch.optim's arithmetic (both its loops), without importing torch._dynamo."""
    X, y = teacher_task(n=256, dim=16, classes=4, seed=0)

    def net():  # BatchNorm: its running statistics are buffers, not parameters; unused bias: no grad
        n = nets.mlp(3, width=24, d_in=16, d_out=4, norm="batch", residual=True, init="he", seed=1)
        n.stem.bias.requires_grad_(False)
        return n

    ours, theirs = net(), net()
    a = nets.train(ours, X, y, steps=40, lr=lr, batch_size=64, seed=2, optimizer=optimizer, warmup=warmup)
    b = _torch_optim_train(theirs, X, y, 40, lr, optimizer, warmup=warmup, seed=2, foreach=foreach)
    assert a == b
    for (name, p), q in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_train_rejects_an_unknown_optimizer():
    X, y = teacher_task(n=16, dim=4, classes=2, seed=0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        nets.train(nets.mlp(1, width=4, d_in=4, d_out=2), X, y, steps=1, optimizer="rmsprop")


@pytest.mark.parametrize("step", [nets.sgd_step, nets.adam_step])
def test_a_step_without_any_gradient_changes_nothing(step):
    """Every parameter frozen (no .grad): the step is skipped, not an error from an empty foreach list."""
    params, state = [torch.zeros(3, requires_grad=True), torch.ones(2, requires_grad=True)], {}
    step(params, state, 0.1)
    assert torch.equal(params[0], torch.zeros(3)) and torch.equal(params[1], torch.ones(2))


def test_gradflow_never_imports_torch_optim_machinery():
    """The first torch.optim optimiser imports torch._dynamo (about 1 s): no notebook should pay it."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from gradflow import nets, residual, papers, transformer\n"
            "from gradflow.data import teacher_task\n"
            "X, y = teacher_task(n=64, dim=8, classes=2, seed=0)\n"
            "for opt in ('sgd', 'adam'):\n"
            "    nets.train(nets.mlp(2, width=8, d_in=8, d_out=2), X, y, steps=3, optimizer=opt)\n"
            "residual.identity_fit(2, True, width=4, n=8, steps=3)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _tiny_gradient_net(scale=1e-23):
    """A float32 linear net whose head is scaled so that every dL/dh and dL/dW entry is ~1e-24..1e-22."""
    X, y = teacher_task(n=32, dim=16, classes=4, seed=5)
    net = nets.mlp(2, width=12, d_in=16, d_out=4, activation="linear", init="xavier", seed=6)
    with torch.no_grad():
        net.head.weight.mul_(scale)
    return net, X, y


def test_norms_of_tiny_float32_gradients_are_reduced_in_float64():
    net, X, y = _tiny_gradient_net()
    hs = net.hidden(X)
    (g0,) = torch.autograd.grad(F.cross_entropy(net.head(net.head_act(hs[-1])), y), [hs[0]])
    assert g0.dtype == torch.float32 and (g0 != 0).all() and g0.abs().max() < 1e-20
    assert g0.norm().item() == 0.0  # float32's own norm: the squares (~1e-48) underflow
    exact = g0.double().norm().item()
    norms = nets.hidden_grad_norms(net, X, y)
    assert norms.dtype == torch.float64 and (norms > 0).all()
    assert norms[0].item() == pytest.approx(exact, rel=1e-12)
    w_norms = nets.weight_grad_norms(net, X, y)
    assert (w_norms[:-1] > 0).all() and (w_norms[:-1] < 1e-19).all()  # the head's own gradient is not tiny
    net.zero_grad()
    F.cross_entropy(net(X), y).backward()
    stem = net.stem.weight.grad
    assert stem.norm().item() == 0.0 and w_norms[0].item() == pytest.approx(stem.double().norm().item(), rel=1e-12)


def test_norm_is_zero_only_when_every_entry_is():
    net, X, y = _tiny_gradient_net(scale=0.0)  # a zero head: every gradient below it is exactly 0
    assert (nets.hidden_grad_norms(net, X, y) == 0).all()
    assert (nets.weight_grad_norms(net, X, y)[:-1] == 0).all()

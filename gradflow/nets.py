"""Plain and residual MLPs, their initialisations, gradient probes and a tiny trainer.

Convention (see the book's notation page): ``nn.Linear`` computes ``x @ W.T + b`` on
row vectors. A network is a *stem* (``d_in -> width``), ``depth`` hidden blocks and a
*head* (``width -> d_out``). Each block has the pre-activation form

    F(h) = W act(norm(h)) + b,   plain: h' = F(h),   residual: h' = shortcut * h + branch_scale * F(h)

so a plain net is the usual chain ``W_k act(W_{k-1} ...)`` and a residual net adds an
identity path around every block. ``linear_layers(net)`` lists the ``depth + 2`` linear
layers from input to output; the probes report one number per linear layer in that order.
"""

import math

import torch
import torch.nn.functional as F_
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "act_derivative",
    "Block",
    "MLP",
    "mlp",
    "init_linear",
    "linear_layers",
    "weight_grad_norms",
    "hidden_grad_norms",
    "warmup_lr",
    "sgd_step",
    "adam_step",
    "train",
    "accuracy",
]

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "linear": nn.Identity,
}


def act_derivative(activation, z):
    """sigma'(z) in closed form for 'sigmoid', 'tanh', 'relu' (0 at z = 0, like autograd) or 'linear'."""
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "linear":
        return torch.ones_like(z)
    raise ValueError(f"unknown activation {activation!r}; use 'sigmoid', 'tanh', 'relu' or 'linear'")


def init_linear(layer, scheme, generator):
    """Initialise one ``nn.Linear`` in place, drawing only from ``generator``.

    ``scheme`` is one of
      - ``"default"``: PyTorch's own: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b,
        so Var w = 1/(3 fan_in) (not He init);
      - ``"xavier"``: N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010);
      - ``"he"``: N(0, 2/fan_in) (He et al. 2015, for ReLU);
      - ``"normal"``: N(0, 1), unscaled;
      - ``"orthogonal"``: a random orthogonal matrix (Saxe et al. 2014);
      - ``"zero"``: all zeros;
      - a number ``g``: N(0, g^2/fan_in).
    Biases are zero except for ``"default"``.
    """
    W, b = layer.weight, layer.bias
    fan_out, fan_in = W.shape
    with torch.no_grad():
        if scheme == "default":
            bound = 1.0 / math.sqrt(fan_in)
            W.uniform_(-bound, bound, generator=generator)
            if b is not None:
                b.uniform_(-bound, bound, generator=generator)
            return layer
        if scheme == "xavier":
            W.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
        elif scheme == "he":
            W.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
        elif scheme == "normal":
            W.normal_(0.0, 1.0, generator=generator)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(W, generator=generator)
        elif scheme == "zero":
            W.zero_()
        elif isinstance(scheme, (int, float)):
            W.normal_(0.0, float(scheme) / math.sqrt(fan_in), generator=generator)
        else:
            raise ValueError(
                f"unknown init scheme {scheme!r}; use 'default', 'xavier', 'he', "
                "'normal', 'orthogonal', 'zero' or a number g (std g/sqrt(fan_in))"
            )
        if b is not None:
            b.zero_()
    return layer


def _norm(kind, width):
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ValueError(f"unknown norm {kind!r}; use None, 'batch' or 'layer'")


class Block(nn.Module):
    """One hidden block: ``F(h) = linear(act(norm(h)))``; residual adds ``shortcut * h``."""

    def __init__(self, width, activation, norm=None, residual=False, shortcut=1.0, branch_scale=1.0):
        super().__init__()
        self.norm = _norm(norm, width)
        self.act = ACTIVATIONS[activation]()
        self.linear = nn.Linear(width, width)
        self.residual = residual
        self.shortcut = shortcut
        self.branch_scale = branch_scale

    def branch(self, h):
        return self.linear(self.act(self.norm(h)))

    def forward(self, h):
        if not self.residual:
            return self.branch(h)
        return self.shortcut * h + self.branch_scale * self.branch(h)


class MLP(nn.Module):
    """stem -> ``depth`` blocks -> head. ``forward`` returns logits."""

    def __init__(self, d_in, width, d_out, depth, activation="relu", norm=None,
                 residual=False, shortcut=1.0, branch_scale=1.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        self.stem = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(
            Block(width, activation, norm, residual, shortcut, branch_scale) for _ in range(depth)
        )
        self.head_norm = _norm(norm, width)
        self.head_act = ACTIVATIONS[activation]()
        self.head = nn.Linear(width, d_out)

    def hidden(self, x):
        """The list of hidden states ``[h_0, h_1, ..., h_depth]`` (``h_0`` is the stem's output)."""
        hs = [self.stem(x)]
        for block in self.blocks:
            hs.append(block(hs[-1]))
        return hs

    def forward(self, x):
        h = self.hidden(x)[-1]
        return self.head(self.head_act(self.head_norm(h)))


def mlp(depth, width=64, d_in=64, d_out=10, activation="relu", init="default", norm=None,
        residual=False, shortcut=1.0, branch_scale=1.0, zero_init_last=False, seed=0,
        dtype=torch.float32):
    """Build a seeded :class:`MLP`. ``init`` applies to every linear layer (see :func:`init_linear`).

    ``zero_init_last`` zeroes each residual block's linear layer, so the blocks start as the
    identity. The same ``seed`` gives the same weights, whatever the global RNG state.
    """
    net = MLP(d_in, width, d_out, depth, activation, norm, residual, shortcut, branch_scale)
    g = torch.Generator().manual_seed(seed)
    for layer in linear_layers(net):
        init_linear(layer, init, g)
    if zero_init_last:
        for block in net.blocks:
            init_linear(block.linear, "zero", g)
    return net.to(dtype)


def linear_layers(net):
    """The ``nn.Linear`` layers of ``net`` from input to output."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def _norm64(t):
    """Euclidean norm of ``t`` summed in float64: the squares of float32 entries near 1e-23 underflow to 0."""
    return torch.linalg.vector_norm(t.detach().to(torch.float64)).item()


def weight_grad_norms(net, X, y, layers=None):
    """Frobenius norm of ``dL/dW`` for each linear layer (input to output), L = cross-entropy.

    The gradient is computed in the net's own precision; its norm is reduced in float64, so a norm
    reads 0 only if every entry is 0. ``layers``: the layers to report, in order (default:
    ``linear_layers(net)``; convolutions work too).
    """
    layers = linear_layers(net) if layers is None else layers
    net.zero_grad(set_to_none=True)
    F_.cross_entropy(net(X), y).backward()
    norms = [_norm64(layer.weight.grad) for layer in layers]
    net.zero_grad(set_to_none=True)
    return torch.tensor(norms, dtype=torch.float64)


def hidden_grad_norms(net, X, y):
    """Norm of ``dL/dh_l`` for each hidden state ``h_0 .. h_depth`` of an :class:`MLP`.

    Gradients in the net's precision, norms reduced in float64 (see :func:`weight_grad_norms`).
    """
    hs = net.hidden(X)
    logits = net.head(net.head_act(net.head_norm(hs[-1])))
    grads = torch.autograd.grad(F_.cross_entropy(logits, y), hs)
    return torch.tensor([_norm64(g) for g in grads], dtype=torch.float64)


def warmup_lr(step, lr, warmup):
    """Linear warm-up (Xiong et al. 2020, eq. 1): ``lr · step / warmup`` up to step ``warmup``, then ``lr``.

    ``step`` counts from 1; ``warmup = 0`` means no warm-up.
    """
    return lr if warmup <= 0 else lr * min(1.0, step / warmup)


def sgd_step(params, state, lr, momentum=0.9):
    """One step of SGD with momentum, in place: ``buf = momentum · buf + grad``, ``p -= lr · buf``.

    ``state`` (a dict, empty at first) keeps each parameter's buffer; the first gradient starts it,
    and parameters without a gradient are left alone. The arithmetic of
    ``torch.optim.SGD(momentum=momentum)``, bit for bit (tests/test_nets.py), without ``torch.optim``:
    the first optimiser of a process imports ``torch._dynamo``, about 1 s of a notebook that
    otherwise starts in 2. ``torch._foreach_*`` ops apply one operation to a list of tensors.
    """
    with torch.no_grad():
        idx = [i for i, p in enumerate(params) if p.grad is not None]
        old = [i for i in idx if i in state]  # buffers from earlier steps
        if old:
            bufs = [state[i] for i in old]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, [params[i].grad for i in old])
        for i in idx:
            if i not in state:
                state[i] = params[i].grad.detach().clone()
        if idx:  # torch's foreach ops refuse empty lists (every parameter frozen)
            torch._foreach_add_([params[i] for i in idx], [state[i] for i in idx], alpha=-lr)


def adam_step(params, state, lr, betas=(0.9, 0.999), eps=1e-8):
    """One Adam step (Kingma & Ba 2015, Algorithm 1) at step ``t``, in place:

    ``m = β1 m + (1 - β1) g``, ``v = β2 v + (1 - β2) g²``,
    ``p -= lr / (1 - β1^t) · m / (sqrt(v / (1 - β2^t)) + eps)``.

    ``state`` (a dict, empty at first) keeps ``t`` and each parameter's ``(m, v)``. The arithmetic
    of ``torch.optim.Adam``, bit for bit (tests/test_nets.py), without ``torch.optim`` (see
    :func:`sgd_step`).
    """
    beta1, beta2 = betas
    t = state["t"] = state.get("t", 0) + 1
    with torch.no_grad():
        idx = [i for i, p in enumerate(params) if p.grad is not None]
        if not idx:  # torch's foreach ops refuse empty lists (every parameter frozen)
            return
        for i in idx:
            if i not in state:
                state[i] = torch.zeros_like(params[i]), torch.zeros_like(params[i])
        ps, grads = [params[i] for i in idx], [params[i].grad for i in idx]
        m, v = [state[i][0] for i in idx], [state[i][1] for i in idx]
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, (1 - beta2**t) ** 0.5)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(ps, m, denom, -lr / (1 - beta1**t))


def train(net, X, y, steps=200, lr=0.1, batch_size=128, momentum=0.9, seed=0, optimizer="sgd", warmup=0):
    """Minibatch SGD (or ``optimizer="adam"``) on cross-entropy; returns the per-step training losses.

    The learning rate follows :func:`warmup_lr` (constant when ``warmup = 0``); the updates are
    :func:`sgd_step` (with ``momentum``) or :func:`adam_step`. ``net(X)`` may return logits
    ``(N, C)`` or ``(N, C, T)`` for targets ``(N,)`` or ``(N, T)``. Batches are drawn from a
    generator seeded with ``seed``; the global RNG is not used.
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'sgd' or 'adam'")
    g = torch.Generator().manual_seed(seed)
    params, state = list(net.parameters()), {}
    net.train()
    losses = []
    for step in range(1, steps + 1):
        idx = torch.randint(len(y), (min(batch_size, len(y)),), generator=g)
        loss = F_.cross_entropy(net(X[idx]), y[idx])
        for p in params:
            p.grad = None
        loss.backward()
        rate = warmup_lr(step, lr, warmup)
        if optimizer == "sgd":
            sgd_step(params, state, rate, momentum)
        else:
            adam_step(params, state, rate)
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(net, X, y):
    """Fraction of correct predictions, in eval mode (BatchNorm uses running statistics)."""
    was_training = net.training
    net.eval()
    acc = (net(X).argmax(dim=1) == y).double().mean().item()
    net.train(was_training)
    return acc

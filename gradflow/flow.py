"""Chapter 3 helpers: residual blocks from ``nn.Linear``, their Jacobians, and gradient paths.

Convention (the book's notation page): ``nn.Linear`` computes ``x @ W.T + b`` on row vectors,
the formulas use column vectors, ``y = x + W3 σ(W2 x + b2) + b3``, and a Jacobian ``dy/dx`` has
one row per output (what ``torch.autograd.functional.jacobian`` returns).
"""

import math

import torch
import torch.nn.functional as F_
from torch import nn
from torch.autograd.functional import jacobian

from .nets import ACTIVATIONS, act_derivative

__all__ = [
    "randn",
    "weights",
    "ResidualBlock",
    "block",
    "stack",
    "states",
    "input_grad",
    "two_terms",
    "angle",
    "branch_jacobians",
    "path_gradients",
    "path_counts",
    "input_output_jacobian",
    "grad_ratio",
]


def randn(*shape, seed):
    """A seeded standard normal float64 tensor (the global RNG is not used)."""
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def weights(blk):
    """``(W2, b2, W3)`` of a :class:`ResidualBlock`, detached from autograd."""
    return blk.lin2.weight.detach(), blk.lin2.bias.detach(), blk.lin3.weight.detach()


class ResidualBlock(nn.Module):
    """``y = post(shortcut * x + lin3(act(lin2(x))))``, with ``post`` the identity or a ReLU."""

    def __init__(self, width, hidden, activation="sigmoid", shortcut=1.0, post=None, dtype=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        if post not in (None, "relu"):
            raise ValueError(f"unknown post {post!r}; use None or 'relu'")
        self.lin2 = nn.Linear(width, hidden, dtype=dtype)
        self.act = ACTIVATIONS[activation]()
        self.lin3 = nn.Linear(hidden, width, dtype=dtype)
        self.activation, self.shortcut, self.post = activation, shortcut, post

    def branch(self, x):
        """The residual branch ``F(x) = W3 σ(W2 x + b2) + b3``."""
        return self.lin3(self.act(self.lin2(x)))

    def forward(self, x):
        y = self.shortcut * x + self.branch(x)
        return F_.relu(y) if self.post == "relu" else y


def block(width=6, hidden=None, activation="sigmoid", scale2=1.0, scale3=1.0, bias=0.5,
          shortcut=1.0, post=None, seed=0, generator=None, dtype=torch.float64):
    """A seeded :class:`ResidualBlock`: ``W ~ N(0, scale²/fan_in)``, biases ``~ N(0, bias²)``."""
    hidden = width if hidden is None else hidden
    g = torch.Generator().manual_seed(seed) if generator is None else generator
    blk = ResidualBlock(width, hidden, activation, shortcut, post, dtype=dtype)  # made in dtype: no copy
    with torch.no_grad():
        for lin, scale in ((blk.lin2, scale2), (blk.lin3, scale3)):
            lin.weight.normal_(0.0, scale / math.sqrt(lin.in_features), generator=g)
            lin.bias.normal_(0.0, bias, generator=g)
    return blk


def stack(depth, width=6, hidden=None, activation="tanh", scale2=1.0, scale3=1.0, bias=0.5,
          shortcut=1.0, post=None, seed=0, dtype=torch.float64):
    """``depth`` seeded blocks in an ``nn.Sequential`` (one generator, so blocks differ)."""
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(*(
        block(width, hidden, activation, scale2, scale3, bias, shortcut, post, generator=g, dtype=dtype)
        for _ in range(depth)
    ))


def states(blocks, x):
    """The list ``[x_0, x_1, ..., x_L]`` of inputs and outputs of the blocks."""
    xs = [x]
    for blk in blocks:
        xs.append(blk(xs[-1]))
    return xs


def input_grad(blocks, x, g):
    """``∇_{x_0} L`` for ``L = <g, x_L>``, i.e. ``(∂x_L/∂x_0)ᵀ g``, by autograd."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(states(blocks, x)[-1], x, grad_outputs=g)
    return grad


def two_terms(blk, x, g):
    """The identity term ``g`` and the branch term ``W2ᵀ diag(σ'(W2 x + b2)) W3ᵀ g`` of ``∇_x L``."""
    W2, b2, W3 = blk.lin2.weight, blk.lin2.bias, blk.lin3.weight
    with torch.no_grad():
        d = act_derivative(blk.activation, W2 @ x + b2)
        return g.clone(), W2.T @ (d * (W3.T @ g))


def angle(u, v):
    """The angle between two vectors, in degrees."""
    cos = torch.dot(u, v) / (torch.linalg.norm(u) * torch.linalg.norm(v))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos.item()))))


def branch_jacobians(blocks, x):
    """The branch Jacobians ``J_i = W3 diag(σ'(W2 x_i + b2)) W2`` at each block's input, for one vector ``x``."""
    Js = []
    with torch.no_grad():
        for blk, xi in zip(blocks, states(blocks, x)[:-1], strict=True):
            W2, b2, W3 = blk.lin2.weight, blk.lin2.bias, blk.lin3.weight
            Js.append(W3 @ (act_derivative(blk.activation, W2 @ xi + b2)[:, None] * W2))
    return Js


def path_gradients(jacobians, g, shortcut=1.0):
    """Rows ``k = 0..L``: the part of ``∇_{x_0} L`` carried by paths through exactly ``k`` branches.

    ``∂x_L/∂x_0 = (λI + J_L) ... (λI + J_1)``; row ``k`` is ``C_kᵀ g`` with ``C_k`` the
    coefficient of ``t^k`` in ``(λI + t J_L) ... (λI + t J_1)``. The rows sum to ``∇_{x_0} L``.
    """
    L = len(jacobians)
    rows = torch.zeros(L + 1, g.shape[0], dtype=g.dtype)
    rows[0] = g
    for J in reversed(jacobians):  # gᵀ (λI + t J_L) ...: walk from the output to the input
        rows[1:] = shortcut * rows[1:] + rows[:-1] @ J  # (Jᵀ r)ᵀ = rᵀ J, for every k at once
        rows[0] = shortcut * rows[0]
    return rows


def path_counts(n):
    """Fraction of the ``2^n`` paths through ``n`` residual blocks that pass ``k`` branches."""
    return torch.tensor([math.comb(n, k) / 2**n for k in range(n + 1)], dtype=torch.float64)


def input_output_jacobian(net, x):
    """``∂h_L/∂h_0`` of a :class:`gradflow.nets.MLP`'s blocks, at the stem output of one input row."""
    h0 = net.stem(x).detach()
    return jacobian(lambda h: states(net.blocks, h)[-1], h0)


def grad_ratio(blocks, x, g):
    """``‖∇_{x_0} L‖ / ‖∇_{x_L} L‖`` for ``L = <g, x_L>``.

    A stack of :class:`ResidualBlock` is differentiated by hand (the block's gradient in row form,
    ``λ v + (σ'(z) ⊙ v W3) W2``, masked by ``1[y > 0]`` after a ReLU), which is about twice as fast
    as autograd on these small blocks and equal to it to rounding; anything else goes through
    :func:`input_grad`.
    """
    if not all(isinstance(blk, ResidualBlock) for blk in blocks):
        return (torch.linalg.norm(input_grad(blocks, x, g)) / torch.linalg.norm(g)).item()
    with torch.no_grad():
        tape = []
        for blk in blocks:
            z = blk.lin2(x)
            y = blk.shortcut * x + blk.lin3(blk.act(z))
            tape.append((blk, z, y))
            x = F_.relu(y) if blk.post == "relu" else y
        v = g
        for blk, z, y in reversed(tape):  # row form, so a batch of rows works too
            if blk.post == "relu":
                v = v * (y > 0)
            v = blk.shortcut * v + (act_derivative(blk.activation, z) * (v @ blk.lin3.weight)) @ blk.lin2.weight
        return (torch.linalg.norm(v) / torch.linalg.norm(g)).item()

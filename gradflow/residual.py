"""Chapter 2 helpers: the experiments behind the residual block, as small seeded functions.

(The exact gradient of a stack and its paths are chapter 3's: :mod:`gradflow.flow`.)

The networks are :func:`gradflow.nets.mlp` MLPs (pre-activation blocks ``h' = h + a F(h)``,
``F(h) = W act(norm(h)) + b``). Training runs are cached with :func:`functools.lru_cache`, so a
figure and an explorer that ask for the same run train it once.
"""

from collections import namedtuple
from functools import cache, lru_cache

import torch
import torch.nn.functional as F_

from .data import digits
from .nets import accuracy, adam_step, mlp, train, weight_grad_norms

__all__ = [
    "Run",
    "digits_run",
    "tail_mean",
    "identity_fit",
    "second_moments",
    "variance_theory",
]

Run = namedtuple("Run", "losses grad_norms train_acc test_acc")


@cache
def _digits(seed):
    return digits(seed=seed)


@lru_cache(maxsize=64)
def digits_run(depth, residual, norm="batch", branch_scale=1.0, width=32, steps=300, lr=0.05, seed=0):
    """Train a He-initialised digits MLP with SGD; return a :data:`Run` (cached; tuples, not tensors).

    ``seed`` draws the train/test split, the weights and the minibatches. ``grad_norms`` are the
    per-layer ``||dL/dW||`` at initialisation (:func:`~gradflow.nets.weight_grad_norms`).
    """
    X, y, X_test, y_test = _digits(seed)
    net = mlp(depth, width=width, norm=norm, residual=residual, branch_scale=branch_scale, init="he", seed=seed)
    grad_norms = tuple(weight_grad_norms(net, X, y).tolist())
    losses = tuple(train(net, X, y, steps=steps, lr=lr, batch_size=64, seed=seed))
    return Run(losses, grad_norms, accuracy(net, X, y), accuracy(net, X_test, y_test))


def tail_mean(losses, n=30):
    """Mean of the last ``n`` values: a training loss with the minibatch noise averaged out."""
    tail = list(losses)[-n:]
    return sum(tail) / len(tail)


@lru_cache(maxsize=16)
def identity_fit(depth, residual, branch_scale=1.0, zero_init_last=False, width=32, n=256, steps=200,
                 lr=1e-3, seed=0):
    """Train a stack of ``depth`` blocks (no stem, no head) to output its input; per-step MSE (cached).

    Inputs are uniform on [0, 2)^width, so ``relu`` leaves them unchanged and both a plain stack
    (every ``W = I``, ``b = 0``) and a residual stack (every ``W = 0``, ``b = 0``) can be exactly the identity.
    """
    g = torch.Generator().manual_seed(seed)
    X = 2 * torch.rand(n, width, generator=g)
    net = mlp(depth, width=width, d_in=width, d_out=width, residual=residual, init="he",
              branch_scale=branch_scale, zero_init_last=zero_init_last, seed=seed)
    stack = torch.nn.Sequential(*net.blocks)
    params, state, losses = list(stack.parameters()), {}, []
    for _ in range(steps):
        loss = F_.mse_loss(stack(X), X)
        for p in params:
            p.grad = None
        loss.backward()
        adam_step(params, state, lr)  # torch.optim.Adam's update, without torch.optim
        losses.append(loss.item())
    return tuple(losses)


def second_moments(hs):
    """Mean square ``q_l = mean(h_l^2)`` of each hidden state in the list ``hs``."""
    return torch.tensor([h.detach().double().pow(2).mean().item() for h in hs], dtype=torch.float64)


def variance_theory(depth, branch_scale=1.0, q0=1.0, norm=None):
    """Predicted ``q_0 .. q_depth`` for He-initialised ReLU branches of scale ``a``.

    Each block multiplies ``q`` by ``1 + a^2``; with BatchNorm in the branch it adds ``a^2`` instead.
    """
    q = [float(q0)]
    for _ in range(depth):
        q.append(q[-1] + branch_scale**2 if norm == "batch" else q[-1] * (1 + branch_scale**2))
    return torch.tensor(q, dtype=torch.float64)

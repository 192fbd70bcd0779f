"""Chapter 5's helpers: the papers' experiments at small scale.

- He et al. (2016b) shortcut and activation variants of a residual unit (:class:`Unit`, :func:`unit_net`);
- Veit et al. (2016) gradient by path length: one sampled path's norm (:func:`path_gradient_norms`,
  Veit's measurement, from which S_k) and the exact length-k components (:func:`path_split`, G_k);
  lesions (:func:`lesion_logits`, :func:`lesion_accuracy`);
- Balduzzi et al. (2017) gradients of a scalar function on a grid (:func:`grid_gradients`,
  :func:`neighbour_correlation`);
- Saxe et al. (2014) / Pennington et al. (2017) input-output Jacobians (:func:`deep_jacobian`).

Every function that draws random numbers takes a ``seed``; nothing uses the global RNG.
"""

import html
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F_
from torch import nn

from .data import digits
from .nets import init_linear, mlp, train

__all__ = [
    "VARIANTS",
    "Unit",
    "unit_net",
    "eval_loss",
    "path_gradient_norms",
    "path_split",
    "length_components",
    "path_norm_sums",
    "lesion_logits",
    "lesion_accuracy",
    "lesion_pair",
    "one_thread",
    "grid_gradients",
    "neighbour_correlation",
    "JACOBIAN_KINDS",
    "deep_jacobian",
    "Table",
    "table",
    "hidden_state_axis",
]

# He et al. (2016b), Fig. 2(b) and Fig. 4, with one weight layer W per unit and a BatchNorm "BN":
VARIANTS = {
    "identity (pre-activation)": "x + W relu(BN(x))",
    "scaled shortcut": "λ x + W relu(BN(x))",
    "original (ReLU after add)": "relu(x + BN(W x))",
    "ReLU before addition": "x + relu(BN(W x))",
    "BN after addition": "relu(BN(x + W x))",
}


class Unit(nn.Module):
    """One residual unit in one of the :data:`VARIANTS` (``lam`` is the scaled shortcut's λ)."""

    def __init__(self, width, variant, lam=0.5):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {list(VARIANTS)}")
        self.norm = nn.BatchNorm1d(width)
        self.linear = nn.Linear(width, width)
        self.variant = variant
        self.lam = lam

    def forward(self, x):
        v, W, BN = self.variant, self.linear, self.norm
        if v == "identity (pre-activation)":
            return x + W(F_.relu(BN(x)))
        if v == "scaled shortcut":
            return self.lam * x + W(F_.relu(BN(x)))
        if v == "original (ReLU after add)":
            return F_.relu(x + BN(W(x)))
        if v == "ReLU before addition":
            return x + F_.relu(BN(W(x)))
        return F_.relu(BN(x + W(x)))  # BN after addition


def unit_net(variant, depth, width=32, lam=0.5, seed=0):
    """A :class:`gradflow.nets.MLP` (BatchNorm, He init) whose ``depth`` blocks are :class:`Unit` s."""
    net = mlp(depth, width=width, norm="batch", residual=True, init="he", seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    net.blocks = nn.ModuleList(Unit(width, variant, lam) for _ in range(depth))
    for unit in net.blocks:
        init_linear(unit.linear, "he", g)
    return net


@torch.no_grad()
def eval_loss(net, X, y):
    """Cross-entropy of ``net`` on the whole of ``(X, y)``, in eval mode."""
    was_training = net.training
    net.eval()
    loss = F_.cross_entropy(net(X), y).item()
    net.train(was_training)
    return loss


def _head(net, h):
    return net.head(net.head_act(net.head_norm(h)))


def _top_gradient(net, X, y):
    """The hidden states ``h_0..h_n`` (detached, eval mode) and ``∂L/∂h_n``."""
    hs = [h.detach() for h in net.hidden(X)]
    h_last = hs[-1].clone().requires_grad_(True)
    (g_last,) = torch.autograd.grad(F_.cross_entropy(_head(net, h_last), y), h_last)
    return hs, g_last


def path_gradient_norms(net, X, y, samples=8, seed=0):
    """Veit et al.'s measurement: mean norm of ``∂L/∂h_0`` along one path through ``k`` branches, k = 0..n.

    For each ``k``, ``samples`` random sets of ``k`` blocks are drawn; the gradient is sent back
    through the branch Jacobians of those blocks and through the identity of all the others.
    Eval mode (BatchNorm with running statistics), so each example's Jacobian is its own.
    ``C(n, k)`` times this mean estimates S_k, the sum of the norms of all paths of length ``k``.
    """
    was_training = net.training
    net.eval()
    hs, g_last = _top_gradient(net, X, y)
    n = len(net.blocks)
    gen = torch.Generator().manual_seed(seed)
    ks = torch.arange(n + 1).repeat_interleave(samples)
    through = torch.stack([torch.randperm(n, generator=gen) < k for k in ks])  # (paths, n)
    G = g_last.expand(len(ks), *g_last.shape).clone()
    for i in reversed(range(n)):
        h = hs[i].clone().requires_grad_(True)
        (G_branch,) = torch.autograd.grad(net.blocks[i].branch(h), h, grad_outputs=G, is_grads_batched=True)
        G = torch.where(through[:, i, None, None], G_branch, G)
    net.train(was_training)
    norms = G.flatten(1).double().norm(dim=1)  # in float64: long paths carry tiny entries
    return norms.reshape(n + 1, samples).mean(dim=1)


def path_split(net, X, y):
    """The exact split of ``∂L/∂h_0`` by path length: row ``k`` is the sum over all paths through ``k`` branches.

    ``∂h_n/∂h_0 = (I + J_n) ··· (I + J_1)``; row ``k`` is ``C_kᵀ g`` with ``C_k`` the part of the
    product with exactly ``k`` factors ``J``, and ``g = ∂L/∂h_n``. The rows add up to ``∂L/∂h_0``
    exactly; ``G_k`` is the norm of row ``k``. Shape ``(n + 1, *h_0.shape)``, eval mode.
    """
    was_training = net.training
    net.eval()
    hs, g_last = _top_gradient(net, X, y)
    n = len(net.blocks)
    rows = torch.zeros(n + 1, *g_last.shape, dtype=g_last.dtype)
    rows[0] = g_last
    for i in reversed(range(n)):  # block i sends every row one length up through its branch
        h = hs[i].clone().requires_grad_(True)
        (up,) = torch.autograd.grad(net.blocks[i].branch(h), h, grad_outputs=rows[:-1].clone(),
                                    is_grads_batched=True)
        rows[1:] = rows[1:] + up
    net.train(was_training)
    return rows


def length_components(Js, g):
    """Rows ``k = 0..n`` of the split of ``∇_{x_0} E`` for ``x_{i+1} = x_i + F_i(x_i)``, ``J_i = ∂F_i/∂x_i``.

    ``∇_{x_0} E = (I + J_0)ᵀ ··· (I + J_{n-1})ᵀ g``; row ``k`` collects the terms with ``k`` factors
    ``J_iᵀ``. Column vectors, float64; ``Js`` is a list of square matrices, ``g`` a vector.
    """
    Js = [torch.as_tensor(J, dtype=torch.float64) for J in Js]
    g = torch.as_tensor(g, dtype=torch.float64)
    rows = torch.zeros(len(Js) + 1, g.shape[0], dtype=torch.float64)
    rows[0] = g
    for J in reversed(Js):
        rows[1:] = rows[1:] + rows[:-1] @ J  # (Jᵀ r)ᵀ = rᵀ J, every length at once
    return rows


def path_norm_sums(Js, g):
    """S_k: the sum over all paths through ``k`` of the blocks of the norm of that path's gradient.

    A path through the blocks ``i_1 < ... < i_k`` carries ``J_{i_1}ᵀ ··· J_{i_k}ᵀ g``. Exact, by
    enumerating all ``2^n`` paths (small ``n`` only). ``S_k ≥ G_k`` by the triangle inequality.
    """
    from itertools import combinations

    Js = [torch.as_tensor(J, dtype=torch.float64) for J in Js]
    g = torch.as_tensor(g, dtype=torch.float64)
    n = len(Js)
    sums = torch.zeros(n + 1, dtype=torch.float64)
    for k in range(n + 1):
        for path in combinations(range(n), k):
            v = g
            for i in reversed(path):  # the last block's Jᵀ acts on g first
                v = Js[i].T @ v
            sums[k] += torch.linalg.norm(v)
    return sums


@torch.no_grad()
def lesion_logits(net, X, drop=()):
    """Logits of ``net`` (eval mode) with the blocks whose indices are in ``drop`` skipped: ``h_{i+1} = h_i``."""
    was_training = net.training
    net.eval()
    h = net.stem(X)
    for i, block in enumerate(net.blocks):
        if i not in drop:
            h = block(h)
    logits = _head(net, h)
    net.train(was_training)
    return logits


def lesion_accuracy(net, X, y, drop=()):
    """Test accuracy of ``net`` with the blocks in ``drop`` deleted (see :func:`lesion_logits`)."""
    return (lesion_logits(net, X, drop).argmax(dim=1) == y).double().mean().item()


def lesion_pair(seed=0, steps=60):
    """A residual net of 8 blocks and a plain net of 4, trained on the digits, and the test set.

    Both are BatchNorm MLPs of width 32 with He initialisation (:func:`gradflow.nets.mlp`), trained
    for ``steps`` SGD steps (learning rate 0.05, momentum 0.9) on ``digits(seed=seed)``, on one thread
    (the notebook's setting). Returns ``(resnet, plain, X_test, y_test)``.
    """
    X, y, X_test, y_test = digits(seed=seed)
    resnet = mlp(8, width=32, norm="batch", residual=True, init="he", seed=seed)
    plain = mlp(4, width=32, norm="batch", residual=False, init="he", seed=seed)
    with one_thread():
        for net in (resnet, plain):
            train(net, X, y, steps=steps, lr=0.05, seed=seed)
    return resnet, plain, X_test, y_test


@contextmanager
def one_thread():
    """Run the block on one torch thread (small nets: fastest, and the same sums in every process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _batch_norm(h):
    """Normalise each unit over the batch, with the batch statistics treated as constants."""
    return (h - h.mean(0).detach()) / (h.std(0, unbiased=False).detach() + 1e-5)


def grid_gradients(depth, residual, width=200, n_points=256, seed=0, branch_layers=1):
    """``dy/dx`` at ``n_points`` inputs evenly spaced on [-2, 2], for a random ReLU net with BatchNorm.

    Plain: ``h <- W relu(BN(h))``; residual: ``h <- h + W relu(BN(h))``, or with
    ``branch_layers=2`` the two-layer pre-activation branch ``W' relu(BN(W relu(BN(h))))``; He-initialised,
    ``h_0 = x w_0 + b_0`` and ``y = v · relu(BN(h_depth))``. BN uses the grid as its batch (statistics
    held fixed when differentiating), so ``dy/dx`` at each point is that point's own derivative.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-2.0, 2.0, n_points).unsqueeze(1).requires_grad_(True)
    h = x * torch.randn(width, generator=g) * math.sqrt(2.0) + torch.randn(width, generator=g)
    for _ in range(depth):
        branch = h
        for _ in range(branch_layers):
            W = torch.randn(width, width, generator=g) * math.sqrt(2.0 / width)
            branch = F_.relu(_batch_norm(branch)) @ W
        h = h + branch if residual else branch
    v = torch.randn(width, generator=g) / math.sqrt(width)
    (dydx,) = torch.autograd.grad((F_.relu(_batch_norm(h)) @ v).sum(), x)
    return dydx.squeeze(1)


def neighbour_correlation(g):
    """Pearson correlation between ``g[i]`` and ``g[i+1]`` (neighbouring inputs on the grid)."""
    g = torch.as_tensor(g, dtype=torch.float64).flatten()
    a, b = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    return (a @ b / (a.norm() * b.norm())).item()


JACOBIAN_KINDS = ("orthogonal linear", "Gaussian linear", "tanh, orthogonal", "ReLU, He", "ReLU residual, 1/√L")


def deep_jacobian(kind, depth=50, width=100, input_std=1.0, seed=0, with_active=False):
    """The input-output Jacobian ``∂h_L/∂h_0`` (float64, column convention) of a ``depth``-layer net at a random input.

    Layers ``h <- φ(W h)`` with ``W`` orthogonal or ``N(0, g²/width)`` (g = 1; g = √2 for ReLU), or,
    for the residual kind, ``h <- h + W relu(h) / √depth`` with He-initialised ``W``.
    The input is ``N(0, input_std² I)``; only tanh cares about its scale (the others are homogeneous).
    With ``with_active=True`` it also returns, for each layer, the number of ReLU units that pass
    their input (for "ReLU, He"; ``width`` for the other kinds): the Jacobian's rank is at most
    the smallest of these numbers.
    """
    if kind not in JACOBIAN_KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {list(JACOBIAN_KINDS)}")
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(width, generator=g, dtype=torch.float64) * input_std
    J = torch.eye(width, dtype=torch.float64)
    active = []
    for _ in range(depth):
        if kind in ("orthogonal linear", "tanh, orthogonal"):
            W = torch.linalg.qr(torch.randn(width, width, generator=g, dtype=torch.float64))[0]
        else:
            gain = 1.0 if kind == "Gaussian linear" else math.sqrt(2.0)
            W = torch.randn(width, width, generator=g, dtype=torch.float64) * gain / math.sqrt(width)
        if kind in ("orthogonal linear", "Gaussian linear"):
            h, J = W @ h, W @ J
        elif kind == "tanh, orthogonal":
            z = W @ h
            h, J = torch.tanh(z), (1 - torch.tanh(z) ** 2)[:, None] * (W @ J)
        elif kind == "ReLU, He":
            z = W @ h
            h, J = F_.relu(z), (z > 0).double()[:, None] * (W @ J)
            active.append(int((z > 0).sum()))
        else:
            step = W * (h > 0).double()[None, :] / math.sqrt(depth)  # ∂/∂h of W relu(h)/√L
            h, J = h + W @ F_.relu(h) / math.sqrt(depth), J + step @ J
    if not with_active:
        return J
    return J, (active if kind == "ReLU, He" else [width] * depth)


class Table:
    """A small table that shows as HTML (Jupyter, the built site) and as Markdown text."""

    def __init__(self, header, rows):
        self.header = [str(c) for c in header]
        self.rows = [[str(c) for c in row] for row in rows]
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        self.data = "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])

    def _repr_html_(self):
        cell = lambda tag, c: f"<{tag}>{html.escape(c)}</{tag}>"  # noqa: E731
        head = "".join(cell("th", c) for c in self.header)
        body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in self.rows)
        return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _repr_markdown_(self):
        return self.data

    def __repr__(self):
        return self.data


def table(header, rows):
    """A :class:`Table` from a header and rows of already-formatted cells."""
    return Table(header, rows)


def hidden_state_axis(ax, depth, step=10):
    """Label the x axis of a :func:`gradflow.plots.layer_norms` plot of ``h_0 .. h_depth`` by the state's index l.

    ``layer_norms`` draws value ``l`` at ``x = l + 1``; the ticks here say ``l`` itself, so the axis matches the
    text's ``h_0`` (the stem's output) to ``h_depth``. Returns ``ax``.
    """
    ticks = list(range(0, depth + 1, step))
    ax.set_xticks([t + 1 for t in ticks], [str(t) for t in ticks])
    ax.set_xlabel("hidden state l (h_0: the stem's output)")
    return ax

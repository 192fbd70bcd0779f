"""Chapter 1 helpers: activation derivatives, the per-layer gain estimate, Jacobians, weight movement.

The probes follow :mod:`gradflow.nets`: an :class:`~gradflow.nets.MLP` has hidden states
``h_0 .. h_depth`` (pre-activations; ``h_k = W_k act(h_{k-1}) + b_k``), so the gradient
``dL/dh_{k-1} = diag(act'(h_{k-1})) W_k^T dL/dh_k`` shrinks or grows by about
``gain_k = sqrt(n Var w_k) * rms act'(h_{k-1})`` per block (``n`` = fan-in of ``W_k``).
"""

import functools
import math

import torch
from torch import nn

from .nets import act_derivative, hidden_grad_norms, linear_layers, mlp

__all__ = [
    "act_derivative",
    "activation_name",
    "layer_gains",
    "theory_line",
    "block_jacobians",
    "weights",
    "relative_change",
    "gradient_profile",
    "draw_profile",
]

_MODULES = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Identity: "linear"}


def activation_name(net):
    """The activation of an :class:`~gradflow.nets.MLP` as a string: 'sigmoid', 'tanh', 'relu' or 'linear'."""
    return _MODULES[type(net.blocks[0].act if len(net.blocks) else net.head_act)]


@torch.no_grad()
def layer_gains(net, X):
    """Estimated gain sqrt(n Var w) * rms sigma'(h) of each hidden block, from one forward pass on ``X``.

    Entry ``k`` (0-based) is the factor by which ``||dL/dh||`` changes from ``h_{k+1}`` back to ``h_k``;
    ``Var w`` is the mean square of the block's weights and ``n`` its fan-in.
    """
    act = activation_name(net)
    hs = net.hidden(X)
    gains = []
    for h, block in zip(hs[:-1], net.blocks, strict=True):
        W = block.linear.weight.double()
        rms = act_derivative(act, h.double()).pow(2).mean().sqrt().item()
        gains.append(math.sqrt(W.shape[1] * W.pow(2).mean().item()) * rms)
    return torch.tensor(gains, dtype=torch.float64)


def theory_line(gains, top):
    """Predicted ``||dL/dh_l||`` for l = 0..depth: ``top`` (the norm at h_depth) times the gains above l."""
    gains = torch.as_tensor(gains, dtype=torch.float64)
    above = torch.flip(torch.cumprod(torch.flip(gains, [0]), 0), [0])  # prod_{k > l} gain_k
    return float(top) * torch.cat([above, torch.ones(1, dtype=torch.float64)])


@torch.no_grad()
def block_jacobians(net, x):
    """Jacobians ``dh_k/dh_{k-1} = W_k diag(sigma'(h_{k-1}))`` of the hidden blocks at one input ``x``."""
    act = activation_name(net)
    hs = net.hidden(x.reshape(1, -1))
    return [block.linear.weight @ torch.diag(act_derivative(act, h[0]))
            for h, block in zip(hs[:-1], net.blocks, strict=True)]


def weights(net):
    """Detached copies of the weight matrices of ``net``'s linear layers, input to output."""
    return [layer.weight.detach().clone() for layer in linear_layers(net)]


def relative_change(before, net):
    """``||W_after - W_before||_F / ||W_before||_F`` for each linear layer of ``net`` (input to output)."""
    after = weights(net)
    return torch.tensor([((a - b).norm() / b.norm()).item() for a, b in zip(after, before, strict=True)],
                        dtype=torch.float64)


@functools.lru_cache(maxsize=1)
def _digit_batch(n, seed):
    from .data import digits

    X, y, _, _ = digits(seed=seed, dtype=torch.float64)
    return X[:n], y[:n]


@functools.lru_cache(maxsize=512)
def gradient_profile(activation, init, depth=30, width=64, n=128, seed=0):
    """Measured and predicted ``||dL/dh_l||`` (l = 0..depth) of a fresh MLP on ``n`` digits, float64.

    Returns two read-only numpy arrays ``(measured, theory)``; cached, so explorer frames share work.
    """
    X, y = _digit_batch(n, seed)
    net = mlp(depth, width, d_in=X.shape[1], activation=activation, init=init, seed=seed, dtype=torch.float64)
    measured = hidden_grad_norms(net, X, y)
    theory = theory_line(layer_gains(net, X), measured[-1])
    out = measured.numpy(), theory.numpy()
    for a in out:
        a.flags.writeable = False
    return out


def _log_label(v, _pos=None):
    """'1e-06', '1e+12': every label as wide as the others, so frames keep one axis position."""
    return f"1e{round(math.log10(v)):+03d}" if v > 0 else ""


def draw_profile(ax, depth, g, activation=None, seed=0):
    """Explorer frame: measured ``||dL/dh_l||`` and the theory line for ``N(0, g^2/n)`` weights.

    One series per activation (all three when ``activation`` is None), each relative to its norm at
    the top block; the legend gives each one's average gain per block.
    """
    from matplotlib import ticker

    from .plots import OKABE_ITO, layer_norms

    acts = ["sigmoid", "tanh", "relu"] if activation is None else [activation]
    labels = []
    for act in acts:
        measured, theory = gradient_profile(act, float(g), depth=depth, n=64, seed=seed)
        color = OKABE_ITO[["sigmoid", "tanh", "relu"].index(act)] if act in ("sigmoid", "tanh", "relu") else None
        layer_norms(measured[1:] / measured[-1], theory=theory[1:] / measured[-1], ax=ax, linestyle="none",
                    color=color)
        gain = (theory[0] / theory[-1]) ** (1 / depth)
        labels.append(f"{act}: gain {gain:.2f} per block")
    ax.legend(ax.lines[::2], labels, fontsize=8, loc="best", title="dots: measured; dashes: theory",
              title_fontsize=8)
    # the same y range in every frame of one depth (from a gain of 0.2 to 12 per block), so that
    # frames can be compared and their tick labels, hence the axis position, stay the same
    lo, hi = ax.get_ylim()
    ax.set(xlabel="block l (1 = input side)", ylabel="||grad at h_l|| / ||grad at h_L||", xlim=(0, depth + 1),
           ylim=(min(lo, 1e-3, 0.2 ** (depth - 1)), max(hi, 1e3, 12.0 ** (depth - 1))))
    # plain-text log ticks: mathtext labels would make each frame several times slower to draw
    ax.yaxis.set_major_locator(ticker.LogLocator(numticks=7))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(_log_label))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.text(0, 1.03, f"weights N(0, g²/n), g = {g:g}: n Var w = {g**2:.3g}", transform=ax.transAxes)
    return ax

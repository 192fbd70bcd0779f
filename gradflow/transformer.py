"""Chapter 6 helpers: tiny Transformers, normalisation placements, normalisation-free schemes.

Convention (the book's notation page): a sequence is a ``(T, d)`` matrix of row vectors (a
batch adds a leading dimension) and ``nn.Linear`` computes ``x @ W.T + b``. A block has two
residual *sub-layers*, self-attention then an MLP; the residual stream after sub-layer ``k`` is
``x_k``, ``k = 0 .. 2L`` (``x_0`` = token + position embeddings). Each sub-layer ``F`` is wrapped
according to ``norm``:

=============  ================================  ===========================================
``norm``       sub-layer                          from
=============  ================================  ===========================================
``"post"``     ``LN(x + F(x))``                   Vaswani et al. 2017 (Post-LN)
``"pre"``      ``x + F(LN(x))``                   GPT-2; Xiong et al. 2020 (Pre-LN)
``"none"``     ``x + F(x)``                       no normalisation at all
``"rezero"``   ``x + a F(x)``, ``a = 0`` at init   Bachlechner et al. 2020 (ReZero; SkipInit)
``"deepnorm"`` ``LN(alpha x + F(x))``             Wang et al. 2022 (DeepNet), with ``beta`` init
=============  ================================  ===========================================

A Pre-LN model ends with a final LayerNorm before the head (as GPT-2 and Xiong et al. do);
the others do not need one. ``LN`` here has no learned gain or bias at initialisation that
matters (gain 1, bias 0), so ``LN(x) = (x - mean x) / sqrt(var x + eps)`` per row.
"""

import math

import torch
import torch.nn.functional as F_
from torch import nn

__all__ = [
    "NORMS",
    "layer_norm",
    "layer_norm_jacobian",
    "Attention",
    "MLP",
    "Block",
    "TinyTransformer",
    "transformer",
    "deepnorm_constants",
    "fixup_scale",
    "branches",
    "streams",
    "stream_grad_norms",
    "ffn_grad_norms",
    "init_profile",
    "sublayer_jacobians",
    "path_norm_sums",
    "training_figure",
    "reversal_task",
]

NORMS = ("post", "pre", "none", "rezero", "deepnorm")
EPS = 1e-5  # nn.LayerNorm's default


# ---------------------------------------------------------------- LayerNorm and its Jacobian


def layer_norm(x, eps=EPS):
    """``(x - mean) / sqrt(var + eps)`` over the last dimension (biased variance, as nn.LayerNorm)."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def layer_norm_jacobian(x, eps=EPS):
    """The ``d x d`` Jacobian of :func:`layer_norm` at one vector ``x``, in closed form.

    ``J = (I - 1 1ᵀ/d - x̂ x̂ᵀ/d) / s`` with ``s = sqrt(var x + eps)`` and
    ``x̂ = (x - mean x) / s``. ``J`` is symmetric.
    """
    d = x.shape[-1]
    s = torch.sqrt(x.var(unbiased=False) + eps)
    xhat = (x - x.mean()) / s
    eye = torch.eye(d, dtype=x.dtype)
    return (eye - torch.ones(d, d, dtype=x.dtype) / d - torch.outer(xhat, xhat) / d) / s


# ---------------------------------------------------------------- the model


class Attention(nn.Module):
    """Multi-head self-attention over a ``(..., T, d)`` input, without a mask."""

    def __init__(self, width, heads):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        *batch, T, d = x.shape
        h, dh = self.heads, d // self.heads

        def split(t):  # (..., T, d) -> (..., h, T, dh)
            return t.reshape(*batch, T, h, dh).transpose(-3, -2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        # softmax(q kᵀ / sqrt(dh)) v, fused (one op instead of four: training is overhead-bound)
        mixed = F_.scaled_dot_product_attention(q, k, v)
        return self.out(mixed.transpose(-3, -2).reshape(*batch, T, d))


class MLP(nn.Module):
    """``W2 relu(W1 x + b1) + b2`` on each position (Xiong et al.'s FFN; ``W2`` is their W^{2,l})."""

    def __init__(self, width, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F_.relu(self.fc1(x)))


class Block(nn.Module):
    """Attention then MLP, each a residual sub-layer placed according to ``norm`` (see module)."""

    def __init__(self, width, heads, hidden, norm="pre", alpha=1.0):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; use one of {NORMS}")
        self.norm, self.alpha = norm, alpha
        self.attn, self.mlp = Attention(width, heads), MLP(width, hidden)
        self.lns = nn.ModuleList(nn.LayerNorm(width) for _ in range(2))
        if norm == "rezero":
            self.gates = nn.Parameter(torch.zeros(2))

    def sublayers(self):
        """The two branch functions ``F``: attention, MLP."""
        return self.attn, self.mlp

    def sublayer(self, i, x):
        """Sub-layer ``i`` (0 = attention, 1 = MLP) applied to the stream ``x``."""
        F, ln, norm = self.sublayers()[i], self.lns[i], self.norm
        if norm == "pre":
            return x + F(ln(x))
        if norm == "post":
            return ln(x + F(x))
        if norm == "deepnorm":
            return ln(self.alpha * x + F(x))
        if norm == "rezero":
            return x + self.gates[i] * F(x)
        return x + F(x)

    def forward(self, x):
        return self.sublayer(1, self.sublayer(0, x))


class TinyTransformer(nn.Module):
    """Token + position embeddings, ``depth`` blocks, (final LN for Pre-LN), a linear head.

    ``forward(tokens)`` takes ``(B, T)`` integers and returns logits of shape ``(B, vocab, T)``:
    the class dimension second, as ``F.cross_entropy`` expects for a ``(B, T)`` target.
    """

    def __init__(self, vocab, seq_len, width, depth, heads=2, hidden=None, norm="pre", alpha=1.0):
        super().__init__()
        hidden = 2 * width if hidden is None else hidden
        self.norm = norm
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(seq_len, width))
        self.blocks = nn.ModuleList(Block(width, heads, hidden, norm, alpha) for _ in range(depth))
        self.final = nn.LayerNorm(width) if norm == "pre" else nn.Identity()
        self.head = nn.Linear(width, vocab)

    def embedding(self, tokens):
        """``x_0``: token embeddings plus position embeddings."""
        return self.embed(tokens) + self.pos[: tokens.shape[-1]]

    def readout(self, x):
        """Logits ``(B, vocab, T)`` from the top of the stream."""
        return self.head(self.final(x)).transpose(-1, -2)

    def forward(self, tokens):
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def deepnorm_constants(N, M=0):
    """DeepNet's ``(alpha, beta)`` (Wang et al. 2022, Fig. 2): N encoder layers, M decoder layers.

    Encoder-only (M = 0): ``((2N)^(1/4), (8N)^(-1/4))``; decoder-only (N = 0): the same with M.
    For encoder-decoder models the encoder and decoder use different constants; this returns
    the encoder's ``(0.81 (N^4 M)^(1/16), 0.87 (N^4 M)^(-1/16))``.
    """
    if M == 0:
        return (2 * N) ** 0.25, (8 * N) ** -0.25
    if N == 0:
        return (2 * M) ** 0.25, (8 * M) ** -0.25
    return 0.81 * (N**4 * M) ** (1 / 16), 0.87 * (N**4 * M) ** (-1 / 16)


def fixup_scale(L, m):
    """Fixup's factor ``L^(-1/(2m-2))`` for the weights of an ``m``-layer branch in ``L`` branches."""
    if m < 2:
        raise ValueError("Fixup's rule needs branches of m >= 2 layers (the last one starts at zero)")
    return L ** (-1 / (2 * m - 2))


def branches(n, width=8, hidden=16, layers=2, seed=0, dtype=torch.float64):
    """``n`` seeded MLP branches ``nn.Sequential(Linear, ReLU, ..., Linear)`` of ``layers`` linear layers.

    Weights are He-normal (``N(0, 2/fan_in)``), biases ``N(0, 0.1²)``: the small stacks of the
    exercises (Post-LN bound, ReZero gradient, Fixup).
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        sizes = [width] + [hidden] * (layers - 1) + [width]
        mods = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            lin = nn.Linear(a, b).to(dtype)
            with torch.no_grad():
                lin.weight.normal_(0.0, math.sqrt(2.0 / a), generator=g)
                lin.bias.normal_(0.0, 0.1, generator=g)
            mods += [lin, nn.ReLU()]
        out.append(nn.Sequential(*mods[:-1]))
    return out


def transformer(depth, norm="pre", width=32, heads=2, vocab=8, seq_len=8, hidden=None,
                init="xavier", seed=0, dtype=torch.float32):
    """A seeded :class:`TinyTransformer`; nothing is drawn from the global RNG.

    Weights are Xavier-normal, biases zero, embeddings N(0, 1) (position embeddings N(0, 1)
    too), LayerNorm gain 1 and bias 0. ``norm="deepnorm"`` uses ``alpha, beta`` of
    :func:`deepnorm_constants` with N = ``depth`` and scales the value, output and MLP weights by
    ``beta`` (Wang et al. 2022); ``init="fixup"`` (for ``norm="none"``) zeroes every branch's last
    layer and scales its other weights by :func:`fixup_scale` with ``L = 2 depth``, ``m = 2``.
    """
    alpha, beta = deepnorm_constants(depth) if norm == "deepnorm" else (1.0, 1.0)
    net = TinyTransformer(vocab, seq_len, width, depth, heads, hidden, norm, alpha)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.embed.weight.normal_(0.0, 1.0, generator=g)
        net.pos.normal_(0.0, 1.0, generator=g)
        for layer in (m for m in net.modules() if isinstance(m, nn.Linear)):
            fan_out, fan_in = layer.weight.shape
            layer.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=g)
            layer.bias.zero_()
        for block in net.blocks:
            if norm == "deepnorm":
                for layer in (block.attn.v, block.attn.out, block.mlp.fc1, block.mlp.fc2):
                    layer.weight.mul_(beta)
            if init == "fixup":
                scale = fixup_scale(2 * len(net.blocks), 2)
                for layer in (block.attn.v, block.mlp.fc1):
                    layer.weight.mul_(scale)
                block.attn.out.weight.zero_()
                block.mlp.fc2.weight.zero_()
    if init not in ("xavier", "fixup"):
        raise ValueError(f"unknown init {init!r}; use 'xavier' or 'fixup'")
    return net.to(dtype)


# ---------------------------------------------------------------- probes


def streams(net, tokens):
    """The residual stream ``[x_0, x_1, ..., x_2L]`` (after each sub-layer), with autograd."""
    xs = [net.embedding(tokens)]
    for block in net.blocks:
        for i in range(2):
            xs.append(block.sublayer(i, xs[-1]))
    return xs


def stream_grad_norms(net, tokens, targets):
    """``‖∇_{x_k} L‖`` for ``k = 0 .. 2L`` (cross-entropy), reduced in float64."""
    xs = streams(net, tokens)
    loss = F_.cross_entropy(net.readout(xs[-1]), targets)
    grads = torch.autograd.grad(loss, xs)
    return torch.tensor([g.double().norm().item() for g in grads], dtype=torch.float64)


def ffn_grad_norms(net, tokens, targets):
    """Frobenius norm of ``∂L/∂W^{2,l}`` (each block's second MLP weight), blocks 1 .. L, float64."""
    net.zero_grad(set_to_none=True)
    F_.cross_entropy(net(tokens), targets).backward()
    norms = [b.mlp.fc2.weight.grad.double().norm().item() for b in net.blocks]
    net.zero_grad(set_to_none=True)
    return torch.tensor(norms, dtype=torch.float64)


def init_profile(net, tokens, targets):
    """One forward and backward pass: ``(‖∂L/∂W^{2,l}‖ per block, ‖∇_{x_k} L‖ per sub-layer,
    ‖x_k‖²/(T d) per sub-layer)``, all float64 (what :func:`ffn_grad_norms`, :func:`stream_grad_norms`
    and :func:`streams` give, at the cost of one pass).
    """
    xs = streams(net, tokens)
    loss = F_.cross_entropy(net.readout(xs[-1]), targets)
    w2 = [b.mlp.fc2.weight for b in net.blocks]
    grads = torch.autograd.grad(loss, xs + w2)
    as64 = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    return (as64([g.double().norm().item() for g in grads[len(xs):]]),
            as64([g.double().norm().item() for g in grads[:len(xs)]]),
            as64([x.detach().double().pow(2).mean().item() for x in xs]))


def sublayer_jacobians(net, tokens):
    """Branch Jacobians ``J_k = ∂F_k/∂x`` at each sub-layer's input, flattened to ``(Td, Td)``.

    Only for residual placements with the identity outside the branch (``"pre"``, ``"none"``,
    ``"rezero"``), where sub-layer ``k`` is ``x + G_k(x)``; ``G_k`` includes the LayerNorm (Pre-LN)
    or the gate (ReZero). ``tokens`` is one sequence ``(T,)``. The path expansion of chapter 3
    (:func:`gradflow.flow.path_gradients`) takes these.
    """
    if net.norm not in ("pre", "none", "rezero"):
        raise ValueError(f"norm {net.norm!r} has no identity path around its sub-layers")
    from torch.autograd.functional import jacobian

    with torch.no_grad():
        xs = [x.detach() for x in streams(net, tokens)]
    Js, k = [], 0
    for block in net.blocks:
        for i in range(2):
            x = xs[k]

            def branch(flat, i=i, block=block, shape=x.shape):
                x = flat.reshape(shape)
                return (block.sublayer(i, x) - x).reshape(-1)

            Js.append(jacobian(branch, x.reshape(-1)))
            k += 1
    return Js


# ---------------------------------------------------------------- the task (train with gradflow.nets.train)


def reversal_task(n, seq_len=8, vocab=8, seed=0):
    """``n`` random sequences of tokens ``0 .. vocab-1`` and their reversals: ``(tokens, targets)``."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(vocab, (n, seq_len), generator=g)
    return tokens, tokens.flip(-1)


def path_norm_sums(jacobians, g):
    """``S_k``: the sum, over the ``C(n, k)`` paths through exactly ``k`` of the ``n`` branches, of the
    norm of each path's gradient ``J_{i_1}ᵀ ⋯ J_{i_k}ᵀ g`` (Veit et al.'s measure), ``k = 0 .. n``.

    Every path is enumerated (``2^n`` vectors): keep ``n`` at about 14 or below.
    """
    vecs, ks = g[None, :], torch.zeros(1, dtype=torch.long)
    for J in reversed(jacobians):  # from the output down: each path skips or passes this branch
        vecs, ks = torch.cat([vecs, vecs @ J]), torch.cat([ks, ks + 1])
    norms = vecs.double().norm(dim=1)
    return torch.zeros(len(jacobians) + 1, dtype=torch.float64).index_add_(0, ks, norms)


def training_figure(losses, before, after, title=None, figsize=(6.4, 3.4)):
    """A figure of two panels: ``‖∇_{x_k} L‖`` per sub-layer at initialisation and after training
    (log scale), and the training loss against the step. Drawn outside pyplot (nothing is shown).
    """
    from matplotlib.figure import Figure

    from .plots import OKABE_ITO

    fig = Figure(figsize=figsize)  # fixed margins: constrained layout would cost more than the drawing
    ax1, ax2 = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.15, top=0.88, wspace=0.32)
    k = range(len(before))
    ax1.plot(k, before, marker="o", markersize=3, color=OKABE_ITO[0], label="at initialisation")
    ax1.plot(k, after, marker="s", markersize=3, color=OKABE_ITO[3], label="after training")
    ax1.set(yscale="log", xlabel="sub-layer $k$ (0 = embeddings)", ylabel=r"$\|\nabla_{x_k} \mathcal{L}\|$")
    ax1.legend(fontsize=8)
    ax2.plot(range(1, len(losses) + 1), losses, color=OKABE_ITO[1])
    ax2.axhline(math.log(8), color="0.5", linestyle=":", linewidth=1)  # chance: 8 tokens
    ax2.set(xlabel="Adam step", ylabel="training loss", xlim=(0, 120), ylim=(0, 4))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig

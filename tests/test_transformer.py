"""gradflow.transformer against independent references: autograd, nn.LayerNorm, hand-made models."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from gradflow import transformer as tf
from gradflow.flow import path_gradients
from gradflow.nets import train, warmup_lr

F64 = torch.float64


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def test_layer_norm_matches_torch_and_its_jacobian_matches_autograd():
    for d, scale in [(3, 1.0), (16, 5.0), (7, 0.01)]:
        x = randn(d, seed=d) * scale + 2
        assert torch.allclose(tf.layer_norm(x), torch.nn.functional.layer_norm(x, (d,)), atol=1e-12)
        J = jacobian(lambda v: torch.nn.functional.layer_norm(v, v.shape), x)
        assert torch.allclose(tf.layer_norm_jacobian(x), J, rtol=0, atol=1e-10)


def test_layer_norm_jacobian_is_a_scaled_projection():
    x = randn(12, seed=1) * 3
    sigma = math.sqrt(x.var(unbiased=False).item() + tf.EPS)
    eig = torch.linalg.eigvalsh(tf.layer_norm_jacobian(x) * sigma)
    assert torch.allclose(eig[2:], torch.ones(10, dtype=F64), atol=1e-12)  # d - 2 directions pass
    assert abs(eig[0]) < 1e-12 and 0 < eig[1] < 1e-5  # 1 and x̂ (up to eps) are removed


@pytest.mark.parametrize("norm", tf.NORMS)
def test_blocks_match_their_formulas(norm):
    net = tf.transformer(2, norm, width=8, heads=2, seq_len=5, seed=3, dtype=F64)
    tokens = tf.reversal_task(4, seq_len=5, seed=1)[0]
    x = net.embedding(tokens)
    blk = net.blocks[0]
    y = blk.sublayer(0, x)
    ln = lambda v: torch.nn.functional.layer_norm(v, v.shape[-1:])  # noqa: E731
    expected = {"pre": x + blk.attn(ln(x)), "post": ln(x + blk.attn(x)), "none": x + blk.attn(x),
                "rezero": x, "deepnorm": ln(blk.alpha * x + blk.attn(x))}[norm]
    assert torch.allclose(y, expected, atol=1e-12)
    assert net(tokens).shape == (4, 8, 5)  # (batch, vocab, T)
    assert len(tf.streams(net, tokens)) == 5


def test_attention_matches_torch_multihead_attention():
    att = tf.Attention(8, 2).double()
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([att.q.weight, att.k.weight, att.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([att.q.bias, att.k.bias, att.v.bias]))
        mha.out_proj.weight.copy_(att.out.weight)
        mha.out_proj.bias.copy_(att.out.bias)
    x = randn(3, 6, 8, seed=2)
    assert torch.allclose(att(x), mha(x, x, x, need_weights=False)[0], atol=1e-12)


def test_seeded_and_independent_of_the_global_rng():
    torch.manual_seed(123)
    a = tf.transformer(3, "pre", seed=5)
    torch.manual_seed(456)
    b = tf.transformer(3, "pre", seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_deepnorm_fixup_and_rezero_inits():
    alpha, beta = tf.deepnorm_constants(6)
    assert math.isclose(alpha, 12**0.25) and math.isclose(beta, 48**-0.25)
    assert tf.deepnorm_constants(0, 6) == tf.deepnorm_constants(6)
    a, b = tf.deepnorm_constants(6, 6)
    assert math.isclose(a, 0.81 * 6 ** (5 / 16)) and math.isclose(b, 0.87 * 6 ** (-5 / 16))
    assert math.isclose(tf.fixup_scale(16, 3), 0.5) and math.isclose(tf.fixup_scale(9, 2), 1 / 3)
    with pytest.raises(ValueError):
        tf.fixup_scale(4, 1)
    plain, deep = tf.transformer(4, "post", seed=0), tf.transformer(4, "deepnorm", seed=0)
    ratio = deep.blocks[1].mlp.fc1.weight / plain.blocks[1].mlp.fc1.weight
    assert torch.allclose(ratio, torch.full_like(ratio, tf.deepnorm_constants(4)[1]))
    assert torch.equal(deep.blocks[1].attn.q.weight, plain.blocks[1].attn.q.weight)  # q, k are not scaled
    fix = tf.transformer(4, "none", init="fixup", seed=0)
    assert all(b.mlp.fc2.weight.abs().sum() == 0 and b.attn.out.weight.abs().sum() == 0 for b in fix.blocks)
    tokens = tf.reversal_task(3, seed=0)[0]
    for net in (fix, tf.transformer(4, "rezero", seed=0)):  # both start as the identity on the stream
        xs = tf.streams(net, tokens)
        assert all(torch.equal(x, xs[0]) for x in xs)


def test_sublayer_jacobians_and_paths_add_up_to_autograd():
    net = tf.transformer(2, "pre", width=8, seq_len=3, seed=0, dtype=F64)
    tokens = tf.reversal_task(1, seq_len=3, seed=2)[0][0]
    Js = tf.sublayer_jacobians(net, tokens)
    x0 = net.embedding(tokens).detach().requires_grad_()
    h = x0
    for blk in net.blocks:
        h = blk(h)
    g = randn(h.numel(), seed=4)
    (grad,) = torch.autograd.grad(h, x0, grad_outputs=g.reshape(h.shape))
    assert torch.allclose(path_gradients(Js, g).sum(0), grad.reshape(-1), atol=1e-12)
    with pytest.raises(ValueError):
        tf.sublayer_jacobians(tf.transformer(1, "post"), tokens)


def test_probes_agree_with_autograd():
    net = tf.transformer(3, "post", seed=1)
    tokens, targets = tf.reversal_task(16, seed=1)
    w = tf.ffn_grad_norms(net, tokens, targets)
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(tokens), targets).backward()
    assert torch.allclose(w, torch.tensor([b.mlp.fc2.weight.grad.double().norm() for b in net.blocks]))
    s = tf.stream_grad_norms(net, tokens, targets)
    assert s.shape == (7,) and s.dtype == F64 and (s > 0).all()


def test_branches_are_seeded_he_stacks():
    bs = tf.branches(3, width=4, hidden=6, layers=3, seed=0)
    assert len(bs) == 3 and [type(m).__name__ for m in bs[0]] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert torch.equal(bs[1][0].weight, tf.branches(3, width=4, hidden=6, layers=3, seed=0)[1][0].weight)


def test_reversal_task():
    tokens, targets = tf.reversal_task(5, seq_len=4, vocab=3, seed=0)
    assert tokens.shape == (5, 4) and torch.equal(targets, tokens.flip(-1)) and tokens.max() < 3


def test_train_with_adam_and_warmup():
    assert warmup_lr(1, 0.1, 10) == pytest.approx(0.01) and warmup_lr(10, 0.1, 10) == 0.1
    assert warmup_lr(50, 0.1, 10) == 0.1 and warmup_lr(1, 0.1, 0) == 0.1
    tokens, targets = tf.reversal_task(64, seed=0)
    net = tf.transformer(1, "pre", seed=0)
    losses = train(net, tokens, targets, steps=30, lr=1e-2, batch_size=32, optimizer="adam", warmup=5)
    assert len(losses) == 30 and losses[-1] < losses[0]
    with pytest.raises(ValueError):
        train(net, tokens, targets, steps=1, optimizer="lbfgs")


def test_path_norm_sums_enumerate_every_path():
    import itertools

    Js = [randn(4, 4, seed=k) / 2 for k in range(3)]
    g = randn(4, seed=9)
    S = torch.zeros(4, dtype=F64)
    for mask in itertools.product([0, 1], repeat=3):  # mask[i] = 1: the path passes branch i
        v = g
        for i in reversed(range(3)):
            if mask[i]:
                v = Js[i].T @ v
        S[sum(mask)] += v.norm()
    assert torch.allclose(tf.path_norm_sums(Js, g), S, atol=1e-12)
    assert torch.allclose(tf.path_norm_sums(Js, g)[0], g.norm())


def test_training_figure_has_two_log_and_linear_panels():
    fig = tf.training_figure([2.5, 1.0, 0.1], torch.tensor([1e-2, 2e-2]), torch.tensor([1e-6, 1e-3]), title="t")
    gradient, loss = fig.axes
    assert gradient.get_yscale() == "log" and loss.get_yscale() == "linear"
    assert len(gradient.lines) == 2 and fig.get_suptitle() == "t"


def test_init_profile_is_the_three_probes_in_one_pass():
    net = tf.transformer(2, "pre", seed=3)
    tokens, targets = tf.reversal_task(8, seed=2)
    w, s, v = tf.init_profile(net, tokens, targets)
    assert torch.allclose(w, tf.ffn_grad_norms(net, tokens, targets))
    assert torch.allclose(s, tf.stream_grad_norms(net, tokens, targets))
    with torch.no_grad():
        assert torch.allclose(v, torch.tensor([x.double().pow(2).mean() for x in tf.streams(net, tokens)]))

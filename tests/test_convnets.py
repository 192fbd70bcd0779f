"""gradflow.convnets: the published parameter counts, shortcuts, Jacobians, seeded nets, probes."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from gradflow import convnets as cn
from gradflow.nets import weight_grad_norms

F64 = torch.float64



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread is fastest, and far faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

def test_torchvision_parameter_counts():
    """torchvision's documented num_params (ResNet18/34/50/101/152_Weights.IMAGENET1K_V1.meta)."""
    published = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
    with torch.device("meta"):
        for depth, count in published.items():
            net = cn.imagenet_resnet(depth)
            assert cn.count_params(net) == count
            assert len(cn.weighted_layers(net)) == depth


@pytest.mark.parametrize("n, paper", [(3, 0.27), (5, 0.46), (7, 0.66), (9, 0.85), (18, 1.7), (200, 19.4)])
def test_cifar_counts_match_he_et_al_table_6(n, paper):
    with torch.device("meta"):
        net = cn.cifar_resnet(n)
    count = cn.count_params(net)
    decimals = len(str(paper).split(".")[1])
    assert round(count / 1e6, decimals) == paper
    assert len(cn.weighted_layers(net)) == 6 * n + 2 and len(net.blocks) == 3 * n


def test_exact_cifar_counts():
    with torch.device("meta"):
        assert cn.count_params(cn.cifar_resnet(3)) == 269_722
        assert cn.count_params(cn.cifar_resnet(18)) == 1_727_962
        assert cn.count_params(cn.cifar_resnet(3, option="B")) == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)


def test_shortcut_options():
    assert isinstance(cn.shortcut(8, 8, 1, "A"), nn.Identity)
    assert isinstance(cn.shortcut(8, 8, 1, "B"), nn.Identity)
    assert isinstance(cn.shortcut(8, 8, 1, "C"), nn.Sequential)
    assert isinstance(cn.shortcut(8, 16, 2, "A"), cn.ShortcutA)
    assert isinstance(cn.shortcut(8, 16, 2, "B"), nn.Sequential)
    with pytest.raises(ValueError, match="option"):
        cn.shortcut(8, 16, 2, "D")


def test_option_a_is_an_identity_on_kept_pixels():
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    out = cn.ShortcutA(3, 7, 2)(x)
    assert out.shape == (2, 7, 3, 3)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2]) and not out[:, 3:].any()
    assert not list(cn.ShortcutA(3, 7, 2).parameters())


@pytest.mark.parametrize("block", [cn.BasicBlock, cn.PlainBlock, cn.PreActBlock, cn.Bottleneck])
def test_block_shapes(block):
    x = torch.randn(2, 4, 6, 6)
    out = block(4, 8, 2, "B")(x)
    assert out.shape == (2, 8 * block.expansion, 3, 3)


def test_preact_jacobian_is_identity_plus_branch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 3, 3, generator=g, dtype=F64)
    blk = cn.init_he(cn.PreActBlock(2, 2), seed=0).double()
    J = jacobian(blk, x).reshape(36, 36)
    J_F = jacobian(blk.branch, x).reshape(36, 36)
    assert torch.allclose(J, torch.eye(36, dtype=F64) + J_F, rtol=0, atol=1e-12)


def test_init_is_seeded_and_plain_matches_residual_in_parameters():
    a, b = cn.digit_net(1, True, seed=3), cn.digit_net(1, True, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = cn.digit_net(1, True, seed=4)
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)
    plain = cn.digit_net(2, False, seed=3)
    assert cn.count_params(plain) == cn.count_params(cn.digit_net(2, True, seed=3))
    assert len(cn.weighted_layers(plain)) == 14


def test_digit_images_shape():
    X, y, X_test, y_test = cn.digit_images(seed=0)
    assert X.shape == (1348, 1, 8, 8) and X_test.shape == (449, 1, 8, 8) and y.shape == (1348,)


def test_fit_leaves_the_running_statistics_alone():
    X, y, _, _ = cn.digit_images(seed=0)
    net = cn.digit_net(1, True, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    loss, acc = cn.fit(net, X[:64], y[:64])
    assert 0 < loss and 0 <= acc <= 1 and not net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_weight_grad_norms_of_chosen_layers():
    X, y, _, _ = cn.digit_images(seed=0)
    net = cn.digit_net(1, True, option="B", seed=0)
    layers = cn.weighted_layers(net)
    norms = weight_grad_norms(net, X[:32], y[:32], layers=layers)
    assert len(norms) == 8 and (norms > 0).all()
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(X[:32]), y[:32]).backward()
    assert torch.allclose(norms, torch.tensor([m.weight.grad.norm().item() for m in layers], dtype=F64))

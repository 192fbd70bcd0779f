"""Convolutional residual networks as people build them (chapter 4).

The blocks of He et al. (2015, 2016b) with the conventions of their code and of torchvision:
a convolution followed by BatchNorm has no bias (BN's beta would cancel it), a block is built as
``block(c_in, planes, stride, option)`` and outputs ``planes * block.expansion`` channels, and the
shortcut follows option A (identity; subsample and pad with zeros when the shape changes),
B (a 1x1 convolution + BN projection only where the shape changes) or C (projections everywhere).
Chapter 4 writes the same blocks in the notebook and checks that they equal these.

:class:`ResNet` builds a network from a block and a layout; :func:`cifar_resnet` and
:func:`imagenet_resnet` give the papers' layouts; :func:`digit_net` the small seeded nets that
chapter 4 trains on the 8x8 digits (:func:`digit_images`). The trainer and the probes are
:mod:`gradflow.nets`' (``train``, ``accuracy``, ``weight_grad_norms(net, X, y, layers)``).
"""

import math

import torch
import torch.nn.functional as F_
from torch import nn

from .data import digits
from .nets import init_linear

__all__ = [
    "conv3x3",
    "conv1x1",
    "ShortcutA",
    "projection",
    "shortcut",
    "BasicBlock",
    "PlainBlock",
    "PreActBlock",
    "Bottleneck",
    "ResNet",
    "cifar_stem",
    "imagenet_stem",
    "cifar_resnet",
    "imagenet_resnet",
    "IMAGENET_LAYOUTS",
    "count_params",
    "weighted_layers",
    "init_he",
    "digit_images",
    "digit_net",
    "fit",
]


def conv3x3(c_in, c_out, stride=1):
    """A 3x3 convolution that keeps the map size at stride 1 (padding 1), without bias."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in, c_out, stride=1):
    """A 1x1 convolution (a linear map of the channels at each pixel), without bias."""
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option A: keep every ``stride``-th pixel and pad the new channels with zeros (no parameter)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.extra, self.stride = c_out - c_in, stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F_.pad(x, (0, 0, 0, 0, 0, self.extra))


def projection(c_in, c_out, stride):
    """Option B's projection: a 1x1 convolution with the block's stride, then BatchNorm."""
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


def shortcut(c_in, c_out, stride, option):
    """The shortcut of a block from ``c_in`` to ``c_out`` channels under option 'A', 'B' or 'C'."""
    if option not in ("A", "B", "C"):
        raise ValueError(f"unknown shortcut option {option!r}; use 'A', 'B' or 'C'")
    same = stride == 1 and c_in == c_out
    if option == "C" or (option == "B" and not same):
        return projection(c_in, c_out, stride)
    return nn.Identity() if same else ShortcutA(c_in, c_out, stride)


class BasicBlock(nn.Module):
    """He et al. (2015): relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)), two 3x3 convolutions."""

    expansion = 1

    def __init__(self, c_in, planes, stride=1, option="B"):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.shortcut = shortcut(c_in, planes, stride, option)

    def branch(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))

    def forward(self, x):
        return torch.relu(self.branch(x) + self.shortcut(x))


class PlainBlock(nn.Module):
    """The same two layers as :class:`BasicBlock` without the shortcut: relu(F(x))."""

    expansion = 1

    def __init__(self, c_in, planes, stride=1, option=None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class PreActBlock(nn.Module):
    """He et al. (2016b): shortcut(x) + conv(relu(BN(conv(relu(BN(x)))))), nothing after the sum."""

    expansion = 1

    def __init__(self, c_in, planes, stride=1, option="B"):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), conv3x3(c_in, planes, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), conv3x3(planes, planes)
        self.shortcut = shortcut(c_in, planes, stride, option)

    def branch(self, x):
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def forward(self, x):
        return self.shortcut(x) + self.branch(x)


class Bottleneck(nn.Module):
    """1x1 (reduce) - 3x3 - 1x1 (expand to 4x planes), each with BN, ReLU after the addition.

    The stride sits on the 3x3 convolution, as in torchvision ("ResNet v1.5"); He et al. (2015)
    put it on the first 1x1. The parameter count is the same.
    """

    expansion = 4

    def __init__(self, c_in, planes, stride=1, option="B"):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = conv1x1(c_in, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride, option)

    def branch(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.bn3(self.conv3(h))

    def forward(self, x):
        return torch.relu(self.branch(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A stem, then stages of blocks, global average pooling and a fully connected layer.

    ``blocks[i]`` blocks of ``widths[i]`` planes in stage ``i``; the first block of every stage but the
    first has stride 2. ``self.blocks`` holds all blocks in one sequence, input first.
    """

    def __init__(self, block, blocks, widths, stem, classes, option):
        super().__init__()
        self.stem, c_in = stem, stem[0].out_channels
        layers = []
        for i, (n, planes) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                layers.append(block(c_in, planes, 2 if i and not j else 1, option))
                c_in = planes * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.fc(h.mean(dim=(2, 3)))  # global average pooling


def cifar_stem(in_channels, width):
    """He et al. (2015), section 4.2: one 3x3 convolution (with BN and ReLU)."""
    return nn.Sequential(conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())


def imagenet_stem(in_channels=3):
    """He et al. (2015), Table 1: a 7x7 convolution with stride 2, then 3x3 max pooling with stride 2."""
    return nn.Sequential(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
                         nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))


def cifar_resnet(n, option="A", block=BasicBlock, widths=(16, 32, 64), in_channels=3, classes=10):
    """He et al. (2015), section 4.2: 3 stages of ``n`` blocks, 16/32/64 channels: 6n + 2 weighted layers.

    ``widths`` may have any length (one stage per width), for the exercises.
    """
    widths = list(widths)
    return ResNet(block, [n] * len(widths), widths, cifar_stem(in_channels, widths[0]), classes, option)


# He et al. (2015), Table 1: blocks per stage; widths 64, 128, 256, 512 (x4 at the output of a bottleneck)
IMAGENET_LAYOUTS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def imagenet_resnet(depth, option="B", classes=1000):
    """ResNet-18/34/50/101/152 of He et al. (2015), Table 1; option B shortcuts, as torchvision builds them."""
    block, blocks = IMAGENET_LAYOUTS[depth]
    return ResNet(block, blocks, [64, 128, 256, 512], imagenet_stem(), classes, option)


def count_params(net):
    """The number of trainable numbers in ``net`` (works on the meta device too)."""
    return sum(p.numel() for p in net.parameters())


def weighted_layers(net):
    """The convolutions and linear layers on the main path (shortcut projections excluded), input first."""
    return [m for name, m in net.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name.split(".")]


def init_he(net, seed=0):
    """Seeded initialisation: He normal (fan_out) for convolutions, as torchvision; PyTorch's default for fc.

    BatchNorm starts at gamma = 1, beta = 0. Draws only from a generator seeded with ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=g)
            elif isinstance(m, nn.Linear):
                init_linear(m, "default", g)
    return net


def digit_images(seed=0, dtype=torch.float32):
    """The 8x8 digits as images: (X_train, y_train, X_test, y_test) with X of shape (n, 1, 8, 8)."""
    X, y, X_test, y_test = digits(seed=seed, dtype=dtype)
    return X.reshape(-1, 1, 8, 8), y, X_test.reshape(-1, 1, 8, 8), y_test


def digit_net(n, residual, width=8, option="A", seed=0, dtype=torch.float32):
    """A CIFAR-style net for the digits: 3 stages of ``n`` blocks on 8x8, 4x4 and 2x2 maps, 6n + 2 layers.

    ``residual=False`` uses :class:`PlainBlock` (the same layers without shortcuts). Widths are
    ``width``, ``2 width``, ``4 width``; the input has 1 channel and there are 10 classes.
    """
    block = BasicBlock if residual else PlainBlock
    net = cifar_resnet(n, option, block, (width, 2 * width, 4 * width), in_channels=1, classes=10)
    return init_he(net, seed).to(dtype)


@torch.no_grad()
def fit(net, X, y):
    """(loss, accuracy) of ``net`` on ``(X, y)`` with BatchNorm's batch statistics, as in training.

    Early in training the running statistics that eval mode uses lag behind the weights, so this
    measures how well the network fits the data; the running statistics are left as they were.
    """
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    was_training = net.training
    net.train()
    logits = net(X)
    net.load_state_dict(saved)
    net.train(was_training)
    return F_.cross_entropy(logits, y).item(), (logits.argmax(dim=1) == y).double().mean().item()

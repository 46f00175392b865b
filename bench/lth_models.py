"""PyTorch twins of LotteryKit's models, with the same state_dict names and layouts.

Used by bench/pytorch_reference.py (speed) and bench/verify_pytorch.py (a LotteryKit
safetensors checkpoint loads into these modules and gives the same logits).
"""
import torch
from torch import nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self, hidden=(300, 100), inputs=784, classes=10):
        super().__init__()
        widths = [inputs, *hidden]
        self.fc_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        for layer in self.fc_layers:
            x = F.relu(layer(x))
        return self.fc(x)


class ConvN(nn.Module):
    """The LTH paper's Conv-2/4/6: 3x3 same convolutions in pairs, 2x2 max-pools, fc 256, 256."""

    def __init__(self, n=2, channels=3, size=32, classes=10):
        super().__init__()
        widths = [64, 128, 256][: n // 2]
        convs, c = [], channels
        for w in widths:
            for _ in range(2):
                convs.append(nn.Conv2d(c, w, 3, padding=1))
                c = w
        self.conv_layers = nn.ModuleList(convs)
        s = size // (2 ** len(widths))
        self.fc_layers = nn.ModuleList([nn.Linear(c * s * s, 256), nn.Linear(256, 256)])
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        for i, conv in enumerate(self.conv_layers):
            x = F.relu(conv(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        for layer in self.fc_layers:
            x = F.relu(layer(x))
        return self.fc(x)


class Block(nn.Module):
    def __init__(self, cin, cout, downsample):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if downsample or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet-D (OpenLTH's cifar_resnet_D_W)."""

    def __init__(self, depth=20, width=16, channels=3, classes=10):
        super().__init__()
        per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, c = [], width
        for stage in range(3):
            out = width << stage
            for i in range(per_stage):
                blocks.append(Block(c, out, stage > 0 and i == 0))
                c = out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def make(name, channels=None, size=None, classes=10):
    """The twin of a LotteryKit model name (LeNet, Conv-N and ResNet families)."""
    parts = name.split("_")
    if name.startswith("mnist_lenet_"):
        c, s = channels or 1, size or 28
        return LeNet(tuple(int(p) for p in parts[2:]), c * s * s, classes)
    if name.startswith("cifar_conv_"):
        return ConvN(int(parts[2]), channels or 3, size or 32, classes)
    if name.startswith("cifar_resnet_"):
        width = int(parts[3]) if len(parts) > 3 else 16
        return ResNet(int(parts[2]), width, channels or 3, classes)
    raise ValueError(f"no PyTorch twin for {name}")

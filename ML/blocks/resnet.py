"""ResNet-18 (He et al. 2016) with the CIFAR stem, so that 8x8 digits and 32x32 CIFAR images both fit."""
import math

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut; the shortcut is a strided 1x1 conv where the shape changes."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)  # bias is redundant before BatchNorm
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNet18(nn.Module):
    """Stem: one 3x3 conv at stride 1 and no max-pool (the ImageNet stem's 7x7/2 conv and pool would shrink 8x8 to 2x2).
    Then four stages of two BasicBlocks, `width` channels doubled and H, W halved at each stage after the first.

    Body (out_shape=None): (B, 8 * width) average-pooled features, (B, 512) by default.
    Head: Linear, reshaped to (B, *out_shape).
    """

    def __init__(self, in_shape, out_shape=None, width=64):
        super().__init__()
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"ResNet18 needs in_shape (C, H, W), got {in_shape}")
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else out_shape

        layers = [nn.Conv2d(in_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
        for stage in range(4):
            c_out = width * 2 ** stage
            layers += [BasicBlock(c, c_out, 1 if stage == 0 else 2), BasicBlock(c_out, c_out, 1)]
            c = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = None if out_shape is None else nn.Linear(c, math.prod(self.out_shape))

    def forward(self, x):
        h = self.body(x)  # (B, 8 * width)
        if self.head is None:
            return h
        return self.head(h).view(len(x), *self.out_shape)  # (B, *out_shape)

"""A plain convolutional body (drqv2's encoder, made shape-agnostic), with an optional linear head."""
import math

import torch
from torch import nn


class CNN(nn.Module):
    """`depth` Conv2d + ReLU layers of `channels` filters over (B, C, H, W) images.

    Padding kernel_size // 2 keeps H and W at stride 1, so 8x8 digits stay 8x8 through every layer;
    stride > 1 applies to the first conv only, to shrink large frames (drqv2 uses 2 on 84x84 pixels).
    Body (out_shape=None): (B, channels, H', W'). Head: flatten + Linear, reshaped to (B, *out_shape).
    """

    def __init__(self, in_shape, out_shape=None, channels=32, depth=3, kernel_size=3, stride=1):
        super().__init__()
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"CNN needs in_shape (C, H, W), got {in_shape}")
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else out_shape

        layers, c = [], in_shape[0]
        for i in range(depth):
            layers += [nn.Conv2d(c, channels, kernel_size, stride if i == 0 else 1, kernel_size // 2), nn.ReLU()]
            c = channels
        self.body = nn.Sequential(*layers)

        if out_shape is not None:
            # One dummy image gives the flattened size for any kernel, stride and depth, without the arithmetic
            with torch.no_grad():
                features = self.body(torch.zeros(1, *in_shape)).numel()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(features, math.prod(self.out_shape)))
        else:
            self.head = None

    def forward(self, x):
        h = self.body(x)  # (B, channels, H', W')
        if self.head is None:
            return h
        return self.head(h).view(len(x), *self.out_shape)  # (B, *out_shape)

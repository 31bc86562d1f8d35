"""A multilayer perceptron: the default Model, and a body for anything that can be flattened."""
import math

from torch import nn


class MLP(nn.Module):
    """Flattens (B, *in_shape), then `depth` Linear + ReLU layers of width `hidden`.

    Body (out_shape=None): (B, hidden), or (B, prod(in_shape)) when depth=0.
    Head: one more Linear, reshaped to (B, *out_shape); depth=0 with a head is a linear model.
    """

    def __init__(self, in_shape, out_shape=None, hidden=256, depth=2, dropout=0.0):
        super().__init__()
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else out_shape

        # a vector input is already flat: a Flatten there would cost a module call on every forward, and do nothing
        layers, width = [nn.Flatten()] if len(in_shape) > 1 else [], math.prod(in_shape)
        for _ in range(depth):
            # no Dropout layer at p=0: it would do nothing but cost a module call on every forward
            layers += [nn.Linear(width, hidden), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = None if out_shape is None else nn.Linear(width, math.prod(self.out_shape))

    def forward(self, x):
        h = self.body(x)  # (B, hidden)
        if self.head is None:
            return h
        return self.head(h).view(len(x), *self.out_shape)  # (B, *out_shape)

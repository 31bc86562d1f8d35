"""A multilayer perceptron: the default Model, and a body for anything that can be flattened."""
import math

from torch import nn


class MLP(nn.Sequential):
    """Flattens (B, *in_shape), then `depth` Linear + ReLU layers of width `hidden`.

    Body (out_shape=None): (B, hidden), or (B, prod(in_shape)) when depth=0.
    Head: one more Linear, reshaped to (B, *out_shape); depth=0 with a head is a linear model.
    A Sequential itself, not a module holding one: an MLP is called on every acting and learning step, and each
    level of modules costs a call.
    """

    def __init__(self, in_shape, out_shape=None, hidden=256, depth=2, dropout=0.0):
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        out_shape = (out_shape,) if isinstance(out_shape, int) else out_shape

        # a vector input is already flat: a Flatten there would cost a module call on every forward, and do nothing
        layers, width = [nn.Flatten()] if len(in_shape) > 1 else [], math.prod(in_shape)
        for _ in range(depth):
            # no Dropout layer at p=0: it would do nothing but cost a module call on every forward
            layers += [nn.Linear(width, hidden), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = hidden
        if out_shape is not None:
            layers.append(nn.Linear(width, math.prod(out_shape)))
            if len(out_shape) == 0:  # one value per sample: (B, 1) -> (B,)
                layers.append(nn.Flatten(0))
            elif len(out_shape) > 1:
                layers.append(nn.Unflatten(1, tuple(out_shape)))
        super().__init__(*layers)
        self.out_shape = out_shape

    @property
    def head(self):
        """The output Linear (None for a body)."""
        linears = [layer for layer in self if isinstance(layer, nn.Linear)]
        return linears[-1] if self.out_shape is not None else None

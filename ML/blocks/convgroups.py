"""airbench's network (Keller Jordan, KellerJordan/cifar10-airbench, airbench94.py: 94% on CIFAR-10 in 3.83 s on
an A100): a frozen whitening convolution, then groups of two 3x3 convolutions with max-pooling, batch norm and GELU,
a global max-pool, and a linear head scaled down."""
import math

import torch
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """Batch norm with its scale fixed at 1 and only its shift learned (airbench's BatchNorm, weight=False)."""

    def __init__(self, channels: int, momentum: float, eps: float = 1e-12):
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class Conv(nn.Conv2d):
    """A 3x3 convolution, size-preserving and without bias, whose first in_channels filters start as the identity
    (airbench's Conv: torch's default initialization, then nn.init.dirac_)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=3, padding='same', bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[:in_channels])


class ConvGroup(nn.Sequential):
    """conv -> 2x2 max-pool -> batch norm -> GELU -> conv -> batch norm -> GELU. (B, C, H, W) -> (B, C', H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, momentum: float):
        super().__init__(Conv(in_channels, out_channels), nn.MaxPool2d(2), BatchNorm(out_channels, momentum),
                         nn.GELU(), Conv(out_channels, out_channels), BatchNorm(out_channels, momentum), nn.GELU())


class Whitening(nn.Conv2d):
    """A 2x2 convolution whose frozen filters whiten the image's 2x2 patches (airbench's init_whitening_conv): the
    eigenvectors of the patches' covariance, each scaled by 1 / sqrt(its eigenvalue + eps), and their negatives;
    its bias centres the outputs at the patches' mean, and then learns. The filters come from the first batch it
    sees in training mode (airbench: from 5,000 training images, normalized, before training); `whitened` marks them
    done and is saved with the weights. (B, C, H, W) -> (B, 8 C, H - 1, W - 1).

    eps: added to each eigenvalue, relative to their mean (airbench's 5e-4 on images of unit variance per pixel).
    """

    def __init__(self, in_channels: int, eps: float = 5e-4):
        super().__init__(in_channels, 2 * in_channels * 4, kernel_size=2)
        self.weight.requires_grad_(False)
        nn.init.zeros_(self.bias)
        self.eps = eps
        self.register_buffer('whitened', torch.tensor(False))

    @torch.no_grad()
    @torch.autocast('cuda', enabled=False)
    @torch.autocast('cpu', enabled=False)
    def _whiten(self, images: torch.Tensor):
        c = images.shape[1]
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)           # (B, C, H - 1, W - 1, 2, 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4)       # (N, C * 2 * 2), as a filter's layout
        mean = patches.mean(0)
        centred = patches - mean
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(patches))  # in ascending order
        scaled = eigenvectors.T / torch.sqrt(eigenvalues + self.eps * eigenvalues.mean())[:, None]  # (C * 4, C * 4)
        filters = torch.cat([scaled, -scaled])
        self.weight.copy_(filters.reshape(-1, c, 2, 2))
        self.bias.copy_(-filters @ mean)
        self.whitened.fill_(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training and not self.whitened:
            self._whiten(images)
        return super().forward(images)


class ConvGroups(nn.Module):
    """airbench94's network. An optional Whitening (then GELU), one ConvGroup per width, halving H and W each, a
    global max-pool. (B, C, H, W) images; H and W of at least 2 ** len(widths) (one more with whiten).

    Body (out_shape=None): (B, widths[-1]). Head: a Linear without bias, times `scale`, reshaped to (B, *out_shape).

    widths      the channels of each group (airbench94: 64, 256, 256)
    whiten      start with the whitening convolution (airbench94: yes)
    momentum    the batch norms' momentum, torch's convention (airbench94's batchnorm_momentum 0.6 is 1 - 0.4)
    scale       the factor on the logits (airbench94: 1/9)

    Raises ValueError for an in_shape that is not an image or too small for the pooling.
    """

    def __init__(self, in_shape, out_shape=None, widths=(64, 256, 256), whiten: bool = True, momentum: float = 0.4,
                 scale: float = 1 / 9):
        super().__init__()
        in_shape = tuple(in_shape)
        if len(in_shape) != 3 or min(in_shape[1:]) - whiten < 2 ** len(widths):
            raise ValueError(f'ConvGroups needs images (C, H, W) of at least {2 ** len(widths) + whiten} pixels a '
                             f'side ({len(widths)} halvings{" after the whitening" if whiten else ""}); got {in_shape}')
        self.out_shape, self.scale = (out_shape,) if isinstance(out_shape, int) else out_shape, scale
        layers = [Whitening(in_shape[0]), nn.GELU()] if whiten else []
        channels = 8 * in_shape[0] if whiten else in_shape[0]
        for width in widths:
            layers.append(ConvGroup(channels, width, momentum))
            channels = width
        self.body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = None if out_shape is None else nn.Linear(channels, math.prod(self.out_shape), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, widths[-1])
        if self.head is None:
            return h
        return (self.head(h) * self.scale).view(len(x), *self.out_shape)  # (B, *out_shape)

"""Random augmentation of image batches, drawn per sample and applied where the batch lives (GPU or CPU).

A batch of (B, C, H, W) images goes in and comes out the same shape, each image with a translation and a mirror
of its own, in one gather: the image is padded by `pad` pixels and a window of the original size is cropped at a
random place (DrQ's random shift, Kostrikov et al. 2020; the random crop of CIFAR training since Krizhevsky et al.
2012, airbench's `translate`), and mirrored left to right with probability `p`.

The draws come from `generator` (a torch.Generator on the CPU; None: torch's global one), a few numbers per batch,
and move to the batch's device after: the same seed gives the same draws on any device. Like torchvision's and
DrQ's transforms they augment whenever called, in training or eval mode alike: `Aug=` applies them to training
batches only.
"""
import torch
import torch.nn.functional as F
from torch import nn

PADDING_MODES = ('reflect', 'replicate', 'circular', 'constant')  # F.pad's; constant pads with zeros


def crop(images: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor = None,
         padding_mode: str = 'reflect') -> torch.Tensor:
    """Each image i padded by `pad` pixels on every side, cropped back to (H, W) from row dy[i] and column dx[i] of
    the padded image (0 to 2 pad: the image moves pad - dy[i] pixels down and pad - dx[i] right), and mirrored left
    to right where flip[i].

    images (B, C, H, W) of any dtype F.pad takes in the mode; dy, dx (B,) integers; flip (B,) booleans or None.
    Returns (B, C, H, W). Raises torch's errors for a pad the mode cannot make (reflect: pad < H and pad < W).
    """
    n, channels, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad), mode=padding_mode) if pad else images  # (B, C, H + 2p, W + 2p)
    columns = torch.arange(w, device=device).expand(n, w)                                # (B, W)
    if flip is not None:
        columns = torch.where(flip[:, None], w - 1 - columns, columns)  # a mirror reads the window right to left
    rows = torch.arange(h, device=device) + dy[:, None]                                  # (B, H)
    columns = columns + dx[:, None]
    return padded[torch.arange(n, device=device)[:, None, None, None],
                  torch.arange(channels, device=device)[None, :, None, None],
                  rows[:, None, :, None], columns[:, None, None, :]]


def _check_images(name: str, images: torch.Tensor, pad: int = 0, padding_mode: str = None):
    """A ValueError for a batch that is not of images, or too small for a reflection of pad pixels."""
    if images.dim() != 4:
        raise ValueError(f'{name} augments images (B, C, H, W); got a batch of shape {tuple(images.shape)}')
    if padding_mode == 'reflect' and pad >= min(images.shape[-2:]):
        raise ValueError(f'pad={pad}: a reflection reaches at most {min(images.shape[-2:]) - 1} pixels into '
                         f'images of {images.shape[-2]}x{images.shape[-1]}; lower pad or pad with padding_mode='
                         f'constant')


class RandomShiftsFlip(nn.Module):
    """A random translation by up to `pad` pixels in x and y and a random left-right mirror of each image, in one
    gather (airbench's flip + translate; UnifiedML's name). (B, C, H, W) -> (B, C, H, W).

    pad           the largest shift, in pixels (airbench94: 2 with reflect padding; DrQ: 4, replicate)
    padding_mode  what the shift brings in at the edges: reflect, replicate, circular, or constant (zeros)
    p             the probability of a mirror
    generator     a CPU torch.Generator the draws come from (None: torch's global generator)

    Raises ValueError for a negative pad, an unknown padding mode or p outside [0, 1].
    """

    def __init__(self, pad: int = 4, padding_mode: str = 'reflect', p: float = 0.5,
                 generator: torch.Generator = None):
        super().__init__()
        if pad < 0:
            raise ValueError(f'pad={pad}: a shift of 0 pixels or more')
        if padding_mode not in PADDING_MODES:
            raise ValueError(f'padding_mode={padding_mode!r}: one of {", ".join(PADDING_MODES)}')
        if not 0 <= p <= 1:
            raise ValueError(f'p={p}: a probability, from 0 to 1')
        self.pad, self.padding_mode, self.p, self.generator = pad, padding_mode, p, generator

    def _draw(self, n: int, device) -> tuple:
        """(dy, dx, flip) for n images, drawn on the generator's device and moved to the batch's."""
        at = self.generator.device if self.generator is not None else 'cpu'
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2, n), generator=self.generator, device=at)
        flip = torch.rand(n, generator=self.generator, device=at) < self.p
        return dy.to(device, non_blocking=True), dx.to(device, non_blocking=True), flip.to(device, non_blocking=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(type(self).__name__, images, self.pad, self.padding_mode)
        dy, dx, flip = self._draw(len(images), images.device)
        return crop(images, self.pad, dy, dx, flip if self.p > 0 else None, self.padding_mode)

    def extra_repr(self) -> str:
        return f'pad={self.pad}, padding_mode={self.padding_mode!r}, p={self.p}'


class RandomCrop(RandomShiftsFlip):
    """A random translation by up to `pad` pixels in x and y of each image, without mirrors: the crop of the image
    padded by `pad` at a random place. (B, C, H, W) -> (B, C, H, W). Arguments as RandomShiftsFlip's."""

    def __init__(self, pad: int = 4, padding_mode: str = 'reflect', generator: torch.Generator = None):
        super().__init__(pad, padding_mode, p=0.0, generator=generator)

    def extra_repr(self) -> str:
        return f'pad={self.pad}, padding_mode={self.padding_mode!r}'


class Flip(nn.Module):
    """A left-right mirror of each image with probability `p`. (B, C, H, W) -> (B, C, H, W).

    generator: a CPU torch.Generator the draws come from (None: torch's global generator). Raises ValueError for p
    outside [0, 1]."""

    def __init__(self, p: float = 0.5, generator: torch.Generator = None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f'p={p}: a probability, from 0 to 1')
        self.p, self.generator = p, generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(type(self).__name__, images)
        at = self.generator.device if self.generator is not None else 'cpu'
        flip = torch.rand(len(images), generator=self.generator, device=at) < self.p
        flip = flip.to(images.device, non_blocking=True)
        return torch.where(flip[:, None, None, None], images.flip(-1), images)

    def extra_repr(self) -> str:
        return f'p={self.p}'

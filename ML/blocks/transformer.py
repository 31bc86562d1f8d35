"""Transformer encoders: `Transformer` over token sequences, and `ViT` over images cut into patches."""
import math

import torch
from torch import nn


def _encoder(dim, depth, heads, dropout):
    # Pre-norm (norm_first) trains stably without a learning-rate warm-up (Xiong et al. 2020); the final LayerNorm
    # normalises its output, as GPT-2 and ViT do
    layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    # The nested-tensor fast path only applies to post-norm layers; asking for it with norm_first only warns
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


class Transformer(nn.Module):
    """A Linear token embedding, learned positions and a pre-norm encoder.

    in_shape (T, D) is T tokens of D features; (D,) is one token; an image (C, H, W) is H*W tokens of C features,
    one per pixel. That suits a CNN's feature map (Eyes=[CNN,Transformer]); on raw pixels one feature per token
    learns slowly (48% test accuracy on 8x8 digits after 10 epochs, ViT 87% after 3): use ViT there.
    Body (out_shape=None): (B, T, dim), one vector per token. Head: mean over tokens + Linear, to (B, *out_shape).
    """

    def __init__(self, in_shape, out_shape=None, dim=64, depth=2, heads=4, dropout=0.0):
        super().__init__()
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        if len(in_shape) not in (1, 2, 3):
            raise ValueError(f"Transformer needs in_shape (T, D), (D,) or (C, H, W), got {in_shape}")
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else out_shape
        self.rank = len(in_shape)

        tokens, features = {1: (1, in_shape[0]), 2: in_shape, 3: (math.prod(in_shape[1:]), in_shape[0])}[self.rank]
        self.embed = nn.Linear(features, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, dim))  # std 0.02 as in GPT-2 and ViT
        self.encoder = _encoder(dim, depth, heads, dropout)
        self.head = None if out_shape is None else nn.Linear(dim, math.prod(self.out_shape))

    def forward(self, x):
        if self.rank == 1:
            x = x.unsqueeze(1)  # (B, 1, D)
        elif self.rank == 3:
            x = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        h = self.encoder(self.embed(x) + self.pos)  # (B, T, dim)
        if self.head is None:
            return h
        return self.head(h.mean(1)).view(len(x), *self.out_shape)  # (B, *out_shape)


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al. 2020): patch_size x patch_size patches embedded by a strided conv,
    a class token, learned positions and a pre-norm encoder.

    Images whose sides patch_size does not divide are zero-padded on the right and bottom to the next multiple
    (timm's dynamic_img_pad), so the default patch_size=4 fits any image: 8x8 digits give 2x2 = 4 patches.
    Body (out_shape=None): (B, dim), the class token. Head: Linear on it, to (B, *out_shape).
    """

    def __init__(self, in_shape, out_shape=None, patch_size=4, dim=64, depth=2, heads=4, dropout=0.0):
        super().__init__()
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"ViT needs in_shape (C, H, W), got {in_shape}")
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else out_shape

        C, H, W = in_shape
        pad_h, pad_w = -H % patch_size, -W % patch_size
        self.patchify = nn.Sequential(nn.ZeroPad2d((0, pad_w, 0, pad_h)), nn.Conv2d(C, dim, patch_size, patch_size))
        patches = (H + pad_h) // patch_size * ((W + pad_w) // patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, 1 + patches, dim))
        self.encoder = _encoder(dim, depth, heads, dropout)
        self.head = None if out_shape is None else nn.Linear(dim, math.prod(self.out_shape))

    def forward(self, x):
        x = self.patchify(x).flatten(2).transpose(1, 2)  # (B, N, dim), N patches
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)  # (B, 1 + N, dim)
        h = self.encoder(x + self.pos)[:, 0]  # (B, dim), the class token
        if self.head is None:
            return h
        return self.head(h).view(len(x), *self.out_shape)  # (B, *out_shape)

"""The built-in architectures: the shapes they promise, that they learn, and the errors for inputs they cannot take."""
import pytest
import torch
from torch import nn

from ML.blocks.cnn import CNN
from ML.blocks.mlp import MLP
from ML.blocks.resnet import ResNet18
from ML.blocks.transformer import Transformer, ViT

DIGITS, CIFAR, FLAT, SEQUENCE = (1, 8, 8), (3, 32, 32), (64,), (5, 16)


# (block, in_shape, the body's output shape without the batch dimension), with default hyperparameters
BODIES = [
    (MLP, DIGITS, (256,)),
    (MLP, CIFAR, (256,)),
    (MLP, FLAT, (256,)),
    (MLP, SEQUENCE, (256,)),
    (CNN, DIGITS, (32, 8, 8)),
    (CNN, CIFAR, (32, 32, 32)),
    (ResNet18, DIGITS, (512,)),
    (ResNet18, CIFAR, (512,)),
    (Transformer, DIGITS, (64, 64)),  # 8*8 pixels as tokens
    (Transformer, FLAT, (1, 64)),  # one token
    (Transformer, SEQUENCE, (5, 64)),
    (ViT, DIGITS, (64,)),
    (ViT, CIFAR, (64,)),
]
ids = [f"{block.__name__}-{'x'.join(map(str, shape))}" for block, shape, _ in BODIES]


@pytest.mark.parametrize("block, in_shape, body_shape", BODIES, ids=ids)
def test_body_returns_features(block, in_shape, body_shape):
    assert block(in_shape)(torch.randn(2, *in_shape)).shape == (2, *body_shape)


@pytest.mark.parametrize("block, in_shape, body_shape", BODIES, ids=ids)
@pytest.mark.parametrize("out_shape", [(10,), (2, 3), ()], ids=["classes", "2x3", "scalar"])
def test_head_returns_out_shape(block, in_shape, body_shape, out_shape):
    assert block(in_shape, out_shape)(torch.randn(2, *in_shape)).shape == (2, *out_shape)


@pytest.mark.parametrize("block, in_shape, x_shape", [
    (MLP, 64, FLAT), (Transformer, 64, FLAT), (CNN, DIGITS, DIGITS), (ResNet18, DIGITS, DIGITS), (ViT, DIGITS, DIGITS),
])
def test_plain_ints_are_shapes(block, in_shape, x_shape):
    # `model.out_shape=10` on the command line arrives as an int, and so may a flat in_shape
    assert block(in_shape, 10)(torch.randn(3, *x_shape)).shape == (3, 10)


@pytest.mark.parametrize("block", [MLP, CNN, ResNet18, Transformer, ViT])
def test_a_single_example_in_eval_mode(block):
    # As when acting in an environment. ResNet18's last stage is 1x1 on 8x8 digits, where BatchNorm cannot train on
    # one example (one value per channel), but it must still evaluate one
    assert block(DIGITS, (10,)).eval()(torch.randn(1, *DIGITS)).shape == (1, 10)


def test_vit_pads_images_that_patch_size_does_not_divide():
    assert ViT((1, 7, 9), (10,), patch_size=4)(torch.randn(2, 1, 7, 9)).shape == (2, 10)


def test_cnn_stride_shrinks_the_first_layer_only():
    assert CNN((3, 84, 84), channels=8, stride=2)(torch.randn(1, 3, 84, 84)).shape == (1, 8, 42, 42)


def test_mlp_of_depth_zero_is_a_linear_model():
    assert sum(p.numel() for p in MLP(FLAT, (10,), depth=0).parameters()) == 64 * 10 + 10


def separable(in_shape, n=32):
    # Two classes: plus or minus one fixed random pattern, under unit noise
    torch.manual_seed(0)
    pattern, y = torch.randn(in_shape), torch.arange(n) % 2
    x = torch.randn(n, *in_shape) + (2 * y - 1).view(n, *[1] * len(in_shape)) * pattern
    return x, y


def cnn_then_transformer(in_shape, out_shape):
    # Eyes=[CNN,Transformer]: the CNN's 32 channels per pixel become the transformer's token features
    return nn.Sequential(CNN(in_shape), Transformer((32, *in_shape[1:]), out_shape))


@pytest.mark.parametrize("block, in_shape, kwargs", [
    (MLP, DIGITS, {}),
    (MLP, FLAT, {}),
    (CNN, DIGITS, {}),
    (ResNet18, DIGITS, {"width": 16}),
    (Transformer, SEQUENCE, {}),
    (Transformer, FLAT, {}),
    (cnn_then_transformer, DIGITS, {}),
    (ViT, DIGITS, {}),
], ids=["MLP-digits", "MLP-flat", "CNN-digits", "ResNet18-digits", "Transformer-sequence", "Transformer-flat",
        "CNN-Transformer-digits", "ViT-digits"])
def test_block_fits_a_tiny_batch(block, in_shape, kwargs):
    x, y = separable(in_shape)
    torch.manual_seed(0)
    model = block(in_shape, (2,), **kwargs)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert (model.eval()(x).argmax(1) == y).all(), f"{block.__name__} did not fit 32 examples"


def test_resnet18_at_default_width_learns():
    x, y = separable(DIGITS, n=16)
    torch.manual_seed(0)
    model = ResNet18(DIGITS, (2,))
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = nn.functional.cross_entropy(model(x), y)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2


@pytest.mark.parametrize("block, in_shape, message", [
    (CNN, FLAT, r"CNN needs in_shape \(C, H, W\), got \(64,\)"),
    (CNN, SEQUENCE, r"CNN needs in_shape \(C, H, W\), got \(5, 16\)"),
    (ResNet18, FLAT, r"ResNet18 needs in_shape \(C, H, W\), got \(64,\)"),
    (ViT, FLAT, r"ViT needs in_shape \(C, H, W\), got \(64,\)"),
    (ViT, (2, 3, 8, 8), r"ViT needs in_shape \(C, H, W\), got \(2, 3, 8, 8\)"),
    (Transformer, (2, 3, 8, 8), r"Transformer needs in_shape \(T, D\), \(D,\) or \(C, H, W\), got \(2, 3, 8, 8\)"),
], ids=["CNN-flat", "CNN-sequence", "ResNet18-flat", "ViT-flat", "ViT-4d", "Transformer-4d"])
def test_impossible_in_shape_names_block_and_shape(block, in_shape, message):
    with pytest.raises(ValueError, match=message):
        block(in_shape)

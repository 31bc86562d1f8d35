"""The fake-data writers produce files the REAL torchvision dataset classes load with download=True."""

import socket

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.datasets import cifar, mnist, utils

from fakedata import allow_fake_cifar, write_cifar, write_mnist

MNISTS = ["MNIST", "FashionMNIST", "KMNIST"]
CIFARS = {"CIFAR10": 10, "CIFAR100": 100}


class DownloadAttempted(Exception):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download path raises, so a passing test proves torchvision took none."""
    def refuse(*args, **kwargs):
        raise DownloadAttempted(args)

    # mnist.py and cifar.py bind download_and_extract_archive by name, so patch those names too.
    for module, attr in [(utils, "download_url"), (utils, "download_and_extract_archive"),
                         (mnist, "download_and_extract_archive"), (cifar, "download_and_extract_archive"),
                         (socket.socket, "connect")]:
        monkeypatch.setattr(module, attr, refuse)


@pytest.mark.parametrize("name", MNISTS)
@pytest.mark.parametrize("train,n", [(True, 64), (False, 32)])
def test_mnist_family_loads(tmp_path, name, train, n):
    raw = write_mnist(tmp_path, name=name)
    assert raw == tmp_path / name / "raw"
    ds = getattr(torchvision.datasets, name)(tmp_path, train=train, download=True)
    assert len(ds) == n
    assert ds.data.shape == (n, 28, 28) and ds.data.dtype == torch.uint8
    assert ds.targets.dtype == torch.int64 and set(ds.targets.tolist()) == set(range(10))
    img, label = ds[0]
    assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (28, 28)
    assert isinstance(label, int) and 0 <= label < 10


@pytest.mark.parametrize("name", CIFARS)
@pytest.mark.parametrize("train,n", [(True, 64), (False, 32)])
def test_cifar_loads(tmp_path, monkeypatch, name, train, n):
    allow_fake_cifar(monkeypatch)
    write_cifar(tmp_path, name=name)
    ds = getattr(torchvision.datasets, name)(tmp_path, train=train, download=True)
    k = CIFARS[name]
    assert len(ds) == n
    assert ds.data.shape == (n, 32, 32, 3) and ds.data.dtype == np.uint8
    assert all(isinstance(t, int) and 0 <= t < k for t in ds.targets)
    assert len(ds.classes) == k
    img, label = ds[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    assert 0 <= label < k


@pytest.mark.parametrize("name", CIFARS)
def test_cifar_without_patch_would_download(tmp_path, name):
    # The md5s cannot match, so unpatched torchvision treats the files as missing and downloads.
    write_cifar(tmp_path, name=name)
    with pytest.raises(DownloadAttempted):
        getattr(torchvision.datasets, name)(tmp_path, train=True, download=True)


def test_same_seed_same_bytes(tmp_path):
    a, b = write_mnist(tmp_path / "a"), write_mnist(tmp_path / "b")
    assert (a / "train-images-idx3-ubyte").read_bytes() == (b / "train-images-idx3-ubyte").read_bytes()


@pytest.mark.parametrize("name", MNISTS[:1] + list(CIFARS))
def test_labels_are_learnable(tmp_path, monkeypatch, name):
    """A nearest-class-mean classifier fit on train beats chance by far on test."""
    k = CIFARS.get(name, 10)
    if name in CIFARS:
        allow_fake_cifar(monkeypatch)
        write_cifar(tmp_path, name=name, n_train=2 * k, n_test=k)
    else:
        write_mnist(tmp_path, name=name)
    cls = getattr(torchvision.datasets, name)
    train, test = cls(tmp_path, train=True, download=True), cls(tmp_path, train=False, download=True)
    x_tr = torch.as_tensor(train.data).flatten(1).float()
    x_te = torch.as_tensor(test.data).flatten(1).float()
    y_tr, y_te = torch.as_tensor(train.targets), torch.as_tensor(test.targets)
    means = torch.stack([x_tr[y_tr == c].mean(0) for c in range(k)])
    acc = (torch.cdist(x_te, means).argmin(1) == y_te).float().mean().item()
    assert acc > 0.9

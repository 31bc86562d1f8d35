"""Tiny fake MNIST-family and CIFAR datasets written in torchvision's exact on-disk format.

The real ``torchvision.datasets.X(root, train=..., download=True)`` finds these files, skips the
download, and loads them. Every image mixes a fixed per-class prototype with per-sample noise, so a
tiny model learns them well above chance. The prototypes do not depend on ``seed`` or the split, so
train and test share them.

Mirrors torchvision 0.29.1: ``torchvision/datasets/mnist.py`` and ``torchvision/datasets/cifar.py``.
"""

import pickle
from pathlib import Path

import numpy as np

MNIST_NAMES = ("MNIST", "FashionMNIST", "KMNIST")
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _make_split(n, num_classes, shape, seed):
    """Return (uint8 images of `shape` per sample, int64 labels) with a class-dependent signal."""
    # Coarse prototypes (a 4x4 grid of blocks, upsampled): the signal lies in large regions
    # (and colours, for CIFAR), not in single pixels.
    protos = np.random.default_rng(1234).integers(0, 256, (num_classes, *shape[:-2], 4, 4))
    rh, rw = -(-shape[-2] // 4), -(-shape[-1] // 4)  # ceil: 28 -> 7, 32 -> 8
    protos = protos.repeat(rh, axis=-2).repeat(rw, axis=-1)[..., : shape[-2], : shape[-1]]

    rng = np.random.default_rng(seed)
    # Balanced labels: every class appears once n >= num_classes.
    labels = rng.permutation(np.arange(n) % num_classes)
    noise = rng.integers(0, 256, (n, *shape))
    images = (0.7 * protos[labels] + 0.3 * noise).round().astype(np.uint8)
    return images, labels.astype(np.int64)


def _write_idx(path, array):
    """IDX ('SN3 Pascal Vincent') file of uint8, as read by mnist.read_sn3_pascalvincent_tensor:
    big-endian magic 0x00 0x00 <type 0x08=uint8> <ndim>, one big-endian int32 per dim, then raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root, name="MNIST", n_train=64, n_test=32, seed=0) -> Path:
    """Write ``root/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; return that raw folder.

    Mirrors torchvision.datasets.mnist.MNIST (FashionMNIST and KMNIST share its format). The files
    must be *uncompressed*: ``MNIST._check_exists`` looks for the resource names with ``.gz``
    stripped and checks existence only (no md5), so download=True then skips downloading.
    """
    if name not in MNIST_NAMES:
        raise ValueError(f"name must be one of {MNIST_NAMES}, got {name!r}")
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, split_seed in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        images, labels = _make_split(n, 10, (28, 28), split_seed)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return raw


def _dump(path, obj):
    with open(path, "wb") as f:
        # The real files are Python 2 pickles (cifar.py loads them with encoding='latin1').
        pickle.dump(obj, f, protocol=2)


def write_cifar(root, name="CIFAR10", n_train=64, n_test=32, seed=0) -> Path:
    """Write the CIFAR "python version" batches under ``root``; return the batch folder.

    Mirrors torchvision.datasets.cifar.CIFAR10/CIFAR100: each batch is a pickled dict whose ``data``
    is a uint8 array (N, 3072) holding CHW planes (R, G, B, each 32x32 row-major), plus ``labels``
    (CIFAR10) or ``fine_labels`` (CIFAR100) as a list of ints. torchvision md5-checks every file,
    so loading these also needs ``allow_fake_cifar``.
    """
    if name == "CIFAR10":
        folder, num_classes = "cifar-10-batches-py", 10
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_file = "test_batch"
    elif name == "CIFAR100":
        folder, num_classes = "cifar-100-python", 100
        train_files, test_file = ["train"], "test"
    else:
        raise ValueError(f"name must be 'CIFAR10' or 'CIFAR100', got {name!r}")
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)

    def batch(images, labels, label):
        d = {"batch_label": label, "data": images.reshape(len(images), -1),
             "filenames": [f"fake_{i:05d}.png" for i in range(len(images))]}
        if name == "CIFAR10":
            d["labels"] = labels.tolist()
        else:  # fake superclass mapping; torchvision reads only fine_labels
            d["fine_labels"], d["coarse_labels"] = labels.tolist(), (labels // 5).tolist()
        return d

    images, labels = _make_split(n_train, num_classes, (3, 32, 32), seed)
    # CIFAR10 spreads the train set over 5 batches; torchvision concatenates them in order.
    for i, (fname, idx) in enumerate(zip(train_files, np.array_split(np.arange(n_train), len(train_files)))):
        _dump(out / fname, batch(images[idx], labels[idx], f"training batch {i + 1} of {len(train_files)}"))
    images, labels = _make_split(n_test, num_classes, (3, 32, 32), seed + 1)
    _dump(out / test_file, batch(images, labels, "testing batch 1 of 1"))

    if name == "CIFAR10":
        meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 10000, "num_vis": 3072}
        _dump(out / "batches.meta", meta)
    else:
        meta = {"fine_label_names": [f"class_{i:02d}" for i in range(100)],
                "coarse_label_names": [f"superclass_{i:02d}" for i in range(20)]}
        _dump(out / "meta", meta)
    return out


def allow_fake_cifar(monkeypatch):
    """Make CIFAR's md5 checks pass for fake files (existence is still required).

    Patching ``CIFAR10._check_integrity`` alone is NOT enough: ``CIFAR10._load_meta`` md5-checks the
    meta file separately. Both go through the name ``check_integrity`` imported into
    torchvision.datasets.cifar, so patch that one name to drop only the md5 argument.
    """
    from torchvision.datasets import cifar, utils

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: utils.check_integrity(fpath))

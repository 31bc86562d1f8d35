"""Datasets: scikit-learn's digits, torchvision's datasets from files in their exact on-disk format, and any
torch Dataset by path or from code, with a train/test split where the dataset has none."""
import csv

import pytest
import torch

import ML
from conftest import FAST, ml, run_dir
from fakedata import allow_fake_cifar, write_cifar, write_mnist
from ML.cli import main
from ML.world.datasets import DatasetWorld, Digits, split


def final(path, column):
    with open(path) as file:
        return float(list(csv.DictReader(file))[-1][column])


def test_digits_ships_with_scikit_learn():
    digits = Digits()
    image, label = digits[0]
    assert len(digits) == 1797 and image.shape == (1, 8, 8) and 0 <= image.min() <= image.max() <= 1
    assert int(label) in range(10) and digits.classes == [str(d) for d in range(10)]


def test_a_dataset_without_a_test_split_is_split_by_test_split():
    train, test = split(Digits(), 0.25, seed=1)
    assert (len(train), len(test)) == (1348, 449)
    assert set(train.indices).isdisjoint(test.indices)
    assert split(Digits(), 0.25, seed=1)[1].indices == test.indices  # the same seed gives the same split


def test_mnist_through_the_real_command(user_dir):
    write_mnist(user_dir / 'Datasets', 'MNIST', n_train=200, n_test=50)
    ml('Dataset=MNIST', 'Eyes=CNN', 'eyes.depth=1', 'eyes.stride=2', 'batch_size=32', *FAST, cwd=user_dir)
    assert final(run_dir(user_dir, task='MNIST') / 'eval.csv', 'accuracy') > 0.5


@pytest.mark.parametrize('name, writer, classes', [
    pytest.param('FashionMNIST', write_mnist, 10, id='FashionMNIST'),
    pytest.param('CIFAR10', write_cifar, 10, id='CIFAR10'),
    pytest.param('CIFAR100', write_cifar, 100, id='CIFAR100'),
])
def test_torchvision_datasets_train(name, writer, classes, user_dir, monkeypatch):
    allow_fake_cifar(monkeypatch)
    writer(user_dir / 'Datasets', name, n_train=300, n_test=100)
    agent = ML.launch(*FAST, 'batch_size=32', 'train_steps=40', Dataset=name)
    assert agent.model.head.out_features == classes
    assert final(run_dir(user_dir, task=name) / 'eval.csv', 'accuracy') > 2 / classes


def test_a_users_dataset_by_path_with_0d_tensor_labels(user_dir):
    main([*FAST, 'Dataset=Run.Dataset', 'dataset.size=200', 'batch_size=16', 'lr=0.01'])
    assert final(run_dir(user_dir, task='Dataset') / 'eval.csv', 'accuracy') > 0.75


class Pairs(torch.utils.data.Dataset):
    """Integer labels, a train flag of its own (so no split is made), and 3 classes."""

    def __init__(self, train=True):
        generator = torch.Generator().manual_seed(0 if train else 1)
        self.x = torch.randn(90 if train else 30, 2, generator=generator)
        self.y = [int(a > 0) + int(b > 0) for a, b in self.x.tolist()]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def test_a_dataset_class_or_instance_from_code(user_dir):
    agent = ML.launch(*FAST, 'batch_size=16', 'lr=0.01', Dataset=Pairs)
    assert agent.model.head.out_features == 3
    assert final(run_dir(user_dir, task='Pairs') / 'eval.csv', 'accuracy') > 0.6
    ML.launch(*FAST, 'batch_size=16', Dataset=Pairs(train=True), experiment='Instance')
    world = DatasetWorld(*split(Pairs(), 0.2, 1), name='Pairs')
    assert (len(world.train), len(world.test)) == (72, 18)


class Line(torch.utils.data.Dataset):
    """A regression target: y = 2x."""

    def __init__(self):
        self.x = torch.linspace(-1, 1, 100).unsqueeze(1)

    def __len__(self):
        return 100

    def __getitem__(self, index):
        return self.x[index], 2 * self.x[index]


def test_float_targets_make_a_regression(user_dir):
    ML.launch(*FAST, 'train_steps=200', 'lr=0.01', Dataset=Line)
    assert final(run_dir(user_dir, suite='regress', task='Line') / 'eval.csv', 'mse') < 0.05

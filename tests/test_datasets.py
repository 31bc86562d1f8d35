"""Datasets: scikit-learn's digits, torchvision's datasets from files in their exact on-disk format, and any
torch Dataset by path or from code, with a train/test split where the dataset has none."""
import csv
import multiprocessing

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image
from torchvision.datasets import CIFAR10
from torchvision.transforms import RandomCrop

import ML
from conftest import FAST, ml, run_dir
from fakedata import allow_fake_cifar, write_cifar, write_mnist
from ML.cli import main
from ML.errors import ConfigError, MLError, ShapeError
from ML.specs import Batch
from ML.world import datasets
from ML.world.datasets import DataReplay, DatasetWorld, Digits, split


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


# ---- every item format: one adapter reads them all as (observation, label) tensors ----------------------------

class Listed(torch.utils.data.Dataset):
    """A dataset of the items it is given, as they are."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class Constant:
    """An agent whose every answer is class 0, or zeros of the targets' shape."""

    def __init__(self, shape=None):
        self.shape = shape

    def act(self, obs, counters, greedy=True):
        if self.shape is None:
            return torch.zeros(len(obs), dtype=torch.int64)
        return torch.zeros(len(obs), *self.shape)


def world_of(items, **options) -> DatasetWorld:
    return DatasetWorld(Listed(items), Listed(items), name='Listed', **options)


def whole_pass(world) -> Batch:
    """One batch of every training sample, in the order of their first observation value."""
    batch = DataReplay(world.train, batch_size=len(world.train), items=world.items).sample()
    order = batch.obs.flatten(1)[:, 0].argsort()
    return Batch(obs=batch.obs[order], label=batch.label[order])


INTEGER_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]
LABEL_FORMS = {
    'python': lambda value, dtype: np.array(value, dtype).item(),  # int, or bool for np.bool_
    'numpy scalar': lambda value, dtype: dtype(value),
    'numpy (1,)': lambda value, dtype: np.array([value], dtype),
    'torch ()': lambda value, dtype: torch.from_numpy(np.array(value, dtype)),
    'torch (1,)': lambda value, dtype: torch.from_numpy(np.array([value], dtype)),
}


@settings(max_examples=45, deadline=None)
@given(dtype=st.sampled_from(INTEGER_TYPES), form=st.sampled_from(sorted(LABEL_FORMS)))
def test_integer_and_boolean_labels_of_any_type_are_classes_served_as_int64(dtype, form):
    values = [0, 1, 0, 1] if dtype is np.bool_ else [0, 1, 2, 2, 1, 0]
    world = world_of([(torch.full((3,), float(v)), LABEL_FORMS[form](v, dtype)) for v in values])
    assert world.suite == 'classify' and world.label_spec.n == (2 if dtype is np.bool_ else 3)
    batch = whole_pass(world)
    assert batch.label.dtype == torch.int64 and batch.label.tolist() == sorted(values)
    assert world.evaluate(Constant(), None) == {'accuracy': values.count(0) / len(values)}


@pytest.mark.parametrize('shape', [(), (1,), (3,), (2, 4, 4)], ids=str)
@pytest.mark.parametrize('kind', ['torch', 'numpy float64', 'python'])
def test_float_targets_of_any_shape_are_a_regression_scored_by_mean_squared_error(shape, kind):
    def target(value):
        array = np.full(shape, value, np.float64)
        return {'torch': torch.from_numpy(array), 'numpy float64': array, 'python': array.tolist()}[kind]
    world = world_of([(torch.full((2,), float(v)), target(v)) for v in (1.0, 2.0, 3.0)])
    assert world.suite == 'regress' and world.label_spec.shape == shape and world.label_spec.dtype == torch.float32
    batch = whole_pass(world)
    assert batch.label.dtype == torch.float32 and batch.label.shape == (3, *shape)
    assert world.evaluate(Constant(shape), None) == {'mse': pytest.approx((1 + 4 + 9) / 3)}


@pytest.mark.parametrize('keys, names', [
    (None, ('image', 'label')), (None, ('img', 'labels')), (None, ('x', 'y')), (None, ('inputs', 'targets')),
    (None, ('features', 'class')), (['scan', 'grade'], ('scan', 'grade')),
], ids=str)
def test_dict_items_are_read_by_their_usual_names_or_dataset_keys(keys, names):
    items = [{'id': f'sample {v}', names[0]: np.full(2, v, np.float32), names[1]: v % 2} for v in range(4)]
    world = world_of(items, keys=keys)
    batch = whole_pass(world)
    assert batch.obs[:, 0].tolist() == [0, 1, 2, 3] and batch.label.tolist() == [0, 1, 0, 1]
    assert f"(each item's {names[0]!r} and {names[1]!r})" in world.description


def test_dict_items_without_usual_names_are_refused_naming_their_keys():
    items = [{'id': v, 'scan': np.zeros(2), 'grade': 1} for v in range(4)]
    with pytest.raises(ConfigError, match=r"^dataset\.keys: the items of Dataset=Listed are dicts with keys "
                                          r"\['id', 'scan', 'grade'\]; pick .*dataset\.keys=\[<observation>,<label>\]"):
        world_of(items)
    with pytest.raises(ConfigError, match=r"^dataset\.keys=\[scan,score\]: .* keys \['id', 'scan', 'grade'\]"):
        world_of(items, keys=['scan', 'score'])


def test_tuples_of_more_than_two_values_give_the_first_two_or_those_keys_picks():
    items = [(np.full(2, v, np.float32), v % 2, np.full(2, 10.0 * v)) for v in range(4)]
    world = world_of(items)
    assert world.suite == 'classify' and whole_pass(world).label.tolist() == [0, 1, 0, 1]
    assert "(values 0 and 1 of each item's 3)" in world.description
    world = world_of(items, keys=[0, 2])
    assert world.suite == 'regress' and whole_pass(world).label[:, 0].tolist() == [0, 10, 20, 30]
    with pytest.raises(ConfigError, match=r'^dataset\.keys=\[0, 3\]: .* tuples of 3 values, picked by position'):
        world_of(items, keys=[0, 3])


def test_observations_from_numpy_pil_and_lists_become_float32_with_8_bit_images_in_0_to_1():
    pixels = np.array([[[0, 51, 255]]], np.uint8)  # (H, W, C) = (1, 1, 3)
    formats = {'PIL': Image.fromarray(pixels), 'uint8 tensor': torch.from_numpy(pixels).permute(2, 0, 1),
               'float64 array': np.array([[[0.0]], [[0.2]], [[1.0]]]), 'list': [[[0.0]], [[0.2]], [[1.0]]]}
    for name, obs in formats.items():
        world = world_of([(obs, 0), (obs, 1)])
        batch = world.replay.sample()
        assert world.obs_spec.shape == (3, 1, 1) and batch.obs.dtype == torch.float32, name
        assert batch.obs[0].flatten().tolist() == pytest.approx([0.0, 0.2, 1.0]), name


@pytest.mark.parametrize('items, error, message', [
    ([(np.zeros(2), 'cat')], MLError, r"^Dataset=Listed: its labels are str \('cat'\); ML learns from numbers"),
    ([(np.zeros(2), np.array([1, 0, 2]))], ShapeError, r'^Dataset=Listed: its labels are integers of shape \(3,\)'),
    ([np.zeros(2)], MLError, r'^Dataset=Listed: item 0 is a ndarray, not an \(observation, label\) pair or a dict'),
    ([(np.zeros(2), 0), (np.zeros(3), 1)], ShapeError, r'its observations differ in shape \(\(2,\) and \(3,\)\)'),
    ([(np.zeros(2), 0), (np.zeros(2), -1)], MLError, r'its class labels run from -1 to 0; they must be 0 to 0$'),
], ids=['string label', 'integer vector label', 'no label', 'ragged', 'negative class'])
def test_items_that_cannot_be_learned_from_are_refused_in_one_line(items, error, message):
    with pytest.raises(error, match=message):
        world_of(items)


def test_a_split_that_leaves_no_test_samples_is_refused(user_dir):
    with pytest.raises(MLError, match=r'^Dataset=Digits: 1797 training and 0 test samples; both must be > 0 '
                                      r'\(test_split sets'):
        ML.launch(*FAST, test_split=0.0001)  # 0.18 of a sample: none


def test_labels_beyond_the_classes_a_dataset_names_are_refused():
    class Named(Listed):
        classes = ['cat', 'dog']
    with pytest.raises(MLError, match=r'class labels run from 0 to 2; they must be 0 to 1 \(the length of its '
                                      r'classes, 2\)'):
        DatasetWorld(Named([(np.zeros(2), 0), (np.zeros(2), 2)]), Listed([(np.zeros(2), 0)]), name='Named')


class Bits(torch.utils.data.Dataset):
    """Dict items of numpy observations and np.int32 labels: the label is the first bit's sign."""

    def __init__(self, size=120):
        self.x = np.random.default_rng(0).standard_normal((size, 4)).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {'bits': self.x[index], 'sign': np.int32(self.x[index, 0] > 0)}


class Scalars(torch.utils.data.Dataset):
    """One float per sample as the target: y = 2x."""

    def __len__(self):
        return 100

    def __getitem__(self, index):
        x = index / 50 - 1
        return np.array([x], np.float32), 2 * x


def test_dict_items_with_int32_labels_and_scalar_float_targets_train_and_evaluate(user_dir):
    ML.launch(*FAST, 'train_steps=60', 'lr=0.01', 'dataset.keys=[bits,sign]', Dataset=Bits)
    assert final(run_dir(user_dir, task='Bits') / 'eval.csv', 'accuracy') > 0.8
    ML.launch(*FAST, 'train_steps=200', 'lr=0.01', Dataset=Scalars)
    assert final(run_dir(user_dir, suite='regress', task='Scalars') / 'eval.csv', 'mse') < 0.05


def test_dict_items_without_usual_names_are_one_line_from_the_command(user_dir):
    (user_dir / 'Records.py').write_text('import numpy as np\n\n\nclass Scans:\n    def __len__(self):\n'
                                         '        return 10\n\n    def __getitem__(self, index):\n'
                                         "        return {'scan': np.zeros(4), 'grade': 1}\n")
    result = ml('Dataset=Records.Scans', *FAST, cwd=user_dir, check=False)
    assert result.returncode == 1 and result.stderr == (
        "ML: ConfigError: dataset.keys: the items of Dataset=Scans are dicts with keys ['scan', 'grade']; pick the "
        "observation's and the label's: dataset.keys=[<observation>,<label>]\n")
    ML.launch(*FAST, 'dataset.keys=[scan,grade]', Dataset='Records.Scans')
    assert final(run_dir(user_dir, task='Scans') / 'eval.csv', 'accuracy') == 1.0  # every label is 1


# ---- random augmentation streams, seeded; a replay resumes where it stood ---------------------------------------

class Flips(torch.utils.data.Dataset):
    """Observation i is [i, i + 0.5], reversed at random on each read (in __getitem__, or by a transform)."""

    def __init__(self, size=24, transform=False):
        self.x = torch.stack([torch.arange(size) * 1.0, torch.arange(size) + 0.5], 1)
        self.transform = (lambda x: x.flip(0) if torch.rand(()) < 0.5 else x) if transform else None

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        x = self.x[index]
        return (self.transform(x) if self.transform else x.flip(0) if torch.rand(()) < 0.5 else x), index % 2


def flipped(batches) -> set:
    """The samples seen reversed, by index, and those seen as they are, by -index - 1."""
    return {int(x.max()) if x[0] > x[1] else -int(x.max()) - 1 for batch in batches for x in batch.obs}


@pytest.mark.parametrize('transform, reason', [(True, 'its transform is random'),
                                               (False, 'its items differ from read to read')])
def test_random_augmentation_draws_afresh_each_pass(transform, reason):
    world = DatasetWorld(Flips(transform=transform), Flips(), name='Flips', batch_size=8, num_workers=0)
    assert world.description == f'Flips: 24 training and 24 test samples of 2 classes, streamed by the main ' \
                                f'process ({reason})'
    seen = flipped(world.replay.sample() for _ in range(3 * 10))  # ten passes
    assert seen == set(range(24)) | {-i - 1 for i in range(24)}  # every sample, both ways


def test_a_random_dataset_declared_fixed_is_held_and_a_fixed_one_declared_random_streams():
    held = DatasetWorld(Flips(), Flips(), name='Flips', random=False)
    assert held.description == 'Flips: 24 training and 24 test samples of 2 classes, held in memory (cpu)'
    streamed = DatasetWorld(Digits(), Digits(), name='Digits', random=True, num_workers=0)
    assert streamed.description.endswith('streamed by the main process (dataset.random=true)')


def batches(replay, n) -> list:
    return [replay.sample() for _ in range(n)]


def same(first, second) -> bool:
    return len(first) == len(second) and all(torch.equal(a.obs, b.obs) and torch.equal(a.label, b.label)
                                             for a, b in zip(first, second))


@pytest.mark.parametrize('stream, workers', [(False, 0), (True, 0), (True, 2)], ids=['held', 'main', 'workers'])
def test_a_replay_resumes_where_its_state_stood(stream, workers, tmp_path):
    def replay():
        return DataReplay(Flips(size=20), batch_size=6, seed=3, stream=stream, num_workers=workers)
    original = replay()
    batches(original, 5)  # a pass and a half: passes are 4 batches (6, 6, 6, 2)
    torch.save(original.state_dict(), tmp_path / 'state.pt')
    following = batches(original, 7)
    resumed = replay()
    resumed.load_state_dict(torch.load(tmp_path / 'state.pt', weights_only=True))
    assert same(batches(resumed, 7), following)
    assert [len(b.label) for b in following] == [6, 6, 2, 6, 6, 6, 2]
    original.close(), resumed.close()
    assert multiprocessing.active_children() == []  # closing ended the workers


def test_streamed_batches_are_the_same_whatever_the_number_of_workers():
    replays = [DataReplay(Flips(size=20), batch_size=6, seed=3, stream=True, num_workers=n) for n in (0, 2)]
    assert same(*(batches(replay, 9) for replay in replays))
    assert not same(*(batches(DataReplay(Flips(size=20), 6, seed=seed, stream=True), 9) for seed in (3, 4)))


def test_a_dataset_too_large_for_memory_streams_and_evaluates(monkeypatch):
    monkeypatch.setattr(datasets, 'MEMORY_LIMIT', 90_000)  # bytes: the splits take 1438 and 359 * (256 + 8)
    world = DatasetWorld(*split(Digits(), 0.2, seed=1), name='Digits', num_workers=2)
    assert world.description == 'Digits: 1438 training and 359 test samples of 10 classes, streamed through 2 ' \
                                'DataLoader workers (0.4 MiB, over the 0.1 MiB held in memory)'
    assert world.test_stream is not None and world.replay.sample().obs.shape == (256, 1, 8, 8)
    labels = torch.stack([label for _, label in world.test])
    assert world.evaluate(Constant(), None) == {'accuracy': pytest.approx((labels == 0).float().mean().item())}
    world.close()


def test_a_torchvision_dataset_with_a_random_transform_streams_and_trains(user_dir, monkeypatch):
    allow_fake_cifar(monkeypatch)
    write_cifar(user_dir / 'Datasets', 'CIFAR10', n_train=64, n_test=32)
    train, test = (CIFAR10(user_dir / 'Datasets', train=flag, transform=RandomCrop(32, padding=4)) for flag in (1, 0))
    world = DatasetWorld(train, test, name='CIFAR10', batch_size=16, num_workers=2)
    assert world.description == 'CIFAR10: 64 training and 32 test samples of 10 classes, streamed through 2 ' \
                                'DataLoader workers (its transform is random)'
    assert world.obs_spec.shape == (3, 32, 32) and 0 <= world.replay.sample().obs.min() <= 1
    world.close()
    agent = ML.launch(*FAST, 'batch_size=16', 'dataset.random=true', 'num_workers=1', Dataset='CIFAR10')
    assert agent.model.head.out_features == 10

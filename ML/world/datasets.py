"""Datasets as a world: a dataset is an environment whose episodes are passes over the data.

Datasets small enough (under MEMORY_LIMIT) are read once into tensors and served by indexing, as airbench does,
which keeps the loop as fast as a hand-written one; larger ones stream through a DataLoader.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, random_split
from torchvision.transforms.functional import pil_to_tensor

from ML.specs import Batch, Spec

MEMORY_LIMIT = 2 * 1024 ** 3  # bytes a dataset may take in memory before it is streamed instead


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits: 1,797 images of 10 classes that ship with scikit-learn (no network)."""

    def __init__(self):
        from sklearn.datasets import load_digits
        digits = load_digits()
        self.data = torch.tensor(digits.images / 16, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
        self.targets = torch.tensor(digits.target)
        self.classes = [str(digit) for digit in range(10)]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.data[index], self.targets[index]


def split(dataset, test_split: float, seed: int):
    """(train, test) for a dataset that has no test split of its own: a seeded random split."""
    test_size = round(len(dataset) * test_split)
    return random_split(dataset, [len(dataset) - test_size, test_size], torch.Generator().manual_seed(seed))


def as_tensor(value) -> torch.Tensor:
    """An observation or label as a tensor: images from PIL become float in [0, 1], numbers stay numbers."""
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, 'getbands'):  # a PIL image, as torchvision's datasets return without a transform
        return pil_to_tensor(value).float() / 255
    return torch.as_tensor(np.asarray(value))


def collate(items) -> tuple:
    observations, labels = zip(*[(item[0], item[1]) for item in items])
    return torch.stack([as_tensor(x) for x in observations]), torch.stack([as_tensor(y) for y in labels])


def _read(dataset) -> tuple:
    """All of a dataset as (observations, labels) tensors."""
    batches = list(DataLoader(dataset, batch_size=1024, collate_fn=collate))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def _fits(dataset) -> bool:
    obs, label = collate([dataset[0]])
    return len(dataset) * (obs.nbytes + label.nbytes) <= MEMORY_LIMIT


class DatasetWorld:
    """A train and a test dataset, their specs, and the evaluation of an agent on the test data."""
    online = False

    def __init__(self, train, test, name: str, batch_size: int = 256, device='cpu', seed: int = 1):
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f'Dataset={name}: {len(train)} training and {len(test)} test samples; both must be > 0')
        self.name, self.batch_size, self.device = name, batch_size, device
        self.train, self.test = train, test
        obs, label = collate([train[0]])
        self.obs_spec = Spec(shape=tuple(obs.shape[1:]), dtype=torch.float32)
        if label.dtype.is_floating_point:
            self.suite, self.label_spec = 'regress', Spec(shape=tuple(label.shape[1:]), dtype=label.dtype)
        else:
            self.suite = 'classify'
            self.label_spec = Spec(shape=(), dtype=torch.int64, discrete=True, low=0, high=self._classes() - 1)
        self.replay = DataReplay(train, batch_size, device, seed)

    def _classes(self) -> int:
        for dataset in (self.train, getattr(self.train, 'dataset', None)):  # random_split wraps the dataset
            if hasattr(dataset, 'classes'):
                return len(dataset.classes)
        return int(max(_read(self.train)[1].max(), _read(self.test)[1].max())) + 1

    @torch.no_grad()
    def evaluate(self, agent, counters) -> dict:
        """Accuracy (classification) or mean squared error (regression) of the greedy agent on the test data."""
        total, score = 0, 0.0
        for obs, label in DataLoader(self.test, batch_size=max(self.batch_size, 1024), collate_fn=collate):
            prediction = agent.act(obs.to(self.device), counters, greedy=True).cpu()
            if self.suite == 'classify':
                score += (prediction == label).sum().item()
            else:
                score += ((prediction.float() - label.float()) ** 2).flatten(1).mean(1).sum().item()
            total += len(obs)
        return {'accuracy': score / total} if self.suite == 'classify' else {'mse': score / total}


class DataReplay:
    """Shuffled batches of the training data, pass after pass; `pass_ended` says a sample finished a pass."""

    def __init__(self, dataset, batch_size: int, device='cpu', seed: int = 1):
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.pass_ended = False
        if _fits(dataset):
            self.obs, self.labels = (tensor.to(device) for tensor in _read(dataset))
            self.loader = None
        else:
            self.loader = DataLoader(dataset, batch_size, shuffle=True, collate_fn=collate, generator=self.generator)
        self._new_pass()

    def __len__(self):
        return len(self.obs) if self.loader is None else len(self.loader.dataset)

    def _new_pass(self):
        if self.loader is None:
            self.order = torch.randperm(len(self.obs), generator=self.generator).to(self.device)
            self.position = 0
        else:
            self.batches, self.yielded = iter(self.loader), 0

    def sample(self) -> Batch:
        if self.loader is None:
            indices = self.order[self.position:self.position + self.batch_size]
            self.position += self.batch_size
            self.pass_ended = self.position >= len(self.obs)
            obs, label = self.obs[indices], self.labels[indices]
        else:
            obs, label = next(self.batches)
            self.yielded += 1
            self.pass_ended = self.yielded >= len(self.loader)
            obs, label = obs.to(self.device), label.to(self.device)
        if self.pass_ended:
            self._new_pass()
        return Batch(obs=obs, label=label)

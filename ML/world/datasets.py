"""Datasets as a world: a dataset is an environment whose episodes are passes over the data.

Items (ML/world/items.py) reads every item format as (observation, label) tensors; ML/world/reading.py reads a
dataset's items, seeded, into memory or streamed.

A dataset that fits in memory (MEMORY_LIMIT) and whose items are the same at every read is read once into tensors
and served by indexing, as airbench does, which keeps the loop as fast as a hand-written one. One that is random (a
transform, or items that differ from read to read) or too large streams through DataLoader workers instead, each
batch read under a seed of its own (from the run's seed, the pass and the batch's number, as Grain seeds each
record), so that its random augmentation draws afresh every pass yet the same whatever the number of workers, and
again after a resume.
"""
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, random_split

from ML import distributed
from ML.errors import CheckpointError, ConfigError, MLError
from ML.specs import Batch, Spec
from ML.world.items import Items
from ML.world import reading

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


def class_labels(dataset, keys=None, name: str = 'the dataset'):
    """Every sample's class label, an int64 numpy array of shape (N,), or None when the labels are regression
    targets (see Items). A torchvision-style `targets` attribute (one label per sample) is read through random
    splits when `keys` picks no other label; otherwise every item is read once."""
    items = Items(dataset[0], keys, name)
    if not items.classify:
        return None
    indices, inner = np.arange(len(dataset)), dataset
    while isinstance(inner, Subset):  # a Subset's item j is its dataset's item indices[j]
        indices, inner = np.asarray(inner.indices)[indices], inner.dataset
    targets = getattr(inner, 'targets', None)
    if keys is None and targets is not None and len(targets) == len(inner):
        return np.asarray(targets, dtype=np.int64)[indices]
    return torch.cat([labels for _, labels in reading.reads(dataset, items, seed=0)]).numpy()


def _in_units(size: int) -> str:
    return f'{size / 1024 ** 3:.1f} GiB' if size >= 1024 ** 3 else f'{size / 1024 ** 2:.1f} MiB'


def _fits(dataset, items: Items) -> tuple:
    """(whether the dataset fits in memory, the bytes it takes there)."""
    obs, label = items.item(dataset[0])
    size = len(dataset) * (obs.nbytes + label.nbytes)
    return size <= MEMORY_LIMIT, size


class DatasetWorld:
    """A train and a test dataset, their specs, and the evaluation of an agent on the test data.

    keys         which values of an item are the observation and the label (see Items)
    evaluated_on what the evaluation data is, as the run's lines name it: 'test', or 'held-out' (a fold of
                 cross-validation, cut from the training part)
    random       whether the training items must be read afresh each pass (see random_reason; None: find out)
    num_workers  DataLoader worker processes of a streamed dataset (None: reading.default_workers())

    The training data is held in memory when it fits and is not random, else streamed (DataReplay). The test data
    is held whenever it fits (a random transform then draws once per test sample, the same at every evaluation).
    `description` says in one line what the world does with the data. Raises MLError for an empty split and for
    class labels outside 0 to classes - 1, and Items' errors for items it cannot read.
    """
    online = False

    def __init__(self, train, test, name: str, batch_size: int = 256, device='cpu', seed: int = 1, keys=None,
                 random: Optional[bool] = None, num_workers: Optional[int] = None, evaluated_on: str = 'test'):
        if len(train) == 0 or len(test) == 0:
            raise MLError(f'Dataset={name}: {len(train)} training and {len(test)} test samples; both must be > 0 '
                          f'(test_split sets the test fraction of a dataset without a test split)')
        if random not in (None, True, False):
            raise ConfigError(f'dataset.random={random}: expected true or false (or none, to find out)')
        if num_workers is not None and not (isinstance(num_workers, int) and num_workers >= 0):
            raise ConfigError(f'num_workers={num_workers}: expected a count of worker processes, 0 or more '
                              f'(null: one per CPU core, up to 8)')
        self.name, self.batch_size, self.device, self.seed = name, batch_size, torch.device(device), seed
        self.evaluated_on = evaluated_on
        self.train, self.test = train, test
        self.items = Items(train[0], keys, name)
        workers = reading.default_workers() if num_workers is None else num_workers

        reason = reading.random_reason(train, self.items, random)
        fits, size = _fits(train, self.items)
        if reason is None and not fits:
            reason = f'{_in_units(size)}, over the {_in_units(MEMORY_LIMIT)} held in memory'
        self.replay = DataReplay(train, batch_size, device, seed, stream=reason is not None, num_workers=workers,
                                 items=self.items)
        self.test_obs = self.test_labels = self.test_stream = None
        if _fits(test, self.items)[0]:
            self.test_obs, self.test_labels = (t.to(self.device) for t in reading.read_all(test, self.items, seed))
        else:
            self.test_stream = reading.Stream(test, self.items, workers, device, seed)

        obs, label = self.items.item(train[0])
        self.obs_spec = Spec(shape=tuple(obs.shape), dtype=torch.float32)
        if self.items.classify:
            self.suite = 'classify'
            self.label_spec = Spec(shape=(), dtype=torch.int64, discrete=True, low=0, high=self._classes() - 1)
            what = f' of {self.label_spec.n} classes'
        else:
            self.suite, self.label_spec = 'regress', Spec(shape=tuple(label.shape), dtype=torch.float32)
            what = f' with float targets of shape {tuple(label.shape)}'
        read = f' ({self.items.reading})' if self.items.reading else ''
        how = f'held in memory ({self.device})' if reason is None else \
            f'streamed through {workers} DataLoader workers ({reason})' if workers else \
            f'streamed by the main process ({reason})'
        self.description = f'{name}: {len(train)} training and {len(test)} {evaluated_on} samples{what}{read}, {how}'

    def _classes(self) -> int:
        """len(classes) where the dataset names its classes, else the largest label + 1 (2 for booleans); labels
        held in memory, or read once where streamed and the classes unnamed, must lie in 0 to classes - 1."""
        named = getattr(reading.unwrapped(self.train), 'classes', None)
        known = [labels for labels in (getattr(self.replay, 'labels', None), self.test_labels) if labels is not None]
        if named is None and len(known) < 2:
            known = [torch.cat([labels for _, labels in reading.reads(data, self.items, self.seed)])
                     for data in (self.train, self.test)]
        if not known:  # named classes, and no labels at hand: streamed labels are checked by the loss
            return len(named)
        low, high = min(int(labels.min()) for labels in known), max(int(labels.max()) for labels in known)
        classes = len(named) if named is not None else 2 if self.items.boolean else high + 1
        if low < 0 or high >= classes:
            named_by = f' (the length of its classes, {classes})' if named is not None else ''
            raise MLError(f'Dataset={self.name}: its class labels run from {low} to {high}; they must be 0 to '
                          f'{classes - 1}{named_by}')
        return classes

    def _test_batches(self, size: int):
        """This process's shard of the test data (all of it when alone), in batches."""
        if self.test_stream is None:
            obs, labels = distributed.shard(self.test_obs), distributed.shard(self.test_labels)
            for start in range(0, len(labels), size):
                yield obs[start:start + size], labels[start:start + size]
        else:
            indices = distributed.shard(torch.arange(len(self.test)))
            for obs, label in self.test_stream.read(reading.plan(indices, size, self.seed, reading.TEST)):
                yield obs.to(self.device, non_blocking=True), label.to(self.device, non_blocking=True)

    @torch.no_grad()
    def evaluate(self, agent, counters) -> dict:
        """Accuracy (classification) or mean squared error per sample (regression, over each target's values) of
        the greedy agent on the test data; and `loss`, the agent's training loss averaged over the test samples,
        when the agent has test(obs, label) -> (prediction, mean loss) (ML.agents.classifier). Several processes
        score a shard each and add their sums and counts."""
        distributed.broadcast_state(agent, buffers_only=True)  # several processes score with process 0's batch norm
        total, score, loss = 0, torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        tested = callable(getattr(agent, 'test', None))
        for obs, label in self._test_batches(max(self.batch_size, 1024)):
            obs, label = self.items.batch(obs, label)
            if tested:
                prediction, batch_loss = agent.test(obs, label)
                loss += batch_loss * len(label)
            else:
                prediction = agent.act(obs, counters, greedy=True)
            if self.suite == 'classify':
                score += (prediction == label).sum()
            else:
                score += ((prediction.float().reshape(label.shape) - label) ** 2).reshape(len(label), -1).mean(1).sum()
            total += len(label)
        sums = torch.stack([score.double(), loss.double(),
                            torch.tensor(float(total), dtype=torch.float64, device=self.device)])
        score, loss, total = distributed.sum_over_processes(sums).tolist()
        return {'accuracy' if self.suite == 'classify' else 'mse': score / total,
                **({'loss': loss / total} if tested else {})}

    def close(self):
        """Ends the DataLoader workers of streamed data."""
        self.replay.close()
        self.test_stream = None


class DataReplay:
    """Shuffled batches of the training data, pass after pass; `pass_ended` says a sample finished a pass.

    Held (stream=False): the dataset read once into tensors on `device` and served by indexing. Streamed: read by
    `num_workers` DataLoader workers (0: this process), each batch under its own seed. Either way a pass takes the
    samples in an order drawn from a generator seeded with `seed`, `batch_size` at a time (the last batch of a pass
    may be smaller); samples are Batch(obs=float32 (B, *obs_shape), label=int64 (B,) or float32 (B, *target_shape)).
    batch_size is the global batch: a process learning with others (ML/distributed.py) draws the same order and
    takes its slice of each batch; `served` is the whole batch's size, the samples all the processes learned from.

    state_dict() is where the replay stands (the generator's state at the start of the pass, the pass, the samples
    served in it), so that a replay of the same data given it by load_state_dict serves exactly the batches this
    one would have served next: the pass's order is drawn again, and a stream skips what it served without reading it.
    `augment` (an augment.Augmentation, or None) transforms each sampled batch on `device`; its generator's state
    is part of the replay's.
    """

    def __init__(self, dataset, batch_size: int, device='cpu', seed: int = 1, stream: bool = False,
                 num_workers: int = 0, items: Items = None):
        self.items = items or Items(dataset[0])
        self.batch_size, self.device, self.seed, self.size = batch_size, torch.device(device), seed, len(dataset)
        self.generator = torch.Generator().manual_seed(seed)
        self.passes, self.pass_ended, self.served, self.augment = 0, False, 0, None
        self.stream = reading.Stream(dataset, self.items, num_workers, device, seed) if stream else None
        if self.stream is None:
            self.obs, self.labels = (tensor.to(self.device) for tensor in reading.read_all(dataset, self.items, seed))
        self._new_pass()

    def __len__(self):
        return self.size

    def _new_pass(self, position: int = 0):
        self.pass_start = self.generator.get_state()
        self.order, self.position = torch.randperm(self.size, generator=self.generator), position
        if self.stream is None:
            self.order = self.order.to(self.device)
        else:
            plan = reading.plan(self.order[position:], self.batch_size, self.seed, reading.TRAIN, self.passes,
                         first=position // self.batch_size)
            self.batches = self.stream.read([(seed, distributed.shard(indices)) for seed, indices in plan])

    def sample(self) -> Batch:
        """The next batch, or this process's slice of it when it learns with others (see ML/distributed.py)."""
        self.served = min(self.batch_size, self.size - self.position)  # the whole batch, all processes' slices
        if self.stream is None:
            indices = distributed.shard(self.order[self.position:self.position + self.batch_size])
            obs, label = self.obs[indices], self.labels[indices]
        else:
            obs, label = (tensor.to(self.device, non_blocking=True) for tensor in next(self.batches))
        self.position += self.served
        self.pass_ended = self.position >= self.size
        if self.pass_ended:
            self.passes += 1
            self._new_pass()
        obs, label = self.items.batch(obs, label)
        return Batch(obs=obs if self.augment is None else self.augment(obs), label=label)

    def state_dict(self) -> dict:
        return {'generator': self.pass_start, 'passes': self.passes, 'position': self.position, 'samples': self.size,
                **({'augment': self.augment.state_dict()} if self.augment is not None else {})}

    def load_state_dict(self, state: dict):
        """Raises CheckpointError when the state is of a dataset of another size."""
        if state['samples'] != self.size:
            raise CheckpointError(f'the saved data replay is of {state["samples"]} training samples; this dataset '
                                  f'has {self.size}')
        self.generator.set_state(state['generator'])
        self.passes = state['passes']
        self._new_pass(state['position'])
        if self.augment is not None and 'augment' in state:  # one saved without Aug starts its draws afresh
            self.augment.load_state_dict(state['augment'])

    def close(self):
        """Ends the DataLoader workers of a stream (its iterator holds them, as persistent_workers keeps them)."""
        self.stream = self.batches = None

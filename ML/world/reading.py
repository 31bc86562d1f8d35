"""How a dataset's items are read: each batch under a seed of its own (from the run's seed, what the batch is read
for, the pass and the batch's number, as Grain seeds each record), so that a random transform draws afresh every
pass yet the same whatever process or worker reads it; all at once into memory (read_all), or streamed by
DataLoader workers in the batches asked for (Stream); and whether a dataset's items are the same at every read, so
that they may be held in memory at all (random_reason)."""
import os
import random as python_random
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ML.world.items import Items

PROBES = 8  # reads of the first item that must all agree before items are taken to be the same at every read
READ, TRAIN, TEST = 0, 1, 2  # what a batch is read for, one of the words its seed is drawn from


@contextmanager
def seeded(seed: int):
    """Inside, the global generators random transforms draw from (torch's on the CPU, numpy's, Python's) are seeded
    with `seed`; after, they are as they were."""
    states = torch.get_rng_state(), np.random.get_state(), python_random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed)
    python_random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        python_random.setstate(states[2])


def plan(indices: torch.Tensor, batch_size: int, *words: int, first: int = 0) -> list:
    """The indices cut into batches of (seed, indices); the seed of batch number i is drawn by numpy's SeedSequence
    from the words and i."""
    return [(int(np.random.SeedSequence([*words, first + i]).generate_state(1)[0]), chunk.tolist())
            for i, chunk in enumerate(indices.split(batch_size))]


class SeededReads(Dataset):
    """A dataset's items in compact form, read a batch at a time under the batch's seed, so that its random
    transforms draw the same whichever process reads the batch."""

    def __init__(self, dataset, items: Items):
        self.dataset, self.items = dataset, items

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.items.item(self.dataset[index])

    def __getitems__(self, batch: tuple) -> list:  # what a DataLoader's fetcher calls with a batch_sampler's batch
        seed, indices = batch
        with seeded(seed):
            return [self[index] for index in indices]


def reads(dataset, items: Items, seed: int, batch_size: int = 1024):
    """The whole dataset in order, as compact (observations, labels) batches read by this process."""
    reads = SeededReads(dataset, items)
    for batch in plan(torch.arange(len(dataset)), batch_size, seed, READ):
        yield items.collate(reads.__getitems__(batch))


def read_all(dataset, items: Items, seed: int) -> tuple:
    """All of a dataset as compact (observations, labels) tensors; a read of over a second says so on a terminal."""
    batches = list(tqdm(reads(dataset, items, seed), desc=f'reading {items.name} into memory', unit='batch',
                        total=-(-len(dataset) // 1024), delay=1, leave=False, disable=None))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


class _Batches:
    """A DataLoader's batch_sampler that yields the batches last given to it."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class Stream:
    """A dataset read by DataLoader workers (kept between passes, pinned memory for CUDA) in the batches asked for."""

    def __init__(self, dataset, items: Items, num_workers: int, device, seed: int):
        self.plan = _Batches()
        self.loader = DataLoader(SeededReads(dataset, items), batch_sampler=self.plan, collate_fn=items.collate,
                                 num_workers=num_workers, persistent_workers=num_workers > 0,
                                 pin_memory=torch.device(device).type == 'cuda',
                                 generator=torch.Generator().manual_seed(seed))  # leaves the global generator be

    def read(self, batches: list):
        """An iterator over compact (observations, labels) of the batches [(seed, indices), ...], in order."""
        self.plan.batches = batches
        return iter(self.loader)


def unwrapped(dataset):
    """The dataset a random split (Subset) was taken from."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def _same(read, other) -> bool:
    return all(a.shape == b.shape and torch.equal(a.nan_to_num(), b.nan_to_num()) for a, b in zip(read, other))


def random_reason(dataset, items: Items, declared: Optional[bool] = None) -> Optional[str]:
    """Why each pass must read the items afresh, or None when they are the same at every read and may be held.

    declared    dataset.random: True or False says so; None finds out: a `random` attribute that is True, a
                torchvision transform (a `transform` or `transforms` attribute not None), or PROBES reads of the
                first item, each under its own seed, that do not all agree
    """
    if declared is not None:
        return 'dataset.random=true' if declared else None
    inner = unwrapped(dataset)
    if getattr(inner, 'random', None) is True:
        return 'it declares itself random'
    reads = []
    for seed in range(PROBES):
        with seeded(seed):
            reads.append(items.item(dataset[0]))
    differ = not all(_same(read, reads[0]) for read in reads[1:])
    if getattr(inner, 'transform', None) is not None or getattr(inner, 'transforms', None) is not None:
        return 'its transform is random' if differ else \
            'it has a transform; dataset.random=false would hold it in memory'
    return 'its items differ from read to read' if differ else None


def default_workers() -> int:
    """One DataLoader worker per CPU core this process may use, up to 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    return min(8, cores)

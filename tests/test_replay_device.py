"""replay.device: the frames in RAM, page-locked RAM, on the GPU or memory-mapped on disk sample the same batches and
save, load and resume alike; a streamed dataset is read by worker processes kept from pass to pass."""
import csv
import functools
import os

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from conftest import ml, run_dir
from ML.specs import Counters
from ML.world import replay as replay_module
from ML.world.datasets import DataReplay
from ML.world.gym import GymWorld
from ML.world.replay import Replay, choose_placement
from test_replay import Zeros, stacked

OPTIONS = dict(capacity=40, batch_size=16, nstep=3, gamma=0.9, frame_stack=3, prioritized=True, seed=3)
GB = 10 ** 9


@pytest.fixture
def steps():
    """Thirty vector steps of two envs of stacked uint8 frames (DMC-like: 3 frames of 3 channels)."""
    world = GymWorld(functools.partial(stacked, 3, (3, 2, 2)), num_envs=2, seed=0)
    yield world, [world.step(Zeros(), Counters()) for _ in range(30)]
    world.close()


@pytest.fixture
def fake_gpu(monkeypatch):
    """A GPU as the replay sees one: torch says there is one, and 'the GPU' is the CPU, so that the tensor path
    (frames in a torch tensor, gathered by torch) runs here."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(replay_module, '_gpu', lambda device: torch.device('cpu'))


def filled(world, steps, **options) -> Replay:
    replay = Replay(world.obs_spec, world.action_spec, **OPTIONS, **options)
    for step in steps:
        replay.add(step)
    return replay


def same(a, b) -> bool:
    return all(torch.equal(x, y) if x is not None else y is None for x, y in zip(a, b))


def disk_maps(folder) -> list:
    """This process's memory maps of files in folder (/proc/self/maps: an unnamed file shows as '#inode (deleted)')."""
    with open('/proc/self/maps') as maps:
        return [line.split(maxsplit=5)[-1].strip() for line in maps if f' {folder}/' in line]


@pytest.mark.parametrize('placement', ['memmap', 'cuda'])
def test_every_placement_samples_the_batches_of_a_replay_in_ram(placement, steps, fake_gpu, tmp_path):
    world, record = steps
    in_ram, placed = filled(world, record), filled(world, record, placement=placement, memmap_folder=tmp_path)
    assert in_ram.placement == 'ram'  # null, for batches on the CPU
    assert isinstance(placed.frame, np.memmap if placement == 'memmap' else torch.Tensor)
    for _ in range(3):
        batch = placed.sample()
        assert same(in_ram.sample(), batch)
        placed.update_priorities(batch.index, torch.arange(16.0))
        in_ram.update_priorities(batch.index, torch.arange(16.0))

    # saved, and loaded back into any placement, it samples on where it left off
    state = placed.save(tmp_path / 'saved')
    expected = placed.sample()
    for other in ('ram', 'memmap', 'cuda'):
        loaded = Replay.load(tmp_path / 'saved', state=state, restart=False, placement=other,
                             memmap_folder=tmp_path)
        assert loaded.placement == other and len(loaded) == len(placed)
        assert same(loaded.sample(), expected)


def test_a_memory_mapped_replay_keeps_its_frames_in_a_file_of_its_folder_freed_with_it(steps, tmp_path):
    world, record = steps
    replay = filled(world, record, placement='memmap', memmap_folder=tmp_path / 'replay')
    maps = disk_maps(tmp_path / 'replay')
    assert len(maps) == 1 and maps[0].endswith('(deleted)')  # a file with no name: nothing is left after a crash
    assert list((tmp_path / 'replay').iterdir()) == []
    assert replay.frame[replay.pos - 1].tobytes() == record[-1].obs[:, -3:].tobytes()  # the newest frame, on disk
    del replay
    assert disk_maps(tmp_path / 'replay') == []


def test_pinned_memory_without_a_gpu_keeps_the_frames_in_plain_ram(steps):
    world, record = steps
    with pytest.warns(UserWarning, match='replay.device=pinned: batches go to the cpu, not a GPU, so there is no '
                                         'copy to speed up: the frames stay in plain RAM'):
        pinned = filled(world, record, placement='pinned')
    assert pinned.placement == 'ram' and type(pinned.frame) is np.ndarray
    assert same(pinned.sample(), filled(world, record).sample())


@pytest.mark.parametrize('device, gpu, free_gpu, free_ram, chosen', [
    ('cuda', True, 80 * GB, 64 * GB, 'cuda'),     # fits in half the GPU's free memory
    ('cuda:1', True, 30 * GB, 64 * GB, 'ram'),    # 20 GB is more than half of 30 GB free
    ('cpu', True, 80 * GB, 64 * GB, 'ram'),       # the run is on the CPU: its batches are wanted there
    ('cuda', False, 80 * GB, 64 * GB, 'ram'),     # torch sees no GPU
    ('cpu', False, 0, 16 * GB, 'memmap'),         # more than the RAM available
])
def test_null_places_a_replay_of_20_gb_by_size(device, gpu, free_gpu, free_ram, chosen, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: gpu)
    assert choose_placement(20 * GB, device, gpu_free=free_gpu, ram_free=free_ram) == chosen


def test_a_replay_larger_than_ram_goes_to_disk_and_says_so(steps, monkeypatch, tmp_path):
    world, record = steps
    monkeypatch.setattr('psutil.virtual_memory', lambda: type('Memory', (), {'available': 1000}))
    with pytest.warns(UserWarning, match=f'needs 0.00 GB, 0.00 GB available: its frames are memory-mapped from '
                                         f'{tmp_path}'):
        replay = filled(world, record, memmap_folder=tmp_path)
    assert replay.placement == 'memmap' and len(disk_maps(tmp_path)) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason='the refusal is for a machine with no GPU')
@pytest.mark.parametrize('value, message', [
    ('cuda', 'replay.device=cuda: torch sees no GPU here; keep the replay in ram or memmap, or give null to choose '
             'by size'),
    ('disk', 'replay.device=disk: must be ram, pinned, cuda, memmap or null (by size)')])
def test_a_placement_that_cannot_be_is_refused_before_the_run_starts(value, message, user_dir):
    result = ml('task=RL', f'replay.device={value}', 'progress=false', cwd=user_dir, check=False)
    assert result.returncode == 1 and result.stderr.strip() == f'ML: ConfigError: {message}'
    assert not (user_dir / 'Benchmarking').exists()


def test_a_memory_mapped_replay_trains_and_resumes(user_dir):
    line = ['task=RL', 'replay.device=memmap', 'replay.save=true', 'learn_after=200', 'log_per_steps=100',
            'eval_per_steps=null', 'eval_episodes=1', 'progress=false']
    ml(*line, 'train_frames=400', cwd=user_dir)
    resumed = ml(*line, 'train_frames=600', 'load=true', cwd=user_dir)
    assert 'at step 400' in resumed.stdout
    folder = run_dir(user_dir, agent='DQN', suite='gym', task='CartPole-v1')
    with open(folder / 'train.csv') as file:
        rows = list(csv.DictReader(file))
    assert [row['step'] for row in rows] == ['100', '200', '300', '400', '500', '600']
    assert 'refills' not in resumed.stdout and all(row['loss'] for row in rows[4:])  # learning on from its replay
    saved = user_dir / 'Datasets/ReplayBuffer/Exp/DQN/gym/CartPole-v1_1'
    assert sorted(path.name.split('-')[0] for path in saved.iterdir()) == ['data', 'replay.json']  # no map left


class Reads(Dataset):
    """Items that say which process read them: the observation is the reader's process id."""

    def __len__(self):
        return 64

    def __getitem__(self, index):
        return torch.tensor([float(os.getpid())]), index % 2


def test_a_streamed_dataset_is_read_by_workers_kept_from_pass_to_pass():
    replay = DataReplay(Reads(), batch_size=16, stream=True, num_workers=2)
    readers = [{int(pid) for pid in replay.sample().obs.flatten()} for _ in range(8)]  # two passes of 4 batches
    assert os.getpid() not in set().union(*readers)  # read ahead in other processes while this one learns
    assert set().union(*readers[:4]) == set().union(*readers[4:]) and len(set().union(*readers)) == 2
    replay.close()

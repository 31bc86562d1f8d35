"""Fixtures for running ML the way a user does: the real `ML` command in a directory holding the user's files."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_FILES = {
    'Run.py': '''
        import torch
        from torch import nn


        class Model(nn.Module):
            """A user's model: its sizes come from the data through the names in_shape and out_shape."""

            def __init__(self, in_shape, out_shape, hidden=32):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), hidden),
                                         nn.ReLU(), nn.Linear(hidden, out_shape[0]))

            def forward(self, x):
                return self.net(x)


        class Dataset(torch.utils.data.Dataset):
            """Sixty points of two classes, labels as 0-d tensors."""

            def __init__(self, size=60):
                self.x = torch.randn(size, 4, generator=torch.Generator().manual_seed(0))
                self.y = (self.x.sum(1) > 0).long()

            def __len__(self):
                return len(self.x)

            def __getitem__(self, index):
                return self.x[index], self.y[index]


        model = Model((1, 8, 8), (10,))
    ''',
    'Utils.py': 'raise ImportError("the user\'s Utils.py must never be imported in place of ML\'s modules")\n',
    'ML.py': 'raise ImportError("the user\'s ML.py must never be imported in place of the ML package")\n',
    'recipe.yaml': '''
        imports: [classify, self]
        lr: 0.01
        Eyes: CNN
        eyes:
          depth: 1
    ''',
    'Crash.py': '''
        import os

        from torch import nn


        class Model(nn.Linear):
            """Trains, then fails on the forward pass number $CRASH_AFTER (the loss going to nan, say)."""

            def __init__(self, in_shape, out_shape):
                super().__init__(64, out_shape[0])
                self.calls, self.crash_after = 0, int(os.environ.get('CRASH_AFTER', 5))

            def forward(self, x):
                self.calls += 1
                if self.calls > self.crash_after:
                    raise FloatingPointError('the loss went to nan')
                return super().forward(x.flatten(1))
    ''',
    'pkg/__init__.py': '',
    'pkg/Nets.py': '''
        from torch import nn


        class Tiny(nn.Module):
            def __init__(self, in_features, out_features):
                super().__init__()
                self.linear = nn.Linear(in_features, out_features)

            def forward(self, x):
                return self.linear(x.flatten(1))
    ''',
}

FAST = ['train_steps=20', 'eval_per_steps=null', 'progress=false']  # a run of a few seconds


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A fresh working directory holding a user's files, made the current directory."""
    for name, text in USER_FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def ml(*args, cwd: Path, check=True, env=None) -> subprocess.CompletedProcess:
    """The real ML command, as a user types it."""
    environment = {key: value for key, value in os.environ.items() if key != 'HYDRA_FULL_ERROR'}
    environment.update({'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1', **(env or {})})  # tests share 2 cores
    result = subprocess.run(['ML', *args], cwd=cwd, capture_output=True, text=True, env=environment, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f'ML {" ".join(args)} failed:\n{result.stderr[-3000:]}')
    return result


def run_dir(cwd: Path, experiment='Exp', agent='Classifier', suite='classify', task='Digits', seed=1) -> Path:
    return cwd / 'Benchmarking' / experiment / agent / suite / f'{task}_{seed}'


def checkpoint(cwd: Path, experiment='Exp', agent='Classifier', suite='classify', task='Digits', seed=1) -> Path:
    return cwd / 'Checkpoints' / experiment / agent / suite / f'{task}_{seed}.pt'


def loggable(metrics: dict) -> bool:
    """What an agent's learn() returns is what the logger writes: numbers or one-value tensors, none with a graph."""
    import torch
    return all(torch.as_tensor(value).numel() == 1 and not torch.as_tensor(value).requires_grad
               for value in metrics.values())


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Tests never download: a test that reaches for a dataset on the network fails instead."""
    import torchvision.datasets.utils as utils

    def refuse(*args, **kwargs):
        raise AssertionError('a test tried to download a dataset')
    monkeypatch.setattr(utils, 'download_url', refuse)
    monkeypatch.setattr(utils, 'download_and_extract_archive', refuse)


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run side by side on two cores: one torch thread each keeps them from fighting."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


sys.path.insert(0, str(Path(__file__).parent))  # tests/fakedata.py

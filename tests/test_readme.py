"""Every example in README.md runs: its files are written, its ML lines run (with a tiny budget appended, which
wins as any later override does), and its Python runs."""
import re
import shlex
from pathlib import Path

import pytest

from conftest import FAST
from fakedata import allow_fake_cifar, write_cifar, write_mnist
from ML.cli import main

README = (Path(__file__).parents[1] / 'README.md').read_text()
BLOCKS = re.findall(r'```(\w*)\n(.*?)```', README, re.DOTALL)
FILES = {body.splitlines()[0][2:]: body for kind, body in BLOCKS
         if kind in ('python', 'yaml') and re.match(r'# [\w.]+\.(py|yaml)\n', body)}
COMMANDS = [line for kind, body in BLOCKS if kind == 'bash' for line in body.splitlines()
            if line.startswith('ML')]
PYTHON = [body for kind, body in BLOCKS if kind == 'python' and body.splitlines()[0][2:] not in FILES]


@pytest.fixture(scope='module')
def readme_dir(tmp_path_factory):
    """One directory for the whole README, as a reader would use: its files, and MNIST already on disk."""
    folder = tmp_path_factory.mktemp('readme')
    for name, body in FILES.items():
        (folder / name).write_text(body)
    write_mnist(folder / 'Datasets', 'MNIST', n_train=64, n_test=32)
    write_cifar(folder / 'Datasets', 'CIFAR10', n_train=64, n_test=32)
    return folder


def test_the_readme_has_examples():
    assert {'Run.py', 'my_recipe.yaml'} <= set(FILES) and len(COMMANDS) > 20 and PYTHON


def suite(line: str):
    """Which environment suite a README line trains on, if any: its evaluation episodes are cut short here."""
    return next((name for name in ('atari', 'dmc') if name in line.lower()), None)


@pytest.mark.parametrize('line', COMMANDS)
def test_every_command_in_the_readme_runs(line, readme_dir, monkeypatch, capsys):
    monkeypatch.chdir(readme_dir)
    allow_fake_cifar(monkeypatch)
    words = shlex.split(line, comments=True)[1:]
    short_episodes = {'atari': ['eval_episodes=1', 'env.max_episode_frames=400'],
                      'dmc': ['eval_episodes=1', 'env.episode_length=40']}.get(suite(line), [])
    main([*words, *FAST, *short_episodes])
    output = capsys.readouterr().out
    assert output.strip(), f'{line} printed nothing'


def test_every_python_example_in_the_readme_runs(readme_dir, monkeypatch):
    monkeypatch.chdir(readme_dir)
    for code in PYTHON:
        exec(compile(code, 'README.md', 'exec'), {})

"""What a run writes: CSV logs that widen when a metric first appears, atomic checkpoints, finding them by words."""
import csv
import os

import pytest
import torch

from ML.errors import CheckpointError
from ML.records import checkpoints
from ML.records.logger import CSV
from ML.run import Every
from ML.specs import Counters


def test_a_metric_that_appears_later_widens_the_csv(tmp_path):
    log = CSV(tmp_path / 'train.csv')
    log.write({'step': 1, 'return': 9.0})
    log.write({'step': 2, 'return': 8.0, 'loss': 0.5})
    log.write({'step': 3, 'loss': 0.25})
    with open(tmp_path / 'train.csv') as file:
        rows = list(csv.DictReader(file))
    assert rows == [{'step': '1', 'return': '9.0', 'loss': ''}, {'step': '2', 'return': '8.0', 'loss': '0.5'},
                    {'step': '3', 'return': '', 'loss': '0.25'}]
    CSV(tmp_path / 'train.csv').write({'step': 4, 'loss': 0.1})  # a resumed run keeps the header
    assert (tmp_path / 'train.csv').read_text().splitlines()[-1] == '4,,0.1'


def test_every_names_a_timing_rule():
    assert [step for step in range(1, 11) if Every(4)(step)] == [4, 8]
    assert not any(Every(None)(step) for step in range(10)) and not any(Every(0)(step) for step in range(10))


class Agent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 2)
        self.optim = torch.optim.Adam(self.parameters(), lr=0.1)


def test_a_checkpoint_round_trips_state_config_and_counters(tmp_path):
    agent = Agent()
    agent.net(torch.ones(1, 3)).sum().backward()
    agent.optim.step()
    path = tmp_path / 'Checkpoints' / 'Exp' / 'a.pt'
    checkpoints.save(path, agent, {'lr': 0.1}, Counters(step=7, frame=70))
    assert os.listdir(path.parent) == ['a.pt']  # no temporary file is left behind
    state = checkpoints.read(path)
    fresh = Agent()
    checkpoints.restore(fresh, state, path)
    assert torch.equal(fresh.net.weight, agent.net.weight)
    assert fresh.optim.state_dict()['state'][0]['step'] == agent.optim.state_dict()['state'][0]['step']
    assert state['config'] == {'lr': 0.1} and state['counters']['step'] == 7


def test_a_checkpoint_that_does_not_fit_says_so(tmp_path):
    checkpoints.save(tmp_path / 'a.pt', Agent(), {}, Counters())
    other = Agent()
    other.net = torch.nn.Linear(4, 2)
    with pytest.raises(CheckpointError, match=r'a\.pt: the checkpoint does not fit this agent'):
        checkpoints.restore(other, checkpoints.read(tmp_path / 'a.pt'), tmp_path / 'a.pt')
    (tmp_path / 'junk.pt').write_text('not a checkpoint')
    with pytest.raises(CheckpointError, match=r'junk\.pt: not a readable checkpoint'):
        checkpoints.read(tmp_path / 'junk.pt')


def test_load_finds_the_nearest_path_holding_every_word(tmp_path):
    root = tmp_path / 'Checkpoints'
    for relative in ('MyExp/Classifier/classify/MNIST_1.pt', 'MyExp/Classifier/classify/Digits_1.pt',
                     'Other/Classifier/classify/MNIST_1.pt', 'MyExp/deeper/Classifier/classify/MNIST_1.pt'):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b'')
    assert checkpoints.find('MyExp MNIST', root / 'x.pt', root) == root / 'MyExp/Classifier/classify/MNIST_1.pt'
    with pytest.raises(CheckpointError, match=r"load='Nope MNIST': no checkpoint under .* has every word"):
        checkpoints.find('Nope MNIST', root / 'x.pt', root)

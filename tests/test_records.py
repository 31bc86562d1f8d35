"""What a run writes: CSV logs that widen when a metric first appears, atomic checkpoints, finding them by words."""
import csv
import os
import types

import pytest
import torch

from ML.errors import CheckpointError, NonFiniteLoss
from ML.records import checkpoints
from ML.records.logger import CSV
from ML.run import Every, run
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


class Rows:
    """The loop's logger, reduced to the train rows it is handed."""

    def __init__(self):
        self.rows = []

    def train(self, counters, metrics, episode_returns):
        self.rows.append((counters.step, {key: float(value) for key, value in metrics.items()}))

    def start(self, counters):
        pass

    def progress(self, counters, stage=None):
        pass

    def eval(self, counters, metrics):
        pass


def train_rows(metric, steps=10, log_per_steps=4) -> list:
    """The rows of a loop whose agent returns {'loss': 1, 'margin': metric(step)} at each learning step."""
    world = types.SimpleNamespace(online=False, evaluate=lambda agent, counters: {})
    replay = types.SimpleNamespace(sample=lambda: types.SimpleNamespace(obs=torch.zeros(2, 3)))
    agent, logger = torch.nn.Module(), Rows()
    agent.learn = lambda batch, counters: {'loss': torch.tensor(1.0), 'margin': metric(counters.step + 1)}
    run(world, agent, replay, logger, Counters(), train_steps=steps, log_per_steps=log_per_steps)
    return logger.rows


def test_a_deferred_metric_is_computed_only_on_the_steps_that_write_it():
    computed = []

    def margin(step):
        return lambda: computed.append(step) or step / 10  # a function of no arguments: deferred
    assert train_rows(margin) == [(4, {'loss': 1.0, 'margin': 0.4}), (8, {'loss': 1.0, 'margin': 0.8})]
    assert computed == [4, 8]


def test_a_deferred_metric_that_is_nan_stops_the_run_at_the_row_that_shows_it():
    with pytest.raises(NonFiniteLoss, match='margin is nan at step 4'):
        train_rows(lambda step: lambda: float('nan'))


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

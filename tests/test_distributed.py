"""Data-parallel training: two gloo processes on the same global batch learn what one process learns, write what one
process writes, stop together, and say in one line why they stopped."""
import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ML
from conftest import checkpoint, ml, run_dir
from ML.errors import ConfigError

PROBE = '''
    import os
    import signal

    import torch
    from torch import nn


    class Model(nn.Linear):
        """A linear head on the digits that misbehaves in process $PROBE_RANK from its forward pass number $PROBE_AT:
        $PROBE=nan turns its output nan, $PROBE=sigterm sends its own process SIGTERM (once)."""

        def __init__(self, in_shape, out_shape):
            super().__init__(64, out_shape[0])
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            output = super().forward(x.flatten(1))
            probe, at = os.environ.get('PROBE'), int(os.environ.get('PROBE_AT', 0))
            if probe is None or os.environ.get('RANK') != os.environ['PROBE_RANK'] or self.calls < at:
                return output
            if probe == 'sigterm' and self.calls == at:
                os.kill(os.getpid(), signal.SIGTERM)
            return output * torch.nan if probe == 'nan' else output
'''

# 20 steps of the global batch of 256 over the 1,438 training digits (a pass ends with 158 = 79 + 79 samples)
RUN = ['Model=Probe.Model', 'train_steps=20', 'eval_per_steps=10', 'log_per_steps=5', 'progress=false']


def folder(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / 'Probe.py').write_text(textwrap.dedent(PROBE).lstrip())
    return tmp


def files(cwd: Path) -> list:
    """Every file a run left, by its path in the user's directory."""
    return sorted(str(path.relative_to(cwd)) for path in cwd.rglob('*') if path.is_file())


def weights(cwd: Path) -> dict:
    return torch.load(checkpoint(cwd), weights_only=True)['agent']


def accuracies(cwd: Path) -> list:
    with open(run_dir(cwd) / 'eval.csv') as file:
        return [(row['step'], row['accuracy']) for row in csv.DictReader(file)]


def untimed(text: str) -> str:
    return re.sub(r' in [\d.]+s;', ' in <time>;', text)


@pytest.fixture(scope='module')
def alone(tmp_path_factory):
    """The run in one process: what two processes must match."""
    cwd = folder(tmp_path_factory.mktemp('alone'))
    return cwd, ml(*RUN, cwd=cwd)


def test_two_processes_learn_and_write_what_one_process_does_on_the_same_global_batch(alone, tmp_path):
    one, alone_result = alone
    two = folder(tmp_path)
    result = ml(*RUN, 'num_processes=2', cwd=two)
    # the same weights within fp32 rounding (the two halves' gradients are averaged, not summed in one pass)
    for name, value in weights(one).items():
        torch.testing.assert_close(weights(two)[name], value, rtol=1e-5, atol=1e-6)
    # the evaluations, each process scoring half the test digits, add up to the one process's, step by step
    assert accuracies(two) == accuracies(one) and [step for step, _ in accuracies(two)] == ['10', '20']
    # process 0 alone wrote: the same files as one process, and its lines alone (no second process's)
    assert files(two) == files(one)
    assert untimed(result.stdout) == ('ML: 2 processes on this machine, started by torchrun (torch.distributed.run '
                                      '--standalone)\n' + untimed(alone_result.stdout))
    assert result.stderr == ''
    config = (run_dir(two) / 'config.yaml').read_text()
    assert 'num_processes: 2' in config and 'batch_size: 256' in config


def test_torchrun_starts_ml_as_one_process_of_several(alone, tmp_path):
    one, _ = alone
    two = folder(tmp_path)
    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                             '-m', 'ML', *RUN], cwd=two, capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, value in weights(one).items():
        torch.testing.assert_close(weights(two)[name], value, rtol=1e-5, atol=1e-6)
    assert accuracies(two) == accuracies(one) and files(two) == files(one)


def test_an_error_in_one_process_ends_the_run_in_one_line(tmp_path):
    cwd = folder(tmp_path)
    # process 1's loss turns nan on its forward pass 5 (learning step 4: pass 1 checked the model's shapes)
    result = ml(*RUN, 'num_processes=2', cwd=cwd, check=False, env={'PROBE': 'nan', 'PROBE_RANK': '1',
                                                                    'PROBE_AT': '5'})
    assert result.returncode == 1
    assert result.stderr.splitlines() == ['ML: NonFiniteLoss: loss is nan at step 4 (process 1 of 2)']
    assert (run_dir(cwd) / 'status').read_text() == 'crashed\n'
    assert 'loss is nan at step 4 (process 1 of 2)' in (run_dir(cwd) / 'crash.txt').read_text()
    assert not checkpoint(cwd).exists()


def test_a_signal_to_one_process_stops_every_process_on_one_step_and_the_run_resumes(alone, tmp_path):
    one, _ = alone
    cwd = folder(tmp_path)
    # process 1 alone gets SIGTERM on its forward pass 7 (learning step 6): both save at step 6 and stop there
    result = ml(*RUN, 'num_processes=2', cwd=cwd, check=False, env={'PROBE': 'sigterm', 'PROBE_RANK': '1',
                                                                    'PROBE_AT': '7'})
    assert result.returncode == 143, result.stderr[-3000:]
    assert 'ML: Interrupted: SIGTERM at step 6: saved Checkpoints' in result.stderr
    assert (run_dir(cwd) / 'status').read_text() == 'interrupted\n'
    assert torch.load(checkpoint(cwd), weights_only=True)['counters']['step'] == 6
    # every process resumes from the checkpoint process 0 wrote, and ends where an uninterrupted run ends
    ml(*RUN, 'num_processes=2', 'load=true', cwd=cwd)
    for name, value in weights(one).items():
        torch.testing.assert_close(weights(cwd)[name], value, rtol=1e-5, atol=1e-6)
    assert accuracies(cwd) == accuracies(one)


def test_several_processes_are_the_ml_commands_or_a_launchers(user_dir):
    with pytest.raises(ConfigError, match=r'num_processes=2: the ML command starts the processes .* torchrun '
                                          r'--nproc_per_node 2'):
        ML.launch('num_processes=2', 'progress=false')
    with pytest.raises(ConfigError, match=r'num_processes=2: the ML command starts the processes'):
        ML.launch('task=RL', 'Env=CartPole-v1', 'num_processes=2', 'progress=false')
    assert not (user_dir / 'Benchmarking').exists()


# Reinforcement learning: DQN on CartPole, each process stepping one env of its own; epsilon held at 1 (every action
# uniformly random from the agent's own generator), so that process 0 acts as a run of one process does
RL = ['task=RL', 'Env=CartPole-v1', 'train_steps=60', 'learn_after=16', 'batch_size=8', 'eval_per_steps=30',
      'eval_episodes=3', 'log_per_steps=20', 'agent.epsilon_end=1.0', 'progress=false']
DQN = dict(agent='DQN', suite='gym', task='CartPole-v1')

RL_PROBE = '''
    import os
    import signal

    from torch import nn

    CALLS = [0]


    class Model(nn.Linear):
        """A linear Q head on CartPole's 4 numbers: in process $PROBE_RANK, its forward pass number $PROBE_AT (the
        online and the target network counted together) sends its own process SIGTERM."""

        def __init__(self, in_shape, out_shape):
            super().__init__(in_shape[0], out_shape[0])

        def forward(self, x):
            CALLS[0] += 1
            if os.environ.get('RANK') == os.environ.get('PROBE_RANK') and CALLS[0] == int(os.environ['PROBE_AT']):
                os.kill(os.getpid(), signal.SIGTERM)
            return super().forward(x)
'''


def rows(cwd: Path, name: str) -> list:
    with open(run_dir(cwd, **DQN) / name) as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope='module')
def alone_rl(tmp_path_factory):
    """The RL run in one process."""
    cwd = tmp_path_factory.mktemp('alone_rl')
    ml(*RL, cwd=cwd)
    return cwd


def test_two_processes_act_in_their_own_environments_and_count_every_frame_and_episode(alone_rl, tmp_path):
    result = ml(*RL, 'num_processes=2', cwd=tmp_path)
    assert result.stderr == ''
    assert files(tmp_path) == files(alone_rl)  # process 0 alone wrote, what one process writes
    # every step is one frame in each process: the budget and the counters are the run's, over both processes
    assert [(row['step'], row['frame']) for row in rows(tmp_path, 'train.csv')] == [('20', '40'), ('40', '80'),
                                                                                    ('60', '120')]
    assert [(row['step'], row['frame']) for row in rows(alone_rl, 'train.csv')] == [('20', '20'), ('40', '40'),
                                                                                    ('60', '60')]
    # the evaluation's 3 episodes are shared out (2 in process 0, 1 in process 1) and all of them scored
    assert [(row['step'], row['episodes']) for row in rows(tmp_path, 'eval.csv')] == [('30', '3'), ('60', '3')]
    # process 0's environment is where a run of one process leaves its own, after the same 60 steps
    two, one = (torch.load(checkpoint(cwd, **DQN), weights_only=False) for cwd in (tmp_path, alone_rl))
    assert torch.equal(two['world']['obs'], one['world']['obs'])
    assert torch.equal(two['world']['returns'], one['world']['returns'])
    # the episodes of both processes are counted: process 1's CartPole ends episodes too
    assert two['counters']['episode'] > one['counters']['episode']
    # on demand, both processes evaluate process 0's checkpoint: the same returns as in the run, where process 1
    # played its episode with its own networks, which the averaged gradients kept equal to process 0's
    ml(*RL, 'num_processes=2', 'evaluate=true', 'load=true', cwd=tmp_path)
    in_run, on_demand = rows(tmp_path, 'eval.csv')[-2:]
    assert on_demand['evaluation'] == 'on demand' and on_demand['episodes'] == '3'
    assert (on_demand['return'], on_demand['return_std']) == (in_run['return'], in_run['return_std'])


def test_a_signal_to_one_rl_process_stops_both_and_the_run_resumes_as_if_it_had_never_stopped(tmp_path):
    never = tmp_path / 'never'
    for cwd in (tmp_path, never):
        cwd.mkdir(exist_ok=True)
        (cwd / 'Probe.py').write_text(textwrap.dedent(RL_PROBE).lstrip())
    run = [*RL, 'Model=Probe.Model', 'num_processes=2']
    ml(*run, cwd=never)
    # process 1's forward pass 41 comes within learning (from step 16: two passes a step, after the shape check)
    result = ml(*run, cwd=tmp_path, check=False, env={'PROBE_RANK': '1', 'PROBE_AT': '41'})
    assert result.returncode == 143, result.stderr[-3000:]
    assert re.search(r'ML: Interrupted: SIGTERM at step \d+: saved Checkpoints', result.stderr)
    stopped = torch.load(checkpoint(tmp_path, **DQN), weights_only=False)['counters']['step']
    assert 16 < stopped < 60
    assert (run_dir(tmp_path, **DQN) / 'status').read_text() == 'interrupted\n'
    # process 1 saved its own replay beside process 0's, and the checkpoint names it
    assert (tmp_path / 'Datasets/ReplayBuffer/Exp/DQN/gym/CartPole-v1_1/process1/replay.json').is_file()
    resumed = ml(*run, 'load=true', cwd=tmp_path)
    assert 'new episodes' not in resumed.stdout and 'empty replay' not in resumed.stdout
    assert (run_dir(tmp_path, **DQN) / 'status').read_text() == 'completed\n'
    # each process took back its environments, replay, random generators and unlogged returns: the run's every
    # loss, return and evaluation is the uninterrupted run's
    for name in ('train.csv', 'eval.csv'):
        assert [{**row, 'time': ''} for row in rows(tmp_path, name)] == \
            [{**row, 'time': ''} for row in rows(never, name)]
    assert [(row['step'], row['frame']) for row in rows(tmp_path, 'train.csv')] == [('20', '40'), ('40', '80'),
                                                                                    ('60', '120')]


@pytest.mark.parametrize('agent, task, options', [
    ('DrQV2', 'Pendulum-v1', ['Env=Pendulum-v1', 'Agent=DrQV2']),
    ('DQN', 'CartPole-v1', ['Env=CartPole-v1', 'replay.prioritized=true', 'num_envs=3']),
])
def test_drqv2_and_prioritized_replay_learn_over_two_processes(agent, task, options, tmp_path):
    result = ml('task=RL', *options, 'num_processes=2', 'train_steps=40', 'learn_after=16', 'batch_size=8',
                'eval_episodes=3', 'eval_per_steps=20', 'log_per_steps=20', 'progress=false', cwd=tmp_path)
    assert 'ML: 40 steps, ' in result.stdout
    where = dict(agent=agent, suite='gym', task=task)
    with open(run_dir(tmp_path, **where) / 'eval.csv') as file:
        assert [(row['step'], row['episodes']) for row in csv.DictReader(file)] == [('20', '3'), ('40', '3')]
    with open(run_dir(tmp_path, **where) / 'train.csv') as file:
        learned = list(csv.DictReader(file))[-1]
    # learning ran (a loss logged) and each step acted in at least one env of each process's
    assert learned['step'] == '40' and float(learned[[key for key in learned if 'loss' in key][0]]) >= 0
    assert int(learned['frame']) >= 2 * 40

"""Resuming continues the run it resumes: a run killed and resumed with load=true writes the logs of one that never
stopped; a longer budget or a changed hyperparameter takes effect; every step is logged once."""
import csv
import textwrap

import pytest
import torch
import yaml

import ML
from conftest import checkpoint, ml, run_dir
from ML import resume
from ML.records import checkpoints
from ML.specs import Counters

KILLER = '''
    import os
    import signal

    from torch import nn


    class Model(nn.Module):
        """A linear head that kills its own process (SIGKILL, as kill -9 does) on forward pass number $KILL_AT."""

        def __init__(self, in_features, out_features):
            super().__init__()
            self.linear, self.calls = nn.Linear(in_features, out_features), 0

        def forward(self, x):
            self.calls += 1
            if self.calls == int(os.environ.get('KILL_AT', 0)):
                os.kill(os.getpid(), signal.SIGKILL)
            return self.linear(x.flatten(1))
'''


def rows(path) -> list:
    with open(path) as file:
        return list(csv.DictReader(file))


def without_time(table: list) -> list:
    return [{key: value for key, value in row.items() if key != 'time'} for row in table]


@pytest.fixture
def killer(user_dir):
    (user_dir / 'Killer.py').write_text(textwrap.dedent(KILLER).lstrip())
    return user_dir


RUNS = {
    'default-task': (['train_steps=300', 'save_per_steps=100', 'log_per_steps=25', 'eval_per_steps=50'],
                     dict(), '250'),
    'cartpole-dqn': (['task=RL', 'train_frames=1200', 'learn_after=200', 'save_per_steps=250', 'log_per_steps=50',
                      'eval_per_steps=300', 'eval_episodes=2', 'replay.save=true'],
                     dict(agent='DQN', suite='gym', task='CartPole-v1'), '400'),
}


@pytest.mark.parametrize('task', RUNS)
def test_a_run_killed_and_resumed_writes_the_logs_of_one_that_never_stopped(task, killer):
    line, where, kill_at = RUNS[task]
    line = ['Model=Killer.Model', 'progress=false', *line]
    ml(*line, 'experiment=Whole', cwd=killer)
    killed = ml(*line, 'experiment=Cut', cwd=killer, check=False, env={'KILL_AT': kill_at})
    assert killed.returncode == -9
    cut = run_dir(killer, experiment='Cut', **where)
    assert (cut / 'status').read_text() == 'running\n'  # a killed run cannot say more; its lock is free
    saved_at = torch.load(checkpoint(killer, experiment='Cut', **where), weights_only=True)['counters']['step']
    assert any(int(row['step']) > saved_at for row in rows(cut / 'train.csv'))  # rows the resumed run writes again

    resumed = ml(*line, 'experiment=Cut', 'load=true', cwd=killer)
    assert f'resuming Checkpoints/Cut/' in resumed.stdout and f'at step {saved_at}' in resumed.stdout
    whole = run_dir(killer, experiment='Whole', **where)
    for log in ('train.csv', 'eval.csv'):
        assert without_time(rows(cut / log)) == without_time(rows(whole / log)), log
        steps = [int(row['step']) for row in rows(cut / log)]
        assert steps == sorted(set(steps))  # every step once
        times = [float(row['time']) for row in rows(cut / log)]
        assert times == sorted(times)  # time goes on from where the checkpoint left it
    assert (cut / 'status').read_text() == 'completed\n'


def test_a_longer_budget_on_resume_goes_on_learning_with_its_schedule_rebuilt(user_dir):
    line = ['task=RL', 'train_frames=1000', 'learn_after=200', 'eval_per_steps=null', 'eval_episodes=1',
            'progress=false']
    where = dict(agent='DQN', suite='gym', task='CartPole-v1')
    ml(*line, cwd=user_dir)
    before = torch.load(checkpoint(user_dir, **where), weights_only=True)
    assert before['stateful']['scheduler']['last_epoch'] == 400  # (1000 - 200) / learn_per_steps 2: the rate is 0
    resumed = ml(*line, 'train_frames=1600', 'load=true', cwd=user_dir)
    assert 'ML: this checkpoint was saved without its replay' in resumed.stdout
    after = torch.load(checkpoint(user_dir, **where), weights_only=True)
    scheduler = after['stateful']['scheduler']
    # the new budget's length: (1600 - 200) / 2; all of it but the 100 steps the emptied replay took to refill
    assert (scheduler['total_iters'], scheduler['last_epoch']) == (700, 600)
    changed = [name for name, weight in after['agent'].items() if not torch.equal(weight, before['agent'][name])]
    assert 'q.model.linear.weight' in changed or any(name.startswith('q.') for name in changed)


@pytest.mark.parametrize('make', [
    pytest.param(lambda optimizer, steps: torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=steps),
                 id='LinearLR'),
    pytest.param(lambda optimizer, steps: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps),
                 id='CosineAnnealingLR'),
])
def test_a_restored_schedule_has_the_rate_of_one_built_for_the_new_budget(make, tmp_path):
    class Agent(torch.nn.Module):
        def __init__(self, steps, lr=0.1):
            super().__init__()
            self.net = torch.nn.Linear(2, 1)
            self.optim = torch.optim.SGD(self.parameters(), lr=lr)
            self.scheduler = make(self.optim, steps)

    def stepped(agent, n):
        for _ in range(n):
            agent.optim.step()
            agent.scheduler.step()
        return agent

    checkpoints.save(tmp_path / 'a.pt', stepped(Agent(100), 60), {}, Counters(step=60))
    resumed = Agent(150)  # a longer run: the schedule is 150 steps long now
    checkpoints.restore(resumed, checkpoints.read(tmp_path / 'a.pt'), tmp_path / 'a.pt')
    uninterrupted = stepped(Agent(150), 60)
    assert resumed.optim.param_groups[0]['lr'] == uninterrupted.optim.param_groups[0]['lr'] > 0
    assert resumed.scheduler.last_epoch == 60


def test_a_hyperparameter_changed_on_resume_takes_effect_and_is_recorded(user_dir):
    ml('lr=1e-6', 'train_steps=5', 'eval_per_steps=null', 'progress=false', cwd=user_dir)
    result = ml('lr=0.05', 'train_steps=30', 'eval_per_steps=null', 'progress=false', 'load=true', cwd=user_dir)
    assert 'lr 1e-06 -> 0.05' in result.stdout and 'train_steps 5 -> 30' in result.stdout
    state = torch.load(checkpoint(user_dir), weights_only=True)
    assert state['stateful']['optim']['param_groups'][0]['lr'] == 0.05
    config = yaml.safe_load((run_dir(user_dir) / 'config.yaml').read_text())
    assert config['lr'] == 0.05 and config['provenance']['resumed'][0]['step'] == 5
    assert float(rows(run_dir(user_dir) / 'eval.csv')[-1]['accuracy']) > 0.85  # at 1e-6 it stays near 0.1


def test_an_optimizer_replaced_on_resume_starts_afresh_and_says_so(user_dir):
    ml('train_steps=5', 'eval_per_steps=null', 'progress=false', cwd=user_dir)
    result = ml('train_steps=10', 'Optim=torch.optim.SGD', 'eval_per_steps=null', 'progress=false', 'load=true',
                cwd=user_dir)
    assert 'ML: optim is now SGD (was Adam): its state starts afresh' in result.stdout


def test_resuming_a_finished_run_trains_nothing_and_writes_nothing(user_dir):
    line = ['train_steps=20', 'eval_per_steps=10', 'log_per_steps=5', 'progress=false']
    ml(*line, cwd=user_dir)
    files = {path: path.read_bytes() for path in [*run_dir(user_dir).iterdir(), checkpoint(user_dir)]
             if path.is_file()}
    again = ml(*line, 'load=true', cwd=user_dir)
    assert again.stdout.splitlines() == [  # a smaller budget, or another lr, asks no more either
        'ML: Benchmarking/Exp/Classifier/classify/Digits_1 completed at step 20, as far as train_steps=20 goes: '
        'nothing to train (a larger budget goes on; evaluate=true evaluates it)']
    ml('train_steps=10', 'lr=0.1', *line[1:], 'load=true', cwd=user_dir)
    assert {path: path.read_bytes() for path in files} == files  # config.yaml still says what trained it


def test_a_crash_in_the_final_evaluation_keeps_the_training(user_dir):
    # Crash.Model fails on forward pass 22: one shape check, 20 learning steps, then the final evaluation
    result = ml('Model=Crash.Model', 'train_steps=20', 'eval_per_steps=null', 'progress=false', cwd=user_dir,
                check=False, env={'CRASH_AFTER': '21'})
    assert result.returncode == 1 and 'FloatingPointError' in result.stderr
    assert (run_dir(user_dir) / 'status').read_text() == 'crashed\n'
    assert torch.load(checkpoint(user_dir), weights_only=True)['counters']['step'] == 20


def test_the_agent_returned_or_loaded_is_in_eval_mode(user_dir):
    agent = ML.launch(train_steps=5, eval_per_steps=None, progress=False, Model='MLP', model={'dropout': 0.5})
    assert not agent.training and not any(module.training for module in agent.modules())
    loaded = ML.load_agent('Exp Digits')
    assert not loaded.training
    obs = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.act(obs, None), agent.act(obs, None))


def test_the_resume_line_writes_changed_values_as_the_command_line_does(tmp_path):
    before, now = {'channels_last': None, 'save': True, 'lr': 1e-6}, {'channels_last': False, 'save': True, 'lr': 0.05}
    said = resume.line(tmp_path / 'Digits_1.pt', Counters(step=5), before, now, tmp_path)
    assert said == 'resuming Digits_1.pt at step 5 (changed: channels_last null -> false, lr 1e-06 -> 0.05)'

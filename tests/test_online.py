"""The online half of the loop through the real ML command: vector envs, stream, video, replays saved and loaded,
offline learning, and the resume of an interrupted run with its replay."""
import csv

import pytest
import torch

import ML
from conftest import ml, run_dir
from ML.cli import main

QUICK = ['task=RL', 'progress=false', 'eval_episodes=2', 'learn_after=100', 'batch_size=16']


def rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def cartpole(user_dir, **names):
    return run_dir(user_dir, agent='DQN', suite='gym', task='CartPole-v1', **names)


def replay_dir(user_dir, experiment='Exp'):
    return user_dir / 'Datasets' / 'ReplayBuffer' / experiment / 'DQN' / 'gym' / 'CartPole-v1_1'


def test_several_environments_step_together(user_dir):
    main([*QUICK, 'num_envs=4', 'train_frames=800', 'eval_per_steps=null'])
    evaluation = rows(cartpole(user_dir) / 'eval.csv')
    assert int(evaluation[-1]['frame']) >= 800 and int(evaluation[-1]['step']) <= 800 // 4 + 20


def test_stream_learns_from_each_step_without_a_replay(user_dir):
    main([*QUICK, 'stream=true', 'train_frames=300', 'log_per_steps=50', 'eval_per_steps=null'])
    train = rows(cartpole(user_dir) / 'train.csv')
    assert train and all(row['loss'] for row in train[1:])
    assert not (user_dir / 'Datasets').exists()


def test_stream_refuses_a_replay_option(user_dir, capsys):
    with pytest.raises(SystemExit):
        main([*QUICK, 'stream=true', 'replay.save=true'])
    assert 'stream=true learns without a replay' in capsys.readouterr().err


def test_video_records_the_first_evaluation_episode(user_dir):
    pytest.importorskip('moviepy')
    pytest.importorskip('pygame')
    main([*QUICK, 'video=true', 'train_steps=200', 'train_frames=null', 'eval_per_steps=100'])
    media = sorted((cartpole(user_dir) / 'media').iterdir())
    assert [path.name for path in media] == ['step-100.mp4', 'step-200.mp4']
    assert all(path.stat().st_size > 1000 for path in media)


def test_a_saved_replay_resumes_an_interrupted_run_and_feeds_offline_learning(user_dir):
    main([*QUICK, 'train_frames=400', 'replay.save=true', 'eval_per_steps=null'])
    saved = replay_dir(user_dir)
    assert saved.is_dir() and any(saved.iterdir())
    state = torch.load(user_dir / 'Checkpoints/Exp/DQN/gym/CartPole-v1_1.pt', weights_only=True)
    assert state['counters']['frame'] == 400

    # resume: the counters continue from the checkpoint and the replay comes back with them
    main([*QUICK, 'train_frames=600', 'replay.save=true', 'load=true', 'eval_per_steps=null'])
    assert int(rows(cartpole(user_dir) / 'eval.csv')[-1]['frame']) == 600

    # offline: learning from the saved replay alone, never acting
    main([*QUICK, 'offline=true', 'train_steps=30', 'train_frames=null', 'eval_per_steps=null'])
    evaluation = rows(cartpole(user_dir) / 'eval.csv')
    assert (evaluation[-1]['step'], evaluation[-1]['frame']) == ('30', str(30 * 16))  # frames: samples learned from


def test_offline_without_a_saved_replay_says_how_to_make_one(user_dir):
    result = ml(*QUICK, 'offline=true', 'experiment=Fresh', cwd=user_dir, check=False)
    assert result.returncode == 1
    assert "offline=true: no saved replay at" in result.stderr and 'replay.save=true' in result.stderr


USER_ENV_AND_AGENT = '''
import gymnasium
import numpy as np
import torch
from torch import nn


class Corridor(gymnasium.Env):
    """Walk right to the end of a corridor: reward 1 there, and the episode ends."""

    def __init__(self, length=5):
        self.length, self.position = length, 0
        self.observation_space = gymnasium.spaces.Box(0, length, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return np.array([self.position], np.float32), {}

    def step(self, action):
        self.position = max(0, self.position + (1 if action == 1 else -1))
        done = self.position == self.length
        return np.array([self.position], np.float32), float(done), done, False, {}


class Right(nn.Module):
    """An agent of the user's: always right; learns nothing but counts its batches."""

    def __init__(self, eyes, model, action_spec, bias=1.0):
        super().__init__()
        self.net, self.bias, self.batches, self.learned_at = nn.Sequential(eyes, model), bias, 0, []

    def act(self, obs, counters, greedy=False):
        return torch.ones(len(obs), dtype=torch.int64)

    def learn(self, batch, counters):
        self.batches += 1
        self.learned_at.append(counters.step)
        return {'batches': self.batches, 'reward': batch.reward.mean().item()}
'''


def test_a_users_environment_and_agent_by_path(user_dir):
    (user_dir / 'Mine.py').write_text(USER_ENV_AND_AGENT)
    main([*QUICK, 'Env=Mine.Corridor', 'env.length=3', 'Agent=Mine.Right', 'agent.bias=2', 'train_frames=200',
          'learn_after=10', 'eval_per_steps=null', 'log_per_steps=50'])
    folder = run_dir(user_dir, agent='Right', suite='gym', task='Corridor')
    assert float(rows(folder / 'eval.csv')[-1]['return']) == 1.0  # always right: every episode reaches the end
    # task=RL learns every 2 agent steps once 10 transitions are in: steps 10, 12, ..., 198; reset steps are no steps
    assert float(rows(folder / 'train.csv')[-1]['batches']) == 95


def test_learn_steps_learn_several_times_every_learn_per_steps(user_dir):
    (user_dir / 'Mine.py').write_text(USER_ENV_AND_AGENT)
    agent = ML.launch(*QUICK, 'Env=Mine.Corridor', 'Agent=Mine.Right', 'num_envs=2', 'train_steps=60',
                      'train_frames=null', 'learn_after=10', 'learn_per_steps=4', 'learn_steps=3',
                      'eval_per_steps=null')
    steps = sorted(set(agent.learned_at))
    assert all(step % 4 == 0 for step in steps) and steps[-1] == 56, 'every 4th loop step, to the end'
    assert steps[0] == 4, 'from the step whose transitions fill the replay to learn_after (loop steps 0-4, 2 each)'
    assert agent.learned_at == [step for step in steps for _ in range(3)], '3 learning steps each time'


def test_a_continuous_env_under_the_dqn_recipe_names_the_agent_that_fits(user_dir, capsys):
    with pytest.raises(SystemExit):
        main([*QUICK, 'Env=Pendulum-v1'])
    assert 'Agent=DQN picks among discrete actions' in capsys.readouterr().err


def test_a_continuous_gymnasium_env_runs_with_drqv2_on_states(user_dir):
    main([*QUICK, 'Env=Pendulum-v1', 'Agent=DrQV2', 'train_frames=150', 'learn_after=50', 'eval_episodes=1',
          'eval_per_steps=null', 'log_per_steps=50'])
    train = rows(run_dir(user_dir, agent='DrQV2', suite='gym', task='Pendulum-v1') / 'train.csv')
    assert int(train[-1]['frame']) == 150 and train[-1]['critic_loss']

"""The RL room: gymnasium world, replay and DQN, checked on a dummy env whose numbers can be worked out by hand."""
import functools

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

from conftest import loggable
from ML.agents.dqn import DQN
from ML.errors import ConfigError, PathError
from ML.specs import Batch, Counters, Spec
from ML.world.gym import GymWorld
from ML.world.replay import Replay


class CountingEnv(gymnasium.Env):
    """Observations count up: episode k of the env seeded s shows 10000 * (s + 1) + 100 * k + t at its t-th state
    (t = 1, 2, ...), and the transition from state t pays reward t. Its episodes take length + s transitions and
    end in a termination, or in a truncation (a time limit) when terminate is False."""
    observation_space = gymnasium.spaces.Box(0, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, length=4, terminate=True):
        self.base_length, self.terminate = length, terminate
        self.base, self.length, self.episode, self.t = 10000, length, 0, 0

    def _obs(self):
        return np.array([self.base + 100 * self.episode + self.t], np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.base, self.length, self.episode = 10000 * (seed + 1), self.base_length + seed, 0
        self.episode, self.t = self.episode + 1, 1
        return self._obs(), {}

    def step(self, action):
        reward, self.t = float(self.t), self.t + 1
        ended = self.t == self.length + 1
        return self._obs(), reward, ended and self.terminate, ended and not self.terminate, {}


class Zeros:
    """An agent that always picks action 0."""
    def act(self, obs, counters, greedy=False):
        return torch.zeros(len(obs), dtype=torch.int64)


def fill(world, replay, steps):
    """Step the world and store what it returns, as the loop does; return the steps."""
    counters, record = Counters(), []
    for _ in range(steps):
        step = world.step(Zeros(), counters)
        replay.add(step)
        record.append(step)
        counters.frame += world.num_envs
    return record


def check_nstep(batch, gamma, nstep, base_length, terminate):
    """Every sampled n-step transition of CountingEnv, checked against its closed form."""
    obs, next_obs = batch.obs[:, 0].numpy(), batch.next_obs[:, 0].numpy()
    t, seed = obs % 100, obs // 10000 - 1
    n = next_obs - obs  # within an episode each state is one more than the last; across a reset it jumps by 100
    last_t = t + n - 1
    assert ((n >= 1) & (n <= nstep)).all(), f'windows of {n} steps'
    ended = last_t == base_length + seed
    expected_reward = sum(gamma ** i * (t + i) * (i < n) for i in range(nstep))
    expected_discount = np.where(ended & terminate, 0.0, gamma ** n)
    np.testing.assert_allclose(batch.reward.numpy(), expected_reward, rtol=1e-6)
    np.testing.assert_allclose(batch.discount.numpy(), expected_discount, rtol=1e-6)
    return t, n


@pytest.mark.parametrize('terminate', [True, False], ids=['terminated', 'truncated'])
def test_nstep_returns_match_a_hand_computation(terminate):
    # one env, episodes of 4 transitions, nstep 3, gamma 0.5; each episode takes 5 vector steps (4 + the reset
    # step), so 15 steps end right after the last transition of episode 3 and no window reaches the newest row
    world = GymWorld(CountingEnv, seed=0, terminate=terminate)
    replay = Replay(world.obs_spec, world.action_spec, capacity=100, batch_size=1000, nstep=3, gamma=0.5)
    fill(world, replay, 15)
    assert len(replay) == 12
    batch = replay.sample()
    t = batch.obs[:, 0].numpy() % 100
    # state t: (reward, discount after termination, discount after truncation, steps to next_obs)
    by_hand = {1: (1 + .5 * 2 + .25 * 3, .125, .125, 3),
               2: (2 + .5 * 3 + .25 * 4, 0., .125, 3),   # the 3 steps reach the episode's end
               3: (3 + .5 * 4, 0., .25, 2),
               4: (4., 0., .5, 1)}
    assert set(t) == set(by_hand), 'every state is sampled'
    for state, (reward, discount_terminated, discount_truncated, n) in by_hand.items():
        rows = t == state
        assert torch.allclose(batch.reward[rows], torch.tensor(reward))
        discount = discount_terminated if terminate else discount_truncated
        assert torch.allclose(batch.discount[rows], torch.tensor(discount))
        assert torch.equal(batch.next_obs[rows], batch.obs[rows] + n)
    assert batch.action.dtype == torch.int64 and batch.obs.dtype == torch.float32
    world.close()


def test_a_window_stops_at_the_newest_transition():
    world = GymWorld(CountingEnv, seed=0, length=50)
    replay = Replay(world.obs_spec, world.action_spec, batch_size=64, nstep=3, gamma=0.5)
    fill(world, replay, 2)
    batch = replay.sample()
    newest_first = batch.obs[:, 0] % 100 == 1
    assert torch.allclose(batch.reward[newest_first], torch.tensor(1 + .5 * 2))  # 2 steps so far, not 3
    assert torch.allclose(batch.discount[newest_first], torch.tensor(.25))
    world.close()


def test_autoreset_step_is_not_a_transition():
    world = GymWorld(CountingEnv, seed=0, length=3)
    replay = Replay(world.obs_spec, world.action_spec, capacity=1000, batch_size=500)
    steps = fill(world, replay, 12)
    for before, step in zip(steps, steps[1:]):
        ended = before.terminated | before.truncated
        assert (step.valid == ~ended).all(), 'the step after an episode ends is the reset step, and only that one'
        assert ((step.next_obs == step.obs + 1).all(axis=1) == step.valid).all()
    assert [r for step in steps for r in step.episode_returns] == [1 + 2 + 3] * 3
    batch = replay.sample()
    assert torch.equal(batch.next_obs, batch.obs + 1), 'no sampled transition spans a reset'
    world.close()


@pytest.mark.parametrize('terminate', [True, False], ids=['terminated', 'truncated'])
def test_two_envs_with_episodes_ending_at_different_steps(terminate):
    # env 0 runs episodes of 3 transitions, env 1 of 4; a small ring wraps several times
    world = GymWorld(CountingEnv, num_envs=2, seed=0, length=3, terminate=terminate)
    assert world.num_envs == 2 and world.name == 'CountingEnv'
    replay = Replay(world.obs_spec, world.action_spec, capacity=40, batch_size=4000, nstep=3, gamma=0.9)
    steps = fill(world, replay, 57)
    assert replay.full and len(replay) <= 40
    assert sorted(set(r for step in steps for r in step.episode_returns)) == [1 + 2 + 3, 1 + 2 + 3 + 4]
    t, n = check_nstep(replay.sample(), gamma=0.9, nstep=3, base_length=3, terminate=terminate)
    assert set(n) == {1, 2, 3} and set(t) == {1, 2, 3, 4}
    world.close()


def test_unknown_env_id_names_it_and_the_closest_ids():
    with pytest.raises(PathError, match=r"Env='CartPol-v1' is not a registered gymnasium id.*'CartPole-v1'"):
        GymWorld('CartPol-v1')


def test_specs_come_from_the_spaces():
    world = GymWorld('CartPole-v1')
    assert world.obs_spec == Spec((4,), torch.float32)
    assert world.action_spec == Spec((), torch.int64, discrete=True, low=0, high=1)
    assert world.suite == 'gym' and world.name == 'CartPole-v1'
    world.close()
    world = GymWorld('MountainCarContinuous-v0')  # bounds of [-1, 1] already: kept as they are
    assert world.action_spec == Spec((1,), torch.float32, discrete=False, low=-1.0, high=1.0)
    assert not isinstance(world.eval_env, gymnasium.wrappers.RescaleAction)
    world.close()


def q_network(hidden=128):
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def test_dqn_acts_and_learns_without_touching_the_counters():
    torch.manual_seed(0)
    spec = Spec((), torch.int64, discrete=True, low=0, high=1)
    agent = DQN(nn.Identity(), q_network(), functools.partial(torch.optim.Adam, lr=1e-3), spec,
                epsilon_frames=100, target_update_per_steps=5)
    obs, counters = torch.randn(64, 4), Counters(step=5, frame=50)
    assert torch.equal(agent.act(obs, counters, greedy=True), agent.q(obs).argmax(1))
    assert agent.epsilon(0) == 1.0 and agent.epsilon(50) == pytest.approx(0.52) and agent.epsilon(10**6) == 0.04
    assert agent.act(obs, Counters()).unique().numel() == 2, 'epsilon 1 explores both actions'
    batch = Batch(obs, torch.randint(2, (64,)), torch.ones(64), torch.full((64,), 0.99), torch.randn(64, 4))
    metrics = agent.learn(batch, counters)
    assert counters == Counters(step=5, frame=50)
    assert set(metrics) >= {'loss', 'q', 'epsilon'}
    assert loggable(metrics)
    assert all(torch.equal(a, b) for a, b in zip(agent.q.parameters(), agent.target_q.parameters())), \
        'step 5 refreshes the target'


def test_dqn_refuses_a_continuous_action_space():
    with pytest.raises(ConfigError, match='Agent=DQN picks among discrete actions'):
        DQN(nn.Identity(), q_network(), torch.optim.Adam, Spec((1,), low=-2.0, high=2.0))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP runs faster on one thread than split over two
    yield
    torch.set_num_threads(threads)


def test_dqn_learns_cartpole(one_thread):
    # the loop of ML/run.py, in miniature: act, store, count, learn every learn_per_steps once learn_after
    # frames are stored; 10k frames take ~10 s here and reach greedy returns of 160-320 over seeds 1-7
    frames, learn_after, learn_per_steps = 10_000, 1000, 4
    torch.manual_seed(1)
    world = GymWorld('CartPole-v1', seed=1)
    replay = Replay(world.obs_spec, world.action_spec, batch_size=128, seed=1)
    agent = DQN(nn.Identity(), q_network(), functools.partial(torch.optim.Adam, lr=1e-3), world.action_spec)
    counters = Counters()
    while counters.frame < frames:
        step = world.step(agent, counters)
        replay.add(step)
        counters.frame += world.num_envs
        counters.episode += len(step.episode_returns)
        if (len(replay) >= learn_after) and (counters.step % learn_per_steps == 0):
            agent.learn(replay.sample(), counters)
        counters.step += 1
    result = world.evaluate(agent, counters)
    world.close()
    assert result['episodes'] == 10
    assert result['return'] > 100, f'greedy return {result["return"]:.1f} after {frames} frames (random: ~22)'


def test_box_actions_of_other_bounds_are_rescaled_to_the_unit_range():
    world = GymWorld('Pendulum-v1')
    assert (world.action_spec.low, world.action_spec.high) == (-1.0, 1.0)
    world.eval_env.reset(seed=0)
    world.eval_env.step(np.array([1.0], np.float32))
    assert world.eval_env.unwrapped.last_u == pytest.approx(2.0), "the agent's +1 is Pendulum's full torque"
    world.close()


def test_an_env_whose_dependency_is_missing_says_what_to_install(monkeypatch):
    def missing(*args, **kwargs):
        raise gymnasium.error.DependencyNotInstalled('Box2D is not installed, you can install it by run `pip install '
                                                     'swig` followed by `pip install "gymnasium[box2d]"`')
    monkeypatch.setattr(gymnasium, 'make', missing)
    with pytest.raises(ConfigError, match=r"^Env='LunarLander-v3': Box2D is not installed.*pip install 'ML\[box2d\]'"):
        GymWorld('LunarLander-v3')

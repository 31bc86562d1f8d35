"""The replay, checked against gymnasium's own frame stacking and against returns worked out by hand."""
import functools

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.wrappers import FrameStackObservation, ReshapeObservation

from ML.specs import Counters, Spec
from ML.world.gym import GymWorld
from ML.world.replay import Replay
from ML.world.sumtree import SumTree


class Frames(gymnasium.Env):
    """Tiny uint8 frames that say where they are: pixels (seed, episode, t, channel) at the t-th state (t = 1, 2,
    ...) of episode k of the env seeded s. The transition from state t pays reward(t); episodes take length + s
    transitions and end in a termination, or a truncation (a time limit) when terminate is False."""
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, shape=(2, 2), length=4, terminate=True, reward=float):
        self.observation_space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
        self.base_length, self.terminate, self.reward = length, terminate, reward
        self.seed, self.length, self.episode, self.t = 0, length, 0, 0

    def _obs(self):
        frame = np.array([[self.seed, self.episode], [self.t, 0]], np.uint8)
        shape = self.observation_space.shape
        return frame if len(shape) == 2 else np.stack([frame + np.uint8([[0, 0], [0, c]]) for c in range(shape[0])])

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.seed, self.length, self.episode = seed, self.base_length + seed, 0
        self.episode, self.t = self.episode + 1, 1
        return self._obs(), {}

    def step(self, action):
        reward, self.t = self.reward(self.t), self.t + 1
        ended = self.t == self.length + 1
        return self._obs(), reward, ended and self.terminate, ended and not self.terminate, {}


def stacked(frame_stack, shape, **kwargs):
    """Frames stacked by gymnasium on the first axis (Atari: (4, 84, 84) from 84x84 frames; DMC: (9, 84, 84) from
    3 frames of 3 channels), with the attribute the world reads the stack from."""
    env = FrameStackObservation(Frames(shape, **kwargs), frame_stack)  # padding_type='reset', the default
    env = ReshapeObservation(env, (frame_stack * shape[0] if len(shape) == 3 else frame_stack, *shape[-2:]))
    env.frame_stack = frame_stack
    return env


class Zeros:
    def act(self, obs, counters, greedy=False):
        return torch.zeros(len(obs), dtype=torch.int64)


def fill(world, replay, steps):
    record = [world.step(Zeros(), Counters()) for _ in range(steps)]
    for step in record:
        replay.add(step)
    return record


def transitions(record, nstep):
    """Every (obs, next_obs) pair an n-step return of 1..nstep steps can span, as bytes, per env."""
    pairs = set()
    for env in range(len(record[0].reward)):
        for i, first in enumerate(record):
            for last in record[i:i + nstep]:
                if not (first.valid[env] and last.valid[env]):
                    break
                pairs.add((first.obs[env].tobytes(), last.next_obs[env].tobytes()))
                if last.terminated[env] or last.truncated[env]:
                    break
    return pairs


def pairs_of(batch):
    return [(o.tobytes(), n.tobytes()) for o, n in zip(batch.obs.numpy(), batch.next_obs.numpy())]


@pytest.mark.parametrize('shape, frame_stack', [((2, 2), 4), ((3, 2, 2), 3), ((2, 2), 1)],
                         ids=['atari-like', 'dmc-like', 'single-frame'])
@pytest.mark.parametrize('nstep, num_envs, prioritized', [(1, 1, False), (3, 2, False), (3, 2, True)])
def test_rebuilt_stacks_are_the_envs_own_observations(shape, frame_stack, nstep, num_envs, prioritized):
    # a ring of 40 rows per env wraps over episodes of 4-5 transitions, forgetting stacks that reach past its end
    world = GymWorld(functools.partial(stacked, frame_stack, shape, terminate=False), num_envs=num_envs, seed=0)
    assert world.frame_stack == frame_stack and world.obs_spec.dtype == torch.uint8
    replay = Replay(world.obs_spec, world.action_spec, capacity=40 * num_envs, batch_size=3000, nstep=nstep,
                    frame_stack=frame_stack, prioritized=prioritized)
    record = fill(world, replay, 100)
    batch = replay.sample()
    assert batch.obs.dtype == batch.next_obs.dtype == torch.uint8
    assert batch.obs.shape == batch.next_obs.shape == (3000, *world.obs_spec.shape)
    assert set(pairs_of(batch)) <= transitions(record, nstep), 'each stack is one the env showed, never a reset row'
    assert len(set(pairs_of(batch))) == len(replay), 'len(replay) counts what can be sampled (3000 draws see it all)'
    newest = batch.obs[:, -1].numpy().reshape(3000, -1)  # the newest frame's pixels: seed, episode, t, channel
    assert set(newest[:, 2]) == set(range(1, 4 + num_envs)), 'episode starts and middles (env i runs 4 + i steps)'
    starts = batch.obs[newest[:, 2] == 1].reshape(-1, frame_stack, np.prod(shape))
    assert (starts == starts[:, -1:]).all(), 'a stack at an episode start repeats its first frame'
    world.close()


@pytest.mark.parametrize('terminate', [True, False], ids=['terminated', 'truncated'])
@pytest.mark.parametrize('clip', [None, 3.0])
def test_nstep_returns_of_clipped_rewards_match_a_hand_computation(terminate, clip):
    # rewards 2, -4, 6, -8 on episodes of 4 transitions; clipped to [-3, 3]: 2, -3, 3, -3; nstep 3, gamma 0.5
    world = GymWorld(Frames, seed=0, terminate=terminate, reward=lambda t: 2.0 * t * (-1) ** (t + 1))
    replay = Replay(world.obs_spec, world.action_spec, capacity=100, batch_size=1000, nstep=3, gamma=0.5,
                    clip_reward=clip)
    record = fill(world, replay, 15)  # 3 episodes, each 4 transitions and a reset step
    assert len(replay) == 12
    assert [r for step in record for r in step.episode_returns] == [2 - 4 + 6 - 8] * 3, 'logged returns stay raw'
    batch = replay.sample()
    t = batch.obs[:, 1, 0].numpy()
    r = {1: 2, 2: -4, 3: 6, 4: -8} if clip is None else {1: 2, 2: -3, 3: 3, 4: -3}
    # state t: (return, discount after termination, discount after truncation, steps to next_obs)
    by_hand = {1: (r[1] + .5 * r[2] + .25 * r[3], .125, .125, 3),
               2: (r[2] + .5 * r[3] + .25 * r[4], 0., .125, 3),  # the 3 steps reach the episode's end
               3: (r[3] + .5 * r[4], 0., .25, 2),
               4: (r[4], 0., .5, 1)}
    assert set(t) == set(by_hand)
    for state, (reward, discount_terminated, discount_truncated, n) in by_hand.items():
        rows = t == state
        assert torch.allclose(batch.reward[rows], torch.tensor(float(reward)))
        assert torch.allclose(batch.discount[rows], torch.tensor(discount_terminated if terminate
                                                                 else discount_truncated))
        assert (batch.next_obs[rows, 1, 0] == state + n).all(), 'the final observation, kept past the reset'
        assert (batch.next_obs[rows, 0, 1] == batch.obs[rows, 0, 1]).all(), 'never the next episode'
    world.close()


def tiny_prioritized(**options):
    """One env, one long episode, 4 transitions stored (indices 0..3) with priorities 1, 1, 2, 4 and alpha 1."""
    world = GymWorld(Frames, seed=0, length=100)
    replay = Replay(world.obs_spec, world.action_spec, capacity=10, batch_size=4000, prioritized=True, alpha=1.0,
                    **options)
    fill(world, replay, 4)
    replay.update_priorities(torch.arange(4), torch.tensor([1.0, -1.0, 2.0, -4.0]))  # |TD error|
    return world, replay


def test_prioritized_sampling_follows_priorities_with_weights_annealed_to_one():
    world, replay = tiny_prioritized(beta=0.5, beta_steps=1)
    batch = replay.sample()
    assert batch.index.dtype == torch.int64 and batch.weight.dtype == torch.float32
    frequency = torch.bincount(batch.index, minlength=4) / 4000
    assert torch.allclose(frequency, torch.tensor([1, 1, 2, 4]) / 8, atol=0.01)
    assert torch.equal(batch.obs[:, 1, 0], batch.index.to(torch.uint8) + 1), 'index names the sampled transition'
    # weight (N P(i)) ** -beta over the batch's largest: P = 1/8, 1/8, 2/8, 4/8, beta 0.5 on the first call ...
    assert torch.allclose(batch.weight, torch.tensor([1, 1, 2 ** -.5, .5])[batch.index], rtol=1e-5)
    # ... and 1 once beta_steps calls have passed
    batch = replay.sample()
    assert torch.allclose(batch.weight, torch.tensor([1, 1, .5, .25])[batch.index], rtol=1e-5)
    # a new transition gets the highest priority yet (4): P = 1, 1, 2, 4, 4 over 12
    fill(world, replay, 1)
    frequency = torch.bincount(replay.sample().index, minlength=5) / 4000
    assert torch.allclose(frequency, torch.tensor([1, 1, 2, 4, 4]) / 12, atol=0.01)
    world.close()


def test_sum_tree_sums_and_searches_like_numpy():
    rng = np.random.default_rng(0)
    values = rng.random(1000)
    tree = SumTree(values.copy())
    for _ in range(300):  # batches with repeated leaves, as a prioritized batch has: the later value counts
        leaf, value = rng.integers(1000, size=64), rng.random(64)
        tree[leaf] = value
        for one, v in zip(leaf, value):
            values[one] = v
    assert tree.total == pytest.approx(values.sum(), rel=1e-12)
    mass = rng.random(5000) * values.sum()
    assert np.array_equal(tree.find(mass), np.searchsorted(np.cumsum(values), mass, side='right'))


def test_uniform_replay_has_no_priorities():
    world = GymWorld(Frames, seed=0)
    replay = Replay(world.obs_spec, world.action_spec, batch_size=8)
    fill(world, replay, 3)
    batch = replay.sample()
    assert batch.weight is None and batch.index is None
    with pytest.raises(ValueError, match='replay.prioritized=false'):
        replay.update_priorities(torch.arange(8), torch.ones(8))
    world.close()


def test_save_and_load_sample_identically_and_a_killed_save_loses_nothing(tmp_path, monkeypatch):
    world = GymWorld(functools.partial(stacked, 3, (3, 2, 2)), num_envs=2, seed=0)
    options = dict(capacity=60, batch_size=64, nstep=3, gamma=0.9, frame_stack=3, prioritized=True, seed=5)
    replay = Replay(world.obs_spec, world.action_spec, **options)
    record = fill(world, replay, 50)
    replay.update_priorities(replay.sample().index, 5 * torch.rand(64))
    record += fill(world, replay, 5)  # at the highest priority so far
    folder = tmp_path / 'Datasets/ReplayBuffer/Exp/DQN/gym/Frames_0'
    replay.save(folder)

    def same(a, b):
        return all(torch.equal(x, y) if x is not None else y is None for x, y in zip(a, b))

    loaded, untouched = Replay.load(folder, seed=7), Replay.load(folder, seed=7)
    replay.rng = np.random.default_rng(7)  # the same seed state on both sides
    assert len(loaded) == len(replay) and all(same(replay.sample(), loaded.sample()) for _ in range(3))

    # a save killed while writing its arrays leaves the previous one whole
    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(np, 'save', killed)
    with pytest.raises(KeyboardInterrupt):
        replay.save(folder)
    monkeypatch.undo()
    again = Replay.load(folder, seed=7)
    assert same(untouched.sample(), again.sample())
    again.save(folder)
    assert len(list(folder.glob('data-*'))) == 1, 'the half-written save is cleared away'

    # resumed, with a fresh world: the stored episodes end where the replay stopped, and none runs into the new
    fresh = GymWorld(functools.partial(stacked, 3, (3, 2, 2)), num_envs=2, seed=0)
    more = fill(fresh, again, 7)
    assert set(pairs_of(again.sample())) <= transitions(record, 3) | transitions(more, 3)
    with pytest.raises(ValueError, match=r'replay.load: .* holds a replay with capacity=60, not 50'):
        Replay.load(folder, capacity=50)
    world.close()
    fresh.close()


def test_memory_per_transition_is_about_one_frame():
    replay = Replay(Spec((4, 84, 84), torch.uint8), Spec((), torch.int64, True, 0, 5), capacity=1000, frame_stack=4)
    world_step = dict(obs=np.zeros((1, 4, 84, 84), np.uint8), action=np.zeros(1, np.int64), reward=np.zeros(1),
                      next_obs=np.zeros((1, 4, 84, 84), np.uint8), terminated=np.zeros(1, bool),
                      truncated=np.zeros(1, bool), valid=np.ones(1, bool))
    replay.add(type('Step', (), world_step))
    stored = sum(array.nbytes for array in vars(replay).values() if isinstance(array, np.ndarray))
    assert 84 * 84 <= stored / 1000 < 1.01 * 84 * 84, f'{stored / 1000:.0f} bytes per transition'


@pytest.mark.parametrize('key, value, message', [
    ('nstep', 0, 'must be >= 1'), ('gamma', 1.5, r'must be in \[0, 1\]'), ('batch_size', 0, 'must be >= 1'),
    ('capacity', 0, 'must be >= 1'), ('frame_stack', 3, 'must divide the first axis of observations shaped'),
    ('clip_reward', 0, 'must be null or > 0'), ('alpha', -1, 'must be >= 0'), ('beta', 2, r'must be in \[0, 1\]'),
    ('beta_steps', 0, 'must be >= 1')])
def test_bad_options_are_refused_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=f'replay.{key}={value} {message}'):
        Replay(Spec((4, 84, 84), torch.uint8), Spec((), torch.int64, True, 0, 1), **{key: value})


def test_a_ring_too_small_or_too_large_says_so(monkeypatch):
    world = GymWorld(Frames, num_envs=2, seed=0)
    replay = Replay(world.obs_spec, world.action_spec, capacity=5, nstep=3)
    with pytest.raises(ValueError, match='replay is empty'):
        replay.sample()
    with pytest.raises(ValueError, match=r'replay.capacity=5 keeps 2 steps of each of 2 envs, fewer than nstep=3'):
        fill(world, replay, 1)
    monkeypatch.setattr('psutil.virtual_memory', lambda: type('Memory', (), {'available': 10 ** 6}))
    with pytest.warns(UserWarning, match=r'replay.capacity=100000 needs 0.\d+ GB, 0.00 GB available'):
        fill(world, Replay(world.obs_spec, world.action_spec), 1)
    world.close()


def test_a_checkpoint_and_its_replay_are_one_unit(tmp_path):
    """The arrays are written first, the checkpoint names them, then they become the folder's replay: a kill
    between the two leaves the last committed pair, and a resumed replay samples where the saved one would have."""
    world = GymWorld(functools.partial(stacked, 3, (3, 2, 2)), num_envs=2, seed=0)
    replay = Replay(world.obs_spec, world.action_spec, capacity=40, batch_size=8, frame_stack=3, seed=3)
    fill(world, replay, 10)
    folder = tmp_path / 'replay'
    committed = replay.save(folder)
    fill(world, replay, 5)
    uncommitted = replay.save_arrays(folder)  # killed here: its checkpoint was never written
    assert Replay.load(folder).size == committed['size'] < uncommitted['size']  # the folder's replay is the pair's
    resumed = Replay.load(folder, state=uncommitted, restart=False)  # a checkpoint that did commit, resumed
    assert all(torch.equal(a, b) for a, b in zip(resumed.sample(), replay.sample()) if a is not None)
    replay.commit(folder, uncommitted)
    assert [path.name for path in folder.glob('data-*')] == [uncommitted['data']]
    world.close()

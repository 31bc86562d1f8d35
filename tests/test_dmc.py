"""DeepMind Control as DrQ-v2 sees it, the DrQ-v2 update on a tiny batch, and the real ML command on both."""
import csv
import functools
import math
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from conftest import ml, run_dir
from gymnasium.utils.env_checker import check_env

# without dm_control, or without the library MUJOCO_GL renders with, the ImportError says what to install
pytest.importorskip('ML.world.dmc', exc_type=ImportError)

from ML.agents.drqv2 import Actor, DrQV2, Encoder, linear_schedule  # noqa: E402
from ML.blocks.cnn import CNN  # noqa: E402
from ML.blocks.mlp import MLP  # noqa: E402
from ML.errors import ConfigError, PathError  # noqa: E402
from ML.specs import Batch, Counters, Spec  # noqa: E402
from ML.world.dmc import DMC  # noqa: E402

TINY_RUN = ['train_frames=60', 'learn_after=16', 'batch_size=8', 'replay.capacity=100', 'eval_episodes=1',
            'eval_per_steps=null', 'log_per_steps=10', 'env.episode_length=20', 'agent.num_expl_frames=16',
            'progress=false']  # 30 agent steps in episodes of 10, 8 updates on batches of 8: a few seconds


@pytest.fixture(scope='module')
def renders():
    """Pixel tests need an OpenGL renderer; without a GPU, MUJOCO_GL=egl renders on Mesa's (libgl1-mesa-dri)."""
    env = DMC('walker_walk')
    try:
        env.reset(seed=0)
    except (ImportError, RuntimeError, OSError) as error:
        pytest.skip(f'cannot render DeepMind Control here: {error}')
    env.close()


# ---- the environment -------------------------------------------------------------------------------------------

def test_pixels_are_three_84x84_frames_stacked_on_the_channel_axis(renders):
    env = DMC('walker_walk')
    obs, _ = env.reset(seed=1)
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert (env.suite, env.task, env.frame_stack) == ('dmc', 'walker_walk', 3)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32)
    assert (obs[:3] == obs[3:6]).all() and (obs[3:6] == obs[6:]).all()  # a new episode repeats its first frame
    next_obs, *_ = env.step(np.ones(6, np.float32))
    assert (next_obs[:6] == obs[3:]).all()     # the stack slides: the newest frame is the last 3 channels
    assert (next_obs[6:] != obs[6:]).any()     # and it shows the walker moved
    env.close()


def test_a_video_renders_larger_frames_at_the_speed_of_the_simulation(renders):
    env = DMC('walker_walk', render_mode='rgb_array')
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8 and frame.std() > 0
    assert env.metadata['render_fps'] == 20  # an action lasts 2 simulator steps of 0.025 s
    env.close()
    with pytest.raises(ConfigError, match="env.render_mode=human: DMC renders rgb_array images, or nothing"):
        DMC('walker_walk', render_mode='human')


def test_the_same_seed_gives_the_same_first_frame(renders):
    first, again, other = DMC('walker_walk'), DMC('walker_walk'), DMC('walker_walk')
    frame = first.reset(seed=3)[0]
    assert (again.reset(seed=3)[0] == frame).all()
    assert (other.reset(seed=4)[0] != frame).any()
    first.step(np.zeros(6, np.float32))
    assert (first.reset(seed=3)[0] == frame).all()  # reseeding restarts the same episode
    for env in (first, again, other):
        env.close()


def test_states_instead_of_pixels_with_one_flag():
    env = DMC('walker_walk', pixels=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (24,) and obs.dtype == np.float32 and env.frame_stack == 1  # walker: 14 + 1 + 9 values


def test_an_action_repeats_for_two_simulator_steps_and_sums_their_rewards():
    twice, once = DMC('walker_walk', pixels=False), DMC('walker_walk', pixels=False, action_repeat=1)
    twice.reset(seed=0), once.reset(seed=0)
    action = np.linspace(-1, 1, 6, dtype=np.float32)
    obs, reward, *_ = twice.step(action)
    steps = [once.step(action) for _ in range(2)]
    assert reward == pytest.approx(steps[0][1] + steps[1][1]) and reward > 0
    np.testing.assert_allclose(obs, steps[1][0], rtol=1e-6)  # the same two simulator steps


def test_episodes_are_1000_simulator_steps_ended_by_truncation():
    env = DMC('cartpole_balance', pixels=False)
    env.reset(seed=0)
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(500)]  # 500 agent steps of 2
    assert all(end == (False, False) for end in ends[:-1]) and ends[-1] == (False, True)
    short = DMC('cartpole_balance', pixels=False, episode_length=7)  # the last action repeats once
    short.reset(seed=0)
    assert [short.step(np.zeros(1, np.float32))[3] for _ in range(4)] == [False, False, False, True]


@pytest.mark.parametrize('task, domain_actions, camera', [('ball_in_cup_catch', 2, 0), ('point_mass_easy', 2, 0),
                                                          ('quadruped_walk', 12, 2)])
def test_tasks_whose_domains_hold_underscores(task, domain_actions, camera):
    env = DMC(task, pixels=False)
    assert env.task == task and env.action_space.shape == (domain_actions,) and env.camera == camera


@pytest.mark.parametrize('task, message', [
    ('walker_wlak', r"env.task=walker_wlak: not a DeepMind Control task \(did you mean 'walker_walk'"),
    ('cup_catch', r"env.task=cup_catch: .*did you mean 'ball_in_cup_catch'"),
], ids=['typo', 'drqv2-alias'])
def test_an_unknown_task_names_the_closest(task, message):
    with pytest.raises(PathError, match=message):
        DMC(task)


@pytest.mark.parametrize('pixels', [False, True], ids=['states', 'pixels'])
def test_gymnasiums_env_checker_passes(pixels, request):
    if pixels:
        request.getfixturevalue('renders')
    env = DMC('walker_walk', pixels=pixels)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', '.*Box observation space m')  # states are unbounded: -inf..inf
        check_env(env, skip_render_check=True)
    env.close()


def test_no_task_says_which_key_to_set():
    with pytest.raises(ConfigError, match=r'env.task: DMC needs a task, e.g. Env=DMC \+env.task=walker_walk'):
        DMC()


# ---- the agent -------------------------------------------------------------------------------------------------

PIXELS, ACTIONS = Spec((9, 84, 84), torch.uint8), Spec((2,), torch.float32, low=-1.0, high=1.0)


def drqv2(obs_spec=PIXELS, eyes=None, model=None, **kwargs):
    """A DrQV2 as the engine builds it, with 32-wide hidden layers to stay fast."""
    eyes = eyes or Encoder(obs_spec.shape)
    features = eyes(torch.zeros(1, *obs_spec.shape)).shape[1:]
    model = model or Actor(features, ACTIONS.shape, hidden_dim=32)
    return DrQV2(eyes, model, functools.partial(torch.optim.Adam, lr=1e-3), obs_spec, ACTIONS, hidden_dim=32,
                 **kwargs)


def fake_batch(obs_spec=PIXELS, size=4):
    generator = torch.Generator().manual_seed(0)
    if obs_spec.dtype == torch.uint8:
        obs, next_obs = torch.randint(0, 256, (2, size, *obs_spec.shape), generator=generator, dtype=torch.uint8)
    else:
        obs, next_obs = torch.randn(2, size, *obs_spec.shape, generator=generator)
    return Batch(obs=obs, action=torch.rand(size, 2, generator=generator) * 2 - 1,
                 reward=torch.rand(size, generator=generator), discount=torch.full((size,), 0.99 ** 3),
                 next_obs=next_obs)


def test_the_encoder_gives_drqv2s_features():
    assert Encoder((9, 84, 84))(torch.zeros(2, 9, 84, 84)).shape == (2, 32 * 35 * 35)  # drqv2's repr_dim


def test_act_gives_actions_in_bounds_random_at_first_then_the_mean_plus_noise():
    torch.manual_seed(0)
    agent, obs = drqv2(num_expl_frames=100), fake_batch(size=3).obs
    greedy = agent.act(obs, Counters(frame=0), greedy=True)
    assert greedy.shape == (3, 2) and (agent.act(obs, Counters(frame=0), greedy=True) == greedy).all()
    for frame in (0, 100):  # uniform before num_expl_frames, then around the mean
        action = agent.act(obs, Counters(frame=frame))
        assert action.shape == (3, 2) and action.abs().max() <= 1 and (action != greedy).any()
    noise = torch.stack([agent.act(obs, Counters(frame=10 ** 7)) - greedy for _ in range(50)])
    assert noise.std().item() == pytest.approx(0.1, rel=0.3)  # the schedule's end


def test_learn_updates_critic_and_actor_and_moves_the_target_by_tau():
    torch.manual_seed(0)
    agent, counters = drqv2(critic_target_tau=0.01), Counters(step=10, frame=5000)
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    actor_before = [p.clone() for p in agent.actor.parameters()]
    metrics = agent.learn(fake_batch(), counters)

    assert set(metrics) == {'critic_loss', 'actor_loss', 'q', 'target_q', 'batch_reward', 'stddev'}
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert counters == Counters(step=10, frame=5000)  # only the loop changes the counters
    for before, online, target in zip(target_before, agent.critic.parameters(), agent.critic_target.parameters()):
        torch.testing.assert_close(target, before + 0.01 * (online - before))  # lerp toward the critic
    assert any((before != after).any() for before, after in zip(actor_before, agent.actor.parameters()))
    assert not agent.critic_target.training


def test_the_exploration_noise_follows_its_schedule():
    agent = drqv2()  # drqv2's medium schedule: over 500k agent steps, 1M frames
    assert [agent.stddev(f) for f in (0, 500_000, 1_000_000, 10 ** 7)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert linear_schedule(0.2) == (0.2, 0.2, 1.0)
    with pytest.raises(ConfigError, match=r"agent.stddev_schedule='cosine\(1,0\)': give a number or 'linear"):
        linear_schedule('cosine(1,0)')


@pytest.mark.parametrize('action_spec', [Spec((), torch.int64, discrete=True, low=0, high=3),
                                         Spec((2,), torch.float32, low=-2.0, high=2.0)], ids=['discrete', 'bounds'])
def test_drqv2_refuses_actions_outside_minus_one_one(action_spec):
    fix = 'use Agent=DQN' if action_spec.discrete else 'RescaleAction'
    with pytest.raises(ConfigError, match=rf'Agent=DrQV2 acts in continuous actions bounded by \[-1, 1\].*{fix}'):
        DrQV2(torch.nn.Identity(), MLP((4,), (2,)), torch.optim.Adam, Spec((4,)), action_spec)


@pytest.mark.parametrize('obs_spec, eyes', [
    (Spec((9, 16, 16), torch.uint8), lambda: CNN((9, 16, 16), depth=2, stride=2)),   # Eyes=CNN on pixels
    (Spec((24,)), torch.nn.Identity),                                                  # no Eyes, on states
], ids=['cnn-eyes', 'states'])
def test_any_eyes_and_an_mlp_actor_learn(obs_spec, eyes):
    torch.manual_seed(0)
    eyes = eyes()
    features = eyes(torch.zeros(1, *obs_spec.shape)).shape[1:]
    agent = drqv2(obs_spec, eyes=eyes, model=MLP(features, ACTIONS.shape, hidden=32))
    batch = fake_batch(obs_spec)
    assert agent.act(batch.obs, Counters(frame=10 ** 6)).shape == (4, 2)
    assert all(math.isfinite(v) for v in agent.learn(batch, Counters()).values())


# ---- the ML command --------------------------------------------------------------------------------------------

def rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_ml_trains_drqv2_on_walker_walk_from_pixels(user_dir, renders):
    result = ml('task=dmc/walker_walk', *TINY_RUN, 'video=true', cwd=user_dir)
    folder = run_dir(user_dir, agent='DrQV2', suite='dmc', task='walker_walk')
    assert (folder / 'status').read_text() == 'completed\n', result.stderr
    assert '- 9\n      - 84\n      - 84\n      dtype: uint8' in (folder / 'config.yaml').read_text()
    assert math.isfinite(float(rows(folder / 'eval.csv')[-1]['return']))
    learned = [row for row in rows(folder / 'train.csv') if row['critic_loss']]
    assert learned and all(math.isfinite(float(row['critic_loss'])) for row in learned)
    videos = list((folder / 'media').glob('step-*.mp4'))  # the one evaluation's first episode
    assert len(videos) == 1 and videos[0].stat().st_size > 0


def test_ml_trains_drqv2_on_states_with_one_flag(user_dir):
    ml('task=dmc/cheetah_run', 'env.pixels=false', *TINY_RUN, cwd=user_dir)
    folder = run_dir(user_dir, agent='DrQV2', suite='dmc', task='cheetah_run')
    assert (folder / 'status').read_text() == 'completed\n'
    assert 'shape:\n      - 17\n      dtype: float32' in (folder / 'config.yaml').read_text()  # cheetah's state

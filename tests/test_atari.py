"""Atari: the preprocessing of Machado et al. (2018) and Mnih et al. (2015), human-normalized scores, the errors, and
a real run of the task=atari/pong recipe through the ML command."""
import csv

import numpy as np
import pytest
from conftest import ml, run_dir

from ML.errors import ConfigError, PathError
from ML.world.atari import RANDOM_AND_HUMAN, Atari


@pytest.fixture(scope='module')
def pong():
    env = Atari('pong')
    yield env
    env.close()


def test_observations_are_a_stack_of_four_84x84_grayscale_frames(pong):
    obs, _ = pong.reset(seed=0)
    assert pong.observation_space.shape == (4, 84, 84) and pong.observation_space.dtype == np.uint8
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert all((obs[0] == frame).all() for frame in obs)  # the stack starts as copies of the first frame
    next_obs, *_ = pong.step(0)
    assert (next_obs[:3] == obs[1:]).all()  # the oldest frame leaves, the newest comes in last


def test_the_environment_follows_machado_et_al(pong):
    ale = pong.unwrapped.ale
    assert ale.getFloat('repeat_action_probability') == 0.25  # sticky actions
    assert pong.unwrapped._frameskip == 1  # the emulator steps single frames: AtariPreprocessing skips and max-pools
    assert ale.getInt('max_num_frames_per_episode') == 108_000
    assert pong.action_space.n == 6  # Pong's own actions, not all 18
    assert (pong.suite, pong.task, pong.frame_stack) == ('atari', 'pong', 4)


def test_one_step_is_four_frames_and_episodes_start_after_1_to_30_noops(pong):
    starts = []
    for seed in range(10):
        pong.reset(seed=seed)
        starts.append(pong.unwrapped.ale.getEpisodeFrameNumber())  # the no-ops played before the first observation
    assert all(1 <= start <= 30 for start in starts) and len(set(starts)) > 3, starts
    before = pong.unwrapped.ale.getEpisodeFrameNumber()
    pong.step(0)
    assert pong.unwrapped.ale.getEpisodeFrameNumber() - before == 4


def test_rewards_are_not_clipped():
    # Space Invaders pays 5 to 30 points an alien: a random player scores within a few hundred steps
    env = Atari('SpaceInvaders', noop_max=0)
    env.reset(seed=0)
    env.action_space.seed(0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(300)]
    env.close()
    assert max(rewards) > 1, rewards


def test_episodes_are_truncated_at_max_episode_frames():
    env = Atari('pong', noop_max=0, max_episode_frames=80)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(20)]
    env.close()
    assert ends.index((False, True)) == 19  # 80 frames = 20 steps, cut by the time limit, not terminated


def test_human_normalized_scores_put_random_at_0_and_human_at_1(pong):
    assert len(RANDOM_AND_HUMAN) == 57
    assert pong.human_normalized(-20.7) == 0 and pong.human_normalized(14.6) == pytest.approx(1)
    breakout = Atari('breakout')
    assert breakout.human_normalized(1.7) == 0 and breakout.human_normalized(30.5) == pytest.approx(1)


def test_game_names_and_their_errors():
    space_invaders = Atari('SpaceInvaders')
    assert space_invaders.task == 'space_invaders' and space_invaders.human_normalized(148.0) == 0
    with pytest.raises(PathError, match=r"env.game=pongg: not an Atari game .* \(did you mean 'pong'\?\)"):
        Atari('pongg')
    with pytest.raises(ConfigError, match=r'env.game: Atari needs a game, e.g. env.game=pong'):
        Atari()
    # a game outside Atari-57 trains, and its evaluation logs raw returns alone
    tetris = Atari('tetris')
    with pytest.raises(AttributeError, match=r'env.game=tetris: no published random and human scores'):
        tetris.human_normalized(0)
    assert not hasattr(tetris, 'human_normalized')


def test_an_unknown_game_is_one_line_from_the_command(tmp_path):
    result = ml('task=RL', 'Env=Atari', '+env.game=space_invader', cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "ML: PathError: env.game=space_invader: not an Atari game"), result.stderr
    assert "did you mean 'space_invaders'" in result.stderr


def test_dqn_trains_on_both_recipes_in_one_sweep(tmp_path):
    # tiny budgets: 960 frames = 240 steps, learning from step 60; each evaluation episode cut at 400 frames
    ml('-m', 'task=atari/pong,atari/breakout', 'train_frames=960', 'learn_after=60', 'replay.capacity=500',
       'batch_size=4', 'eval_episodes=1', 'env.max_episode_frames=400', 'log_per_steps=40', 'progress=false',
       cwd=tmp_path)
    for game, (random, human) in [('pong', (-20.7, 14.6)), ('breakout', (1.7, 30.5))]:
        folder = run_dir(tmp_path, agent='DQN', suite='atari', task=game)
        assert (folder / 'status').read_text() == 'completed\n'
        evaluation = list(csv.DictReader((folder / 'eval.csv').open()))[-1]
        score = float(evaluation['return'])  # the game's own points (the learner alone clips rewards)
        assert float(evaluation['human_normalized']) == pytest.approx((score - random) / (human - random), abs=1e-5)
        train = list(csv.DictReader((folder / 'train.csv').open()))
        assert any(row.get('loss') for row in train)  # learning ran

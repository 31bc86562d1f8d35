"""mini=true: the whole pipeline in seconds, as Lightning's fast_dev_run checks a model before a long run.

    ML mini=true Eyes=CNN                 # build, learn a few steps, evaluate, save, reload; then the real run
    ML mini=true task=atari/pong

The run is the real one (the same build, loop, evaluation, logs and checkpoint) on a budget: LEARN_STEPS learning
steps on a few batches of the training data (TRAIN_BATCHES of batch_size samples, a seeded random subset) evaluated
on one batch of the test data; online, WARMUP transitions before learning starts (fewer if learn_after is lower),
then LEARN_STEPS learning steps, and one evaluation episode cut at EVAL_STEPS steps (gymnasium's TimeLimit). The
checkpoint is always saved, then reloaded into a new agent that must act as the trained one does.

Everything it writes goes to a fresh temporary folder (`tempfile.mkdtemp`, named ML-mini-...), laid out as the
working directory would be (Benchmarking/, Checkpoints/, Datasets/ReplayBuffer/) and named on the last line: a
check never mixes its logs or checkpoints with real runs, never moves a real run aside, and never counts as a
completed run that a sweep or `load=true` would pick up. Datasets still download to ./Datasets, where the real run
finds them. The operating system clears the temporary folder; nothing else does, so that it can be looked at.
"""
import math
import tempfile
import time
from pathlib import Path

import torch

from ML.errors import ConfigError, RunError
from ML.specs import RunResult

LEARN_STEPS = 4       # learning steps of the check
TRAIN_BATCHES = 2     # batches of training data offline: the loop goes over its end, as an epoch does
WARMUP = 32           # online: transitions collected before learning starts, at most
EVAL_STEPS = 100      # online: env steps of the one evaluation episode, at most
REPLAY_CAPACITY = 10_000  # online: transitions the replay keeps, at most (Atari's million would be a GB to lay out)


def refuse_sweep(overrides: list):
    """-m with mini=true: ConfigError (a check is one run; a sweep's table would land in the real experiment)."""
    from ML.language.compose import OVERRIDE
    for override in overrides:
        match = OVERRIDE.match(override)
        if match and match.group('key') == 'mini' and str(match.group('value')).strip().lower() != 'false':
            raise ConfigError(f'{override}: checks one run, and a sweep writes its table into the '
                              f'experiment; run it without -m (one value of each swept key)')


def settings(config: dict) -> dict:
    """The config with the check's budget (see the module's docstring). Raises ConfigError for what a fresh folder
    cannot give: its own checkpoint (load=true) or a saved replay (offline, replay.load)."""
    if config['load'] is True:
        raise ConfigError('load=true: mini=true runs in a fresh folder, which holds no checkpoint of its own; give '
                          'load=path.pt (a real checkpoint is read, never written) or drop load')
    for key, value in (('offline', config['offline']), ('replay.load', config['replay']['load'])):
        if value:
            raise ConfigError(f'{key}=true: mini=true runs in a fresh folder, which holds no saved replay; drop {key}')
    budget = {'train_steps': LEARN_STEPS, 'train_frames': None, 'eval_per_steps': None, 'log_per_steps': 1,
              'save': True, 'save_per_steps': None}
    if config['Env'] is not None:
        warmup = min(config['learn_after'], WARMUP)
        if not config['stream']:  # loop steps to fill the replay to learn_after, then those that learn
            budget['train_steps'] = math.ceil(warmup / config['num_envs']) + config['learn_per_steps'] * (
                math.ceil(LEARN_STEPS / config['learn_steps']))
        budget.update(learn_after=warmup, eval_episodes=1,
                      replay={**config['replay'], 'capacity': min(config['replay']['capacity'], REPLAY_CAPACITY)})
    return {**config, **budget}


def few(train, test, batch_size: int, seed: int) -> tuple:
    """TRAIN_BATCHES batches of the training data and one of the test data, drawn at random with `seed`."""
    from torch.utils.data import Subset

    def some(dataset, size):
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        return Subset(dataset, order[:min(size, len(dataset))].tolist())
    return some(train, TRAIN_BATCHES * batch_size), some(test, batch_size)


def shorten(world):
    """An environment's evaluation episode cut at EVAL_STEPS steps (gymnasium's TimeLimit; an earlier limit of
    the env's own still ends it sooner)."""
    if world.online:
        import gymnasium
        world.eval_env = gymnasium.wrappers.TimeLimit(world.eval_env, max_episode_steps=EVAL_STEPS)
    return world


def check(config: dict, live: dict, train) -> RunResult:
    """The check: train(settings(config), live, root=<a fresh temporary folder>) (ML.training.train), then its
    checkpoint reloaded; prints the folder on the last line and returns the run's RunResult. Raises what train
    raises, and RunError when the reloaded agent acts otherwise than the trained one."""
    config = settings(config)
    scratch = Path(tempfile.mkdtemp(prefix='ML-mini-'))
    started = time.perf_counter()
    result = train(config, live, root=scratch)
    reload(result, live)
    print(f'ML: mini=true: built, learned, evaluated, saved and reloaded in {time.perf_counter() - started:.1f}s; '
          f'nothing written here: it is all in {scratch}')
    return result


def reload(result: RunResult, live: dict):
    """The run's checkpoint rebuilt into a new agent from the config it holds (as ML.load_agent does), which must act
    as the trained agent on a batch of random observations (greedily); RunError naming the checkpoint if not."""
    from ML.training import rebuilt_agent
    device = next(result.agent.parameters(), torch.zeros(0)).device
    again, specs = rebuilt_agent(result.checkpoint, live=live, device=str(device))
    obs_spec, generator = specs['obs_spec'], torch.Generator().manual_seed(0)
    if obs_spec.dtype.is_floating_point:
        obs = torch.rand(8, *obs_spec.shape, generator=generator).to(obs_spec.dtype)
    else:
        obs = torch.randint(0, 256, (8, *obs_spec.shape), generator=generator).to(obs_spec.dtype)
    obs = obs.to(device)
    trained, reloaded = (agent.act(obs, result.counters, greedy=True) for agent in (result.agent, again))
    if not torch.allclose(trained.float(), reloaded.float()):
        raise RunError(f'{result.checkpoint}: the agent reloaded from it acts otherwise than the trained one; its '
                       f'state_dict() misses some of the state it acts from')

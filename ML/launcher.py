"""launch(): the sources merged, composed and checked, then world -> specs -> agent -> replay -> logger, handed to
the loop. The only reader of the config: everything downstream gets plain arguments."""
import random
import sys
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml

from ML import run
from ML.builders import make_agent, make_replay, make_world
from ML.errors import ConfigError
from ML.language import compose
from ML.records import checkpoints, provenance
from ML.records.logger import Logger
from ML.specs import Counters, Spec


def launch(*overrides, **hyperparams):
    """Trains with the language of the command line and returns the agent.

        ML.launch('eyes.depth=5', task='classify', Model=my_model, Dataset='MNIST')

    Positional strings are overrides (`key=value`, or '-m' for a sweep, which returns every member's agent);
    keywords are values or live objects (an instance is used as
    it is, a class is built with its arguments). A script that calls launch also reads its own command line,
    which wins over the code: `python Run.py Eyes=CNN`.
    """
    code, live = compose.from_code(hyperparams)
    command_line = own_command_line()
    merged = compose.merge([*overrides, *code], [arg for arg in command_line if arg != '-m'])
    if '-m' in overrides or '-m' in command_line:
        from ML.sweep import sweep
        return sweep([o for o in merged if o != '-m'], live)
    return train(compose.compose(merged, Path.cwd()), live)


def own_command_line() -> list:
    """The overrides on the command line of the user's own script (`python Run.py Eyes=CNN`); none when Python
    runs an installed tool (pytest, a notebook kernel) or the ML command, which passes its own."""
    main_file = getattr(sys.modules.get('__main__'), '__file__', None)
    if not main_file or Path(sys.argv[0]).resolve() != Path(main_file).resolve():
        return []
    installed = {Path(p).resolve() for p in (sys.prefix, sys.exec_prefix, sys.base_prefix)}
    if any(parent in installed for parent in Path(main_file).resolve().parents):
        return []
    return [arg for arg in sys.argv[1:] if arg == '-m' or ('=' in arg and not arg.startswith('-'))]


def train(config: dict, live: dict = None):
    """One run of a composed config: build everything, then hand it to the loop. Returns the agent."""
    c = compose.live_objects(config, live or {})
    cwd = Path.cwd()
    device = _device(c['device'])
    _seed(c['seed'])

    # build: world -> specs -> agent -> replay (everything that can fail on bad input fails here, before any write)
    world = make_world(c, cwd, device)
    specs = {'obs_spec': world.obs_spec,
             **({'action_spec': world.action_spec} if world.online else {'label_spec': world.label_spec})}
    plain_specs = {key: spec.plain() for key, spec in specs.items()}
    agent = make_agent(c, specs, cwd, device)
    paths = run_paths(cwd, c, type(agent).__name__, world)
    replay = make_replay(c, world, device, paths.replay)

    counters = Counters()
    if c['load']:
        path = checkpoints.find(c['load'], paths.checkpoint, cwd / 'Checkpoints')
        state = checkpoints.read(path)
        checkpoints.restore(agent, state, path)
        counters = Counters(**state['counters'])
    else:
        _archive(paths.folder)
    folder = paths.folder

    # the run's folder: config.yaml with provenance, a status, and the logs
    folder.mkdir(parents=True, exist_ok=True)
    saved = {**config, 'provenance': {'seed': c['seed'], 'specs': plain_specs,
                                      'versions': provenance.versions(), 'git': provenance.git_state(cwd)}}
    (folder / 'config.yaml').write_text(yaml.safe_dump(saved, sort_keys=False))
    (folder / 'status').write_text('running\n')
    unit = 'step' if c['train_steps'] is not None or c['train_frames'] is None else 'frame'
    logger = Logger(folder, total=c['train_steps'] if unit == 'step' else c['train_frames'], unit=unit,
                    progress=c['progress'])

    if c['video']:
        world.video_folder = folder / 'media'
    keep_replay = c['replay']['save'] and world.online and not c['stream']

    def checkpoint(counters):
        if c['save']:
            checkpoints.save(paths.checkpoint, agent, {**config, 'specs': plain_specs}, counters)
        if keep_replay:  # with every checkpoint, so that an interrupted run resumes with its experience
            replay.save(paths.replay)

    started = time.perf_counter()
    try:
        evaluation = run.run(world, agent, replay, logger, counters,
                             train_steps=c['train_steps'], train_frames=c['train_frames'],
                             eval_per_steps=c['eval_per_steps'], log_per_steps=c['log_per_steps'],
                             save_per_steps=c['save_per_steps'],
                             learn_after=1 if c['stream'] else c['learn_after'], learn_per_steps=c['learn_per_steps'],
                             learn_steps=c['learn_steps'], offline=c['offline'],
                             checkpoint=checkpoint if c['save'] or keep_replay else None)
    except BaseException as error:
        logger.close()
        (folder / 'status').write_text('crashed\n')
        (folder / 'crash.txt').write_text(f'{type(error).__name__}: {error}\n\n{traceback.format_exc()}')
        raise
    finally:
        if hasattr(world, 'close'):
            world.close()
    logger.close()
    (folder / 'status').write_text('completed\n')
    scores = ', '.join(f'{key} {_score(key, value)}' for key, value in evaluation.items())
    saved_to = f', checkpoint {paths.checkpoint.relative_to(cwd)}' if c['save'] else ''
    print(f'ML: {counters.step} steps, {counters.frame} frames in {time.perf_counter() - started:.1f}s; '
          f'{"evaluation" if world.online else "test"} {scores}; logs {folder.relative_to(cwd)}{saved_to}')
    return agent


def _score(key, value) -> str:
    return f'{value:.2%}' if key == 'accuracy' else f'{value:.4g}' if isinstance(value, float) else str(value)


def _safe(name: str) -> str:
    return str(name).replace('/', '_').replace(' ', '_')


def _archive(folder: Path):
    """A fresh run never writes over an earlier run's logs: they move aside to <folder>~<time>."""
    if folder.is_dir() and any(folder.iterdir()):
        stamp, n = time.strftime('%Y%m%d-%H%M%S'), 0
        while (aside := folder.with_name(f'{folder.name}~{stamp}' + (f'-{n}' if n else ''))).exists():
            n += 1
        folder.rename(aside)


def _device(device: str) -> str:
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f'device={device}: not a device (auto, cpu, cuda, cuda:1, ...)') from error
    if parsed.type == 'cpu':
        return device
    backend = getattr(torch, parsed.type, None)  # torch.cuda, torch.mps, torch.xpu: each says what this machine has
    if backend is None or not hasattr(backend, 'is_available') or not backend.is_available():
        raise ConfigError(f'device={device}: this machine has no {parsed.type} device; use device=auto or cpu')
    count = backend.device_count() if hasattr(backend, 'device_count') else 1
    if parsed.index is not None and parsed.index >= count:
        raise ConfigError(f'device={device}: this machine has {count} {parsed.type} device{"s" if count > 1 else ""} '
                          f'({parsed.type}:0 to {parsed.type}:{count - 1})')
    return device


def _seed(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunPaths(NamedTuple):
    folder: Path       # Benchmarking/<experiment>/<Agent>/<suite>/<task>_<seed>/: config, logs, status, media
    checkpoint: Path   # Checkpoints/<experiment>/<Agent>/<suite>/<task>_<seed>.pt
    replay: Path       # Datasets/ReplayBuffer/<experiment>/<Agent>/<suite>/<task>_<seed>/


def run_paths(cwd: Path, c: dict, agent_name: str, world) -> RunPaths:
    where = Path(c['experiment'], agent_name, world.suite)
    run = f'{_safe(world.name)}_{c["seed"]}'
    return RunPaths(cwd / 'Benchmarking' / where / run, cwd / 'Checkpoints' / where / f'{run}.pt',
                    cwd / 'Datasets' / 'ReplayBuffer' / where / run)


def load_agent(path_or_words, **hyperparams):
    """The agent of a checkpoint, rebuilt from the config it holds (no data needed) and loaded.

    `path_or_words`: a path.pt, or words its path under ./Checkpoints holds (`'MyExp MNIST'`). Objects that
    were passed from code to the run are passed again here, by the same key (`Model=my_model`)."""
    cwd = Path.cwd()
    path = checkpoints.find(path_or_words, cwd / 'Checkpoints' / 'none.pt', cwd / 'Checkpoints')
    state = checkpoints.read(path)
    c = compose.live_objects({**state['config'], **hyperparams}, {})
    specs = {key: Spec.from_plain(spec) for key, spec in c.pop('specs').items()}
    agent = make_agent(c, specs, cwd, _device(c['device']))
    checkpoints.restore(agent, state, path)
    return agent

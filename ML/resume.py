"""What a run finds where it would write, and how it goes on from there: the settings that make a run the same run
(a sweep's member run again, load=true), a sweep member's state in its folder (fresh, resume or completed), load=true's
search for the sweep member of these settings, and the lines a resume prints. train() (ML/training.py) asks these
before it builds the rest, and writes nothing until they have answered.

A run's files (RunPaths) are named by its settings:

    Benchmarking/<experiment>/[<variant>/]<Agent>/<suite>/<task>_<seed>/   logs, config.yaml, status
    Checkpoints/<experiment>/[<variant>/]<Agent>/<suite>/<task>_<seed>.pt
    Datasets/ReplayBuffer/<experiment>/[<variant>/]<Agent>/<suite>/<task>_<seed>/
"""
import time
from pathlib import Path

import yaml

from ML.errors import CheckpointError
from ML.language.schema import show
from ML.records import checkpoints
from ML.records.logger import shown
from ML.records.run_folder import RunFolder, RunPaths, describe_owner
from ML.specs import Counters, RunResult


# settings a resumed run may change (the budget, the cadence of logs and saves, where it runs) without being another
# run: a sweep member, or load=true, matches its run on every other key
RESUMABLE = {'load', 'progress', 'device', 'variant', 'train_steps', 'train_frames', 'save', 'save_per_steps',
             'eval_per_steps', 'log_per_steps', 'eval_episodes', 'video', 'num_workers', 'num_processes',
             'evaluate', 'early_stop', 'save_best',
             'tensorboard', 'wandb', 'mlflow', 'tracking'}  # where a run is tracked


def _settings(config: dict) -> dict:
    """What makes a run this run: its config without provenance and the RESUMABLE keys."""
    return {key: value for key, value in config.items() if key not in RESUMABLE and key not in ('provenance', 'specs')}


def _saved_config(folder: Path) -> dict:
    try:
        return yaml.safe_load((folder / 'config.yaml').read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def member_state(paths: RunPaths, config: dict) -> str:
    """What a sweep member finds in its folder: 'completed' (the same settings and budget, done), 'resume' (an
    interrupted, crashed or killed run of the same settings with a checkpoint, or a completed shorter one), or
    'fresh' (nothing, or another run: it moves aside)."""
    status = RunFolder(paths).status()
    saved = _saved_config(paths.folder)
    if status is None or _settings(saved) != _settings(config) or not paths.checkpoint.is_file():
        return 'fresh'
    budget = ('train_steps', 'train_frames')
    if status == 'completed' and all(saved.get(key) == config.get(key) for key in budget):
        return 'completed'
    return 'resume'


def same_run(paths: RunPaths, config: dict) -> bool:
    """Whether the run in paths' folder has a checkpoint and this config's settings (RESUMABLE keys aside)."""
    return paths.checkpoint.is_file() and _settings(_saved_config(paths.folder)) == _settings(config)


def finished(paths: RunPaths, counters: Counters, train_steps=None, train_frames=None) -> bool:
    """Whether the run in paths' folder completed and its checkpoint's counters already reach this budget: resuming
    it would train nothing."""
    reached = ((train_steps is not None and counters.step >= train_steps)
               or (train_frames is not None and counters.frame >= train_frames))
    return reached and RunFolder(paths).status() == 'completed'


def budget(c: dict) -> str:
    """The budget a config sets, as its keys say it: `train_steps=300`."""
    return ' and '.join(f'{key}={c[key]}' for key in ('train_steps', 'train_frames') if c[key] is not None)


def completed(paths: RunPaths, agent, state: dict = None) -> RunResult:
    """A run an earlier one completed (a sweep's member, or load=true within its budget): its checkpoint's agent and
    its last evaluation. `state`: the checkpoint already read and restored into agent (None: read and restore it)."""
    path = paths.checkpoint
    if state is None:
        state = checkpoints.read(path)
        checkpoints.restore(agent, state, path)
    return RunResult(agent.train(False), dict((state.get('loop') or {}).get('evaluation') or {}),
                     Counters(**state['counters']), paths.folder, path, status='skipped')


def sweep_member_variant(cwd: Path, c: dict, agent_name: str, world, config: dict):
    """load=true for a run whose own checkpoint is missing: the variant of the sweep member of this experiment whose
    settings are this run's, when there is exactly one (None when there is none)."""
    own = run_paths(cwd, c, agent_name, world)
    experiment = cwd / 'Benchmarking' / c['experiment']
    pattern = f'*/{own.folder.relative_to(experiment)}/config.yaml'
    matches = [folder.parent for folder in experiment.glob(pattern)
               if _settings(_saved_config(folder.parent)) == _settings(config)]
    if len(matches) > 1:
        raise CheckpointError(f'load=true: several sweep members have these settings '
                              f'({", ".join(str(m.relative_to(cwd)) for m in matches)}); give variant=...')
    return matches[0].relative_to(experiment).parts[0] if matches else None


def run_paths(cwd: Path, c: dict, agent_name: str, world) -> RunPaths:
    """The run's files under `cwd`, named by its experiment, variant, agent, the world's suite and task, and seed."""
    where = Path(c['experiment'], *([c['variant']] if c['variant'] else []), agent_name, world.suite)
    run = f'{_safe(world.name)}_{c["seed"]}'
    return RunPaths(cwd / 'Benchmarking' / where / run, cwd / 'Checkpoints' / where / f'{run}.pt',
                    cwd / 'Datasets' / 'ReplayBuffer' / where / run)


def _safe(name: str) -> str:
    return str(name).replace('/', '_').replace(' ', '_')


def line(path: Path, counters, saved_config: dict, config: dict, cwd: Path) -> str:
    """What is resumed, from where, and which hyperparameters changed since the checkpoint."""
    changes = _changes(saved_config, config)
    changed = ', '.join(f'{key} {show(old)} -> {show(new)}' for key, (old, new) in changes.items())
    return f'resuming {shown(path, cwd)} at step {counters.step}' + (f' (changed: {changed})' if changed else '')


def _changes(saved: dict, now: dict, prefix: str = '') -> dict:
    """key -> (value in the checkpoint, value now), for every setting that differs (load and specs aside)."""
    found = {}
    for key in sorted(set(saved) | set(now)):
        name = f'{prefix}{key}'
        if name in ('load', 'specs', 'variant'):
            continue
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found.update(_changes(old, new, f'{name}.'))
        elif old != new:
            found[name] = (old, new)
    return found


def history(folder: Path, counters) -> list:
    """The resumes of this run so far (config.yaml's provenance.resumed), and this one."""
    resumes = list((_saved_config(folder).get('provenance') or {}).get('resumed') or [])
    return resumes + [{'step': counters.step, 'at': time.strftime('%Y-%m-%d %H:%M:%S')}]


def earlier_line(earlier, paths: RunPaths, cwd: Path) -> str:
    """A fresh run found a run that was killed (or interrupted) in its folder: what load=true would resume."""
    who = describe_owner(earlier.owner) if earlier.owner else 'a run'
    checkpoint = (f'load=true resumes it from {shown(paths.checkpoint, cwd)}' if paths.checkpoint.is_file()
                  else 'it left no checkpoint')
    ended = 'was killed' if earlier.status == 'running' else 'was interrupted'
    return (f'{shown(paths.folder, cwd)}: the run there ({who}) {ended}; {checkpoint}. '
            f'This fresh run moves it aside (<name>~<time>)')

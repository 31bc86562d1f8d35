"""The stored study of a search (optuna, on an RDB storage): opened or continued under a lock, trials with no verdict
asked again, and its best trial written as a recipe that `task=` loads.

    Benchmarking/<experiment>/search.db     the study (sqlite; search.storage may name a database server instead)
    Benchmarking/<experiment>/search.lock   held by the search running it (flock: freed however the process ends)
    Benchmarking/<experiment>/best.yaml     imports: [<task>, self] + the best trial's parameters and fixed overrides
"""
import fcntl
import json
import os
import socket
import time
from pathlib import Path

import yaml

from ML.errors import ConfigError, RunError
from ML.records.run_folder import describe_owner

NOT_IN_RECIPE = ('task', 'experiment', 'progress', 'load')  # best.yaml's own, or how a run shows and starts
STATES = {'COMPLETE': 'completed', 'PRUNED': 'pruned', 'FAIL': 'failed', 'RUNNING': 'running', 'WAITING': 'queued'}


def optuna():
    """optuna, quiet below warnings (ML prints each trial itself); ConfigError when it is not installed."""
    try:
        import optuna
    except ImportError as error:
        raise ConfigError("a search needs optuna 5: pip install -e '.[experiments]'") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(storage, experiment: str, cwd: Path) -> str:
    """search.storage, or the sqlite file Benchmarking/<experiment>/search.db of the working directory."""
    return storage or f'sqlite:///{cwd / "Benchmarking" / experiment / "search.db"}'


def storage(url: str):
    """The study's RDBStorage; sqlite waits up to a minute for a write held by a trial in another process."""
    engine = {'connect_args': {'timeout': 60}} if url.startswith('sqlite') else {}
    return optuna().storages.RDBStorage(url, engine_kwargs=engine)


def pruner(name: str):
    """median: stop a trial whose evaluation is worse than the median of earlier trials' at the same step, once 5
    trials have finished (the median stopping rule of Google Vizier, Golovin et al. 2017); none: never."""
    return optuna().pruners.MedianPruner() if name == 'median' else optuna().pruners.NopPruner()


def sampler(name: str, seed: int, trials_so_far: int):
    """tpe (Bergstra et al. 2011), random, or cmaes (Hansen 2016), seeded by the run's seed and the study's trials
    so far: a resumed search goes on with new draws instead of repeating its first ones."""
    import numpy as np
    seed = int(np.random.SeedSequence([seed, trials_so_far]).generate_state(1)[0])
    samplers = optuna().samplers
    if name == 'cmaes':
        try:
            import cmaes  # noqa: F401  optuna's CmaEsSampler is built on it
        except ImportError as error:
            raise ConfigError("search.sampler=cmaes needs the cmaes package: pip install -e '.[experiments]'") \
                from error
        return samplers.CmaEsSampler(seed=seed)
    return {'tpe': samplers.TPESampler, 'random': samplers.RandomSampler}[name](seed=seed)


def open_study(url: str, name: str, settings, space: dict, fixed: list):
    """The study `name`, made or continued. Continuing needs the objective, direction, space and fixed overrides it
    was made with (else its trials would not compare: ConfigError saying what changed); a study holding no
    completed or pruned trial is made again instead. The study records them as user attributes."""
    store = storage(url)
    from optuna.distributions import distribution_to_json
    search = {'objective': settings.objective, 'direction': settings.direction,
              'space': {key: distribution_to_json(param.distribution) for key, param in space.items()},
              'fixed': sorted(text for text in fixed if not key_of(text).startswith(('search.', 'progress')))}
    study = optuna().create_study(storage=store, study_name=name, direction=settings.direction, load_if_exists=True)
    earlier = {key: study.user_attrs.get(key) for key in search}
    if study.user_attrs and earlier != search:
        held = trials(study, 'COMPLETE', 'PRUNED')
        if held:
            raise ConfigError(f'{shown(url)}: its study {name} holds {len(held)} finished trials of another search '
                              f'({_differences(earlier, search)}); run the command that started it to continue it, '
                              f'or search under another experiment=')
        optuna().delete_study(study_name=name, storage=store)
        study = optuna().create_study(storage=store, study_name=name, direction=settings.direction)
    for key, value in search.items():
        study.set_user_attr(key, value)
    study.sampler = sampler(settings.sampler, settings.seed, len(study.get_trials(deepcopy=False)))
    study.pruner = pruner(settings.pruner)
    return study


def trials(study, *states: str) -> list:
    """The study's trials in these states (TrialState names: COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    return [trial for trial in study.get_trials(deepcopy=False) if trial.state.name in states]


def finished(study) -> int:
    """Trials that count towards search.trials: completed, pruned, or failed and not asked again."""
    asked_again = {trial.user_attrs.get('retry_of') for trial in study.get_trials(deepcopy=False)}
    return len(trials(study, 'COMPLETE', 'PRUNED')) + sum(
        trial.number not in asked_again for trial in trials(study, 'FAIL'))


def ask_again(study, number: int, params: dict):
    """A trial with no verdict (interrupted, or left running by a search that died) is failed, and its parameters
    queued to be asked first, as optuna's RetryFailedTrialCallback does (the new trial's retry_of names it)."""
    study.tell(number, state=optuna().trial.TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(params, user_attrs={'retry_of': number})


class Lock:
    """One search of a study at a time: an exclusive flock on Benchmarking/<experiment>/search.lock, which records
    its pid, host and start, and which the operating system frees however the process ends. While it is held, a trial
    the study calls running was left by a search that died. Raises RunError naming the search that holds it."""

    def __init__(self, path: Path, url: str):
        self.path, self.url, self.handle = path, url, None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, 'a+')
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = json.loads(self.handle.read() or '{}')
            self.handle.close()
            raise RunError(f'{shown(self.url)} is being searched by a running search ({describe_owner(owner)}); '
                           f'let it finish, or search under another experiment=') from None
        except OSError:  # a file system without locks (some network mounts): one search at a time is the user's care
            pass
        self.handle.truncate(0)
        self.handle.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.time()}))
        self.handle.flush()
        return self

    def __exit__(self, *exception):
        self.handle.close()


def write_best(study, space: dict, fixed: list, folder: Path, task: str, unsearch: bool):
    """folder/best.yaml: the study's best trial as a minimal recipe, written whole or not at all; nothing while no
    trial has completed. It imports `task` (the recipe searched), then sets experiment <experiment>_best (so that
    retraining it over seeds does not mix its runs with the search's), the fixed overrides that say what is trained
    (not search.*, nor NOT_IN_RECIPE), and the best parameters. `unsearch`: the imported recipe sets search.trials,
    which best.yaml clears."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    completed = trials(study, 'COMPLETE')
    if not completed:
        return
    best, experiment = study.best_trial, study.study_name
    recipe = {'experiment': f'{experiment}_best'}
    for override in OverridesParser.create().parse_overrides(fixed):
        key = override.key_or_group
        if not (override.is_delete() or key in NOT_IN_RECIPE or key.startswith(('search.', 'hydra'))):
            _nest(recipe, key, override.value())
    for name, param in space.items():
        _nest(recipe, name, param.value(best.params[name]))
    if unsearch:
        recipe['search'] = {'trials': None}
    relative = folder.relative_to(Path.cwd())
    header = (f'# The best trial of the search {relative}/search.db (study {experiment}): trial {best.number}, '
              f'{score_text(study.user_attrs["objective"], best.value)}, of {len(completed)} completed.\n'
              f'# Retrain it over seeds: ML -m task={relative}/best seed=1,2,3,4,5\n')
    temporary = folder / '.best.yaml.tmp'
    imports = yaml.safe_dump({'imports': [task, 'self']}, default_flow_style=None)  # imports: [classify, self]
    temporary.write_text(header + imports + yaml.safe_dump(recipe, sort_keys=False))
    os.replace(temporary, folder / 'best.yaml')


def summary(study, searched: int, folder: Path) -> str:
    """One line: the study's trials by state, the best one, and how to retrain it."""
    counts = {}
    for trial in study.get_trials(deepcopy=False):
        counts[STATES[trial.state.name]] = counts.get(STATES[trial.state.name], 0) + 1
    held = ', '.join(f'{n} {state}' for state, n in counts.items())
    if not counts.get('completed'):
        return f'search {study.study_name}: {held}; no trial completed'
    best, relative = study.best_trial, folder.relative_to(Path.cwd())
    return (f'search {study.study_name}: {held} (search.trials={searched}); best: trial {best.number}, '
            f'{score_text(study.user_attrs["objective"], best.value)} ({params_text(best.params)}); '
            f'retrain it: ML -m task={relative}/best seed=1,2,3,4,5')


# ---- words ----------------------------------------------------------------------------------------------------

def key_of(override: str) -> str:
    return override.lstrip('+~').split('=', 1)[0]


def score_text(objective: str, value) -> str:
    return f'{objective} {value:.2%}' if objective == 'accuracy' else f'{objective} {value:.4g}'


def params_text(params: dict) -> str:
    return ' '.join(f'{key}={value:.4g}' if isinstance(value, float) else f'{key}={value}'
                    for key, value in params.items())


def shown(url: str) -> str:
    """A sqlite file as a path relative to the working directory; another storage as its URL."""
    path = Path(url.removeprefix('sqlite:///')) if url.startswith('sqlite:///') else None
    return str(path.relative_to(Path.cwd())) if path is not None and path.is_relative_to(Path.cwd()) else url


def _nest(recipe: dict, key: str, value):
    """recipe['model']['hidden'] = value, for the key model.hidden."""
    *parents, last = key.split('.')
    for parent in parents:
        recipe = recipe.setdefault(parent, {})
    recipe[last] = value


def _differences(earlier: dict, now: dict) -> str:
    """What a command changes in a stored search: its objective, direction, the space of which keys, which fixed
    overrides."""
    changes = [f'{key} {earlier.get(key)} -> {now[key]}' for key in ('objective', 'direction')
               if earlier.get(key) != now[key]]
    old_space, new_space = earlier.get('space') or {}, now['space']
    changed = sorted(name for name in {*old_space, *new_space} if old_space.get(name) != new_space.get(name))
    if changed:
        changes.append(f'the space of {", ".join(changed)}')
    old_fixed, new_fixed = set(earlier.get('fixed') or ()), set(now['fixed'])
    if old_fixed != new_fixed:
        changes.append(f'{" ".join(sorted(old_fixed - new_fixed)) or "nothing"} -> '
                       f'{" ".join(sorted(new_fixed - old_fixed)) or "nothing"}')
    return '; '.join(changes)

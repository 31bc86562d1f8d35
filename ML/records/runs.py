"""The runs under a folder, read back from what each left on disk: config.yaml, train.csv, eval.csv and status.

A run is any folder holding train.csv or eval.csv, at any depth. Folders named `<run>~<date-time>` hold logs that a
later run of the same name moved aside (RunFolder.move_aside): they are superseded, and skipped with all they hold.
"""
import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ML.records.trackers import flatten

COUNTERS = ('step', 'frame', 'episode', 'epoch', 'time')
NOT_SCORES = {'eval': {'return_std', 'episodes', 'evaluation', 'checkpoint'}, 'train': set()}  # a row's details
PERCENT = {'accuracy'}  # logged as a fraction, reported as a percentage
LOGS = ('train.csv', 'eval.csv')
MOVED_ASIDE = re.compile(r'~\d{8}-\d{6}(-\d+)?$')  # the suffix RunFolder.move_aside gives an earlier run's folder
# keys that say how a run was run, not what was learned: runs differing only in these are the same method
NOT_HYPERPARAMETERS = {'seed', 'experiment', 'progress', 'device', 'save', 'save_per_steps', 'load',
                       'video', 'replay.save', 'replay.load', 'log_per_steps', 'eval_per_steps', 'train_steps',
                       'train_frames', 'evaluate', 'save_best', 'tensorboard', 'wandb', 'mlflow', 'tracking.project',
                       'tracking.entity', 'tracking.group', 'tracking.tags', 'tracking.uri', 'tracking.log_model'}


@dataclass
class Run:
    """One run's identity and logs. `train` and `eval` map each CSV column to a float64 array of shape (rows,),
    NaN where a row left it blank (a loss before learning starts). `online`: the run acted in an environment, so
    its curves are drawn over environment frames, not learning steps."""
    folder: Path
    experiment: str
    agent: str
    suite: str
    task: str
    seed: int | str
    online: bool
    status: str
    hyperparameters: dict = field(repr=False)  # the config, flattened to dotted keys (`replay.nstep`)
    train: dict = field(repr=False)
    eval: dict = field(repr=False)
    variant: str = ''  # the hyperparameters that set this run apart from others of its method (`lr=0.01`)

    @property
    def x(self) -> str:
        """The counter curves are drawn over: `frame` online, `step` offline."""
        return 'frame' if self.online else 'step'

    def scores(self, split: str) -> list:
        """The metrics of `split` ('train' or 'eval'): its columns but the counters and the evaluation's details."""
        return [column for column in getattr(self, split) if column not in COUNTERS and column not in NOT_SCORES[split]]

    def series(self, split: str, metric: str) -> tuple:
        """(x, y) of a metric, float64 arrays of shape (rows,): x in frames or steps, y as reported (accuracy in
        percent)."""
        log = getattr(self, split)
        x = log.get(self.x, np.full(len(log[metric]), np.nan))
        return x, log[metric] * (100 if split == 'eval' and metric in PERCENT else 1)


def find(folder: Path) -> list[Run]:
    """Every run under `folder` (itself included), sorted by path; superseded runs are skipped."""
    folders = {path.parent for name in LOGS for path in folder.rglob(name)}
    if any((folder / name).is_file() for name in LOGS):
        folders.add(folder)
    current = [path for path in folders
               if not any(MOVED_ASIDE.search(part) for part in path.relative_to(folder).parts)]
    return [read(path) for path in sorted(current)]


def read(folder: Path) -> Run:
    """One run. Its identity comes from config.yaml's `provenance` and keys, else from the path
    `<experiment>/<Agent>/<suite>/<task>_<seed>` (Benchmarking's layout), wherever that sits."""
    config = _yaml(folder / 'config.yaml')
    provenance = config.get('provenance') or {}
    seed = provenance.get('seed', config.get('seed'))
    named = _run_folder(folder, seed)  # the folder named <task>_<seed>: the run itself, or one above its logs
    task, _, path_seed = named.name.rpartition('_')
    if seed is None:
        seed = int(path_seed) if path_seed.isdigit() else path_seed
    status_file = folder / 'status'
    train, evaluation = _csv(folder / 'train.csv'), _csv(folder / 'eval.csv')
    online = (config.get('Env') is not None and not config.get('offline')) if config else 'return' in evaluation
    return Run(folder=folder,
               experiment=str(config.get('experiment') or _part(named, 3)),
               agent=str(provenance.get('agent') or _part(named, 2)),
               suite=str(provenance.get('suite') or _part(named, 1)),
               task=str(provenance.get('task') or task or named.name),
               seed=seed, online=online,
               status=status_file.read_text().strip() if status_file.is_file() else 'unknown',
               hyperparameters=flatten({key: value for key, value in config.items() if key != 'provenance'}),
               train=train, eval=evaluation)


def by_task(runs: list[Run]) -> dict:
    """(suite, task) -> its runs in the order given, the tasks sorted."""
    tasks = {}
    for run in sorted(runs, key=lambda run: (run.suite, run.task)):
        tasks.setdefault((run.suite, run.task), []).append(run)
    return tasks


def mark_variants(runs: list[Run]):
    """Sets each run's `variant`: the hyperparameters that differ between runs of one experiment, agent and task
    (a sweep over lr gives `lr=0.01` and `lr=0.001`), so that such runs are drawn as separate methods. Keys that
    differ only from task to task (the Env, a game) do not count."""
    by_method = {}
    for run in runs:
        by_method.setdefault((run.experiment, run.agent), []).append(run)
    for method_runs in by_method.values():
        by_task = {}
        for run in method_runs:
            by_task.setdefault((run.suite, run.task), []).append(run)
        keys = sorted({key for same_task in by_task.values() for key in _differing(same_task)})
        for run in method_runs:
            run.variant = ' '.join(f'{key}={run.hyperparameters.get(key)}' for key in keys)


def _differing(runs: list[Run]) -> set:
    keys = {key for run in runs for key in run.hyperparameters} - NOT_HYPERPARAMETERS
    return {key for key in keys if len({repr(run.hyperparameters.get(key)) for run in runs}) > 1}


def _run_folder(folder: Path, seed) -> Path:
    """The nearest folder at or above `folder` named `<task>_<seed>`; `folder` itself when none is."""
    for candidate in (folder, *folder.parents):
        if seed is not None and candidate.name.endswith(f'_{seed}'):
            return candidate
    return folder


def _part(named: Path, up: int) -> str:
    """The name `up` levels above the run's folder in <experiment>/<Agent>/<suite>/<task>_<seed>."""
    parents = [named, *named.parents]
    return parents[up].name if up < len(parents) and parents[up].name else '?'


def _yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:  # a config cut short by a crash: the path still names the run
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _csv(path: Path) -> dict:
    """A log's columns as float64 arrays; a cell that is blank or not a number reads as NaN, so a row cut short
    by a run still writing is kept as far as it goes. Rows of an evaluation on demand (`ML evaluate=true`, marked in
    the `evaluation` column) are no point of a learning curve: they are left out."""
    if not path.is_file():
        return {}
    with path.open(newline='') as file:
        rows = [row for row in csv.DictReader(file) if not row.get('evaluation')]
    columns = list(rows[0]) if rows else []
    return {name: np.array([_number(row.get(name)) for row in rows], dtype=np.float64)
            for name in columns if name is not None}


def _number(cell) -> float:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return math.nan

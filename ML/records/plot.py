"""Plot: the figures and tables of a paper, drawn from what runs left in Benchmarking/.

    Plot experiment=DQN                 Benchmarking/DQN/Plots/
    Plot experiments=[DQN,DoubleDQN]    Benchmarking/Plots/DQN+DoubleDQN/
    Plot                                every experiment under ./Benchmarking/ (one: its Plots/; several: as above)
    Plot path/to/runs, Plot sweep=Exp   <that folder>/Plots/

Writes a figure per metric (eval_<metric>.png, train_<metric>.png: a panel per task, a line per method, the mean
over seeds with a confidence band), summary.csv and summary.md (final and best evaluation scores, mean ± std over
seeds), and for reinforcement learning suites aggregate.csv, aggregate.md and aggregate_<suite>.png (IQM, median
and mean over tasks with stratified bootstrap CIs, Agarwal et al. 2021).
"""
import fnmatch
import hashlib
import math
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ML.errors import ConfigError, MLError, PathError, did_you_mean
from ML.records import figures, runs as found_runs, scores, tables

USAGE = """usage: Plot [folder ...] [key=value ...]

  Plot experiment=DQN                  an experiment under ./Benchmarking/: writes Benchmarking/DQN/Plots/
  Plot experiments=[DQN,DoubleDQN]     several side by side: writes Benchmarking/Plots/DQN+DoubleDQN/
  Plot                                 every experiment under ./Benchmarking/
  Plot path/to/runs                    every run under a folder: writes path/to/runs/Plots/
  Plot sweep=Exp                       a sweep's members (Benchmarking/Exp/sweep.csv beside them)

keys (singular or plural, a name or a list [a,b]):
  experiment   experiments under ./Benchmarking/
  sweep        a sweep's folder, or the experiment it ran in (its members are Benchmarking/<experiment>/<variant>/)
  task         only these tasks: names or globs (CartPole-v1, 'atari/*')
  agent        only these agents (DQN, Classifier)
  band         the shaded band: ci (95% bootstrap CI of the mean, the default), se (± 1 standard error), std
  pdf          true: also write each figure as PDF
  out          the folder to write to
"""
KEYS = {'experiment': list, 'sweep': list, 'task': list, 'agent': list, 'band': str, 'pdf': bool, 'out': str}
PLURALS = {'experiments': 'experiment', 'sweeps': 'sweep', 'tasks': 'task', 'agents': 'agent'}


class Plotted(NamedTuple):
    """What Plot wrote: its folder, the files in it, and the summary table's rows (dicts, as in summary.csv)."""
    folder: Path
    files: list
    summary: list


def main(argv=None):
    """The Plot command: one line on stderr and exit 1 for bad input, before anything is written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--help' in argv or '-h' in argv:
        return print(USAGE)
    try:
        plot(*argv)
    except MLError as error:
        if os.environ.get('HYDRA_FULL_ERROR') == '1':
            raise
        print(f'Plot: {type(error).__name__}: {error}', file=sys.stderr)
        sys.exit(1)


def plot(*args, **keys) -> Plotted:
    """Draws the figures and tables of runs' logs; see this module's docstring and USAGE.

    `args`: folders, or `key=value` strings in the command line's grammar (Hydra's override parser);
    `keys`: the same keys as Python values (`experiments=['A', 'B']`, `pdf=True`).
    Raises ConfigError for an unknown key or a bad value, PathError for a folder or experiment that holds no runs;
    both before anything is written."""
    folders, given = _parse(args)
    settings = _settings({**given, **keys})
    cwd = Path.cwd()
    sources = [*(_folder(path) for path in folders), *(_sweep(cwd, name) for name in settings['sweep']),
               *(_experiment(cwd, name) for name in settings['experiment'])] or [_benchmarking(cwd)]
    runs = _filter(list({run.folder: run for folder in sources for run in _runs(folder)}.values()), settings)
    out = _out(cwd, settings, folders, runs)

    found_runs.mark_variants(runs)
    methods = _methods(runs, settings['experiment'])
    order = {folder: i for i, folder in enumerate(methods)}
    runs.sort(key=lambda run: order[run.folder])  # tables and legends list the methods in plotting order
    colour = figures.colours(list(dict.fromkeys(methods.values())))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)  # the same logs always give the same bands
    files = _curves(runs, methods, colour, settings, out, rng)
    summary = tables.summary(runs, methods)
    if summary:
        files += tables.write(summary, out / 'summary', tables.summary_display)
        print(tables.markdown([tables.summary_display(row) for row in summary]))
    files += tables.aggregates(runs, methods, colour, settings['pdf'], out, rng)
    unfinished = sorted(run.status for run in runs if run.status != 'completed')
    if unfinished:
        counts = ', '.join(f'{status} {unfinished.count(status)}' for status in dict.fromkeys(unfinished))
        print(f'Plot: {len(unfinished)} of {len(runs)} runs did not complete ({counts}); they are drawn as far as '
              'they go')
    written = [f'{sum(f.suffix == ".png" for f in files)} figures', *(f.name for f in files if f.suffix == '.md')]
    print(f'Plot: {len(runs)} runs; {", ".join(written)} in {_relative(out)}')
    return Plotted(out, files, summary)


# ---- the language: folders and key=value ----------------------------------------------------------------------

def _parse(args) -> tuple[list, dict]:
    """Folders, and key=value strings read by Hydra's own override parser (lists, quoting, `a,b` as a list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    parser, folders, given = OverridesParser.create(), [], {}
    for arg in map(str, args):
        if arg.startswith('-'):
            raise ConfigError(f'{arg}: unknown flag; Plot takes folders, key=value and --help')
        if '=' not in arg or Path(arg).is_dir():
            folders.append(Path(arg))
            continue
        try:
            override = parser.parse_overrides([arg])[0]
        except HydraException as error:
            raise ConfigError(f'{arg}: {str(error).splitlines()[0]}; quote values with spaces or brackets') from error
        value = override.value()
        given[override.key_or_group] = list(override.sweep_iterator()) if override.is_sweep_override() else value
    return folders, given


def _settings(given: dict) -> dict:
    settings = {'experiment': [], 'sweep': [], 'task': [], 'agent': [], 'band': 'ci', 'pdf': False, 'out': None}
    for key, value in given.items():
        name = PLURALS.get(key.lstrip('+'), key.lstrip('+'))
        if name not in KEYS:
            raise ConfigError(f'{key}: not a key of Plot{did_you_mean(name, KEYS)}; '
                              f'it takes {", ".join(KEYS)} (Plot --help)')
        if KEYS[name] is list:
            values = value if isinstance(value, (list, tuple)) else [value]
            if not values or any(isinstance(v, (dict, list, tuple)) or v is None for v in values):
                raise ConfigError(f'{key}={value}: expected a name or a list of names ({key}=[a,b])')
            settings[name] += [str(v) for v in values]
        elif name == 'band' and value not in scores.BANDS:
            raise ConfigError(f'band={value}: not a band; use ' +
                              ', '.join(f'{band} ({meaning})' for band, meaning in scores.BANDS.items()))
        elif name == 'pdf' and not isinstance(value, bool):
            raise ConfigError(f'pdf={value}: expected true or false')
        else:
            settings[name] = str(value) if name == 'out' else value
    return settings


# ---- where the runs are, and where the figures go ---------------------------------------------------------------

def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise PathError(f'{path}: no such folder; Plot takes folders of runs and key=value (Plot --help)')
    return path


def _benchmarking(cwd: Path) -> Path:
    if not (cwd / 'Benchmarking').is_dir():
        raise PathError(f'./Benchmarking: no such folder in {cwd}; train first (ML ...), or name a folder of runs: '
                        'Plot path/to/runs')
    return cwd / 'Benchmarking'


def _experiment(cwd: Path, name: str) -> Path:
    folder = cwd / 'Benchmarking' / name
    if not folder.is_dir():
        here = sorted(p.name for p in (cwd / 'Benchmarking').glob('*') if p.is_dir() and p.name != 'Plots')
        raise PathError(f'experiment={name}: no folder Benchmarking/{name}{did_you_mean(name, here)}; '
                        f'experiments here: {", ".join(here) or "none"}')
    return folder


def _sweep(cwd: Path, name: str) -> Path:
    """A sweep's folder: the path given, or the experiment of that name, whose sweep.csv lists its members (each in a
    variant folder inside it, as `ML -m` writes them)."""
    folder = Path(name) if Path(name).is_dir() else cwd / 'Benchmarking' / name
    if not (folder / 'sweep.csv').is_file() and not Path(name).is_dir():
        known = [p.parent.name for p in cwd.glob('Benchmarking/*/sweep.csv')]
        raise PathError(f'sweep={name}: no such folder, nor an experiment with a sweep.csv'
                        f'{did_you_mean(name, known)}; sweeps here: {", ".join(known) or "none"}')
    return folder


def _runs(folder: Path) -> list:
    """The runs under a folder, at any depth."""
    runs = found_runs.find(folder)
    if not runs:
        raise PathError(f'{_relative(folder)}: no runs here (no train.csv or eval.csv at any depth); '
                        'train first (ML ...)')
    return runs


def _filter(runs: list, settings: dict) -> list:
    """The runs whose task (`cheetah_run` or `dmc/cheetah_run`) and agent match task= and agent= (globs)."""
    for key, names in (('task', settings['task']), ('agent', settings['agent'])):
        if not names:
            continue
        kept = [run for run in runs if any(fnmatch.fnmatchcase(value, name) for name in names
                                           for value in _names(run, key))]
        if not kept:
            here = sorted({getattr(run, key) for run in runs})
            raise ConfigError(f'{key}={",".join(names)}: no run of that {key}{did_you_mean(names[0], here)}; '
                              f'{key}s here: {", ".join(here)}')
        runs = kept
    return runs


def _names(run, key: str) -> list:
    return [run.task, f'{run.suite}/{run.task}'] if key == 'task' else [run.agent]


def _out(cwd: Path, settings: dict, folders: list, runs: list) -> Path:
    """Where Plot writes: out=; else a single folder's Plots/; else Benchmarking/<experiment>/Plots/ for one
    experiment and Benchmarking/Plots/<A>+<B>/ for several. Filters add a subfolder named by them (task=pong)."""
    if settings['out']:
        return Path(settings['out'])
    single = [*folders, *settings['sweep']]
    if len(single) == 1 and not settings['experiment']:
        out = _sweep(cwd, single[0]) / 'Plots' if settings['sweep'] else single[0] / 'Plots'
    else:
        experiments = sorted({run.experiment for run in runs})
        out = (cwd / 'Benchmarking' / experiments[0] / 'Plots' if len(experiments) == 1
               else cwd / 'Benchmarking' / 'Plots' / _joined(experiments))
    filters = ','.join(f'{key}={"+".join(settings[key])}' for key in ('task', 'agent') if settings[key])
    return out / re.sub(r'[^\w.=+,-]', '_', filters) if filters else out


def _joined(names: list) -> str:
    joined = '+'.join(names)
    if len(joined) <= 120:
        return joined
    digest = hashlib.sha1(joined.encode()).hexdigest()[:8]  # a long list still gets a short name of its own
    return f'{"+".join(names[:3])}+{len(names) - 3}-more-{digest}'


def _relative(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it is inside it."""
    path, cwd = path.absolute(), Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


# ---- methods: what the figures compare --------------------------------------------------------------------------

def _methods(runs: list, experiments_given: list) -> dict:
    """Each run's method name: its agent, with its experiment when several are plotted and its variant
    (`lr=0.01`) when a sweep set its runs apart. Returned in plotting order (the experiments in the order given)."""
    several_experiments = len({run.experiment for run in runs}) > 1
    several_agents = len({run.agent for run in runs}) > 1
    order = {name: i for i, name in enumerate(experiments_given)}

    def name(run):
        parts = [run.experiment if several_experiments else '', run.agent if several_agents else '', run.variant]
        return ' '.join(part for part in parts if part) or run.agent
    ordered = sorted(runs, key=lambda run: (order.get(run.experiment, len(order)), run.experiment, run.agent,
                                            run.variant))
    return {run.folder: name(run) for run in ordered}


# ---- figures ----------------------------------------------------------------------------------------------------

def _curves(runs, methods, colour, settings, out: Path, rng) -> list:
    """A figure per (split, metric): a panel per task (titled suite/task when several suites are shown)."""
    files, by_task = [], found_runs.by_task(runs)
    several_suites = len({suite for suite, _ in by_task}) > 1
    legend = f'mean over seeds; shaded: {scores.BANDS[settings["band"]]}'
    for split in ('eval', 'train'):
        metrics = dict.fromkeys(metric for run in runs for metric in run.scores(split))
        for metric in metrics:
            panels, seeds = [], {}
            for (suite, task), task_runs in by_task.items():
                lines = []
                for method in dict.fromkeys(methods[run.folder] for run in task_runs):
                    members = [run for run in task_runs if methods[run.folder] == method and metric in
                               getattr(run, split)]
                    line = scores.curve([run.series(split, metric) for run in members], settings['band'], rng)
                    if line is not None:
                        lines.append(figures.Line(method, line))
                        low, high = seeds.get(method, (math.inf, 0))
                        seeds[method] = (min(low, len(members)), max(high, len(members)))
                if lines:
                    title = f'{suite}/{task}' if several_suites else task
                    panels.append(figures.Panel(title, task_runs[0].x, lines))
            if panels:
                panels.sort(key=lambda panel: panel.title)
                files += figures.curves(panels, figures.y_label(split, metric), legend, colour, seeds,
                                        out / f'{split}_{tables.safe(metric)}', settings['pdf'])
    return files



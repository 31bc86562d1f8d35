"""Plot: the figures and tables of a paper, drawn from what runs left in Benchmarking/.

    Plot experiment=DQN                 Benchmarking/DQN/Plots/
    Plot experiments=[DQN,DoubleDQN]    Benchmarking/Plots/DQN+DoubleDQN/
    Plot                                every experiment under ./Benchmarking/ (one: its Plots/; several: as above)
    Plot path/to/runs, Plot sweep=...   <that folder>/Plots/

Writes a figure per metric (eval_<metric>.png, train_<metric>.png: a panel per task, a line per method, the mean
over seeds with a confidence band), summary.csv and summary.md (final and best evaluation scores, mean ± std over
seeds), and for reinforcement learning suites aggregate.csv, aggregate.md and aggregate_<suite>.png (IQM, median
and mean over tasks with stratified bootstrap CIs, Agarwal et al. 2021).
"""
import csv
import fnmatch
import hashlib
import math
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from ML.errors import ConfigError, MLError, PathError, did_you_mean
from ML.records import figures, runs as found_runs, scores

USAGE = """usage: Plot [folder ...] [key=value ...]

  Plot experiment=DQN                  an experiment under ./Benchmarking/: writes Benchmarking/DQN/Plots/
  Plot experiments=[DQN,DoubleDQN]     several side by side: writes Benchmarking/Plots/DQN+DoubleDQN/
  Plot                                 every experiment under ./Benchmarking/
  Plot path/to/runs                    every run under a folder: writes path/to/runs/Plots/
  Plot sweep=Benchmarking/Exp/sweeps/2025-01-01_12-00-00   a sweep's runs

keys (singular or plural, a name or a list [a,b]):
  experiment   experiments under ./Benchmarking/
  sweep        a sweep's folder, or its name under Benchmarking/<experiment>/sweeps/
  task         only these tasks: names or globs (CartPole-v1, 'atari/*')
  agent        only these agents (DQN, Classifier)
  band         the shaded band: ci (95% bootstrap CI of the mean, the default), se (± 1 standard error), std
  pdf          true: also write each figure as PDF
  out          the folder to write to
"""
KEYS = {'experiment': list, 'sweep': list, 'task': list, 'agent': list, 'band': str, 'pdf': bool, 'out': str}
PLURALS = {'experiments': 'experiment', 'sweeps': 'sweep', 'tasks': 'task', 'agents': 'agent'}
NOT_CURVES = {'eval': {'return_std', 'episodes'}, 'train': set()}  # columns that describe a row, not a score
EVAL_LABELS = {'accuracy': 'test accuracy (%)', 'mse': 'test mean squared error', 'return': 'evaluation return',
               'human_normalized': 'human-normalized score'}
TRAIN_LABELS = {'loss': 'training loss', 'return': 'training episode return', 'q': 'Q-value',
                'grad_norm': 'gradient norm', 'epsilon': 'exploration ε'}
PERCENT = {'accuracy'}  # logged as a fraction, shown as a percentage
COMPARABLE_RETURNS = {'dmc'}  # suites whose returns share one scale across tasks (DMC: 0-1000 in 1000 steps)


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
    summary = _summary(runs, methods)
    if summary:
        files += _table(summary, out / 'summary', _summary_display)
        print(_markdown([_summary_display(row) for row in summary]))
    files += _aggregates(runs, methods, colour, settings['pdf'], out, rng)
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
    """A sweep's folder: the path given, or the one of that name under Benchmarking/<experiment>/sweeps/."""
    folder = Path(name) if Path(name).is_dir() else next(iter(sorted(cwd.glob(f'Benchmarking/*/sweeps/{name}'))),
                                                          None)
    if folder is None:
        known = [p.name for p in cwd.glob('Benchmarking/*/sweeps/*') if p.is_dir()]
        raise PathError(f'sweep={name}: no such folder, nor a sweep of that name in Benchmarking/*/sweeps/'
                        f'{did_you_mean(name, known)}')
    return folder


def _runs(folder: Path) -> list:
    """The runs under a folder. A sweep's folder whose members were written to their experiment's folder (as
    `ML -m` does) holds only Hydra's multirun.yaml: the runs are then that experiment's."""
    runs = found_runs.find(folder)
    if not runs and (folder / 'multirun.yaml').is_file():
        experiment = (yaml.safe_load((folder / 'multirun.yaml').read_text()) or {}).get('experiment')
        benchmarking = next((p for p in folder.parents if p.name == 'Benchmarking'), None)
        if experiment and benchmarking and (benchmarking / str(experiment)).is_dir():
            runs = found_runs.find(benchmarking / str(experiment))
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


def _tasks(runs: list) -> dict:
    """(suite, task) -> its runs, in the order given, the tasks sorted."""
    by_task = {}
    for run in sorted(runs, key=lambda run: (run.suite, run.task)):
        by_task.setdefault((run.suite, run.task), []).append(run)
    return by_task


# ---- figures ----------------------------------------------------------------------------------------------------

def _curves(runs, methods, colour, settings, out: Path, rng) -> list:
    """A figure per (split, metric): a panel per task (titled suite/task when several suites are shown)."""
    files, by_task = [], _tasks(runs)
    several_suites = len({suite for suite, _ in by_task}) > 1
    legend = f'mean over seeds; shaded: {scores.BANDS[settings["band"]]}'
    for split in ('eval', 'train'):
        metrics = [m for m in dict.fromkeys(c for run in runs for c in getattr(run, split))
                   if m not in found_runs.COUNTERS and m not in NOT_CURVES[split]]
        for metric in metrics:
            panels, seeds = [], {}
            for (suite, task), task_runs in by_task.items():
                lines = []
                for method in dict.fromkeys(methods[run.folder] for run in task_runs):
                    members = [run for run in task_runs if methods[run.folder] == method and metric in
                               getattr(run, split)]
                    line = scores.curve([_series(run, split, metric) for run in members], settings['band'], rng)
                    if line is not None:
                        lines.append(figures.Line(method, line))
                        low, high = seeds.get(method, (math.inf, 0))
                        seeds[method] = (min(low, len(members)), max(high, len(members)))
                if lines:
                    title = f'{suite}/{task}' if several_suites else task
                    panels.append(figures.Panel(title, task_runs[0].x, lines))
            if panels:
                panels.sort(key=lambda panel: panel.title)
                labels = EVAL_LABELS if split == 'eval' else TRAIN_LABELS
                y_label = labels.get(metric, f'{"evaluation" if split == "eval" else "training"} {metric}')
                files += figures.curves(panels, y_label, legend, colour, seeds, out / f'{split}_{_safe(metric)}',
                                        settings['pdf'])
    return files


def _series(run, split: str, metric: str) -> tuple:
    log = getattr(run, split)
    scale = 100 if metric in PERCENT and split == 'eval' else 1
    return log.get(run.x, np.full(len(log[metric]), np.nan)), log[metric] * scale


def _safe(name: str) -> str:
    return re.sub(r'[^\w.-]', '_', name)


# ---- tables -----------------------------------------------------------------------------------------------------


def _summary(runs, methods) -> list:
    """A row per (method, task, evaluation metric): the final and best scores, mean and std over seeds."""
    rows = []
    by_method = {}
    for run in runs:
        by_method.setdefault(methods[run.folder], []).append(run)
    for method_runs in by_method.values():
        for (suite, task), task_runs in _tasks(method_runs).items():
            metrics = dict.fromkeys(m for run in task_runs for m in run.eval
                                    if m not in found_runs.COUNTERS and m not in NOT_CURVES['eval'])
            for metric in metrics:
                scored = [run for run in task_runs if metric in run.eval]
                finals, bests = zip(*(scores.final_and_best(*_series(run, 'eval', metric), metric) for run in scored))
                (final, final_std), (best, best_std) = scores.mean_std(finals), scores.mean_std(bests)
                ends = sorted({int(np.nanmax(run.eval[run.x])) for run in scored
                               if run.x in run.eval and not np.isnan(run.eval[run.x]).all()})
                first = scored[0]
                rows.append({'experiment': first.experiment, 'agent': first.agent, 'variant': first.variant,
                             'suite': suite, 'task': task,
                             'metric': f'{metric} (%)' if metric in PERCENT else metric,
                             'seeds': sum(not math.isnan(f) for f in finals),
                             'final_mean': final, 'final_std': final_std, 'best_mean': best, 'best_std': best_std,
                             'at': _span(ends), 'unit': f'{first.x}s'})
    return rows


def _table(rows: list, stem: Path, display) -> list:
    """rows as CSV (every number at full precision) and as Markdown (through `display`, a row as shown)."""
    columns = [c for c in rows[0] if c != 'variant' or any(row['variant'] for row in rows)]
    with stem.with_suffix('.csv').open('w', newline='') as file:
        writer = csv.DictWriter(file, columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows({key: '' if _nan(value) else value for key, value in row.items()} for row in rows)
    stem.with_suffix('.md').write_text(_markdown([display(row) for row in rows]) + '\n')
    return [stem.with_suffix('.csv'), stem.with_suffix('.md')]


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _markdown(rows: list) -> str:
    """A Markdown table of display rows; a column empty in every row is left out."""
    columns = [c for c in rows[0] if any(str(row[c]) for row in rows)]
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '|'.join('---' for _ in columns) + '|']
    return '\n'.join(lines + ['| ' + ' | '.join(str(row[c]) for c in columns) + ' |' for row in rows])


def _summary_display(row: dict) -> dict:
    return {**{key: row[key] for key in ('experiment', 'agent', 'variant', 'suite', 'task', 'metric', 'seeds')},
            'final': scores.plus_minus(row['final_mean'], row['final_std']),
            'best': scores.plus_minus(row['best_mean'], row['best_std']),
            'at': '-'.join(f'{int(end):,}' for end in str(row['at']).split('-')) + f' {row["unit"]}'
                  if row['at'] != '' else ''}


def _span(ends: list) -> int | str:
    """Where the final scores were taken: one number, or `lowest-highest` when seeds ended apart (one still
    running, say); '' for none."""
    if not ends:
        return ''
    return ends[0] if ends[0] == ends[-1] else f'{ends[0]}-{ends[-1]}'


# ---- aggregates over tasks, for reinforcement learning --------------------------------------------------------

def _aggregates(runs, methods, colour, pdf: bool, out: Path, rng) -> list:
    """For each online suite whose tasks' scores share a scale (human-normalized Atari scores, DMC returns, or a
    single task): IQM, median and mean of the final evaluation scores over tasks, with 95% stratified bootstrap
    CIs, for every method that ran all the suite's tasks. Needs rliable (the `plot` extra)."""
    rows, files = [], []
    suites = sorted({run.suite for run in runs if run.online})
    for suite in suites:
        suite_runs = [run for run in runs if run.online and run.suite == suite]
        metric = 'human_normalized' if all('human_normalized' in run.eval for run in suite_runs) else 'return'
        tasks = sorted({run.task for run in suite_runs})
        if metric == 'return' and suite not in COMPARABLE_RETURNS and len(tasks) > 1:
            print(f'Plot: no aggregate over {suite}\'s tasks: their returns are on different scales (Atari\'s are '
                  'human-normalized; DMC\'s share 0-1000)')
            continue
        matrices = _score_matrices(suite_runs, methods, metric)
        if not matrices:
            continue
        try:
            found = {method: scores.aggregates(matrix, rng) for method, matrix in matrices.items()}
        except ImportError:
            print("Plot: aggregate scores (IQM, median, mean over tasks) need rliable: pip install -e '.[plot]'")
            return files
        shape = next(iter(matrices.values())).shape
        for method, estimates in found.items():
            rows.append({'suite': suite, 'method': method, 'score': f'final {metric}', 'tasks': shape[1],
                         'runs': matrices[method].shape[0],
                         **{k: v for e in estimates for k, v in ((e.name, e.value), (f'{e.name}_low', e.low),
                                                                 (f'{e.name}_high', e.high))}})
        label = EVAL_LABELS[metric]
        note = (f'final scores on {shape[1]} task{"s" * (shape[1] != 1)}; bars: 95% stratified bootstrap CIs, '
                'ticks: point estimates')
        files += figures.aggregates(found, label, note, colour, out / f'aggregate_{_safe(suite)}', pdf)
    if rows:
        files += _table(rows, out / 'aggregate', _aggregate_display)
        print(_markdown([_aggregate_display(row) for row in rows]))
    return files


def _aggregate_display(row: dict) -> dict:
    return {**{key: row[key] for key in ('suite', 'method', 'score', 'tasks', 'runs')},
            **{name: f'{row[name]:.3g} [{row[f"{name}_low"]:.3g}, {row[f"{name}_high"]:.3g}]'
               for name in scores.AGGREGATES}}


def _score_matrices(runs, methods, metric: str) -> dict:
    """method -> (runs, tasks) final scores on the tasks every method ran; a method with more seeds on some
    tasks than others keeps as many on each as it has on all (its lowest seeds)."""
    by_method = {}
    for run in runs:
        value = scores.final_and_best(*_series(run, 'eval', metric), metric)[0] if metric in run.eval else math.nan
        if not math.isnan(value):
            by_method.setdefault(methods[run.folder], {}).setdefault(run.task, []).append((str(run.seed), value))
    common = set.intersection(*(set(tasks) for tasks in by_method.values())) if by_method else set()
    if not common:
        return {}
    matrices = {}
    for method, tasks in by_method.items():
        n = min(len(tasks[task]) for task in common)
        matrices[method] = np.array([[value for _, value in sorted(tasks[task])[:n]] for task in sorted(common)]).T
    return matrices

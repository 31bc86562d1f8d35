"""Plot's tables: the summary of each method's final and best evaluation scores (mean ± std over seeds), and for
reinforcement learning the aggregates over a suite's tasks (IQM, median, mean with stratified bootstrap CIs,
Agarwal et al. 2021). Each as CSV for programs and Markdown for people."""
import csv
import math
import re
from pathlib import Path

import numpy as np

from ML.records import figures, scores
from ML.records.runs import PERCENT, by_task

COMPARABLE_RETURNS = {'dmc'}  # suites whose returns share one scale across tasks (DMC: 0-1000 in 1000 steps)


def summary(runs: list, methods: dict) -> list:
    """A row per (method, task, evaluation metric): the final and best scores, mean and sample std over seeds,
    the number of seeds, and the frames or steps at which the final scores were taken. `methods` maps each run's
    folder to its method's name."""
    rows = []
    by_method = {}
    for run in runs:
        by_method.setdefault(methods[run.folder], []).append(run)
    for method_runs in by_method.values():
        for (suite, task), task_runs in by_task(method_runs).items():
            metrics = dict.fromkeys(metric for run in task_runs for metric in run.scores('eval'))
            for metric in metrics:
                scored = [run for run in task_runs if metric in run.eval]
                finals, bests = zip(*(scores.final_and_best(*run.series('eval', metric), metric) for run in scored))
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


def write(rows: list, stem: Path, display) -> list:
    """rows as <stem>.csv (every number at full precision) and <stem>.md (through `display`, a row as shown);
    returns the two paths."""
    columns = [c for c in rows[0] if c != 'variant' or any(row['variant'] for row in rows)]
    with stem.with_suffix('.csv').open('w', newline='') as file:
        writer = csv.DictWriter(file, columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows({key: '' if _nan(value) else value for key, value in row.items()} for row in rows)
    stem.with_suffix('.md').write_text(markdown([display(row) for row in rows]) + '\n')
    return [stem.with_suffix('.csv'), stem.with_suffix('.md')]


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def markdown(rows: list) -> str:
    """A Markdown table of display rows; a column empty in every row is left out."""
    columns = [c for c in rows[0] if any(str(row[c]) for row in rows)]
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '|'.join('---' for _ in columns) + '|']
    return '\n'.join(lines + ['| ' + ' | '.join(str(row[c]) for c in columns) + ' |' for row in rows])


def summary_display(row: dict) -> dict:
    """A summary row as Markdown shows it: `530 ± 36`, `3,000 frames`."""
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


# ---- aggregates over tasks, for reinforcement learning ------------------------------------------------------

def aggregates(runs: list, methods: dict, colour: dict, pdf: bool, out: Path, rng) -> list:
    """For each online suite whose tasks' scores share a scale (human-normalized Atari scores, DMC returns, or a
    single task): IQM, median and mean of the final evaluation scores over tasks, with 95% stratified bootstrap
    CIs, for every method that ran all the suite's tasks: aggregate.csv, aggregate.md, aggregate_<suite>.png, also
    printed. Without rliable (the `plot` extra) one line says so and nothing is written. Returns the paths."""
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
        label = figures.y_label('eval', metric)
        note = (f'final scores on {shape[1]} task{"s" * (shape[1] != 1)}; bars: 95% stratified bootstrap CIs, '
                'ticks: point estimates')
        files += figures.aggregates(found, label, note, colour, out / f'aggregate_{safe(suite)}', pdf)
    if rows:
        files += write(rows, out / 'aggregate', _aggregate_display)
        print(markdown([_aggregate_display(row) for row in rows]))
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
        value = scores.final_and_best(*run.series('eval', metric), metric)[0] if metric in run.eval else math.nan
        if not math.isnan(value):
            by_method.setdefault(methods[run.folder], {}).setdefault(run.task, []).append((str(run.seed), value))
    common = set.intersection(*(set(tasks) for tasks in by_method.values())) if by_method else set()
    if not common:
        return {}
    matrices = {}
    for method, tasks in by_method.items():
        n = min(len(tasks[task]) for task in common)
        lowest = {task: sorted(tasks[task], key=lambda pair: (len(pair[0]), pair[0]))[:n] for task in common}  # 2<10
        matrices[method] = np.array([[value for _, value in lowest[task]] for task in sorted(common)]).T
    return matrices


def safe(name: str) -> str:
    """A name fit for a file name."""
    return re.sub(r'[^\w.-]', '_', name)

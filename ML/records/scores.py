"""The numbers behind the figures and tables: curves averaged over seeds with a confidence band, final and best
scores, and aggregates over tasks with stratified bootstrap confidence intervals (Agarwal et al. 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS; the rliable library)."""
import math
import warnings
from typing import NamedTuple

import numpy as np

from ML.records.monitor import minimizes

BANDS = {'ci': '95% bootstrap CI of the mean', 'se': '± 1 standard error', 'std': '± 1 standard deviation'}
REPS = 2000  # bootstrap resamples; rliable's performance profiles use as many
MAX_POINTS = 250  # a curve with more rows is averaged over consecutive rows into this many points


class Curve(NamedTuple):
    """A metric over seeds, each of shape (points,): x (frames or steps), the mean over seeds, the band's lower
    and upper edges (NaN where fewer than two seeds reach that point), and how many seeds each point averages."""
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: np.ndarray


def curve(series: list[tuple[np.ndarray, np.ndarray]], band: str, rng: np.random.Generator) -> Curve | None:
    """The mean of several seeds' (x, y) series and a band around it (`band` is a key of BANDS).

    Seeds logged at the same x (the usual case) are averaged point by point; otherwise each is interpolated onto
    the union of their x values, within its own range only, so a seed cut short (a crash, a run still going) adds
    nothing past its last row. None when no series holds a number."""
    series = [(x[keep], y[keep]) for x, y in series if (keep := ~(np.isnan(x) | np.isnan(y))).any()]
    if not series:
        return None
    if all(len(x) == len(series[0][0]) and np.array_equal(x, series[0][0]) for x, _ in series):
        grid, values = series[0][0], np.stack([y for _, y in series])
    else:
        grid = np.unique(np.concatenate([x for x, _ in series]))
        values = np.stack([np.where((grid >= x.min()) & (grid <= x.max()), np.interp(grid, x, y), np.nan)
                           for x, y in series])
    if len(grid) > MAX_POINTS:
        grid, values = _bins(grid, values)
    seeds = (~np.isnan(values)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # a point one seed reaches has no spread: NaN, as it should
        mean = np.nanmean(values, axis=0)
        low, high = _band(values, seeds, mean, band, rng)
    return Curve(grid, mean, low, high, seeds)


def _bins(grid: np.ndarray, values: np.ndarray):
    """Consecutive points averaged into MAX_POINTS bins: a long log drawn at a figure's resolution, smoothed."""
    edges = np.linspace(0, len(grid), MAX_POINTS + 1).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # a seed that does not reach a bin is NaN there, as it should
        return (np.array([grid[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]),
                np.stack([np.nanmean(values[:, a:b], axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1))


def _band(values: np.ndarray, seeds: np.ndarray, mean: np.ndarray, band: str, rng: np.random.Generator):
    """The band's edges, shape (points,) each; NaN where fewer than two seeds are there."""
    low, high = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    if band == 'ci':  # percentile bootstrap over seeds, for each set of seeds present together
        present = ~np.isnan(values)
        for pattern in np.unique(present, axis=1).T:
            columns = (present == pattern[:, None]).all(axis=0)
            n = int(pattern.sum())
            if n < 2:
                continue
            weights = rng.multinomial(n, np.full(n, 1 / n), size=REPS) / n  # each resample as weights on seeds
            means = weights @ values[pattern][:, columns]
            low[columns], high[columns] = np.percentile(means, [2.5, 97.5], axis=0)
        return low, high
    spread = np.nanstd(values, axis=0, ddof=1)
    if band == 'se':
        spread = spread / np.sqrt(seeds)
    spread[seeds < 2] = np.nan
    return mean - spread, mean + spread


def final_and_best(x: np.ndarray, y: np.ndarray, metric: str) -> tuple[float, float]:
    """A run's last evaluation score and its best one (the lowest for an error such as mse), NaN if none."""
    scores = y[~(np.isnan(x) | np.isnan(y))]
    if not len(scores):
        return math.nan, math.nan
    return float(scores[-1]), float(scores.min() if minimizes(metric) else scores.max())


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1, NaN for one value) of the values that are numbers."""
    numbers = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if not len(numbers):
        return math.nan, math.nan
    return float(numbers.mean()), float(numbers.std(ddof=1)) if len(numbers) > 1 else math.nan


def plus_minus(mean: float, std: float) -> str:
    """`204 ± 23`: the standard deviation to two significant digits, the mean to the same decimal place."""
    if math.isnan(mean):
        return '–'
    if math.isnan(std) or std == 0:
        return f'{mean:.4g}'
    decimals = min(max(0, 1 - math.floor(math.log10(std))), 6)
    return f'{mean:.{decimals}f} ± {std:.{decimals}f}'


# ---- aggregates over tasks (Agarwal et al. 2021) --------------------------------------------------------------

AGGREGATES = ('IQM', 'median', 'mean')


class Aggregate(NamedTuple):
    """One aggregate of a method's scores over tasks: the point estimate and its 95% stratified bootstrap CI."""
    name: str
    value: float
    low: float
    high: float


def aggregates(scores: np.ndarray, rng: np.random.Generator) -> list[Aggregate]:
    """IQM, median and mean of a (runs, tasks) score matrix, with 95% percentile CIs from a stratified bootstrap:
    each resample draws runs with replacement within every task (rliable's StratifiedBootstrap).

    The aggregates are rliable.metrics' own functions (IQM: the 25% trimmed mean of all runs and tasks; median and
    mean: of the per-task means). The bootstrap is written here because rliable.library resamples through `arch`,
    which fails beside pandas 3 (arch 7 on import, arch 8 rejects rliable's `random_state`).
    Raises ImportError when rliable is not installed (the `plot` extra)."""
    from rliable import metrics
    functions = (metrics.aggregate_iqm, metrics.aggregate_median, metrics.aggregate_mean)
    runs, tasks = scores.shape
    resampled = scores[rng.integers(0, runs, size=(REPS, runs, tasks)), np.arange(tasks)]  # (REPS, runs, tasks)
    found = []
    for name, function in zip(AGGREGATES, functions):
        spread = np.array([function(sample) for sample in resampled])
        low, high = np.percentile(spread, [2.5, 97.5])
        found.append(Aggregate(name, float(function(scores)), float(low), float(high)))
    return found

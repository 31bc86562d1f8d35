"""Figures sized for a paper: one column (3.3 in) for a single task, the page width (6.8 in) for several, fonts
of 7-8 pt at that size, PNG at 300 dpi and optionally PDF with embedded TrueType fonts. Drawn on matplotlib's
Figure directly (no pyplot), so plotting from a notebook leaves its backend and open figures alone."""
import math
import textwrap
from pathlib import Path
from typing import NamedTuple

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator

from ML.records.scores import AGGREGATES, Aggregate, Curve

COLUMN, PAGE = 3.3, 6.8  # inches: one column, and the text width of a two-column paper
PANEL_HEIGHT = 1.9  # inches per row of panels
DPI = 300
STYLE = {
    'font.size': 8, 'axes.titlesize': 8, 'axes.labelsize': 8, 'xtick.labelsize': 7, 'ytick.labelsize': 7,
    'legend.fontsize': 7, 'legend.title_fontsize': 7, 'lines.linewidth': 1.2,
    'axes.spines.top': False, 'axes.spines.right': False, 'axes.grid': True, 'grid.alpha': 0.3,
    'grid.linewidth': 0.5, 'pdf.fonttype': 42, 'ps.fonttype': 42,  # TrueType in PDFs, as publishers ask
}
# Okabe & Ito's colour-blind-safe palette; beyond eight methods, tab20's colours follow
PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442',
           *matplotlib.colormaps['tab20'].colors]
X_LABELS = {'frame': 'environment frames', 'step': 'learning steps'}
Y_LABELS = {
    'eval': {'accuracy': 'test accuracy (%)', 'mse': 'test mean squared error', 'return': 'evaluation return',
             'human_normalized': 'human-normalized score'},
    'train': {'loss': 'training loss', 'return': 'training episode return', 'q': 'Q-value',
              'grad_norm': 'gradient norm', 'epsilon': 'exploration ε'},
}


class Line(NamedTuple):
    """One method's curve in one panel."""
    method: str
    curve: Curve


class Panel(NamedTuple):
    """One task's axes: its title, the counter its x axis counts (`frame` or `step`), and a line per method."""
    title: str
    x: str
    lines: list[Line]


def y_label(split: str, metric: str) -> str:
    """The axis label of a metric of 'train' or 'eval', with its unit where it has one."""
    return Y_LABELS[split].get(metric, f'{"evaluation" if split == "eval" else "training"} {metric}')


def colours(methods: list[str]) -> dict:
    """A colour per method, fixed by its place in the list, so every figure of one Plot agrees."""
    return {method: PALETTE[i % len(PALETTE)] for i, method in enumerate(methods)}


def curves(panels: list[Panel], y_label: str, legend_title: str, colour: dict, seeds: dict, stem: Path,
           pdf: bool) -> list[Path]:
    """A figure of one metric: a panel per task, each method's mean as a line and its band shaded.

    `seeds` maps each method to its number of seeds, shown in the legend; `stem` is the path without suffix.
    Returns the files written."""
    methods = list(dict.fromkeys(line.method for panel in panels for line in panel.lines))
    with matplotlib.rc_context(STYLE):
        columns = min(len(panels), 4)
        rows = math.ceil(len(panels) / columns)
        width = COLUMN if columns == 1 else PAGE
        spare = rows * columns > len(panels)  # an empty cell at the end of the grid holds the legend
        per_row = 1 if spare else 2 if width == COLUMN else 4  # legend entries side by side
        legend_height = 0 if spare else 0.45 + 0.17 * math.ceil(len(methods) / per_row)
        figure = Figure(figsize=(width, PANEL_HEIGHT * rows + legend_height), layout='constrained')
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for i, (ax, panel) in enumerate(zip(axes, panels)):
            for method, line in panel.lines:
                ax.plot(line.x, line.mean, color=colour[method], label=method)
                ax.fill_between(line.x, line.low, line.high, color=colour[method], alpha=0.2, linewidth=0)
            ax.set_title(panel.title)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3 if columns > 2 else 5, steps=[1, 2, 2.5, 5, 10]))
            ax.xaxis.set_major_formatter(EngFormatter(sep=''))  # 2k, 1.5M: short ticks that stay apart
            ax.margins(x=0)
            ax.set_xlim(left=0)  # the budget from its start, so that a late first point shows as late
            if i + columns >= len(panels):  # the lowest panel of its column carries the x label
                ax.set_xlabel(X_LABELS[panel.x])
        for ax in axes[len(panels):]:
            ax.axis('off')
        if rows > 1:
            figure.supylabel(y_label, fontsize=STYLE['axes.labelsize'])
        else:
            axes[0].set_ylabel(y_label)
        handles = [Line2D([], [], color=colour[method]) for method in methods]
        labels = [f'{method} ({_seeds(seeds[method])})' for method in methods]
        if spare:  # in the first empty cell, its title a line per clause
            title = '\n'.join(textwrap.fill(clause, 36) for clause in legend_title.split('; '))
            axes[len(panels)].legend(handles, labels, loc='center', title=title, frameon=False)
        else:
            figure.legend(handles, labels, loc='outside lower center', ncols=min(len(methods), per_row),
                          title=legend_title, frameon=False)
        return _save(figure, stem, pdf)


def aggregates(found: dict, x_label: str, note: str, colour: dict, stem: Path, pdf: bool) -> list[Path]:
    """IQM, median and mean side by side, a row per method: the point estimate as a tick, its 95% CI as a bar
    (the layout of rliable's plot_interval_estimates). `found` maps each method to its list of Aggregate."""
    with matplotlib.rc_context(STYLE):
        methods = list(found)
        figure = Figure(figsize=(PAGE, 0.9 + 0.28 * len(methods)), layout='constrained')
        axes = figure.subplots(1, len(AGGREGATES), sharey=True)
        for column, (ax, name) in enumerate(zip(axes, AGGREGATES)):
            for row, method in enumerate(methods):
                estimate: Aggregate = found[method][column]
                ax.barh(row, estimate.high - estimate.low, left=estimate.low, height=0.6, color=colour[method],
                        alpha=0.75)
                ax.vlines(estimate.value, row - 0.3, row + 0.3, color='black', linewidth=1.2)
            ax.set_title(name if name.isupper() else name.capitalize())
            ax.grid(axis='y', visible=False)
            ax.use_sticky_edges = False  # a bar's edge would otherwise sit on the axis, hiding where its CI starts
            ax.margins(x=0.1)
            ax.xaxis.set_major_locator(MaxNLocator(4))
        axes[0].set_yticks(range(len(methods)), methods)
        axes[0].invert_yaxis()  # the first method on top, as in the legend of the curves
        figure.supxlabel(f'{x_label}\n{note}', fontsize=STYLE['axes.labelsize'])
        return _save(figure, stem, pdf)


def _seeds(n: tuple) -> str:
    low, high = n
    return f'{low} seed{"s" * (low != 1)}' if low == high else f'{low}-{high} seeds'


def _save(figure: Figure, stem: Path, pdf: bool) -> list[Path]:
    written = []
    for suffix in ('.png', '.pdf') if pdf else ('.png',):
        path = stem.with_suffix(suffix)
        figure.savefig(path, dpi=DPI)
        written.append(path)
    return written

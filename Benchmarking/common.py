"""What the benchmarks here share: a quiet workspace, interleaved rounds, the CPU pressure beside each figure, and
the rate an ML run logged."""
import csv
import os
import statistics
import tempfile
from pathlib import Path

import torch


def pressure() -> str:
    """The CPU pressure now ('avg10=...', from /proc/pressure/cpu): a figure taken under load is to be discarded."""
    try:
        return Path('/proc/pressure/cpu').read_text().split()[1]
    except OSError:
        return 'avg10=n/a'


def workspace() -> Path:
    """One torch thread (what the peers are measured with) and a fresh temporary directory, made current, for the
    runs' outputs."""
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix='ML-bench-'))
    os.chdir(folder)
    return folder


def interleave(sides: dict, rounds: int, unit: str) -> dict:
    """Runs each side once a round, in turn, so a disturbance of this shared machine hits all of them; prints each
    figure beside the CPU pressure and returns each side's median."""
    figures, width = {name: [] for name in sides}, max(map(len, sides))
    for round in range(rounds):
        for name, side in sides.items():
            figures[name].append(side())
            print(f'round {round}: {name:<{width}} {figures[name][-1]:8.1f} {unit}  ({pressure()})', flush=True)
    return {name: statistics.median(values) for name, values in figures.items()}


def logged_rate(train_csv: Path, counter: str = 'frame', keep=lambda row: True) -> float:
    """How fast an ML run went by its own train.csv: `counter` (step or frame) between the first and last rows
    kept, over the time between them, so that start-up is not counted."""
    with open(train_csv) as file:
        rows = [row for row in csv.DictReader(file) if keep(row)]
    return (int(rows[-1][counter]) - int(rows[0][counter])) / (float(rows[-1]['time']) - float(rows[0]['time']))

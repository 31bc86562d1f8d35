"""Sweeps, measured: joblib against basic on the same 6-member sweep, and a sweep killed and re-run.

    python Benchmarking/sweeps.py [--rounds 1] [--steps 1000]

1. A 6-member sweep of the default task (lr x seed) on Hydra's basic launcher (one member after another) and on
   joblib with 2 workers, wall time each, in interleaved rounds; each figure beside the CPU pressure. On 2 free
   cores joblib should take about half as long.
2. The same sweep stopped twice, first with SIGTERM (the running member saves), then with SIGKILL (nothing saves),
   then re-run to the end: the members completed before each stop, re-run after it (must be 0 of those), resumed,
   and the files found corrupt (a checkpoint torch cannot read, a CSV with a repeated step or a second header) or
   duplicated (a member's folder moved aside): both must be 0.
"""
import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import interleave, pressure, workspace  # Benchmarking/common.py, beside this script

MEMBERS = ['lr=0.003,0.001,0.0003', 'seed=1,2']


def ml(*args, wait=True):
    environment = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    process = subprocess.Popen(['ML', '-m', *args], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    if wait:
        process.communicate()
    return process


def sweep_seconds(launcher: str, steps: int, experiment: str) -> float:
    extra = ['hydra.launcher.n_jobs=2'] if launcher == 'joblib' else []
    start = time.perf_counter()
    process = ml(*MEMBERS, f'train_steps={steps}', 'progress=false', f'experiment={experiment}',
                 f'hydra/launcher={launcher}', *extra)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ''
    return time.perf_counter() - start


def statuses(experiment: str) -> list:
    path = Path('Benchmarking', experiment, 'sweep.csv')
    with path.open() as file:
        return [row['status'] for row in csv.DictReader(file)]


def corrupt_or_duplicated(experiment: str) -> tuple:
    corrupt = 0
    for path in Path('Checkpoints', experiment).rglob('*.pt'):
        try:
            torch.load(path, weights_only=True)
        except Exception:
            corrupt += 1
    for path in Path('Benchmarking', experiment).rglob('*.csv'):
        lines = path.read_text().splitlines()
        if path.name != 'sweep.csv':
            steps = [line.split(',')[0] for line in lines[1:]]
            corrupt += sum(line.startswith('step,') for line in lines) != 1 or len(steps) != len(set(steps))
    duplicated = len([path for path in Path('Benchmarking', experiment).rglob('*~*')])
    return corrupt, duplicated


def kill_and_resume(steps: int):
    line = [*MEMBERS, f'train_steps={steps}', 'progress=false', 'experiment=Killed', 'save_per_steps=100',
            'log_per_steps=50']
    done_before = []
    for sent in (signal.SIGTERM, signal.SIGKILL):
        process = ml(*line, wait=False)
        started = len(list(Path('Benchmarking/Killed').rglob('train.csv'))) if Path('Benchmarking/Killed').exists() \
            else 0
        while len(list(Path('Benchmarking/Killed').rglob('train.csv'))) < started + 2:  # two more members under way
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(sent)
        process.communicate()
        completed = sorted(str(path.parent) for path in Path('Benchmarking/Killed').rglob('status')
                           if path.read_text().strip() == 'completed')
        done_before.append(completed)
        print(f'{sent.name}: exit {process.returncode}; {len(completed)} of 6 members completed  ({pressure()})')
    checkpoints = {path: path.read_bytes() for path in Path('Checkpoints/Killed').rglob('*.pt')}
    ml(*line)
    final = statuses('Killed')
    rerun = [folder for folder in done_before[-1]
             if checkpoints.get(Path('Checkpoints', *Path(folder).parts[1:]).with_suffix('.pt')) !=
             Path('Checkpoints', *Path(folder).parts[1:]).with_suffix('.pt').read_bytes()]
    corrupt, duplicated = corrupt_or_duplicated('Killed')
    print(f're-run: {final.count("skipped")} skipped (completed before), {final.count("completed")} trained '
          f'(resumed or started), {len(rerun)} completed members trained again, {corrupt} files corrupt, '
          f'{duplicated} folders duplicated; statuses {final}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--steps', type=int, default=1000)
    args = parser.parse_args()
    workspace()
    counter = iter(range(10 ** 6))
    medians = interleave({'basic': lambda: sweep_seconds('basic', args.steps, f'Basic{next(counter)}'),
                          'joblib (2 workers)': lambda: sweep_seconds('joblib', args.steps, f'Joblib{next(counter)}')},
                         args.rounds, 's')
    print(f'basic / joblib: {medians["basic"] / medians["joblib (2 workers)"]:.2f}x')
    kill_and_resume(args.steps)


if __name__ == '__main__':
    sys.exit(main())

"""What tracking costs the learning step: the default task (Digits, MLP) with CSV logs only, and with TensorBoard,
wandb (offline) and MLflow (its default sqlite store) each on top, one torch thread.

    python Benchmarking/logging_overhead.py [--steps 2000] [--rounds 5]

The rounds interleave the four, so a disturbance of this shared machine hits each; every figure is printed with the
CPU pressure (/proc/pressure/cpu, avg10) at the time, and the summary takes medians and their ratio to CSV only
(the target: no tracker below 0.95). Each rate is read from the run's own train.csv (steps between its first and
last row over the time between them), so start-up (a tracker's included) is not counted, and every row's write to
every tracker is. Trackers that are not installed are left out.
"""
import argparse
import importlib.util
import os

import ML
from common import interleave, logged_rate, workspace  # Benchmarking/common.py, beside this script

TRACKERS = {'CSV only': None, 'TensorBoard': 'tensorboard', 'wandb offline': 'wandb', 'MLflow': 'mlflow'}


def through_ml(steps: int, tracker) -> float:
    """`ML train_steps=... eval_per_steps=null save=false [<tracker>=true]`; returns steps per second."""
    experiment = tracker or 'csv'
    ML.launch(f'train_steps={steps}', 'eval_per_steps=null', 'save=false', 'progress=false', 'batch_size=256',
              f'experiment={experiment}', *([f'{tracker}=true'] if tracker else []))
    return logged_rate(f'Benchmarking/{experiment}/Classifier/classify/Digits_1/train.csv', counter='step')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    os.environ.update({'WANDB_MODE': 'offline', 'WANDB_SILENT': 'true', 'MLFLOW_DISABLE_TELEMETRY': 'true'})
    workspace()
    sides = {name: (lambda tracker=tracker: through_ml(args.steps, tracker)) for name, tracker in TRACKERS.items()
             if tracker is None or importlib.util.find_spec(tracker) is not None}
    medians = interleave(sides, args.rounds, 'steps/s')
    base = medians['CSV only']
    print(f'median over {args.rounds} rounds of {args.steps} steps (one row every 100):')
    for name, rate in medians.items():
        print(f'  {name:<13} {rate:8.1f} steps/s  ratio to CSV only {rate / base:.3f}  '
              f'(overhead {1e3 * (1 / rate - 1 / base):+.3f} ms/step)')


if __name__ == '__main__':
    main()

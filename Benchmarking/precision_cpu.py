"""The default task in fp32 and in bf16 on the CPU: steps per second and final test accuracy, one torch thread.

    python Benchmarking/precision_cpu.py [--steps 1000] [--rounds 5]

Both sides are the same `ML` run (the MLP on scikit-learn's digits, batch 256, seed 1) but for `precision=bf16`,
which autocasts the forward passes to bfloat16 (ML/agents/update.py). The rounds interleave the two, so a
disturbance of this shared machine hits both; each figure is printed with the CPU pressure (/proc/pressure/cpu,
avg10) at the time, and the summary takes medians. Each rate is read from the run's own train.csv (steps between
its first and last log rows over the time between them), so start-up is not counted. bf16 pays off where the CPU
multiplies in bf16 (AVX512-BF16, AMX); elsewhere torch emulates it, and it is slower than fp32.

Measured on a Xeon with AMX-BF16 (5 rounds of 1000 steps, CPU pressure avg10 below 2 throughout): fp32 359.4 and
bf16 360.0 steps/s (ratio 1.002), both ending at 96.66% test accuracy. The MLP is too small for the arithmetic to
matter: casting costs what bf16's matrix products save.
"""
import argparse
import csv
from pathlib import Path

import ML
from common import interleave, logged_rate, workspace  # Benchmarking/common.py, beside this script


def run(precision: str, steps: int, folder: Path, accuracies: dict) -> float:
    """One run of the default task in this precision; returns its steps per second and notes its final accuracy."""
    ML.launch(f'precision={precision}', f'train_steps={steps}', 'eval_per_steps=null', 'save=false',
              'progress=false')
    logs = folder / 'Benchmarking/Exp/Classifier/classify/Digits_1'
    with open(logs / 'eval.csv') as file:
        accuracies[precision].append(float(list(csv.DictReader(file))[-1]['accuracy']))
    return logged_rate(logs / 'train.csv', counter='step')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=1000)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    folder = workspace()
    accuracies = {'fp32': [], 'bf16': []}
    sides = {precision: (lambda precision=precision: run(precision, args.steps, folder, accuracies))
             for precision in accuracies}
    medians = interleave(sides, args.rounds, 'steps/s')
    for precision, values in accuracies.items():
        print(f'{precision}: median {medians[precision]:.1f} steps/s, final test accuracy '
              f'{", ".join(f"{value:.2%}" for value in values)}')
    print(f'median over {args.rounds} rounds of {args.steps} steps: ratio bf16/fp32 '
          f'{medians["bf16"] / medians["fp32"]:.3f}')


if __name__ == '__main__':
    main()

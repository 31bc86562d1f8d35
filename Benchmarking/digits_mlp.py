"""ML against a hand-written PyTorch loop and PyTorch Lightning's Trainer: the default task's MLP on scikit-learn's
digits, batch 256, one torch thread, on the CPU.

    python Benchmarking/digits_mlp.py [--steps 2000] [--rounds 5]

Every side trains the same network (ML's MLP block: 64 -> 256 -> 256 -> 10, 85k parameters) with Adam(lr=1e-3) on
shuffled batches of the same 1,438 in-memory digits, for `--steps` optimizer steps:

    hand-written  the plainest correct loop (common.hand_written)
    ML            `ML train_steps=... batch_size=256 eval_per_steps=null save=false progress=false`: the real
                  launch and training path, the default task's
    Lightning     a LightningModule fit by Lightning's Trainer on a DataLoader (common.through_lightning)

A step of this model is about 2 ms, so what a framework does around it shows. Each side is timed from step 100
(ML's first train.csv row; ML's rate is read from its own train.csv) to its last step, so that start-up is counted
by none. The rounds interleave the sides, so a disturbance of this shared machine hits all of them; each figure is
printed with the CPU pressure (/proc/pressure/cpu, avg10) at the time, and the summary takes medians, of the
figures and of each round's ratios.

Measured on a Xeon shared with other work, 7 rounds of 2,000 steps at avg10 0 (steps/s: hand-written, ML,
Lightning; the ratios of the medians, and the medians of the rounds' ratios):
    441.0, 426.4, 265.6   ML/hand 0.967 (0.976), ML/Lightning 1.606 (1.584), Lightning/hand 0.602
"""
import argparse
from pathlib import Path

import torch

import ML
from ML.blocks.mlp import MLP
from ML.world.datasets import Digits, split
from common import (hand_written, interleave, logged_rate, paired, quiet_lightning,  # Benchmarking/common.py
                    through_lightning, workspace)

LOG_PER_STEPS = 100  # ML's default: its first train.csv row, where every side's clock starts


def digits() -> tuple:
    """The default task's training split as tensors: x float32 (1438, 1, 8, 8), y int64 (1438,)."""
    train, _ = split(Digits(), 0.2, seed=1)
    return (torch.stack([train[i][0] for i in range(len(train))]),
            torch.stack([train[i][1] for i in range(len(train))]))


def mlp() -> MLP:
    return MLP(in_shape=(1, 8, 8), out_shape=(10,))


def through_ml(steps: int, folder: Path) -> float:
    """The default task, as `ML train_steps=... eval_per_steps=null save=false` runs it. Returns steps per second."""
    ML.launch(f'train_steps={steps}', 'eval_per_steps=null', 'save=false', 'progress=false', 'batch_size=256')
    return logged_rate(folder / 'Benchmarking/Exp/Classifier/classify/Digits_1/train.csv', counter='step')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    folder = workspace()
    quiet_lightning()
    work = (args.steps, LOG_PER_STEPS, 256)
    sides = {'hand-written': lambda: hand_written(mlp(), *digits(), *work),
             'ML': lambda: through_ml(args.steps, folder),
             'Lightning': lambda: through_lightning(mlp(), *digits(), *work)}
    figures = {}
    medians = interleave(sides, args.rounds, 'steps/s', figures)
    hand, ml, lightning = (medians[name] for name in sides)
    print(f'median over {args.rounds} rounds of {args.steps} steps: hand-written {hand:.1f}, ML {ml:.1f}, '
          f'Lightning {lightning:.1f} steps/s')
    print(f'ratio of the medians: ML/hand {ml / hand:.3f} (overhead {1e3 * (1 / ml - 1 / hand):+.3f} ms/step), '
          f'Lightning/hand {lightning / hand:.3f}, ML/Lightning {ml / lightning:.3f}')
    print(f"median of the rounds' ratios: ML/hand {paired(figures, 'ML', 'hand-written'):.3f}, "
          f"ML/Lightning {paired(figures, 'ML', 'Lightning'):.3f}")


if __name__ == '__main__':
    main()

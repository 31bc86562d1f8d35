"""ML against a hand-written PyTorch loop: the same MLP on scikit-learn's digits, batch 256, one torch thread.

    python Benchmarking/digits_mlp.py [--steps 2000] [--rounds 5]

Both sides train the same network (ML's MLP block) with Adam on the same shuffled batches of in-memory tensors.
The rounds interleave the two, so a disturbance of this shared machine hits both; each figure is printed with the
CPU pressure (/proc/pressure/cpu, avg10) at the time, and the summary takes medians. ML's rate is read from its
own train.csv (steps between its first and last log row over the time between them), so start-up is not counted.
"""
import argparse
import time
from pathlib import Path

import torch
from torch.nn import functional as F

import ML
from ML.blocks.mlp import MLP
from ML.world.datasets import Digits, split
from common import interleave, logged_rate, workspace  # Benchmarking/common.py, beside this script


def hand_written(steps: int, batch_size: int = 256) -> float:
    """cleanrl-style: the loop a researcher writes by hand. Returns steps per second."""
    train, _ = split(Digits(), 0.2, seed=1)
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.stack([train[i][1] for i in range(len(train))])
    model = MLP(in_shape=(1, 8, 8), out_shape=(10,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order, position = torch.randperm(len(x)), 0
    start = time.perf_counter()
    for _ in range(steps):
        if position >= len(x):
            order, position = torch.randperm(len(x)), 0
        index = order[position:position + batch_size]
        position += batch_size
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if _ % 100 == 0:
            loss.item()  # what logging a loss costs
    return steps / (time.perf_counter() - start)


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
    sides = {'hand-written': lambda: hand_written(args.steps), 'ML': lambda: through_ml(args.steps, folder)}
    medians = interleave(sides, args.rounds, 'steps/s')
    h, m = medians['hand-written'], medians['ML']
    print(f'median over {args.rounds} rounds of {args.steps} steps: hand-written {h:.1f} steps/s, ML {m:.1f} steps/s, '
          f'ratio ML/hand {m / h:.3f}  (overhead {1e3 * (1 / m - 1 / h):+.3f} ms/step)')


if __name__ == '__main__':
    main()

"""A small CNN on CIFAR-shaped data through ML, against a hand-written PyTorch loop and PyTorch Lightning's Trainer;
ML in bf16 against fp32; and the default task's accuracy in bf16. One torch thread, on the CPU.

    python Benchmarking/cnn_cpu.py [--model tutorial|convbn] [--steps 400] [--rounds 7] [--batch-size 128]

Every side trains the same network on the same 10,000 in-memory samples (3x32x32 float32, 10 classes, drawn once
from a seeded generator), `--batch-size` at a time, with torch.optim.Adam(lr=1e-3), for `--steps` optimizer steps.
The network (`--model`) is PyTorch's CIFAR-10 tutorial network (two 5x5 convolutions and three linear layers, 62k
parameters), or a plain CIFAR CNN with batch norm (three 3x3 convolution, batch norm, ReLU and max-pool stages of
32, 64 and 64 channels, 57k parameters). The sides:

    hand-written  the plainest correct loop (common.hand_written), in PyTorch's default (contiguous) layout
    ML            ML.launch(Model=..., Dataset=CIFARShaped, ...): the real launch and training path, as it runs by
                  default, which on a CPU puts convolutions in the channels_last layout (oneDNN's fastest)
    ML contiguous ML as above with channels_last=false: the same layout as the other sides, so its ratio to the
                  hand-written loop is what ML's own machinery costs
    Lightning     a LightningModule fit by Lightning's Trainer on a DataLoader (common.through_lightning)
    ML bf16       ML as by default, with precision=bf16 (torch.autocast to bfloat16 on the CPU)

Each side is timed from the end of step `--log` (ML's first train.csv row) to its last step, so that start-up
(building the run, Lightning's Trainer set-up, the first steps' allocations) is counted by none. ML's rate is read
from its own train.csv. The rounds interleave the sides, so a disturbance of this shared machine hits all of them;
each figure is printed with the CPU pressure (/proc/pressure/cpu, avg10) at the time, and the summary takes medians.
Last, the default task (the MLP on scikit-learn's digits) runs once in bf16 and prints its test accuracy.

Measured on a shared Xeon with AMX-BF16, before ML chose channels_last on a CPU (steps/s: hand-written, ML,
Lightning, ML bf16; then ML/hand and ML/Lightning by the ratio of the medians, and the medians of the rounds' ratios),
tutorial network:
    3 rounds of 200 steps, avg10 0.7-3.7:  58.1, 57.9, 55.8, 71.6  ML/hand 0.997, ML/Lightning 1.037, bf16 1.238
    7 rounds of 300 steps, avg10 0-80:     35.2, 34.2, 33.3, 48.5  ML/hand 0.973 (0.974), ML/Lightning 1.026 (1.083)
    7 rounds of 300 steps, avg10 0.6-39:   53.9, 53.5, 46.5, 60.3  ML/hand 0.992 (0.964), ML/Lightning 1.150 (1.160)
    7 rounds of 400 steps, avg10 0:        73.9, 70.4, 69.6, 91.4  ML/hand 0.952 (0.952), ML/Lightning 1.011 (1.020)
On a shared AMD EPYC with AVX-512 BF16 (no AMX), with ML choosing channels_last (steps/s: hand-written, ML, ML
contiguous, Lightning, ML bf16; then ML/hand, ML contiguous/hand and ML/Lightning by the ratio of the medians, and
the medians of the rounds' ratios):
    tutorial, 7 rounds of 400 steps, avg10 0:   62.1, 64.6, 61.5, 58.6, 75.0  ML/hand 1.040 (1.028), ML contiguous/hand
                                                0.990 (0.986), ML/Lightning 1.102 (1.087), bf16/fp32 1.161 (1.175)
    convbn, 5 rounds of 150 steps (--log 25):   7.5, 11.7, 7.8, 7.6, 18.6     ML/hand 1.562 (1.648), ML contiguous/hand
                                                1.031 (1.032), ML/Lightning 1.545 (1.559), bf16/fp32 1.584 (1.587)
The default task in bf16 ends at 97.21% test accuracy. With the machine saturated (avg10 above 97), one side's
figures scatter from 11 to 36 steps/s, and the ratios with them.
"""
import argparse
import csv
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

import ML
from common import (hand_written, interleave, logged_rate, paired, quiet_lightning,  # Benchmarking/common.py
                    through_lightning, workspace)

SAMPLES, CLASSES = 10_000, 10


class TutorialCNN(nn.Module):
    """The network of PyTorch's "Training a Classifier" tutorial: (B, 3, 32, 32) -> (B, 10) logits."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, CLASSES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


class ConvBN(nn.Module):
    """A plain CIFAR CNN with batch norm: three stages of 3x3 convolution, batch norm, ReLU and 2x2 max-pool (32, 64
    and 64 channels), a global max-pool and a linear head: (B, 3, 32, 32) -> (B, 10) logits."""

    def __init__(self):
        super().__init__()
        stages, channels = [], 3
        for width in (32, 64, 64):
            stages += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = width
        self.features, self.head = nn.Sequential(*stages), nn.Linear(channels, CLASSES)

    def forward(self, x):
        return self.head(self.features(x).amax((2, 3)))


MODELS = {'tutorial': TutorialCNN, 'convbn': ConvBN}


def cifar_shaped(train: bool = True) -> tuple:
    """(x float32 (N, 3, 32, 32), y int64 (N,)): fixed random images and labels, 10,000 to train and 1,000 to test."""
    generator = torch.Generator().manual_seed(0 if train else 1)
    size = SAMPLES if train else SAMPLES // 10
    return (torch.rand(size, 3, 32, 32, generator=generator),
            torch.randint(CLASSES, (size,), generator=generator))


class CIFARShaped(Dataset):
    """cifar_shaped() as a torch Dataset with a train/test split, as torchvision's CIFAR10 has."""

    def __init__(self, train: bool = True):
        self.data, self.targets = cifar_shaped(train)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.data[index], self.targets[index]


def through_ml(model: type, steps: int, warm: int, batch_size: int, folder: Path, *overrides: str) -> float:
    """Returns steps per second by the run's own train.csv, between its first row (step `warm`) and its last."""
    ML.launch(f'train_steps={steps}', f'log_per_steps={warm}', f'batch_size={batch_size}', *overrides,
              'eval_per_steps=null', 'save=false', 'progress=false', 'experiment=cnn',
              Model=model, Dataset=CIFARShaped)
    return logged_rate(folder / 'Benchmarking/cnn/Classifier/classify/CIFARShaped_1/train.csv', counter='step')


def default_task_accuracy(precision: str, folder: Path) -> float:
    """The default task (`ML precision=...`, 1,000 steps) and its final test accuracy."""
    ML.launch(f'precision={precision}', 'save=false', 'progress=false', 'experiment=default')
    with open(folder / 'Benchmarking/default/Classifier/classify/Digits_1/eval.csv') as file:
        return float(list(csv.DictReader(file))[-1]['accuracy'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=MODELS, default='tutorial')
    parser.add_argument('--steps', type=int, default=400)
    parser.add_argument('--log', type=int, default=50, help='steps before timing starts (ML logs every this many)')
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--batch-size', type=int, default=128)
    args = parser.parse_args()
    folder = workspace()
    quiet_lightning()
    model, work = MODELS[args.model], (args.steps, args.log, args.batch_size)
    sides = {'hand-written': lambda: hand_written(model(), *cifar_shaped(), *work),
             'ML': lambda: through_ml(model, *work, folder),
             'ML contiguous': lambda: through_ml(model, *work, folder, 'channels_last=false'),
             'Lightning': lambda: through_lightning(model(), *cifar_shaped(), *work),
             'ML bf16': lambda: through_ml(model, *work, folder, 'precision=bf16')}
    figures = {}
    medians = interleave(sides, args.rounds, 'steps/s', figures)
    hand, ml, contiguous, lightning, bf16 = (medians[name] for name in sides)
    print(f'{args.model}: median over {args.rounds} rounds of {args.steps} steps (batch {args.batch_size}): '
          f'hand-written {hand:.1f}, ML {ml:.1f}, ML contiguous {contiguous:.1f}, Lightning {lightning:.1f}, '
          f'ML bf16 {bf16:.1f} steps/s')
    print(f'ratio of the medians: ML/hand {ml / hand:.3f}, ML contiguous/hand {contiguous / hand:.3f} (overhead '
          f'{1e3 * (1 / contiguous - 1 / hand):+.3f} ms/step), ML/Lightning {ml / lightning:.3f}, ML contiguous/'
          f'Lightning {contiguous / lightning:.3f} (Lightning\'s overhead {1e3 * (1 / lightning - 1 / hand):+.3f} '
          f'ms/step), ML bf16/fp32 {bf16 / ml:.3f}')
    ratios = {'ML/hand': ('ML', 'hand-written'), 'ML contiguous/hand': ('ML contiguous', 'hand-written'),
              'ML/Lightning': ('ML', 'Lightning'), 'ML contiguous/Lightning': ('ML contiguous', 'Lightning'),
              'ML bf16/fp32': ('ML bf16', 'ML')}
    print("median of the rounds' ratios: " + ', '.join(f'{name} {paired(figures, *pair):.3f}'
                                                        for name, pair in ratios.items()))
    print(f'the default task in bf16: final test accuracy {default_task_accuracy("bf16", folder):.2%}')


if __name__ == '__main__':
    main()

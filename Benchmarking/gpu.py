"""ML on a GPU, against the peers on the same work, in one script of a few minutes:

    python Benchmarking/gpu.py                       # on a machine with a CUDA GPU
    python Benchmarking/gpu.py --device cpu --quick  # the same parts, a few steps each, to see that they run

1. ResNet-18 (ML's ResNet18 block, the CIFAR stem) on 10,000 CIFAR-shaped samples held on the device, batch 512,
   Adam: ML against the hand-written loop (common.hand_written), in fp32 and in bf16 (torch.autocast), in
   interleaved rounds; steps/s and the ratio.
2. CIFAR-10 fast: `ML task=cifar10_fast` against the `airbench` package's train94 (Keller Jordan's airbench94),
   on the same 50,000 + 10,000 images in CIFAR-10's exact file formats (random pixels: the time is measured, not
   the accuracy); seconds a pass over the training data. airbench reads `cifar10/train.pt` from the working
   directory (written here from the same arrays) and needs a CUDA GPU; without either, this part says so.
3. Reinforcement learning with learning on: `task=atari/pong` (DQN) with the replay in RAM, pinned RAM and on the
   GPU (`replay.device=...`), and `task=dmc/walker_walk` (DrQ-v2); environment frames per second from each run's
   train.csv. A suite that is not installed (ale-py, dm-control) is skipped with a line.

Every run writes under a fresh temporary folder; each figure is printed as it comes, then a summary.
"""
import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ML
from ML.blocks.resnet import ResNet18
from ML.errors import Interrupted
from common import hand_written, logged_rate, workspace  # Benchmarking/common.py, beside this script

CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


def cifar_shaped(size: int, device: str) -> tuple:
    """(x float32 (size, 3, 32, 32) in [0, 1), y int64 (size,)) on device, from a seeded generator."""
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(size, 3, 32, 32, generator=generator).to(device),
            torch.randint(10, (size,), generator=generator).to(device))


class CIFARShaped(torch.utils.data.Dataset):
    """cifar_shaped() on the CPU as a Dataset with a train/test split; ML moves it to the run's device."""
    SIZE = 10_000

    def __init__(self, train: bool = True):
        self.data, self.targets = cifar_shaped(self.SIZE if train else self.SIZE // 10, 'cpu')

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.data[index], self.targets[index]


def resnet(args, folder: Path) -> dict:
    """Part 1: steps/s of each side, the median over the rounds."""
    steps, warm, batch = (20, 10, 32) if args.quick else (300, 50, 512)
    CIFARShaped.SIZE = 256 if args.quick else 10_000
    figures = {}
    for round in range(args.rounds):
        for precision in ('fp32', 'bf16'):
            x, y = cifar_shaped(CIFARShaped.SIZE, args.device)
            hand = hand_written(ResNet18((3, 32, 32), (10,)).to(args.device), x, y, steps, warm, batch, precision)
            ML.launch(f'train_steps={steps}', f'log_per_steps={warm}', f'batch_size={batch}', f'device={args.device}',
                      f'precision={precision}', 'eval_per_steps=null', 'save=false', 'progress=false',
                      'experiment=resnet', 'Model=ResNet18', Dataset=CIFARShaped)
            ml = logged_rate(folder / 'Benchmarking/resnet/Classifier/classify/CIFARShaped_1/train.csv', 'step')
            for name, value in ((f'hand {precision}', hand), (f'ML {precision}', ml)):
                figures.setdefault(name, []).append(value)
                print(f'round {round}: ResNet-18 {name:<10} {value:8.2f} steps/s', flush=True)
    return {name: statistics.median(values) for name, values in figures.items()}


def write_cifar10(root: Path, n_train: int, n_test: int):
    """CIFAR-10 as torchvision reads it (root/Datasets/cifar-10-batches-py/) and as airbench reads it
    (root/cifar10/{train,test}.pt), from the same random uint8 images (N, 32, 32, 3) and labels."""
    rng = np.random.default_rng(0)
    batches = root / 'Datasets' / 'cifar-10-batches-py'
    batches.mkdir(parents=True, exist_ok=True)
    (root / 'cifar10').mkdir(exist_ok=True)
    with open(batches / 'batches.meta', 'wb') as file:
        pickle.dump({'label_names': CIFAR_CLASSES}, file)
    for split, size, files in (('train', n_train, [f'data_batch_{i}' for i in range(1, 6)]),
                               ('test', n_test, ['test_batch'])):
        images = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size)
        for name, part in zip(files, np.array_split(np.arange(size), len(files))):
            with open(batches / name, 'wb') as file:  # CHW planes, a row per image
                pickle.dump({'data': images[part].transpose(0, 3, 1, 2).reshape(len(part), -1),
                             'labels': labels[part].tolist()}, file)
        torch.save({'images': torch.from_numpy(images), 'labels': torch.from_numpy(labels),
                    'classes': CIFAR_CLASSES}, root / 'cifar10' / f'{split}.pt')
    # the files are not CIFAR-10's own: torchvision's md5 checks are kept to the files' existence
    from torchvision.datasets import cifar, utils
    cifar.check_integrity = lambda path, md5=None: utils.check_integrity(path)


def cifar10_fast(args, folder: Path) -> dict:
    """Part 2: seconds a pass over the training data, ML's recipe and airbench's."""
    n_train = 2048 if args.quick else 50_000
    write_cifar10(folder, n_train, n_train // 5)
    steps = 4 if args.quick else 485  # the recipe's 9.9 passes
    per_pass = n_train // 1024 if not args.quick else 2
    ML.launch('task=cifar10_fast', f'train_steps={steps}', f'log_per_steps={per_pass}', f'device={args.device}',
              'progress=false', 'save=false', 'experiment=fast',
              *(['batch_size=1024'] if not args.quick else ['batch_size=512', 'model.widths=[8,16,16]']))
    steps_per_second = logged_rate(folder / 'Benchmarking/fast/Classifier/classify/CIFAR10_1/train.csv', 'step')
    seconds = {'ML cifar10_fast': per_pass / steps_per_second}
    print(f'ML task=cifar10_fast: {seconds["ML cifar10_fast"]:.3f} s a pass', flush=True)
    if not torch.cuda.is_available():
        print('airbench: skipped (it runs on a CUDA GPU only)')
        return seconds
    try:
        import airbench  # its train94's default loader reads cifar10/train.pt from here, on import
    except ImportError:
        print('airbench: skipped (not installed: pip install airbench)')
        return seconds
    airbench.warmup94(verbose=False)  # cudnn's autotuning, as airbench's own runs warm up first
    torch.cuda.synchronize()
    started = time.perf_counter()
    airbench.train94(verbose=False)
    torch.cuda.synchronize()
    seconds['airbench94'] = (time.perf_counter() - started) / 9.9  # its epochs, whitening set-up included
    print(f'airbench train94: {seconds["airbench94"]:.3f} s a pass', flush=True)
    return seconds


def reinforcement(args, folder: Path) -> dict:
    """Part 3: environment frames/s with learning on."""
    frames = {}
    learn_after = 100 if args.quick else 1000
    pong, walker = (3000, 2000) if args.quick else (40_000, 40_000)
    runs = [(f'Pong DQN, replay in {placement}', ['task=atari/pong', f'replay.device={placement}',
                                                   f'train_frames={pong}', f'learn_after={learn_after}'])
            for placement in ('ram', 'pinned', *(['cuda'] if args.device.startswith('cuda') else []))]
    runs.append(('walker_walk DrQ-v2',
                 ['task=dmc/walker_walk', f'train_frames={walker}', f'learn_after={learn_after}']))
    for number, (name, overrides) in enumerate(runs):
        try:
            ML.launch(*overrides, f'device={args.device}', 'eval_per_steps=null', 'save=false', 'progress=false',
                      'log_per_steps=250', f'experiment=rl{number}')
        except Interrupted:
            raise
        except ML.MLError as error:  # a suite that is not installed, or cannot render here
            print(f'{name}: skipped ({error})', flush=True)
            continue
        train_csv = next((folder / f'Benchmarking/rl{number}').rglob('train.csv'))
        frames[name] = logged_rate(train_csv, 'frame', keep=lambda row: row.get('loss', '') != '')
        print(f'{name}: {frames[name]:.0f} frames/s with learning on', flush=True)
    return frames


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--quick', action='store_true', help='a few steps each: that every part runs')
    args = parser.parse_args()
    folder = workspace()
    print(f'{torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"}, torch {torch.__version__}',
          flush=True)
    steps = resnet(args, folder)
    seconds = cifar10_fast(args, folder)
    frames = reinforcement(args, folder)
    print('\nsummary')
    for precision in ('fp32', 'bf16'):
        hand, ml = steps[f'hand {precision}'], steps[f'ML {precision}']
        print(f'ResNet-18 {precision}: hand-written {hand:.2f}, ML {ml:.2f} steps/s, ML/hand {ml / hand:.3f}')
    print('CIFAR-10 fast, seconds a pass: ' + ', '.join(f'{name} {value:.3f}' for name, value in seconds.items()))
    for name, value in frames.items():
        print(f'{name}: {value:.0f} frames/s')
    return 0


if __name__ == '__main__':
    sys.exit(main())

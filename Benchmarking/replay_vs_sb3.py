"""ML's replay against stable-baselines3's ReplayBuffer on Atari-shaped data: 4x84x84 uint8 stacks, batch 256.

    python Benchmarking/replay_vs_sb3.py [--capacity 100000] [--rounds 5] [--seconds 2]

Each buffer is filled with `capacity` transitions of the same stream (a frame-stacked 84x84 stream with an episode
end every 1000 steps; ML also gets gymnasium's reset rows, as the world hands them over), then the rounds
interleave samples/s of the buffers, one torch thread, so a disturbance of this shared machine hits them all;
each figure is printed with the CPU pressure (/proc/pressure/cpu, avg10) at the time, and the summary takes
medians. Memory is the bytes of each buffer's arrays, and the growth of this process's RSS while filling it.
SB3 is run as its DQN runs it (handle_timeout_termination off where optimize_memory_usage needs it off).
The full-size run holds about 9 GB (SB3 5.6 GB, SB3 optimized 2.8 GB, ML 0.7 GB); --capacity scales it.
"""
import argparse
import statistics
import time
from types import SimpleNamespace

import gymnasium
import numpy as np
import psutil
import torch
from stable_baselines3.common.buffers import ReplayBuffer

from ML.specs import Spec
from ML.world.replay import Replay
from common import pressure  # Benchmarking/common.py, beside this script

STACK, EPISODE = 4, 1000


def stream(capacity):
    """(obs, next_obs, ended, valid) of one env, the stacks with a leading env dim of 1: episodes of EPISODE
    transitions, each followed by its reset row, stacks padded with an episode's first frame as gymnasium pads."""
    frames = np.random.default_rng(0).integers(0, 256, (997, 84, 84), dtype=np.uint8)  # 997: no period in stacks

    def stack(t):
        return frames[[(t - min(back, t % (EPISODE + 1))) % 997 for back in range(STACK - 1, -1, -1)]][None]

    for t in range(capacity):
        yield stack(t), stack(t + 1), t % (EPISODE + 1) == EPISODE - 1, t % (EPISODE + 1) != EPISODE


def rss() -> int:
    return psutil.Process().memory_info().rss


def fill_sb3(capacity, optimize):
    space = gymnasium.spaces.Box(0, 255, (STACK, 84, 84), np.uint8)
    before = rss()
    buffer = ReplayBuffer(capacity, space, gymnasium.spaces.Discrete(6), device='cpu',
                          optimize_memory_usage=optimize, handle_timeout_termination=not optimize)
    for obs, next_obs, ended, valid in stream(capacity):
        if valid:  # SB3's VecEnv resets within the step: no reset rows
            buffer.add(obs, next_obs, np.zeros((1, 1)), np.ones(1), np.array([ended]), [{}])
    nbytes = sum(a.nbytes for a in vars(buffer).values() if isinstance(a, np.ndarray))
    return buffer, nbytes, rss() - before


def fill_ml(capacity, **options):
    before = rss()
    replay = Replay(Spec((STACK, 84, 84), torch.uint8), Spec((), torch.int64, True, 0, 5), capacity=capacity,
                    batch_size=256, frame_stack=STACK, **options)
    for obs, next_obs, ended, valid in stream(capacity):
        replay.add(SimpleNamespace(obs=obs, action=np.zeros(1, np.int64), reward=np.ones(1), next_obs=next_obs,
                                   terminated=np.array([ended]), truncated=np.zeros(1, bool), valid=np.array([valid])))
    nbytes = sum(a.nbytes for a in vars(replay).values() if isinstance(a, np.ndarray))
    return replay, nbytes, rss() - before


def rate(sample, seconds) -> float:
    """Samples per second over `seconds` of back-to-back batches of 256."""
    sample()  # warm
    start, batches = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        sample()
        batches += 1
    return 256 * batches / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--capacity', type=int, default=100_000)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--seconds', type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.random.seed(0)  # SB3 samples with numpy's global generator

    buffers = {}
    for name, fill in [('SB3', lambda: fill_sb3(args.capacity, False)),
                       ('SB3 optimize_memory_usage', lambda: fill_sb3(args.capacity, True)),
                       ('ML nstep=1', lambda: fill_ml(args.capacity)),
                       ('ML nstep=3 prioritized', lambda: fill_ml(args.capacity, nstep=3, prioritized=True))]:
        start = time.perf_counter()
        buffer, nbytes, grown = fill()
        sample = (lambda b=buffer: b.sample(256)) if name.startswith('SB3') else buffer.sample
        buffers[name] = sample
        print(f'memory  {name:28s} arrays {nbytes / 1e9:5.2f} GB ({nbytes / 2 ** 30:5.2f} GiB, '
              f'{nbytes / args.capacity:7.0f} B/transition)  RSS +{grown / 1e9:5.2f} GB  '
              f'filled in {time.perf_counter() - start:4.0f} s  {pressure()}', flush=True)

    rates = {name: [] for name in buffers}
    for round_ in range(args.rounds):
        for name, sample in buffers.items():
            rates[name].append(rate(sample, args.seconds))
            print(f'round {round_}  {name:28s} {rates[name][-1]:9,.0f} samples/s  {pressure()}', flush=True)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f'\nmedians over {args.rounds} rounds, batch 256, {STACK}x84x84 uint8, capacity {args.capacity:,}, '
          f'1 torch thread; {pressure()}')
    for name, median in medians.items():
        print(f'  {name:28s} {median:9,.0f} samples/s   x{median / medians["SB3"]:.2f} SB3   '
              f'x{median / medians["SB3 optimize_memory_usage"]:.2f} SB3 optimized')


if __name__ == '__main__':
    main()

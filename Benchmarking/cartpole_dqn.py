"""ML's DQN on CartPole-v1: does the recipe learn, and how fast does it run against stable-baselines3's DQN?

    python Benchmarking/cartpole_dqn.py [--only learn|speed] [--seeds 1 2 3 4 5] [--rounds 3] [--steps 20000]

learn: `ML task=RL seed=N train_frames=50000` for each seed, as a user types it; prints each seed's final and best
    greedy evaluation return (eval.csv), the frame it first reached 475, and the wall time of the command.
speed: environment frames per second of ML's DQN against SB3's DQN with the hyperparameters the recipe composes to
    (`ML task=RL --cfg job`: network, batch, learning rate, learn frequency, target refresh, buffer, learning
    starts, exploration), one torch thread each, rounds interleaved. SB3 runs with its default Adam and with ML's
    optimizer arguments (fused); ML with its recipe, without double Q (SB3 has none), and with num_envs=8
    (gymnasium's vector env: 8 frames per loop step, so 8x fewer updates per frame) on as many frames.

ML runs as the real `ML` command in a temporary directory; its rate is read from its own train.csv (frames between
its first and last rows over the time between them), so start-up is not counted. SB3's is timed by a callback over
the same window (from step 100 to the end). These 2 cores are shared: each figure is printed with the CPU pressure
(/proc/pressure/cpu, avg10) when it ended, and the summary takes medians; re-run when the pressure is high.
"""
import argparse
import csv
import inspect
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from common import pressure  # Benchmarking/common.py, beside this script

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}


def ml(*overrides, cwd: Path) -> Path:
    """Runs the ML command; returns the run's folder."""
    subprocess.run(['ML', 'task=RL', 'progress=false', 'save=false', *overrides], cwd=cwd, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    seed = next((o.split('=')[1] for o in overrides if o.startswith('seed=')), 1)
    return cwd / 'Benchmarking' / 'Exp' / 'DQN' / 'gym' / f'CartPole-v1_{seed}'


def rows(path: Path) -> list:
    with path.open() as file:
        return list(csv.DictReader(file))


def learn(seeds, frames=50_000):
    print(f'learning: ML task=RL train_frames={frames}, seeds {seeds}')
    reached = 0
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix='ML-cartpole-') as folder:
            start = time.perf_counter()
            run = ml(f'seed={seed}', f'train_frames={frames}', cwd=Path(folder))
            wall = time.perf_counter() - start
            evaluation = rows(run / 'eval.csv')
        returns = [float(row['return']) for row in evaluation]
        first = next((row['frame'] for row in evaluation if float(row['return']) >= 475), None)
        reached += returns[-1] >= 475
        print(f'seed {seed}: final {returns[-1]:5.1f}  best {max(returns):5.1f}  first >= 475 at frame {first}  '
              f'({evaluation[-1]["frame"]} frames, {wall:.0f} s wall, {pressure()})', flush=True)
    print(f'{reached} of {len(seeds)} seeds end at a greedy return >= 475')


def recipe() -> dict:
    """The hyperparameters `ML task=RL` composes to, with the MLP's own defaults for what the recipe leaves out."""
    text = subprocess.run(['ML', 'task=RL', '--cfg', 'job'], capture_output=True, text=True, check=True).stdout
    config = yaml.safe_load(text)
    from ML.agents.dqn import DQN
    from ML.blocks.mlp import MLP
    for twin, target in (('model', MLP), ('agent', DQN)):
        config[twin] = {**{name: p.default for name, p in inspect.signature(target).parameters.items()
                           if p.default is not p.empty}, **config[twin]}
    return config


def sb3_rate(c: dict, steps: int, optimizer_kwargs: dict) -> float:
    """SB3's DQN on the same work; environment steps per second from step 100 to the end."""
    import gymnasium
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def _on_step(self):
            if self.num_timesteps == 100:
                self.start = time.perf_counter()
            return True

    torch.set_num_threads(1)
    a, net = c['agent'], [c['model']['hidden']] * c['model']['depth']
    model = DQN('MlpPolicy', gymnasium.make('CartPole-v1'), learning_rate=c['lr'], batch_size=c['batch_size'],
                buffer_size=c['replay']['capacity'], learning_starts=c['learn_after'], gamma=c['replay']['gamma'],
                n_steps=c['replay']['nstep'], train_freq=c['learn_per_steps'], gradient_steps=1,
                tau=a['target_tau'], target_update_interval=a['target_update_per_steps'],
                exploration_initial_eps=a['epsilon_start'], exploration_final_eps=a['epsilon_end'],
                exploration_fraction=a['epsilon_frames'] / steps, max_grad_norm=a['max_grad_norm'],
                policy_kwargs={'net_arch': net, 'optimizer_kwargs': optimizer_kwargs}, seed=1, device='cpu')
    clock = Clock()
    model.learn(steps, callback=clock)
    return (steps - 100) / (time.perf_counter() - clock.start)


def ml_rate(frames: int, *overrides) -> float:
    """ML's DQN through the ML command; frames per second between the first and last rows of its train.csv."""
    with tempfile.TemporaryDirectory(prefix='ML-cartpole-') as folder:
        run = ml(f'train_frames={frames}', 'eval_per_steps=null', 'eval_episodes=1', *overrides, cwd=Path(folder))
        log = rows(run / 'train.csv')
    return (int(log[-1]['frame']) - int(log[0]['frame'])) / (float(log[-1]['time']) - float(log[0]['time']))


def speed(rounds: int, steps: int):
    c = recipe()
    optimizer_kwargs = {k: v for k, v in c['optim'].items() if k != 'lr'}
    print(f"speed: MLP {c['model']['hidden']}x{c['model']['depth']}, batch {c['batch_size']}, lr {c['lr']}, "
          f"one update per {c['learn_per_steps']} steps after {c['learn_after']}, target every "
          f"{c['agent']['target_update_per_steps']} steps, buffer {c['replay']['capacity']}, "
          f"ML's optimizer arguments {optimizer_kwargs}; {steps} steps per side per round")
    # SB3's DQN has no double Q: ML's recipe pays a third forward pass per update for it, so ML also runs without
    sb3, sb3_same = 'SB3 DQN', f'SB3 DQN, Adam {optimizer_kwargs}'
    sides = {sb3: lambda: sb3_rate(c, steps, {}),
             sb3_same: lambda: sb3_rate(c, steps, optimizer_kwargs),
             'ML DQN': lambda: ml_rate(steps),
             'ML DQN, agent.double=false': lambda: ml_rate(steps, 'agent.double=false'),
             'ML DQN, num_envs=8': lambda: ml_rate(steps, 'num_envs=8')}
    rates = {side: [] for side in sides}
    for round in range(rounds):
        for side, rate in sides.items():
            rates[side].append(rate())
            print(f'round {round}: {side:<44} {rates[side][-1]:6.0f} frames/s  ({pressure()})', flush=True)
    median = {side: statistics.median(values) for side, values in rates.items()}
    print(f'medians of {rounds} rounds: ' + ', '.join(f'{side} {value:.0f}' for side, value in median.items()))
    print(f"ML / SB3 {median['ML DQN'] / median[sb3]:.2f} (target 1.25); against SB3 with ML's Adam arguments "
          f"{median['ML DQN'] / median[sb3_same]:.2f}, and without double Q "
          f"{median['ML DQN, agent.double=false'] / median[sb3_same]:.2f}")
    print(f"ML with 8 envs / SB3's single env {median['ML DQN, num_envs=8'] / median[sb3]:.2f} (target 3)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', choices=['learn', 'speed'], help='run one part (default: both)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3, 4, 5])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--steps', type=int, default=20_000, help='environment steps per side per speed round')
    args = parser.parse_args()
    if args.only in (None, 'learn'):
        learn(args.seeds)
    if args.only in (None, 'speed'):
        speed(args.rounds, args.steps)


if __name__ == '__main__':
    main()

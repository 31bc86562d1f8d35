"""ML's DQN on CartPole-v1: does the recipe learn, and how fast does it run against stable-baselines3's DQN?

    python Benchmarking/cartpole_dqn.py [--only learn|speed] [--seeds 1 2 3 4 5] [--rounds 3] [--steps 20000]

learn: `ML task=RL seed=N train_frames=50000` for each seed, as a user types it; prints each seed's final and best
    greedy evaluation return (eval.csv), the frame it first reached 475, and the wall time of the command.
speed: environment frames per second of ML's DQN against SB3's DQN with the hyperparameters the recipe composes to
    (`ML task=RL --cfg job`: network, batch, learning rate, learn frequency, target refresh, buffer, learning
    starts, exploration), one torch thread each, rounds interleaved. SB3 runs with its default Adam and with ML's
    optimizer arguments (fused); cleanrl's dqn.py loop, written out here with ML's optimizer arguments, shows how
    fast the work goes with no framework around it; ML runs its recipe, and with num_envs=8 (gymnasium's vector
    env: 8 frames per loop step, so 8x fewer updates per frame, as SB3's train_freq counts) on as many frames.

ML runs as the real `ML` command in a temporary directory; its rate is read from its own train.csv (frames between
its first and last rows over the time between them), so start-up is not counted. SB3's is timed by a callback over
the same window (from step 100 to the end). These 2 cores are shared: each figure is printed with the CPU pressure
(/proc/pressure/cpu, avg10) when it ended, and the summary takes medians; re-run when the pressure is high.
"""
import argparse
import copy
import csv
import inspect
import os
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from common import interleave, logged_rate, pressure  # Benchmarking/common.py, beside this script

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
    reached, ended = 0, 0
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix='ML-cartpole-') as folder:
            start = time.perf_counter()
            run = ml(f'seed={seed}', f'train_frames={frames}', cwd=Path(folder))
            wall = time.perf_counter() - start
            evaluation = rows(run / 'eval.csv')
        returns = [float(row['return']) for row in evaluation]
        first = next((row['frame'] for row in evaluation if float(row['return']) >= 475), None)
        reached += first is not None
        ended += returns[-1] >= 475
        print(f'seed {seed}: final {returns[-1]:5.1f}  best {max(returns):5.1f}  first >= 475 at frame {first}  '
              f'({evaluation[-1]["frame"]} frames, {wall:.0f} s wall, {pressure()})', flush=True)
    print(f'{reached} of {len(seeds)} seeds reach a greedy return >= 475 within {frames} frames; {ended} end there')


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
                exploration_fraction=a['epsilon_frames'] / steps, max_grad_norm=c['max_grad_norm'],
                policy_kwargs={'net_arch': net, 'optimizer_kwargs': optimizer_kwargs}, seed=1, device='cpu')
    clock = Clock()
    model.learn(steps, callback=clock)
    return (steps - 100) / (time.perf_counter() - clock.start)


def hand_written_rate(c: dict, steps: int, optimizer_kwargs: dict) -> float:
    """cleanrl's dqn.py loop (SB3's ReplayBuffer, a SyncVectorEnv of one env) on the same work, with ML's optimizer
    arguments: how fast the work goes with no framework around it. Steps per second from step 100 to the end."""
    import random

    import gymnasium
    import numpy as np
    import torch
    import torch.nn.functional as F
    from stable_baselines3.common.buffers import ReplayBuffer
    from torch import nn

    torch.set_num_threads(1)
    random.seed(1), torch.manual_seed(1)
    a, hidden = c['agent'], c['model']['hidden']
    envs = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make('CartPole-v1')],
                                          autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    layers = [nn.Linear(4, hidden), nn.ReLU()] + [nn.Linear(hidden, hidden), nn.ReLU()] * (c['model']['depth'] - 1)
    q = nn.Sequential(*layers, nn.Linear(hidden, 2))
    target = copy.deepcopy(q)
    optimizer = torch.optim.Adam(q.parameters(), lr=c['lr'], **optimizer_kwargs)
    buffer = ReplayBuffer(c['replay']['capacity'], envs.single_observation_space, envs.single_action_space, 'cpu',
                          handle_timeout_termination=False)
    obs, _ = envs.reset(seed=1)
    for step in range(steps):
        if step == 100:
            start = time.perf_counter()
        progress = min(step / a['epsilon_frames'], 1.0)
        epsilon = (1 - progress) * a['epsilon_start'] + progress * a['epsilon_end']
        if random.random() < epsilon:
            actions = np.array([envs.single_action_space.sample()])
        else:
            actions = q(torch.Tensor(obs)).argmax(dim=1).numpy()
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        real_next_obs = next_obs.copy()
        for i, truncated in enumerate(truncations):
            if truncated:
                real_next_obs[i] = infos['final_obs'][i]
        buffer.add(obs, real_next_obs, actions, rewards, terminations, infos)
        obs = next_obs
        if step >= c['learn_after'] and step % c['learn_per_steps'] == 0:
            data = buffer.sample(c['batch_size'])
            with torch.no_grad():
                target_max, _ = target(data.next_observations).max(dim=1)
                td_target = data.rewards.flatten() + c['replay']['gamma'] * target_max * (1 - data.dones.flatten())
            old_value = q(data.observations).gather(1, data.actions).squeeze()
            loss = F.smooth_l1_loss(old_value, td_target)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), c['max_grad_norm'])
            optimizer.step()
            if step % a['target_update_per_steps'] == 0:
                target.load_state_dict(q.state_dict())
    return (steps - 100) / (time.perf_counter() - start)


def ml_rate(frames: int, *overrides) -> float:
    """ML's DQN through the ML command; frames per second between the first and last rows of its train.csv."""
    with tempfile.TemporaryDirectory(prefix='ML-cartpole-') as folder:
        run = ml(f'train_frames={frames}', 'eval_per_steps=null', 'eval_episodes=1', *overrides, cwd=Path(folder))
        return logged_rate(run / 'train.csv')


def speed(rounds: int, steps: int):
    c = recipe()
    optimizer_kwargs = {k: v for k, v in c['optim'].items() if k != 'lr'}
    print(f"speed: MLP {c['model']['hidden']}x{c['model']['depth']}, batch {c['batch_size']}, lr {c['lr']}, "
          f"one update per {c['learn_per_steps']} steps after {c['learn_after']}, target every "
          f"{c['agent']['target_update_per_steps']} steps, buffer {c['replay']['capacity']}, "
          f"ML's optimizer arguments {optimizer_kwargs}; {steps} steps per side per round")
    sb3, sb3_same = 'SB3 DQN', f'SB3 DQN, Adam {optimizer_kwargs}'
    sides = {sb3: lambda: sb3_rate(c, steps, {}),
             sb3_same: lambda: sb3_rate(c, steps, optimizer_kwargs),
             'hand-written loop': lambda: hand_written_rate(c, steps, optimizer_kwargs),
             'ML DQN': lambda: ml_rate(steps),
             'ML DQN, num_envs=8': lambda: ml_rate(steps, 'num_envs=8')}
    median = interleave(sides, rounds, 'frames/s')
    print(f'medians of {rounds} rounds: ' + ', '.join(f'{side} {value:.0f}' for side, value in median.items()))
    print(f"ML / SB3 {median['ML DQN'] / median[sb3]:.2f} (target 1.25); against SB3 with ML's Adam arguments "
          f"{median['ML DQN'] / median[sb3_same]:.2f}; against the hand-written loop "
          f"{median['ML DQN'] / median['hand-written loop']:.2f} "
          f"(which is {median['hand-written loop'] / median[sb3]:.2f}x SB3)")
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

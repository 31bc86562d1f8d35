"""ML's DQN against stable-baselines3's on Atari Pong: agent steps per second with learning on, one torch thread.

    python Benchmarking/atari_pong_vs_sb3.py [--steps 4000] [--rounds 3]

Both sides run the same work: Pong with sticky actions 0.25, 4 frames per step max-pooled, 84x84 grayscale, a stack
of 4, up to 30 no-op starts (ML's Atari; SB3's AtariWrapper without its life-loss signal); the Nature CNN and 512
hidden units; Adam at 1e-4, batch 32, one update every 4 steps after the first 1000, a target copy every 1000 steps,
no double Q, a 100k replay, and rewards clipped to [-1, 1]. Epsilon is held at 0.01 on both sides, as after
exploration (most of a run): SB3 skips the network on a random action, so a high epsilon would time less work there.

Both are counted in agent steps (4 emulator frames each), as SB3 counts timesteps (ML's frames / 4). The rounds
interleave the two, so a disturbance of this shared machine hits both; each figure is printed with the CPU pressure
(/proc/pressure/cpu, avg10) at the time, and the summary takes medians. Each side is timed from its first learning
step to its last step, so start-up and the first 1000 steps of filling the replay are not counted: SB3 by a
callback, ML from its own train.csv (the rows that carry a loss).
"""
import argparse
import time
from pathlib import Path


import ML
from common import interleave, logged_rate, workspace  # Benchmarking/common.py, beside this script

LEARN_AFTER, REPLAY, TARGET_EVERY = 1000, 100_000, 1000


def through_sb3(frames: int) -> float:
    """SB3's DQN with its CnnPolicy (NatureCNN) on its AtariWrapper. Returns agent steps per second while learning."""
    import ale_py
    import gymnasium
    from stable_baselines3 import DQN
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    class Clock(BaseCallback):
        """The time at the first learning step and at the last step."""
        def _on_step(self):
            if self.num_timesteps in (LEARN_AFTER, frames):
                self.times = {**getattr(self, 'times', {}), self.num_timesteps: time.perf_counter()}
            return True

    gymnasium.register_envs(ale_py)

    def make():
        env = gymnasium.make('ALE/Pong-v5', frameskip=1, repeat_action_probability=0.25,
                             max_num_frames_per_episode=108_000)
        return AtariWrapper(env, terminal_on_life_loss=False)  # noops 30, skip 4 + max, 84x84 gray, clip

    env = VecFrameStack(DummyVecEnv([make]), n_stack=4)
    model = DQN('CnnPolicy', env, learning_rate=1e-4, buffer_size=REPLAY, learning_starts=LEARN_AFTER,
                batch_size=32, gamma=0.99, train_freq=4, gradient_steps=1, target_update_interval=TARGET_EVERY,
                exploration_initial_eps=0.01, exploration_final_eps=0.01, max_grad_norm=10, seed=1, device='cpu',
                verbose=0)
    clock = Clock()
    model.learn(total_timesteps=frames, callback=clock)
    env.close()
    return (frames - LEARN_AFTER) / (clock.times[frames] - clock.times[LEARN_AFTER])


def through_ml(frames: int, folder: Path) -> float:
    """`ML task=atari/pong` with the same settings. Returns agent steps per second while learning."""
    ML.launch('task=atari/pong', f'train_frames={4 * frames}', f'learn_after={LEARN_AFTER}',  # ML counts emulator
              # frames (4 a step), SB3 agent steps
              f'replay.capacity={REPLAY}', 'agent.epsilon_start=0.01', f'agent.target_update_per_steps={TARGET_EVERY}',
              'eval_per_steps=null', 'eval_episodes=1', 'log_per_steps=250', 'save=false', 'progress=false',
              'device=cpu')
    # the rows that carry a loss: from the first learning step; 4 emulator frames an agent step
    return logged_rate(folder / 'Benchmarking/Exp/DQN/atari/pong_1/train.csv', keep=lambda row: row.get('loss')) / 4


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=4000)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    folder = workspace()
    medians = interleave({'SB3': lambda: through_sb3(args.steps), 'ML': lambda: through_ml(args.steps, folder)},
                         args.rounds, 'steps/s')
    s, m = medians['SB3'], medians['ML']
    print(f'median over {args.rounds} rounds of {args.steps} agent steps: SB3 {s:.1f} steps/s, ML {m:.1f} steps/s, '
          f'ratio ML/SB3 {m / s:.3f}')


if __name__ == '__main__':
    main()

"""The one loop. A dataset is an environment whose episodes are passes over the data; an RL environment is a
dataset that grows. This module is the only writer of the Counters."""
from contextlib import contextmanager

import numpy as np

from ML.specs import Counters


class Every:
    """True on every n-th step; never when n is None or 0."""

    def __init__(self, n):
        self.n = n

    def __call__(self, step: int) -> bool:
        return bool(self.n) and step % self.n == 0


@contextmanager
def eval_mode(agent):
    """The agent in eval mode (dropout off, batch-norm statistics frozen) for the duration, then as it was."""
    was_training = agent.training
    agent.train(False)
    try:
        yield
    finally:
        agent.train(was_training)


def run(world, agent, replay, logger, counters: Counters, *, train_steps=None, train_frames=None,
        eval_per_steps=None, log_per_steps=100, save_per_steps=None, learn_after=0, learn_per_steps=1,
        learn_steps=1, offline=False, checkpoint=None) -> dict:
    """Trains until a budget is spent; returns the last evaluation's metrics.

    The loop acts in the world when it is an environment (world.online) and the run is not offline (learning from a
    saved replay alone); it then takes learn_steps learning steps every learn_per_steps loop steps (a loop step
    steps every env once: stable-baselines3's gradient_steps and train_freq), and offline one per loop step.
    checkpoint(counters) saves the run (None: never).
    """
    acting = world.online and not offline
    evaluate_now, log_now, save_now, learn_now = (Every(eval_per_steps), Every(log_per_steps),
                                                   Every(save_per_steps), Every(learn_per_steps))

    def done() -> bool:
        return ((train_steps is not None and counters.step >= train_steps)
                or (train_frames is not None and counters.frame >= train_frames))

    metrics, episode_returns, evaluation = {}, [], None
    logger.start(counters)
    while not done():
        # act: one step of every environment, into the replay
        if acting:
            step = world.step(agent, counters)
            replay.add(step)
            acted = int(np.count_nonzero(step.valid))
            if not acted:  # every env only reset (gymnasium's NEXT_STEP autoreset): no step of the agent's
                continue
            counters.frame += acted * world.action_repeat  # as the field counts: an Atari step is 4 frames
            counters.episode += len(step.episode_returns)
            episode_returns += step.episode_returns

        # learn
        if (not acting) or (len(replay) >= learn_after and learn_now(counters.step)):
            for _ in range(learn_steps if acting else 1):
                batch = replay.sample()
                metrics = agent.learn(batch, counters)
                if 'priority' in metrics:  # prioritized replay: each sample's new priority (its TD error)
                    replay.update_priorities(batch.index, metrics.pop('priority'))
            if not acting:  # offline, a frame is a data point learned from
                counters.frame += len(batch.obs)
                if getattr(replay, 'pass_ended', False):
                    counters.epoch += 1
                    counters.episode += 1
        counters.step += 1
        logger.progress(counters)

        # log
        if log_now(counters.step):
            logger.train(counters, metrics, episode_returns)
            episode_returns = []

        # evaluate
        if evaluate_now(counters.step):
            with eval_mode(agent):
                evaluation = world.evaluate(agent, counters)
            logger.eval(counters, evaluation)

        # save
        if checkpoint is not None and save_now(counters.step):
            checkpoint(counters)

    # the end: a last evaluation and checkpoint, unless this very step had them
    if evaluation is None or not evaluate_now(counters.step):
        with eval_mode(agent):
            evaluation = world.evaluate(agent, counters)
        logger.eval(counters, evaluation)
    if checkpoint is not None and not save_now(counters.step):
        checkpoint(counters)
    return evaluation

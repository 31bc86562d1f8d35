"""The one loop. A dataset is an environment whose episodes are passes over the data; an RL environment is a
dataset that grows. This module is the only writer of the Counters."""
import math
from contextlib import contextmanager

import numpy as np

from ML import distributed
from ML.errors import NonFiniteLoss
from ML.specs import Counters, Metrics


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


def computed(metrics: Metrics) -> Metrics:
    """learn()'s metrics with the deferred ones (ML.specs.Metrics) computed: called only on the steps that write a
    row or save (a batch's training accuracy costs a few small ops, which a small model feels every step; its value
    at the logged step is all a row shows)."""
    return {name: value() if callable(value) else value for name, value in metrics.items()}


def check_finite(metrics: Metrics, step: int):
    """A loss (or any metric learn() returned) that is nan or infinite stops the run before it saves anything:
    the weights it came from are no good; deferred metrics not yet computed are left out. Raises NonFiniteLoss
    naming the metric and the step."""
    for name, value in metrics.items():
        if callable(value):
            continue
        number = float(value)
        if not math.isfinite(number):
            raise NonFiniteLoss(f'{name} is {number} at step {step}')


def run(world, agent, replay, logger, counters: Counters, *, train_steps=None, train_frames=None,
        eval_per_steps=None, log_per_steps=100, save_per_steps=None, learn_after=0, learn_per_steps=1,
        learn_steps=1, offline=False, checkpoint=None, stop_requested=lambda: False, resumed: dict = None,
        on_evaluation=None, monitor=None, save_best=None) -> dict:
    """Trains until a budget is spent or a stop is requested; returns the last evaluation's metrics.

    The loop acts in the world when it is an environment (world.online) and the run is not offline (learning from a
    saved replay alone); it then takes learn_steps learning steps every learn_per_steps loop steps (a loop step
    steps every env once: stable-baselines3's gradient_steps and train_freq), and offline one per loop step.

    checkpoint(counters, loop_state) saves the run (None: never); loop_state is what the loop itself carries between
    steps (the returns of episodes not yet logged, the last evaluation), which `resumed` hands back on resume, so a
    resumed run continues as if it had never stopped. stop_requested() is asked after every step (a signal arrived):
    the loop then saves and returns at once, without a final evaluation. on_evaluation(counters, evaluation) is
    called after each evaluation is logged (a search's pruner reads it there, and may raise to stop the run).

    monitor (ML.records.monitor.Monitor) reads each evaluation's monitored metric: it steps the schedulers that
    take a metric, and the loop ends, as a completed run, once it has stopped early (early_stop.patience); its state
    is part of loop_state, so a resumed run goes on counting. save_best(counters, loop_state) saves the checkpoint
    of an evaluation better than every earlier one, right after it, before any further learning changes the weights.

    Raises NonFiniteLoss when learn() returns a nan or infinite number (checked on the steps that write a row or
    save, and every step on the CPU, where reading a number costs no device sync), before any checkpoint is saved.
    An evaluation that raises, or that lacks the metric the monitor watches (ConfigError naming early_stop.metric),
    keeps the training: the checkpoint is saved first, then the error goes on.
    """
    acting = world.online and not offline
    evaluate_now, log_now, save_now, learn_now = (Every(eval_per_steps), Every(log_per_steps),
                                                   Every(save_per_steps), Every(learn_per_steps))
    resumed = resumed or {}
    episode_returns, evaluation = list(resumed.get('episode_returns', [])), resumed.get('evaluation')
    evaluated_at = resumed.get('evaluated_at')
    saved_at = counters.step if resumed else None  # a resumed run starts from a checkpoint of this very step
    metrics, learned, check_each_step = {}, False, True
    if monitor is not None:
        monitor.load_state_dict(resumed.get('monitor'))

    def done() -> bool:
        return ((train_steps is not None and counters.step >= train_steps)
                or (train_frames is not None and counters.frame >= train_frames)
                or (monitor is not None and monitor.stopped))

    def loop_state() -> dict:
        return {'episode_returns': list(episode_returns), 'evaluation': evaluation, 'evaluated_at': evaluated_at,
                **({'monitor': monitor.state_dict()} if monitor is not None else {})}

    def save():
        nonlocal saved_at
        if checkpoint is not None:
            if learned:
                check_finite(computed(metrics), counters.step)
            checkpoint(counters, loop_state())
        saved_at = counters.step

    def evaluate():
        nonlocal evaluation, evaluated_at
        try:
            with eval_mode(agent):
                evaluation = world.evaluate(agent, counters)
            if monitor is not None:
                monitor.check(evaluation)
        except Exception:
            save()  # evaluating changes no weights: what was learned so far is kept
            raise
        evaluated_at = counters.step
        logger.eval(counters, evaluation)
        if monitor is not None and monitor.update(evaluation, counters.step) and save_best is not None:
            save_best(counters, loop_state())
        if on_evaluation is not None:
            on_evaluation(counters, evaluation)

    logger.start(counters)
    while not done():
        # act: one step of every environment, into the replay
        if acting:
            acted = 0
            while not acted:  # a step where every env only reset (gymnasium's NEXT_STEP autoreset) is no step of
                step = world.step(agent, counters)  # the agent's: each process steps again on its own, at once
                replay.add(step)
                acted = int(np.count_nonzero(step.valid))
            episode_returns += step.episode_returns
            # several processes: one all-reduce shares the step's counts, so every process counts all frames and
            # episodes and learns once every replay holds learn_after transitions (the smallest, on every process)
            counts = distributed.per_process([acted, len(step.episode_returns), len(replay)])
            counters.frame += int(counts[:, 0].sum()) * world.action_repeat  # an Atari step is 4 frames
            counters.episode += int(counts[:, 1].sum())
            filled = int(counts[:, 2].min())

        # learn
        if (not acting) or (filled >= learn_after and learn_now(counters.step)):
            for _ in range(learn_steps if acting else 1):
                batch = replay.sample()
                metrics = agent.learn(batch, counters)
                if 'priority' in metrics:  # prioritized replay: each sample's new priority (its TD error)
                    replay.update_priorities(batch.index, metrics.pop('priority'))
            learned = True
            if check_each_step:  # on the CPU reading a number is free; on a GPU it waits for the device
                check_finite(metrics, counters.step + 1)
                check_each_step = all(getattr(getattr(value, 'device', None), 'type', 'cpu') == 'cpu'
                                      for value in metrics.values() if not callable(value))
            if not acting:  # offline, a frame is a data point learned from
                counters.frame += getattr(replay, 'served', len(batch.obs))  # several processes: every slice
                if getattr(replay, 'pass_ended', False):
                    counters.epoch += 1
                    counters.episode += 1
        counters.step += 1
        logger.progress(counters, 'filling replay' if acting and filled < learn_after else None)

        # log
        if log_now(counters.step):
            metrics = computed(metrics)
            if learned:
                check_finite(metrics, counters.step)
            logger.train(counters, metrics, distributed.gather(episode_returns) if acting else episode_returns)
            episode_returns = []

        # evaluate
        if evaluate_now(counters.step):
            evaluate()

        # save
        stopping = stop_requested()  # asked once a step: several processes agree on it together
        if save_now(counters.step) or stopping:
            save()
        if stopping:
            return evaluation

    # the end: a last evaluation and checkpoint, unless this very step had them (a finished run resumed had both,
    # and a run stopped early stopped at an evaluation)
    if evaluated_at != counters.step:
        evaluate()
    if saved_at != counters.step:
        save()
    return evaluation

"""The monitored metric: the one number of a run's evaluations that says whether the run is getting better, and
the rules that read it after each evaluation:

    early_stop.patience   stop after this many evaluations without improvement (PyTorch Lightning's EarlyStopping:
                          patience, min_delta, mode)
    save_best             keep the checkpoint of the best evaluation so far (Lightning's ModelCheckpoint with
                          monitor=..., save_top_k=1; stable-baselines3's EvalCallback best_model_save_path)
    a metric scheduler    a scheduler whose step() takes a metric (torch's ReduceLROnPlateau) steps with it

Lower is better for an mse, a loss or an error, higher for every other metric (accuracy, return): `minimizes` is
that rule, for early_stop.mode and search.direction alike.
"""
import math

from ML.errors import ConfigError

MINIMIZED = ('mse', 'loss', 'error')  # the endings of names whose lower values are better
MODES = ('min', 'max')


def minimizes(metric: str) -> bool:
    """Whether lower values of `metric` are better, by its name: an mse, a loss or an error (mse, loss,
    test_error); every other metric (accuracy, return) is maximized."""
    return str(metric).endswith(MINIMIZED)


def task_score(world) -> str:
    """The score of a task's evaluation: return in an environment, accuracy for classes, mse for regression."""
    return 'return' if world.online else 'accuracy' if world.suite == 'classify' else 'mse'


def evaluation_metrics(world, agent):
    """The metrics world.evaluate() returns, where they are known before it runs: a dataset's score, and its test
    loss for an agent that has test() (ML.agents.classifier). None for an environment: some add their own (Atari's
    human_normalized), known at the first evaluation."""
    if world.online:
        return None
    return {task_score(world), *(['loss'] if callable(getattr(agent, 'test', None)) else [])}


class Monitor:
    """The monitored metric of a run and what follows from it after each evaluation: whether it improved, whether
    the run stops early, and the metric schedulers' steps. Its state (the best score, its step, the evaluations
    since it) goes into the loop's state in every checkpoint, so that a resumed run goes on counting.

    metric       the evaluation's key it watches (accuracy, mse, return, loss, ...)
    mode         'min' or 'max' (None: min for an mse, loss or error, max for others)
    patience     evaluations without improvement before the run stops (None: it never stops early)
    min_delta    the least change of the metric that counts as an improvement (Lightning's min_delta), >= 0
    keep_best    whether the best evaluation's checkpoint is kept (save_best): the metric must exist then
    schedulers   schedulers whose step takes a metric (ML.agents.update.metric_schedulers): each steps with the
                 metric after each evaluation, in this mode (ReduceLROnPlateau's mode follows it)
    scheduler_mode  scheduler.mode as the user gave it, None when not given

    Raises ConfigError naming the key for a mode that is not min or max, a patience < 1, a min_delta < 0, or a
    scheduler.mode that contradicts the metric's mode.
    """

    def __init__(self, metric: str, mode: str = None, patience: int = None, min_delta: float = 0.0,
                 keep_best: bool = False, schedulers=(), scheduler_mode: str = None):
        if mode not in (*MODES, None):
            raise ConfigError(f'early_stop.mode={mode}: expected min or max (or null: min for an mse, loss or '
                              f'error, max for others)')
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ConfigError(f'early_stop.patience={patience}: expected a number of evaluations, 1 or more (or '
                              f'null: never stop early)')
        if not (min_delta or 0.0) >= 0:
            raise ConfigError(f'early_stop.min_delta={min_delta}: expected a change of 0 or more')
        self.metric, self.patience, self.min_delta = metric, patience, float(min_delta or 0.0)
        self.mode = mode or ('min' if minimizes(metric) else 'max')
        self.keep_best, self.schedulers = keep_best, list(schedulers)
        for scheduler in self.schedulers:
            self._align(scheduler, scheduler_mode)
        self.best, self.best_step, self.best_evaluation = None, None, None  # the best score, its step and number
        self.evaluations, self.waited, self.last_step = 0, 0, None  # evaluations so far, since the best; the last's
        self.stopped_at = None  # the step the run stopped early at

    @property
    def watching(self) -> bool:
        """Whether anything reads the metric: early stopping, the best checkpoint or a metric scheduler."""
        return self.patience is not None or self.keep_best or bool(self.schedulers)

    @property
    def stopped(self) -> bool:
        """Whether the run has stopped early: patience evaluations in a row without improvement."""
        return self.stopped_at is not None

    def check(self, metrics):
        """Refuses, before anything is written, a watched metric the evaluation will not have. metrics: the
        names the evaluation returns (evaluation_metrics), or None when they are known only once it runs."""
        if metrics is not None and self.watching and self.metric not in metrics:
            raise self._missing(metrics)

    def update(self, evaluation: dict, step: int) -> bool:
        """Reads one evaluation made at `step`: steps the metric schedulers, counts an improvement or one more
        evaluation without, and stops the run when patience runs out. Returns whether this evaluation is the best
        so far. Raises ConfigError, naming early_stop.metric and the evaluation's metrics, when a watched metric is
        missing (the loop then keeps what it has saved)."""
        if self.metric not in evaluation:
            if self.watching:
                raise self._missing(evaluation)
            return False
        score = float(evaluation[self.metric])
        self.evaluations, self.last_step = self.evaluations + 1, step
        for scheduler in self.schedulers:
            scheduler.step(score)
        improved = math.isfinite(score) and (self.best is None or self._better(score, self.best))
        if improved:
            self.best, self.best_step, self.best_evaluation, self.waited = score, step, self.evaluations, 0
        else:
            self.waited += 1
            if self.patience is not None and self.waited >= self.patience:
                self.stopped_at = step
        return improved

    def summary(self) -> str:
        """Why the run stopped early, e.g. 'stopped early at evaluation 6 (step 60): accuracy 91.20% at
        evaluation 3 (step 30) was not bettered in 3 evaluations (early_stop.patience=3)'; '' when it did not."""
        if not self.stopped:
            return ''
        return (f'stopped early at evaluation {self.evaluations} (step {self.stopped_at}): {self.metric} '
                f'{self.shown(self.best)} at evaluation {self.best_evaluation} (step {self.best_step}) was not '
                f'bettered in {self.waited} evaluation{"s" if self.waited > 1 else ""} '
                f'(early_stop.patience={self.patience})')

    def shown(self, score) -> str:
        return f'{score:.2%}' if self.metric == 'accuracy' else f'{score:.4g}'

    def state_dict(self) -> dict:
        return {'metric': self.metric, 'mode': self.mode, 'best': self.best, 'best_step': self.best_step,
                'best_evaluation': self.best_evaluation, 'evaluations': self.evaluations, 'waited': self.waited,
                'last_step': self.last_step}

    def load_state_dict(self, state: dict):
        """A checkpoint's state. The best of another metric or mode does not count: counting starts afresh then.
        A patience changed on resume applies to the evaluations already counted."""
        if not state or (state.get('metric'), state.get('mode')) != (self.metric, self.mode):
            return
        self.best, self.best_step, self.best_evaluation = state['best'], state['best_step'], state['best_evaluation']
        self.evaluations, self.waited, self.last_step = state['evaluations'], state['waited'], state['last_step']
        if self.patience is not None and self.waited >= self.patience:
            self.stopped_at = self.last_step

    def _better(self, score: float, best: float) -> bool:
        return score < best - self.min_delta if self.mode == 'min' else score > best + self.min_delta

    def _missing(self, metrics) -> ConfigError:
        return ConfigError(f'early_stop.metric={self.metric}: the evaluation has no such metric; it has '
                           f'{", ".join(sorted(metrics))}')

    def _align(self, scheduler, given_mode):
        """A ReduceLROnPlateau-like scheduler (one with a `mode` of min or max) set to the metric's mode; one the
        user gave another mode is refused."""
        mode = getattr(scheduler, 'mode', None)
        if mode not in MODES or mode == self.mode:
            return
        if given_mode is not None:
            raise ConfigError(f'scheduler.mode={given_mode}: the scheduler steps with {self.metric}, which is '
                              f'{"minimized" if self.mode == "min" else "maximized"} (early_stop.mode={self.mode}); '
                              f'give scheduler.mode={self.mode}, or leave it out')
        # through load_state_dict, which rebuilds the comparison for the new mode (ReduceLROnPlateau's own way)
        scheduler.load_state_dict({**scheduler.state_dict(), 'mode': self.mode,
                                   'best': math.inf if self.mode == 'min' else -math.inf})


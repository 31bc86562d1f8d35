"""Evaluation on demand: `ML evaluate=true load=...` evaluates a checkpoint as the run's evaluations do (the test set,
or eval_episodes greedy episodes, with video=true a video of the first) and trains nothing.

    ML evaluate=true load=true                      # this experiment's checkpoint
    ML evaluate=true load=best                      # its best evaluation's (save_best=true)
    ML task=RL evaluate=true load='Exp CartPole' eval_episodes=20 video=true

The result is printed and added to the run's eval.csv as one row marked `evaluation: on demand` (with the checkpoint
it read), which Plot leaves out of the learning curves. The checkpoint is only read; the run's folder is locked
while the row is written and otherwise left as it is: its status, its other rows, no train.csv row.
"""
from pathlib import Path

from ML import distributed
from ML.records.logger import CSV, row, scores, shown
from ML.records.run_folder import RunFolder, RunPaths
from ML.run import eval_mode
from ML.specs import Counters, RunResult

MARKER = {'evaluation': 'on demand'}  # the column and value that mark such a row in eval.csv


def evaluate_checkpoint(world, agent, counters: Counters, *, checkpoint: Path, paths: RunPaths, elapsed: float,
                        video: bool, cwd: Path) -> RunResult:
    """Evaluates `agent` (its checkpoint's state loaded, at `counters`) in `world` and writes the marked row to
    paths.folder/eval.csv, `elapsed` (the checkpoint's seconds of training) in its time column; a video, with
    video=true, goes to media/on-demand/ (the training's own videos stay). Returns the RunResult (status
    completed). Raises RunError when a live run holds the folder, before evaluating."""
    main = distributed.is_main()  # several processes evaluate together: process 0 alone writes and prints
    folder = RunFolder(paths) if main else distributed.Silent()
    folder.claim(checkpoints=False)  # the lock only: nothing is moved aside or cut back
    try:
        if video and main:
            world.video_folder = paths.folder / 'media' / 'on-demand'
        with eval_mode(agent):
            evaluation = world.evaluate(agent, counters)
        if main:
            marked = {**evaluation, **MARKER, 'checkpoint': shown(checkpoint, cwd)}
            CSV(paths.folder / 'eval.csv').write(row(counters, elapsed, marked))
    finally:
        folder.release()
        if hasattr(world, 'close'):
            world.close()
    if main:
        print(f'ML: evaluated {shown(checkpoint, cwd)} (step {counters.step}): '
              f'{"evaluation" if world.online else world.evaluated_on} {scores(evaluation)}; '
              f'a row marked evaluation: on demand in {shown(paths.folder / "eval.csv", cwd)}')
    return RunResult(agent.train(False), evaluation, counters, paths.folder, checkpoint)


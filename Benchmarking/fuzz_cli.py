"""Fuzzing the ML command line: generated lines over every key of Hyperparams/args.yaml, and what became of each.

    python Benchmarking/fuzz_cli.py [--lines 540] [--seed 0] [--show traceback,silent]

Each line sets one key to a value of some type (ints, negative numbers, floats, strings, lists, dicts, empty, null,
booleans, code, paths) on top of a tiny run (a classifier on the digits, or DQN on CartPole-v1), and runs through
ML.cli.main in-process, in a fresh temporary directory. The promise: the run trains (exit 0), or it prints exactly
one `ML:` line on stderr, exits non-zero, shows no traceback and writes nothing. The table in `verdict` (written
here, apart from ML's own checks) says which values are bad; the counts printed at the end are:

    traceback        an exception escaped the command line, or stderr holds a traceback
    silent           a value the table calls bad, and the run exited 0
    clean error      one ML: line, a non-zero exit, nothing written
    unclean error    a non-zero exit with other stderr, or with files written
    refused good     a clean error for a value the table calls good (ML stricter than the table)
    accepted         exit 0 for a value the table calls good (or cannot judge)
    hang             no answer within --timeout seconds
"""
import argparse
import contextlib
import io
import math
import os
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import torch

CLASSIFY = ['train_steps=2', 'train_frames=512', 'eval_per_steps=null', 'progress=false']
RL = ['task=RL', 'train_steps=4', 'train_frames=16', 'learn_after=2', 'eval_episodes=1', 'eval_per_steps=null',
      'progress=false']

VALUES = ['0', '1', '3', '100', '-1', '-5', '-0.5', '0.5', '1e-3', '2.5', 'inf', 'nan', '4294967296', 'abc', 'Exp2',
          "'12'", '[1,2]', '[a]', '{a:1}', '', 'null', 'true', 'false', 'nn.Flatten()', 'print(1)', '1/0', "'x,y'",
          './x', '../..', '/tmp/ML-fuzz', 'a/b', '..', '.', 'CNN', 'MLP', 'Digits', 'CartPole-v1', 'torch.optim.SGD',
          'cpu', 'cuda', 'cuda:7', 'tpu']

# arguments of built things, by the class the tiny runs build (MLP, Adam, the Classifier, DQN, Digits, CartPole)
TWIN_ARGUMENTS = ['model.depth', 'model.hidden', 'eyes.depth', 'optim.weight_decay', 'optim.lr', 'scheduler.gamma',
                  'agent.gamma', 'dataset.size', 'env.size']
ONLINE_ONLY = {'num_envs', 'learn_after', 'learn_per_steps', 'learn_steps', 'offline', 'stream', 'video',
               'eval_episodes'}
PRIORITIZED_ONLY = {'replay.alpha', 'replay.beta', 'replay.beta_steps'}
DEFAULTS = {'num_envs': '1', 'learn_after': '1000', 'learn_per_steps': '1', 'learn_steps': '1', 'offline': 'false',
            'stream': 'false', 'video': 'false', 'eval_episodes': '10', 'test_split': '0.2',
            'replay.capacity': '100000', 'replay.nstep': '1', 'replay.gamma': '0.99', 'replay.clip_reward': 'null',
            'replay.prioritized': 'false', 'replay.alpha': '0.6', 'replay.beta': '0.4', 'replay.beta_steps': '100000',
            'replay.save': 'false', 'replay.load': 'false'}


def number(raw: str):
    """The number Hydra reads from raw, or None."""
    try:
        return int(raw.replace('_', ''))
    except ValueError:
        pass
    try:
        return float(raw) if raw.strip().lower() not in ('true', 'false') else None
    except ValueError:
        return None


def integer(raw: str, low=None, high=None):
    value = number(raw)
    return isinstance(value, int) and (low is None or value >= low) and (high is None or value <= high)


def real(raw: str, low=-math.inf, high=math.inf, open_low=False, open_high=False):
    value = number(raw)
    return (value is not None and math.isfinite(value) and (value > low if open_low else value >= low)
            and (value < high if open_high else value <= high))


def verdict(key: str, raw: str, context: str) -> str:
    """'good', 'bad' or 'either' (the table cannot judge) for `key=raw` on a run of `context` (classify or RL)."""
    online = context == 'RL'
    if raw == DEFAULTS.get(key):
        return 'good'
    if (key in ONLINE_ONLY or key.startswith('replay.')) and not online:
        return 'bad'  # unused: nothing online happens on a dataset
    if key in PRIORITIZED_ONLY or (key == 'test_split' and online):
        return 'bad'  # unused: the replay is uniform / the env has no split
    if key in ('eyes.depth', 'scheduler.gamma', 'dataset.size', 'env.size', 'agent.gamma'):
        return 'good' if key == 'agent.gamma' and online and real(raw, 0, 1) else 'bad'
    rules = {
        'Eyes': lambda: 'good' if raw in ('null', 'MLP', 'nn.Flatten()') or (raw == 'CNN' and not online) else 'bad',
        'Model': lambda: 'good' if raw == 'MLP' or (raw == 'CNN' and not online) else 'bad',
        'Optim': lambda: 'good' if raw == 'torch.optim.SGD' else 'bad',
        'Scheduler': lambda: 'good' if raw == 'null' else 'bad',
        'Agent': lambda: 'good' if raw == 'null' else 'bad',
        'Dataset': lambda: 'good' if raw == ('null' if online else 'Digits') else 'bad',
        'Env': lambda: 'good' if raw == 'CartPole-v1' or (raw == 'null' and not online) else 'bad',
        'test_split': lambda: 'good' if real(raw, 0, 1, open_low=True, open_high=True) else 'bad',
        'num_envs': lambda: 'good' if integer(raw, 1, 100) else 'bad',
        'lr': lambda: 'good' if real(raw, 0, open_low=True) else 'bad',
        'optim.lr': lambda: 'good' if real(raw, 0, open_low=True) else 'bad',
        'optim.weight_decay': lambda: 'good' if real(raw, 0) else 'bad',
        'model.depth': lambda: 'good' if integer(raw, 1, 100) else 'either' if raw == '0' else 'bad',
        'model.hidden': lambda: 'good' if integer(raw, 1, 100) else 'bad',
        'batch_size': lambda: 'good' if integer(raw, 1, 100) else 'bad',
        'train_steps': lambda: 'good' if integer(raw, 1, 100) or raw == 'null' else 'either' if raw == '0' else 'bad',
        'train_frames': lambda: 'good' if integer(raw, 1) or raw == 'null' else 'either' if raw == '0' else 'bad',
        'learn_after': lambda: 'good' if integer(raw, 0, 100) else 'bad',
        'learn_per_steps': lambda: 'good' if integer(raw, 1) else 'bad',
        'learn_steps': lambda: 'good' if integer(raw, 1, 100) else 'bad',
        'replay.capacity': lambda: 'good' if integer(raw, 64, 10 ** 6) else 'bad',  # holds a batch of 64
        'replay.nstep': lambda: 'good' if integer(raw, 1, 100) else 'bad',
        'replay.gamma': lambda: 'good' if real(raw, 0, 1) else 'bad',
        'replay.clip_reward': lambda: 'good' if real(raw, 0, open_low=True) or raw == 'null' else 'bad',
        'replay.prioritized': lambda: 'good' if raw in ('true', 'false') else 'bad',
        'replay.save': lambda: 'good' if raw in ('true', 'false') else 'bad',
        'replay.load': lambda: 'good' if raw == 'false' else 'bad',  # true: nothing saved to load
        'offline': lambda: 'good' if raw == 'false' else 'bad',      # true: nothing saved to learn from
        'stream': lambda: 'good' if raw in ('true', 'false') else 'bad',
        'video': lambda: 'either' if raw == 'true' else 'bad',
        'eval_per_steps': lambda: 'good' if integer(raw, 1) or raw == 'null' else 'bad',
        'eval_episodes': lambda: 'good' if integer(raw, 1, 100) else 'bad',
        'log_per_steps': lambda: 'good' if integer(raw, 1) else 'either' if raw == 'null' else 'bad',
        'save': lambda: 'good' if raw in ('true', 'false') else 'bad',
        'save_per_steps': lambda: 'good' if integer(raw, 1) or raw == 'null' else 'bad',
        'load': lambda: 'good' if raw == 'false' else 'either' if raw == 'null' else 'bad',  # nothing saved yet
        'experiment': lambda: ('good' if raw in ('abc', 'Exp2', "'12'", "'x,y'", 'CNN', 'MLP', 'Digits', 'cpu',
                                                  'cuda', 'tpu', 'CartPole-v1', 'torch.optim.SGD', 'cuda:7')
                               else 'either' if number(raw) is not None else 'bad'),  # a number names a folder too
        'seed': lambda: 'good' if integer(raw, 0, 2 ** 32 - 1) else 'bad',
        'device': lambda: 'good' if raw in ('cpu', 'auto') or (raw == 'cuda' and torch.cuda.is_available()) else 'bad',
        'progress': lambda: 'good' if raw in ('true', 'false') else 'bad',
    }
    if key in rules:
        return rules[key]()
    if key in ('eyes', 'model', 'optim', 'scheduler', 'agent', 'dataset', 'env'):
        return 'bad'  # a twin holds arguments by name: eyes.depth=..., not eyes=...
    return 'either'


def keys() -> list:
    """Every key of args.yaml (replay's by their dotted names), and arguments of the things a tiny run builds."""
    from omegaconf import OmegaConf
    from ML.language.recipes import hyperparams_dir
    config = OmegaConf.to_container(OmegaConf.load(hyperparams_dir() / 'args.yaml'))
    config.pop('defaults', None)
    flat = [f'replay.{inner}' if key == 'replay' else key for key, value in config.items()
            for inner in (value if key == 'replay' else [None])]
    return flat + TWIN_ARGUMENTS



class Hang(Exception):
    pass


def run_line(argv: list, timeout: int) -> tuple:
    """(exit code or 'traceback' or 'hang', stderr, whether anything was written) of `ML *argv` in a fresh folder."""
    from ML.cli import main
    here, folder = Path.cwd(), Path(tempfile.mkdtemp(prefix='ML-fuzz-'))
    os.chdir(folder)
    stderr = io.StringIO()

    def alarm(*_):
        raise Hang()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            try:
                main(argv)
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            except Hang:
                code = 'hang'
            except BaseException:  # what a user would see as a traceback
                code = 'traceback'
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(here)
    wrote = any((folder / name).exists() for name in ('Benchmarking', 'Checkpoints', 'Datasets'))
    shutil.rmtree(folder, ignore_errors=True)
    return code, stderr.getvalue(), wrote


def outcome(code, stderr: str, wrote: bool, judged: str) -> str:
    if code == 'hang':
        return 'hang'
    if code == 'traceback' or 'Traceback (most recent call last)' in stderr:
        return 'traceback'
    if code == 0:
        return 'silent' if judged == 'bad' else 'accepted'
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith('ML: ') or wrote:
        return 'unclean error'
    return 'refused good' if judged == 'good' else 'clean error'


def lines(count: int, seed: int) -> list:
    """(argv, key, value, context) for `count` lines: every key, with values drawn in turn from every type."""
    rng, every_key, generated = random.Random(seed), keys(), []
    while len(generated) < count:
        for key in every_key:
            value = rng.choice(VALUES)
            online_key = key in ONLINE_ONLY or key.startswith(('replay.', 'env.', 'agent.'))
            context = 'RL' if online_key and rng.random() < 0.8 else rng.choice(['classify', 'RL'])
            generated.append(([*(RL if context == 'RL' else CLASSIFY), f'{key}={value}'], key, value, context))
    return generated[:count]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lines', type=int, default=540)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--timeout', type=int, default=120)
    parser.add_argument('--show', default='traceback,silent,unclean error,hang',
                        help='the outcomes whose lines are printed')
    options = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.pop('HYDRA_FULL_ERROR', None)
    counts, shown = {}, options.show.split(',')
    for argv, key, value, context in lines(options.lines, options.seed):
        code, stderr, wrote = run_line(argv, options.timeout)
        result = outcome(code, stderr, wrote, verdict(key, value, context))
        counts[result] = counts.get(result, 0) + 1
        if result in shown:
            last = (stderr.strip().splitlines() or [''])[-1][:160]
            print(f'{result:>13}: [{context}] {key}={value}  | {last}', flush=True)
    print('\n' + ', '.join(f'{name} {counts.get(name, 0)}' for name in (
        'traceback', 'silent', 'clean error', 'unclean error', 'refused good', 'accepted', 'hang')))
    return 0 if counts.get('traceback', 0) == counts.get('silent', 0) == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
